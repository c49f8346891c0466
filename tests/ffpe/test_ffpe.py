"""SGD-FFPE solver: invariants (mass, positivity, Gibbs fixed point), closed forms and
convergence orders fitted by regression. float64 throughout (the x64 fixture)."""

import math

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest
import scipy.linalg

import fracsgd as fs
from fracsgd.ffpe import _solve


def _double_well(w):
    return (w[0] ** 2 - 1.0) ** 2


def _gaussian(grid, centre=0.0, width=0.3):
    x = grid.centers[:, 0]
    p = np.exp(-((x - centre) ** 2) / (2 * width**2))
    return jnp.asarray(p / (p.sum() * grid.h))


def _order(ns, errors):
    return -np.polyfit(np.log(ns), np.log(errors), 1)[0]


def test_gibbs_state_is_a_fixed_point_and_the_stationary_solution(x64):
    grid = fs.ffpe.Grid1D(-2.5, 2.5, 200)
    prob = fs.ffpe.Problem(alpha=0.5, diffusion=0.3, gamma=1.0, potential=_double_well)
    gibbs = np.exp(-np.array([_double_well(c) for c in grid.centers]) / 0.3)
    gibbs /= gibbs.sum() * grid.h
    stat = fs.ffpe.stationary(prob, grid)
    np.testing.assert_allclose(stat, gibbs, rtol=1e-12)
    sol = fs.ffpe.solve(prob, grid, jnp.asarray(gibbs), t_final=5.0, num_steps=40)
    assert float(jnp.max(jnp.abs(sol.p - gibbs[None]))) <= 1e-12 * gibbs.max()


def test_mass_and_positivity(x64):
    grid = fs.ffpe.Grid1D(-2.5, 2.5, 150)
    prob = fs.ffpe.Problem(alpha=0.4, diffusion=0.2, gamma=1.0, potential=_double_well)
    sol = fs.ffpe.solve(
        prob, grid, _gaussian(grid, 1.8, 0.1), t_final=10.0, num_steps=100, grading=3.0
    )
    np.testing.assert_allclose(sol.mass, 1.0, atol=1e-12)
    assert float(sol.p.min()) >= 0.0 and int(sol.result) == fs.ffpe.SUCCESS


def test_mass_is_conserved_in_float32_over_many_steps():
    """The tridiagonal elimination's float32 rounding lost or gained ~1e-4 of the mass within 500
    steps of a double well; each solve now restores Σu = Σ rhs / c."""
    grid = fs.ffpe.Grid1D(-3.0, 3.0, 300)
    p0 = jnp.asarray(_gaussian(grid, 0.0, 0.2), jnp.float32)
    prob = fs.ffpe.Problem(alpha=0.5, diffusion=1.0, gamma=1.0, potential=_double_well)
    sol = fs.ffpe.solve(prob, grid, p0, t_final=10.0, num_steps=2000, save_at=250)
    assert sol.p.dtype == jnp.float32
    mass = np.asarray(sol.p, np.float64).sum(axis=1) * grid.h  # summed in float64
    np.testing.assert_allclose(mass, 1.0, atol=2e-6)


@pytest.mark.parametrize(
    ("stepper", "order"),
    [(fs.ffpe.L1(), 1.0), (fs.ffpe.L21Sigma(), 2.0)],
    ids=["l1-backward-euler", "l21sigma-crank-nicolson"],
)
def test_alpha_one_recovers_the_ordinary_equation(x64, stepper, order):
    """α = 1: L1 is backward Euler (order 1), L2-1σ (σ = ½) Crank–Nicolson (order 2); measured
    slopes 1.0 and 2.0 against the matrix exponential of the same spatial operator."""
    grid = fs.ffpe.Grid1D(-2.0, 2.0, 40)
    prob = fs.ffpe.Problem(alpha=1.0, diffusion=0.5, gamma=1.0, potential=_double_well)
    p0 = _gaussian(grid, 0.5, 0.2)
    bands, _ = _solve._operator(prob, grid)
    dense = np.asarray(
        jax.vmap(lambda e: fs.ffpe._space.apply_tridiagonal(bands, e), out_axes=1)(
            jnp.eye(grid.cells)
        )
    )
    exact = scipy.linalg.expm(dense * 0.5) @ np.asarray(p0)
    errs = []
    ns = np.array([20, 40, 80, 160])
    for n in ns:
        sol = fs.ffpe.solve(prob, grid, p0, t_final=0.5, num_steps=int(n), stepper=stepper)
        errs.append(float(jnp.max(jnp.abs(sol.p[-1] - exact))))
    assert _order(ns, errs) == pytest.approx(order, abs=0.1)


def test_free_subdiffusion_msd(x64):
    """φ = 0: the second moment obeys D^α m₂ = 2D exactly on the grid (3-point Laplacian, far
    from the walls), so m₂(t) = m₂(0) + 2D t^α / Γ(1+α)."""
    alpha, d = 0.6, 0.5
    grid = fs.ffpe.Grid1D(-12.0, 12.0, 480)
    prob = fs.ffpe.Problem(alpha=alpha, diffusion=d, gamma=0.0, potential=lambda w: 0.0 * w[0])
    p0 = _gaussian(grid, 0.0, 0.2)
    sol = fs.ffpe.solve(prob, grid, p0, t_final=2.0, num_steps=200, grading=(2 - alpha) / alpha)
    m2 = np.asarray(sol.msd())
    t = np.asarray(sol.ts)
    expected = m2[0] + 2 * d * t**alpha / math.gamma(1 + alpha)
    # L1 on the optimal graded mesh, N = 200: ≈ 1e-3 relative once t ≥ 0.1 T (the first few
    # steps resolve the t^α onset less well, up to ≈ 1 %)
    late = t >= 0.2
    np.testing.assert_allclose(m2[late], expected[late], rtol=5e-3)


def test_moments_of_a_vmapped_batch_of_solutions():
    """jax.vmap(solve) over (α, D): the batch's moment / msd helpers equal each solution's, and
    the MSD grows by 2D t^α/Γ(1+α) (free subdiffusion; L1 on 60 uniform steps resolves the
    t^α onset to ~3.5 % at t = 0.1 and better later)."""
    grid = fs.ffpe.Grid1D(-10.0, 10.0, 200)
    p0 = _gaussian(grid, 0.5, 0.3)
    alphas, ds = jnp.array([0.4, 0.8]), jnp.array([0.5, 0.25])

    def one(a, d):
        prob = fs.ffpe.Problem(alpha=a, diffusion=d, gamma=0.0, potential=lambda w: 0.0 * w[0])
        return fs.ffpe.solve(prob, grid, p0, t_final=1.0, num_steps=60, save_at=6)

    batch = jax.vmap(one)(alphas, ds)
    assert batch.moment(1).shape == batch.msd().shape == (2, 11)  # every 6th of 60 steps
    for i in range(2):
        single = one(float(alphas[i]), float(ds[i]))
        np.testing.assert_allclose(batch.moment(1)[i], single.moment(1), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(batch.msd(0.5)[i], single.msd(0.5), rtol=1e-5)
        t = np.asarray(single.ts)
        grown = np.asarray(batch.msd(0.5)[i] - batch.msd(0.5)[i, 0])
        want = 2 * float(ds[i]) * t ** float(alphas[i]) / math.gamma(1 + float(alphas[i]))
        np.testing.assert_allclose(grown[3:], want[3:], rtol=0.02)
    np.testing.assert_allclose(batch.moment(1), 0.5, rtol=1e-4)  # no drift: the mean stays


def test_l1_weights_are_cancellation_free_on_strongly_graded_meshes(x64):
    ts = jnp.asarray(fs.ffpe.graded_mesh(1.0, 1000, 8.0))
    a = np.asarray(fs.ffpe.l1_weights(ts, 1000, 0.3))
    mpmath.mp.dps = 50
    tn, tk, tk1 = (mpmath.mpf(float(ts[i])) for i in (1000, 1, 0))
    ref = ((tn - tk1) ** 0.7 - (tn - tk) ** 0.7) / (mpmath.gamma(1.7) * (tk - tk1))
    assert a[0] == pytest.approx(float(ref), rel=1e-10)
    assert np.all(a > 0)


def test_l21sigma_weights_in_float32_on_the_recommended_grading():
    """r = 2/α puts t_1 = 10⁻²⁶ at α = 0.1, N = 20: the products τ_k(τ_k + τ_{k+1}) underflowed
    in float32 and every row had NaN (39 weights). Computed in units of t_n they are finite
    and agree with float64; a mesh float32 cannot resolve is refused by name."""
    ts = fs.ffpe.graded_mesh(1.0, 20, 2 / 0.1)
    with jax.enable_x64(True):
        ref = np.stack(
            [np.asarray(fs.ffpe.l21sigma_weights(jnp.asarray(ts), n, 0.1)) for n in (1, 2, 10, 20)]
        )
    got = np.stack(
        [
            np.asarray(fs.ffpe.l21sigma_weights(jnp.asarray(ts, jnp.float32), n, jnp.float32(0.1)))
            for n in (1, 2, 10, 20)
        ]
    )
    assert got.dtype == np.float32 and np.all(np.isfinite(got))
    np.testing.assert_allclose(got, ref, rtol=2e-5, atol=1e-6 * np.abs(ref).max())
    grid = fs.ffpe.Grid1D(lo=-4.0, hi=4.0, cells=40)
    prob = fs.ffpe.Problem(alpha=0.1, potential=lambda w: 0.5 * jnp.sum(w**2))
    p0 = _gaussian(grid, 1.0, 0.3).astype(jnp.float32)
    sol = fs.ffpe.solve(
        prob, grid, p0, t_final=1.0, num_steps=20, stepper=fs.ffpe.L21Sigma(), grading=20.0
    )
    assert int(sol.result) == 0 and np.all(np.isfinite(np.asarray(sol.p)))
    np.testing.assert_allclose(np.asarray(sol.mass), 1.0, rtol=1e-5)
    # (1/100)^19 = 10⁻³⁸ of t_final: NaN before, now a ValueError naming the grading
    with pytest.raises(ValueError, match=r"grading 19 with num_steps 100 .* float32 resolves"):
        fs.ffpe.solve(prob, grid, p0, t_final=1.0, num_steps=100, grading=19.0)


def test_p0_of_any_real_jax_dtype_is_accepted():
    """bfloat16 has NumPy kind 'V': a check by kind refused it."""
    grid = fs.ffpe.Grid1D(-1.0, 1.0, 20)
    sol = fs.ffpe.solve(
        fs.ffpe.Problem(), grid, jnp.ones(20, jnp.bfloat16), t_final=1.0, num_steps=4
    )
    assert int(sol.result) == 0 and float(sol.mass[0]) == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(problem=fs.ffpe.Problem(alpha=0.0)), "alpha"),
        (dict(problem=fs.ffpe.Problem(alpha=1.5)), "alpha"),
        (dict(problem=fs.ffpe.Problem(diffusion=0.0)), "diffusion"),
        (dict(grid=fs.ffpe.Grid1D(-1.0, 1.0, 2)), "cells"),
        (dict(p0=-np.ones(20)), "p0"),
        (dict(p0=np.ones(19)), "p0"),
        (dict(num_steps=0), "num_steps"),
        (dict(problem=fs.ffpe.Problem(potential=lambda w: w)), "potential"),
        (dict(problem=fs.ffpe.Problem(alpha="0.5")), "alpha must be a real number"),
        (dict(problem=fs.ffpe.Problem(diffusion="1.0")), "diffusion must be a real number"),
        (dict(problem=fs.ffpe.Problem(gamma=b"1")), "gamma must be a real number"),
        (dict(save_at="1.0"), "save_at must be None"),
        # a complex jax array lost its imaginary part with a warning; NumPy's was refused
        (dict(p0=jnp.ones(20) + 5j), "p0 must be an array of real numbers.*complex64"),
        (dict(p0=np.ones(20) + 0j), "p0 must be an array of real numbers.*complex128"),
    ],
)
def test_bad_input(kwargs, match):
    args = dict(
        problem=fs.ffpe.Problem(), grid=fs.ffpe.Grid1D(-1.0, 1.0, 20), p0=np.ones(20), num_steps=10
    )
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        fs.ffpe.solve(
            args["problem"],
            args["grid"],
            args["p0"],
            t_final=1.0,
            num_steps=args["num_steps"],
            save_at=args.get("save_at"),
        )


def test_ctrw_with_invalid_traced_parameters_is_all_nan():
    """Under jit the parameters are data, not checked: an invalid one used to give finite
    positions (α = 1.5, α = −0.5), zeros (α = 0) or NaN for some particles only."""

    def run(alpha, d, step):
        prob = fs.ffpe.Problem(alpha=alpha, diffusion=d, gamma=0.0)
        out = fs.ffpe.ctrw(jax.random.key(0), prob, jnp.zeros((20, 1)), [1.0], step=step)
        return out.positions, out.complete

    f = jax.jit(run)
    pos, complete = f(0.5, 1.0, 0.05)
    assert np.all(np.isfinite(np.asarray(pos))) and bool(complete.all())
    for bad in [(1.5, 1.0, 0.05), (-0.5, 1.0, 0.05), (0.0, 1.0, 0.05), (0.5, -1.0, 0.05)]:
        pos, complete = f(*bad)
        assert np.all(np.isnan(np.asarray(pos))) and not bool(complete.any()), bad


def test_ctrw_particles_match_the_ffpe_density(x64):
    """Free CTRW (Mittag-Leffler waits, unit Gaussian jumps) ↔ D^α p = ½ ∂²p (its scaling
    limit): histogram at t = 200 against the solver's density."""
    alpha, t_end = 0.7, 200.0
    paths = fs.diffusion.ctrw(jax.random.key(0), 50_000, jnp.array([t_end]), alpha, max_jumps=256)
    assert bool(paths.complete.all())
    x = np.asarray(paths.positions[:, -1, 0])
    grid = fs.ffpe.Grid1D(-40.0, 40.0, 400)
    prob = fs.ffpe.Problem(alpha=alpha, diffusion=0.5, gamma=0.0, potential=lambda w: 0.0 * w[0])
    sol = fs.ffpe.solve(
        prob,
        grid,
        _gaussian(grid, 0.0, 0.2),
        t_final=t_end,
        num_steps=300,
        grading=(2 - alpha) / alpha,
    )
    hist, _ = np.histogram(x, bins=np.linspace(-40, 40, 81), density=True)
    density = np.asarray(sol.p[-1]).reshape(80, 5).mean(axis=1)  # the same 1-wide bins
    # 50 000 particles in 80 bins: sampling noise in the L1 distance ≈ 0.03; the finite-time
    # corrections of the CTRW to its scaling limit are O(t^{−α}) ≈ 2.5 %
    assert np.sum(np.abs(hist - density)) < 0.07
    assert float(np.var(x)) == pytest.approx(float(sol.msd()[-1]), rel=0.03)


def test_space_dependent_diffusion_keeps_the_documented_stationary_state(x64):
    """With D(w) the solver solves ∇·(D(w)(∇p + p∇(γL/D₀))), D₀ = mean of D over the cells:
    its stationary state is ∝ exp(−γL/D₀) whatever the profile of D."""
    grid = fs.ffpe.Grid1D(-2.0, 2.0, 120)
    prob = fs.ffpe.Problem(
        alpha=0.7,
        diffusion=lambda w: 0.2 + 0.1 * jnp.sin(3 * w[0]) ** 2,
        gamma=1.0,
        potential=_double_well,
    )
    x = grid.centers[:, 0]
    d0 = np.mean(0.2 + 0.1 * np.sin(3 * x) ** 2)
    gibbs = np.exp(-((x**2 - 1) ** 2) / d0)
    gibbs /= gibbs.sum() * grid.h
    np.testing.assert_allclose(fs.ffpe.stationary(prob, grid), gibbs, rtol=1e-12)
    sol = fs.ffpe.solve(prob, grid, jnp.asarray(gibbs), t_final=3.0, num_steps=30)
    assert float(jnp.max(jnp.abs(sol.p[-1] - gibbs))) <= 1e-12 * gibbs.max()


def test_reference_diffusion_fixes_the_equation_whatever_the_grid(x64):
    """D₀ defaults to the mean of D(w) over the cells, so widening the grid where p is
    negligible changes the equation (a review measured the stationary variance 0.300 on
    [−3, 3] and 0.367 on [−3, 6]). With reference_diffusion = D₀ given, L = w²/2 and γ = 1,
    the stationary law is N(0, D₀) on any grid, and solve's march agrees on the common cells
    with and without the extra ones."""
    d_fn = lambda w: 0.3 + 0.2 * jnp.tanh(w[0])
    grids = fs.ffpe.Grid1D(-3.0, 3.0, 300), fs.ffpe.Grid1D(-3.0, 6.0, 450)  # same h = 0.02
    default = fs.ffpe.Problem(alpha=0.6, diffusion=d_fn, potential=lambda w: 0.5 * w[0] ** 2)
    fixed = default._replace(reference_diffusion=0.3)

    def variance(prob, grid):
        p, x = np.asarray(fs.ffpe.stationary(prob, grid)), np.asarray(grid.centers[:, 0])
        return float(np.sum(p * x**2) * grid.h)

    v_default = [variance(default, g) for g in grids]
    assert abs(v_default[1] - v_default[0]) > 0.05  # the grid's extent changed D₀
    for g in grids:
        # N(0, 0.3) cut at ±3 (5.5σ) on a midpoint grid: the variance to ~1e-4
        assert variance(fixed, g) == pytest.approx(0.3, rel=1e-3)
    x = np.asarray(grids[0].centers[:, 0])
    p0 = np.exp(-((x - 1.0) ** 2) / 0.02)
    p0 /= p0.sum() * grids[0].h
    runs = [
        fs.ffpe.solve(fixed, g, np.pad(p0, (0, g.cells - 300)), t_final=1.0, num_steps=40).p[-1]
        for g in grids
    ]
    # the extra cells hold ~1e-7 of the mass by t = 1: the common cells agree to that
    np.testing.assert_allclose(runs[1][:300], runs[0], rtol=0, atol=1e-5 * float(runs[0].max()))


def test_reference_diffusion_is_checked_by_name():
    grid = fs.ffpe.Grid1D(-2.0, 2.0, 16)
    with pytest.raises(ValueError, match="reference_diffusion is for a diffusion function"):
        fs.ffpe.stationary(fs.ffpe.Problem(diffusion=1.0, reference_diffusion=1.0), grid)
    for bad in (0.0, -1.0, math.inf, "1"):
        prob = fs.ffpe.Problem(diffusion=lambda w: 1.0 + 0.0 * w[0], reference_diffusion=bad)
        with pytest.raises(ValueError, match="reference_diffusion"):
            fs.ffpe.stationary(prob, grid)

    def code(d0):
        prob = fs.ffpe.Problem(diffusion=lambda w: 1.0 + 0.0 * w[0], reference_diffusion=d0)
        return fs.ffpe.solve(prob, grid, jnp.ones(16) / 4.0, t_final=0.5, num_steps=4).result

    codes = jax.vmap(code)(jnp.array([1.0, -1.0]))
    assert list(np.asarray(codes)) == [_solve.SUCCESS, _solve.BAD_PARAMETER]


def test_steep_potentials_and_bad_diffusion_functions():
    """Float32: a face whose jump in φ = γL/D exceeds ~88 makes the Bernoulli factors underflow;
    the stationary density is still exp(−φ) (tails at 0), as on a Grid2D. A D(w) that is not
    positive everywhere is refused by name rather than solved into negative densities."""
    grid = fs.ffpe.Grid1D(-8.0, 8.0, 50)
    prob = fs.ffpe.Problem(diffusion=0.01, potential=lambda w: 0.5 * w[0] ** 2)
    p = np.asarray(fs.ffpe.stationary(prob, grid), np.float64)
    x = np.asarray(grid.centers[:, 0], np.float64)
    want = np.exp(-(0.5 * x**2 - np.min(0.5 * x**2)) / 0.01)
    want /= want.sum() * grid.h
    np.testing.assert_allclose(p, want, rtol=2e-5, atol=1e-30)
    bad = prob._replace(diffusion=lambda w: w[0] + 0.5)  # negative on half the grid
    for call in (
        lambda: fs.ffpe.stationary(bad, grid),
        lambda: fs.ffpe.solve(bad, grid, jnp.asarray(want), t_final=1.0, num_steps=4),
    ):
        with pytest.raises(ValueError, match=r"diffusion\(w\)"):
            call()


def test_float32_p0_with_x64_and_moments_on_an_offset_grid(x64):
    """A float32 p0 under x64 is solved in float64 (the operator's dtype), and moments use the
    grid's cell volume, not differences of rounded centres."""
    grid = fs.ffpe.Grid1D(1000.0, 1001.0, 100)
    prob = fs.ffpe.Problem(potential=lambda w: 0.5 * (w[0] - 1000.5) ** 2)
    p0 = np.ones(100, np.float32)
    sol = fs.ffpe.solve(prob, grid, p0, t_final=0.1, num_steps=4)
    assert sol.p.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(sol.moment(0)), np.asarray(sol.mass), rtol=1e-12)
    np.testing.assert_allclose(float(sol.moment(1)[0]), 1000.5, rtol=1e-12)
    assert sol.cell_volume == pytest.approx(grid.h)


def test_numpy_integers_bools_and_traced_infinite_diffusion():
    """NumPy integers count as integers (cells, num_steps, save_at); a bool α is refused; a
    traced infinite D is a BAD_PARAMETER under vmap, not a NONFINITE solve."""
    grid = fs.ffpe.Grid1D(-2.0, 2.0, np.int64(12))
    p0 = jnp.ones(12) / 4.0
    sol = fs.ffpe.solve(
        fs.ffpe.Problem(), grid, p0, t_final=1.0, num_steps=np.int64(4), save_at=np.int64(2)
    )
    assert int(sol.result) == _solve.SUCCESS and sol.p.shape == (3, 12)
    with pytest.raises(ValueError, match="alpha"):
        fs.ffpe.solve(fs.ffpe.Problem(alpha=True), grid, p0, t_final=1.0, num_steps=4)
    codes = jax.vmap(
        lambda d: (
            fs.ffpe.solve(fs.ffpe.Problem(diffusion=d), grid, p0, t_final=1.0, num_steps=4).result
        )
    )(jnp.array([1.0, jnp.inf]))
    assert list(np.asarray(codes)) == [_solve.SUCCESS, _solve.BAD_PARAMETER]


def test_traced_diffusion_function_that_turns_negative_is_a_bad_parameter():
    """D(w) = 1 + s·w² under vmap over s: at s = −0.1 it is negative near the walls of
    [−4, 4]; the solve's result code says BAD_PARAMETER instead of SUCCESS."""
    grid = fs.ffpe.Grid1D(-4.0, 4.0, 16)
    p0 = jnp.ones(16) / 8.0

    def code(s):
        prob = fs.ffpe.Problem(diffusion=lambda w: 1.0 + s * w[0] ** 2)
        return fs.ffpe.solve(prob, grid, p0, t_final=0.5, num_steps=4).result

    codes = jax.vmap(code)(jnp.array([0.0, -0.1]))
    assert list(np.asarray(codes)) == [_solve.SUCCESS, _solve.BAD_PARAMETER]


def test_functions_that_index_past_the_grid_dimension_are_refused():
    """JAX clamps w[1] on a point of shape (1,) to w[0]: a 2-D potential on a 1-D grid would
    silently solve the equation of L(w) = 2 w₀²."""
    bowl = fs.ffpe.Problem(potential=lambda w: w[0] ** 2 + w[1] ** 2)
    line = fs.ffpe.Grid1D(-2.0, 2.0, 16)
    with pytest.raises(ValueError, match=r"potential indexes its point w \(shape \(1,\)\)"):
        fs.ffpe.stationary(bowl, line)
    with pytest.raises(ValueError, match="potential indexes"):
        fs.ffpe.solve(bowl, line, jnp.ones(16) / 4.0, t_final=0.1, num_steps=2)
    with pytest.raises(ValueError, match="potential indexes"):
        fs.ffpe.ctrw(jax.random.key(0), bowl, jnp.zeros((4, 1)), [1.0], step=0.1)
    plane = fs.ffpe.Grid2D((-2.0, -2.0), (2.0, 2.0), (6, 6))
    assert fs.ffpe.stationary(bowl, plane).shape == (6, 6)  # right dimension: accepted
    with pytest.raises(ValueError, match="diffusion indexes"):
        fs.ffpe.stationary(bowl._replace(diffusion=lambda w: 1.0 + w[2] ** 2), plane)
    # a clamped lookup into the potential's own table is not the point's business
    table = jnp.linspace(0.0, 4.0, 41) ** 2
    tabulated = fs.ffpe.Problem(
        potential=lambda w: table.at[jnp.round(w[0] / 0.1).astype(jnp.int32)].get(mode="clip")
    )
    assert fs.ffpe.stationary(tabulated, fs.ffpe.Grid1D(5.0, 11.0, 30)).shape == (30,)


def test_msd_reference_point_is_checked():
    grid = fs.ffpe.Grid1D(-1.0, 1.0, 10)
    sol = fs.ffpe.solve(fs.ffpe.Problem(), grid, jnp.ones(10) / 2, t_final=1.0, num_steps=3)
    assert sol.msd(0.5).shape == sol.msd(jnp.zeros(1)).shape == (4,)
    for bad in ("a", jnp.zeros(2)):
        with pytest.raises(ValueError, match=r"x0 must be a number or a point of shape \(1,\)"):
            sol.msd(bad)
