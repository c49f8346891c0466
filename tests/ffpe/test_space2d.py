"""2-D Scharfetter–Gummel finite volumes and the CG shifted solve: invariants of the operator
(zero column sums, M-matrix sign pattern, Gibbs null vector, symmetrisability), the exact
Kronecker-sum structure of separable problems, CG against dense solves, and mass/positivity
through implicit steps. float64 where accuracy is asserted (the x64 fixture)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fracsgd as fs
from fracsgd.ffpe import _solve, _space, _space2d


def _tilted_double_well(w):
    return (w[0] ** 2 - 1.0) ** 2 + 0.5 * w[1] ** 2 + 0.3 * w[0] * w[1]


def _grid():
    return fs.ffpe.Grid2D(lo=(-2.0, -1.5), hi=(2.0, 1.5), cells=(9, 7))


def _op(grid, diffusion=0.4):
    prob = fs.ffpe.Problem(diffusion=diffusion, gamma=1.0, potential=_tilted_double_well)
    return _space2d.operator2d(prob, grid)


def _variable_d(w):
    return 0.3 + 0.2 * jnp.sin(2 * w[0]) ** 2 + 0.1 * jnp.cos(w[1])


def _dense(op):
    """The matrix of ``apply2d`` in row-major (i, j) → i·ny + j ordering."""
    nx, ny = op.phi.shape
    eye = jnp.eye(nx * ny).reshape(nx * ny, nx, ny)
    columns = jax.jit(jax.vmap(lambda o, e: _space2d.apply2d(o, e).ravel(), (None, 0), 1))
    return np.asarray(columns(op, eye))


def test_grid_geometry():
    grid = fs.ffpe.Grid2D(lo=(-1.0, 2.0), hi=(3.0, 3.0), cells=(4, 5))
    assert grid.h == (1.0, 0.2)
    assert grid.cell_volume == pytest.approx(0.2)
    c = grid.centers
    assert c.shape == (4, 5, 2)
    np.testing.assert_allclose(c[:, 0, 0], [-0.5, 0.5, 1.5, 2.5])
    np.testing.assert_allclose(c[0, :, 1], [2.1, 2.3, 2.5, 2.7, 2.9])
    np.testing.assert_allclose(c[2, 3], [1.5, 2.7])


@pytest.mark.parametrize(
    ("grid", "match"),
    [
        (fs.ffpe.Grid2D((0.0, 0.0), (1.0, 1.0), (2, 5)), "cells"),
        (fs.ffpe.Grid2D((0.0, 0.0), (1.0, 1.0), (5, 2.5)), "cells"),
        (fs.ffpe.Grid2D((0.0, 1.0), (1.0, 1.0), (5, 5)), "hi > lo"),
        (fs.ffpe.Grid2D((0.0,), (1.0,), (5,)), "lo"),
        (fs.ffpe.Grid1D(0.0, 1.0, 5), "Grid2D"),
    ],
)
def test_bad_grid(grid, match):
    with pytest.raises(ValueError, match=match):
        _space2d.check_grid2d(grid)


def test_potential_of_the_wrong_shape_is_rejected():
    with pytest.raises(ValueError, match="potential"):
        _space2d.potential_values2d(lambda w: w, _grid())


@pytest.mark.parametrize("diffusion", [0.4, _variable_d])
def test_operator_is_a_mass_conserving_m_matrix_with_the_gibbs_null_vector(x64, diffusion):
    grid = _grid()
    op = _op(grid, diffusion)
    a = _dense(op)
    scale = np.abs(a).max()
    # zero column sums: each face flux leaves one cell and enters the other (rounding only)
    assert np.abs(a.sum(axis=0)).max() <= 1e-14 * scale
    off = a - np.diag(np.diag(a))
    assert off.min() >= 0.0
    # 5-point stencil: at most 4 neighbours per column, each face coupling positive both ways
    assert np.all((off > 0).sum(axis=0) <= 4) and np.all((off > 0) == (off.T > 0))
    np.testing.assert_allclose(np.diag(a), np.asarray(_space2d.diagonal2d(op)).ravel())
    gibbs = np.asarray(_space2d.gibbs2d(op, grid.cell_volume)).ravel()
    assert gibbs.sum() * grid.cell_volume == pytest.approx(1.0, rel=1e-14)
    # every face flux vanishes on e^{−φ}, to rounding in B(δ) − B(−δ)e^{−δ}
    assert np.abs(a @ gibbs).max() <= 1e-12 * scale * gibbs.max()


def test_documented_form_of_the_space_dependent_operator(x64):
    """φ = γL/D₀ with D₀ the mean of D(w) over the cells; face D the mean of its two cells."""
    grid = _grid()
    op = _op(grid, _variable_d)
    centers = jnp.asarray(grid.centers)
    d = jax.vmap(jax.vmap(_variable_d))(centers)
    L = jax.vmap(jax.vmap(_tilted_double_well))(centers)
    np.testing.assert_allclose(op.phi, L / jnp.mean(d), rtol=1e-14)
    dx = op.phi[1, 3] - op.phi[0, 3]
    expected = 0.5 * (d[0, 3] + d[1, 3]) / grid.h[0] ** 2 * _space.bernoulli(dx)
    assert float(op.out_x[0, 3]) == pytest.approx(float(expected), rel=1e-14)


def test_symmetrised_operator_is_symmetric_negative_semidefinite(x64):
    """The premise of the CG solve: S = e^{φ/2} A e^{−φ/2} is symmetric and ≤ 0."""
    op = _op(_grid(), _variable_d)
    a = _dense(op)
    e = np.exp(0.5 * np.asarray(op.phi).ravel())
    s = e[:, None] * a / e[None, :]
    scale = np.abs(a).max()
    np.testing.assert_allclose(s, s.T, rtol=0, atol=1e-13 * scale)
    eig = np.linalg.eigvalsh(0.5 * (s + s.T))
    assert eig.max() <= 1e-12 * scale  # one zero eigenvalue (the Gibbs state), the rest < 0
    assert np.sort(eig)[-2] < -1e-3 * scale


def test_separable_problem_is_the_kronecker_sum_of_the_1d_operators(x64):
    """L = L1(x) + L2(y), constant D: A = A1 ⊗ I + I ⊗ A2 with A1, A2 from sg_tridiagonal."""
    d, gamma = 0.7, 1.3
    grid = fs.ffpe.Grid2D(lo=(-2.0, -1.0), hi=(2.0, 2.0), cells=(8, 6))
    l1 = lambda x: (x**2 - 1) ** 2
    l2 = lambda y: 0.5 * (y - 0.3) ** 2 + 0.2 * y**3
    prob = fs.ffpe.Problem(diffusion=d, gamma=gamma, potential=lambda w: l1(w[0]) + l2(w[1]))
    a = _dense(_space2d.operator2d(prob, grid))

    def dense_1d(lo, hi, n, f, h):
        x = lo + (np.arange(n) + 0.5) * h
        bands = _space.sg_tridiagonal(jnp.asarray(gamma * f(x) / d), jnp.full(n - 1, d), h)
        return np.asarray(
            jax.vmap(lambda e: _space.apply_tridiagonal(bands, e), out_axes=1)(jnp.eye(n))
        )

    a1 = dense_1d(-2.0, 2.0, 8, l1, grid.h[0])
    a2 = dense_1d(-1.0, 2.0, 6, l2, grid.h[1])
    kron_sum = np.kron(a1, np.eye(6)) + np.kron(np.eye(8), a2)
    # the same B(δ) values enter both; only φ = γ(L1 + L2)/D versus γL1/D differ by rounding
    np.testing.assert_allclose(a, kron_sum, rtol=0, atol=1e-13 * np.abs(a).max())


@pytest.mark.parametrize("c", [0.01, 1.0, 100.0])
@pytest.mark.parametrize("signed", [False, True])
def test_cg_matches_a_dense_solve(x64, c, signed):
    grid = _grid()
    op = _op(grid, _variable_d)
    rng = np.random.default_rng(1)
    rhs = rng.normal(size=grid.cells) if signed else rng.random(grid.cells)
    u, info = _space2d.cg_solve2d(op, c, jnp.asarray(rhs))
    a = _dense(op)
    exact = np.linalg.solve(c * np.eye(a.shape[0]) - a, rhs.ravel()).reshape(grid.cells)
    assert bool(info.converged)
    # stated accuracy: relative residual ≤ rtol (true residual within O(ε κ) of it), error
    # ≤ κ · residual with κ ≤ 1 + 2 max|diag A|/c (Gershgorin)
    rtol = _space2d.default_rtol(jnp.float64)
    kappa = 1 + 2 * np.abs(np.diag(a)).max() / c
    assert float(info.residual) <= max(rtol, 10 * kappa * np.finfo(float).eps)
    err = np.linalg.norm(np.asarray(u) - exact) / np.linalg.norm(exact)
    assert err <= 2 * kappa * max(rtol, 10 * kappa * np.finfo(float).eps)
    # the exact solution's mass Σ rhs / c is restored exactly
    assert float(jnp.sum(u)) == pytest.approx(
        rhs.sum() / c, rel=1e-13, abs=1e-13 * np.abs(exact).sum()
    )
    if not signed:
        assert float(u.min()) >= 0.0


def test_derivatives_solve_the_tangent_and_adjoint_systems(x64):
    """Reverse mode through the CG solve: ∇_rhs ⟨g, u⟩ = (cI − A)^{−T} g, and ∂u/∂c =
    −(cI − A)^{−1} u, against dense solves."""
    grid = _grid()
    op = _op(grid, _variable_d)
    a = _dense(op)
    rng = np.random.default_rng(4)
    rhs, g = jnp.asarray(rng.random(grid.cells)), jnp.asarray(rng.normal(size=grid.cells))
    c = 0.7
    m = c * np.eye(a.shape[0]) - a
    grad = jax.grad(lambda r: jnp.vdot(g, _space2d.cg_solve2d(op, c, r)[0]))(rhs)
    adjoint = np.linalg.solve(m.T, np.asarray(g).ravel()).reshape(grid.cells)
    kappa = 1 + 2 * np.abs(np.diag(a)).max() / c  # ≈ 60: error ≤ κ · rtol (1e-11)
    np.testing.assert_allclose(grad, adjoint, rtol=0, atol=kappa * 1e-11 * np.abs(adjoint).max())
    du = jax.jacfwd(lambda s: _space2d.cg_solve2d(op, s, rhs)[0])(c)
    u = np.linalg.solve(m, np.asarray(rhs).ravel())
    expected = -np.linalg.solve(m, u).reshape(grid.cells)
    np.testing.assert_allclose(du, expected, rtol=0, atol=kappa * 1e-11 * np.abs(expected).max())


def test_gradient_of_the_2d_march_with_respect_to_alpha_matches_finite_differences(x64):
    grid = fs.ffpe.Grid2D(lo=(-2.0, -2.0), hi=(2.0, 2.0), cells=(8, 8))
    c = grid.centers
    p0 = _normalised(np.exp(-((c[..., 0] - 0.8) ** 2 + (c[..., 1] + 0.5) ** 2) / 0.2), 1.0)

    def msd(alpha):
        prob = fs.ffpe.Problem(alpha=alpha, diffusion=0.4, potential=_tilted_double_well)
        return fs.ffpe.solve(prob, grid, p0, t_final=1.0, num_steps=10).msd()[-1]

    fd = (float(msd(0.6 + 1e-5)) - float(msd(0.6 - 1e-5))) / 2e-5
    # central differences: O(1e-10) truncation, CG noise 1e-11/1e-5 ≈ 1e-6 relative at most
    assert float(jax.grad(msd)(0.6)) == pytest.approx(fd, rel=1e-5)


def test_implicit_steps_conserve_mass_keep_positivity_and_the_gibbs_state(x64):
    """Backward Euler with the CG solve from a narrow off-centre Gaussian in a double well."""
    grid = fs.ffpe.Grid2D(lo=(-2.0, -2.0), hi=(2.0, 2.0), cells=(24, 24))
    op = _op(grid, 0.3)
    x, y = grid.centers[..., 0], grid.centers[..., 1]
    p0 = np.exp(-((x - 1.2) ** 2 + (y + 0.5) ** 2) / 0.05)
    p0 = jnp.asarray(p0 / (p0.sum() * grid.cell_volume))
    tau = 0.05

    def step(p, _):
        p = _space2d.shifted_solve2d(op, 1 / tau, p / tau)
        return p, (jnp.sum(p) * grid.cell_volume, jnp.min(p))

    p, (mass, low) = jax.lax.scan(step, p0, None, length=40)
    assert bool(jnp.all(jnp.isfinite(p)))
    np.testing.assert_allclose(mass, 1.0, rtol=0, atol=1e-12)
    assert float(low.min()) >= 0.0
    gibbs = _space2d.gibbs2d(op, grid.cell_volume)
    g_out, _ = jax.lax.scan(step, gibbs, None, length=5)
    assert float(jnp.max(jnp.abs(g_out - gibbs))) <= 1e-12 * float(gibbs.max())


def test_failures_are_per_element_flags_under_vmap(x64):
    """Three iterations: the Gibbs right-hand side is solved by the initial guess rhs/c, the
    random one is not; shifted_solve2d turns the failure into NaN (the stepper's NONFINITE)."""
    grid = _grid()
    op = _op(grid)
    rhs = jnp.stack(
        [_space2d.gibbs2d(op, 1.0), jnp.asarray(np.random.default_rng(0).random(grid.cells))]
    )
    _, info = jax.vmap(lambda r: _space2d.cg_solve2d(op, 1.0, r, max_iter=3))(rhs)
    assert info.converged.tolist() == [True, False]
    assert info.iterations.tolist()[0] == 0
    u = jax.vmap(lambda r: _space2d.shifted_solve2d(op, 1e-9, r))(rhs[:1])
    assert bool(jnp.all(jnp.isfinite(u)))


def test_vmapped_shifts_and_no_recompilation(x64):
    grid = _grid()
    op = _op(grid)
    rhs = jnp.asarray(np.random.default_rng(2).random(grid.cells))
    solve = jax.jit(jax.vmap(_space2d.shifted_solve2d, in_axes=(None, 0, None)))
    cs = jnp.array([0.5, 5.0, 50.0])
    u = solve(op, cs, rhs)
    for k, c in enumerate([0.5, 5.0, 50.0]):
        np.testing.assert_allclose(u[k], _space2d.shifted_solve2d(op, c, rhs), rtol=1e-9)
    size = solve._cache_size()
    solve(_op(grid, 0.9), cs * 2, rhs * 3)  # new operator values, shifts and data
    assert solve._cache_size() == size


def test_float32_solve_meets_its_tolerance():
    grid = _grid()
    op = _op(grid)
    rhs = jnp.asarray(np.random.default_rng(3).random(grid.cells), jnp.float32)
    u, info = _space2d.cg_solve2d(op, 2.0, rhs)
    assert u.dtype == jnp.float32 and bool(info.converged)
    res = rhs - (2.0 * u - _space2d.apply2d(op, u))
    # rtol 1e-5 for the CG residual, plus the O(ε κ) rounding floor of float32 (κ ≈ 60 here)
    assert float(jnp.linalg.norm(res) / jnp.linalg.norm(rhs)) <= 1e-4


# ------------------------------------------------------------------ the 2-D time march


def _normalised(p, volume):
    p = np.asarray(p, np.float64)
    return jnp.asarray(p / (p.sum() * volume))


def test_free_subdiffusion_msd_in_two_dimensions(x64):
    """φ = 0: the 5-point Laplacian maps |w|² to 4 exactly, so (far from the walls) the 2-D
    second moment obeys the same L1 recursion as D^α m = 2·k·K with k = 2 — twice the 1-D
    increments on the same time mesh — and m(t) = m(0) + 2kK t^α/Γ(1+α) up to the L1 error."""
    alpha, k_diff = 0.6, 0.5
    free = fs.ffpe.Problem(alpha=alpha, diffusion=k_diff, gamma=0.0, potential=lambda w: 0 * w[0])
    mesh = dict(t_final=1.0, num_steps=60, grading=(2 - alpha) / alpha)
    grid = fs.ffpe.Grid2D(lo=(-6.0, -6.0), hi=(6.0, 6.0), cells=(36, 36))
    c = grid.centers
    sol = fs.ffpe.solve(
        free, grid, _normalised(np.exp(-(c**2).sum(-1) / 0.18), grid.cell_volume), **mesh
    )
    assert int(sol.result) == fs.ffpe.SUCCESS and sol.p.shape == (61, 36, 36)
    grid1 = fs.ffpe.Grid1D(-6.0, 6.0, 36)
    x = grid1.centers[:, 0]
    sol1 = fs.ffpe.solve(free, grid1, _normalised(np.exp(-(x**2) / 0.18), grid1.h), **mesh)
    m2, m1 = np.asarray(sol.msd()), np.asarray(sol1.msd())
    # the exact discrete identity holds to the CG tolerance (rtol 1e-11 times κ ≲ 100)
    np.testing.assert_allclose(m2 - m2[0], 2 * (m1 - m1[0]), rtol=0, atol=1e-8)
    t = np.asarray(sol.ts)
    expected = m2[0] + 2 * 2 * k_diff * t**alpha / math.gamma(1 + alpha)
    # L1 on the optimal graded mesh, N = 60: ≈ 3e-3 relative once t ≥ 0.2 T (as in 1-D)
    late = t >= 0.2
    np.testing.assert_allclose(m2[late], expected[late], rtol=6e-3)
    # the moment helpers: per-coordinate moments, zero mean by symmetry, Σ_d m_2,d = msd
    assert sol.moment(1).shape == (61, 2)
    np.testing.assert_allclose(sol.moment(1), 0.0, atol=1e-12)
    np.testing.assert_allclose(sol.moment(2).sum(-1), m2, rtol=1e-12)
    np.testing.assert_allclose(sol.msd(jnp.array([1.0, 0.0])), m2 + 1.0, rtol=1e-12)


def test_constant_in_y_data_reduce_exactly_to_the_1d_solve(x64):
    """L and D depending on x only and p0 constant in y: every y-flux vanishes, so the 2-D
    solution is the 1-D one divided by the y-length (to the CG tolerance)."""
    prob = fs.ffpe.Problem(
        alpha=0.5,
        diffusion=lambda w: 0.3 + 0.1 * jnp.sin(2 * w[0]) ** 2,
        gamma=1.0,
        potential=lambda w: (w[0] ** 2 - 1.0) ** 2,
    )
    grid1 = fs.ffpe.Grid1D(-2.0, 2.0, 24)
    grid = fs.ffpe.Grid2D(lo=(-2.0, 0.0), hi=(2.0, 0.5), cells=(24, 4))
    x = grid1.centers[:, 0]
    p1 = _normalised(np.exp(-((x - 1.2) ** 2) / 0.1), grid1.h)
    mesh = dict(t_final=2.0, num_steps=30, grading=3.0)
    sol1 = fs.ffpe.solve(prob, grid1, p1, **mesh)
    sol = fs.ffpe.solve(prob, grid, jnp.repeat(p1[:, None], 4, axis=1) / 0.5, **mesh)
    expected = np.repeat(np.asarray(sol1.p)[..., None], 4, axis=-1) / 0.5
    # rtol 1e-11 for each CG solve times κ ≤ 1 + 2 max|diag A|/c ≈ 10, over 30 steps
    np.testing.assert_allclose(sol.p, expected, rtol=0, atol=1e-9 * expected.max())
    np.testing.assert_allclose(sol.mass, 1.0, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("diffusion", "reference"), [(0.4, None), (_variable_d, None), (_variable_d, 0.35)]
)
def test_stationary_state_is_the_gibbs_state_and_a_fixed_point_of_the_march(
    x64, diffusion, reference
):
    """exp(−γL/D₀): D₀ = D, the mean of D(w) over the cells, or the given reference."""
    grid = _grid()
    prob = fs.ffpe.Problem(
        alpha=0.6,
        diffusion=diffusion,
        gamma=1.0,
        potential=_tilted_double_well,
        reference_diffusion=reference,
    )
    p = fs.ffpe.stationary(prob, grid)
    centers = jnp.asarray(grid.centers)
    d0 = reference or (
        0.4 if not callable(diffusion) else jnp.mean(jax.vmap(jax.vmap(diffusion))(centers))
    )
    d0 = float(d0)
    gibbs = np.exp(-np.asarray(jax.vmap(jax.vmap(_tilted_double_well))(centers)) / d0)
    np.testing.assert_allclose(p, gibbs / (gibbs.sum() * grid.cell_volume), rtol=1e-12)
    a = _dense(_space2d.operator2d(prob, grid))
    assert np.abs(a @ np.asarray(p).ravel()).max() <= 1e-12 * np.abs(a).max() * float(p.max())
    sol = fs.ffpe.solve(prob, grid, p, t_final=5.0, num_steps=20, grading=2.0)
    assert float(jnp.max(jnp.abs(sol.p - p[None]))) <= 1e-12 * float(p.max())


def test_march_conserves_mass_and_positivity(x64):
    grid = fs.ffpe.Grid2D(lo=(-2.0, -2.0), hi=(2.0, 2.0), cells=(16, 16))
    prob = fs.ffpe.Problem(alpha=0.4, diffusion=0.25, gamma=1.0, potential=_tilted_double_well)
    c = grid.centers
    p0 = np.exp(-((c[..., 0] - 1.2) ** 2 + (c[..., 1] + 0.8) ** 2) / 0.02)
    sol = fs.ffpe.solve(
        prob, grid, _normalised(p0, grid.cell_volume), t_final=10.0, num_steps=30, grading=3.0
    )
    assert int(sol.result) == fs.ffpe.SUCCESS
    np.testing.assert_allclose(sol.mass, 1.0, rtol=0, atol=1e-12)
    assert float(sol.p.min()) >= 0.0


def test_2d_solve_does_not_recompile_and_vmaps_over_problems(x64):
    grid = fs.ffpe.Grid2D(lo=(-2.0, -2.0), hi=(2.0, 2.0), cells=(10, 10))
    c = grid.centers
    p0 = _normalised(np.exp(-((c - 0.5) ** 2).sum(-1) / 0.2), grid.cell_volume)
    run = lambda a, g: fs.ffpe.solve(
        fs.ffpe.Problem(alpha=a, diffusion=0.5, gamma=g, potential=_tilted_double_well),
        grid,
        p0,
        t_final=1.0,
        num_steps=8,
    )
    first = run(0.5, 1.0)
    size = _solve._march._cache_size()
    second = run(0.8, 2.0)
    assert _solve._march._cache_size() == size
    batch = jax.vmap(run)(jnp.array([0.5, 0.8]), jnp.array([1.0, 2.0]))
    assert batch.result.tolist() == [fs.ffpe.SUCCESS] * 2
    # vmapped CG runs until every member converges: agreement to the CG tolerance
    np.testing.assert_allclose(batch.p[0], first.p, rtol=0, atol=1e-9 * float(p0.max()))
    np.testing.assert_allclose(batch.p[1], second.p, rtol=0, atol=1e-9 * float(p0.max()))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(p0=np.ones((5, 6))), "p0"),
        (dict(p0=-np.ones((5, 5))), "p0"),
        (dict(grid=fs.ffpe.Grid2D((-1.0, -1.0), (1.0, 1.0), (5, 2))), "cells"),
        (dict(grid=fs.ffpe.Grid2D((-1.0, 1.0), (1.0, -1.0), (5, 5))), "hi > lo"),
        (dict(problem=fs.ffpe.Problem(potential=lambda w: w)), "potential"),
        (dict(problem=fs.ffpe.Problem(diffusion=lambda w: w)), "diffusion"),
    ],
)
def test_2d_bad_input(kwargs, match):
    args = dict(
        problem=fs.ffpe.Problem(),
        grid=fs.ffpe.Grid2D((-1.0, -1.0), (1.0, 1.0), (5, 5)),
        p0=np.ones((5, 5)),
    )
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        fs.ffpe.solve(args["problem"], args["grid"], args["p0"], t_final=1.0, num_steps=4)


def test_float32_solve_with_a_wide_range_of_phi():
    """φ spans ≈ 470 (a steep double well, D = 0.1): far beyond float32's exponent range for
    e^{φ/2}, so CG must not hold the symmetrised vector e^{φ/2}u. Reference: a float64 dense
    solve of the same (float32) matrix."""
    grid = fs.ffpe.Grid2D(lo=(-3.0, -3.0), hi=(3.0, 3.0), cells=(12, 12))
    prob = fs.ffpe.Problem(
        diffusion=0.1, potential=lambda w: (w[0] ** 2 - 1) ** 2 + 0.5 * w[1] ** 2
    )
    op = _space2d.operator2d(prob, grid)
    assert op.phi.dtype == jnp.float32 and float(op.phi.max() - op.phi.min()) > 400
    c = grid.centers
    rhs = np.exp(-((c[..., 0] - 1.0) ** 2 + c[..., 1] ** 2) / 0.5)
    a = _dense(op).astype(np.float64)
    for shift in (0.5, 20.0):
        u, info = _space2d.cg_solve2d(op, shift, jnp.asarray(rhs, jnp.float32))
        exact = np.linalg.solve(shift * np.eye(144) - a, rhs.ravel()).reshape(12, 12)
        assert bool(info.converged) and int(info.iterations) > 0
        # rtol 1e-5 times κ ≤ 1 + 2 max|diag A|/c (≲ 60 at c = 0.5), plus float32 rounding
        err = np.abs(np.asarray(u, np.float64) - exact).max() / np.abs(exact).max()
        assert err < 1e-3
