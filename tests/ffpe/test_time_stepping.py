"""Caputo time stepping: convergence orders of L1 and L2-1σ fitted by regression on fractional
relaxation ``D^α u = −λu`` (exact ``E_α(−λ t^α)``), the sum-of-exponentials history against the
direct one, save_at, graded-then-geometric meshes, vmap over problems, gradients in α and the
invariants (mass, Gibbs fixed point) for every stepper and history. float64 (x64 fixture)."""

import functools
import math

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest

import fracsgd as fs
from fracsgd.ffpe import _solve

L1, L2S, DIRECT = fs.ffpe.L1(), fs.ffpe.L21Sigma(), fs.ffpe.Direct()


def _ml_reference(alpha, z, digits=80):
    """E_α(z) by its power series with ``digits`` digits (the terms of ``|z| ≤ 10`` peak near
    ``10^42``, so 80 digits leave ≥ 30 after cancellation)."""
    with mpmath.workdps(digits):
        return float(
            mpmath.nsum(lambda k: mpmath.mpf(z) ** k / mpmath.gamma(alpha * k + 1), [0, mpmath.inf])
        )


def _relax(alpha, lam, n, grading, stepper=L1, history=DIRECT, t_final=1.0, **kw):
    """March of the scalar equation ``D^α u = −λu``, ``u(0) = 1`` (a one-cell "operator"
    ``A = −λ``) through the same march as the FFPE; ``u`` at the save times."""
    bands = (jnp.zeros(1), jnp.full(1, -lam), jnp.zeros(1))
    sol = _solve._run(
        fs.ffpe.Problem(alpha=alpha),
        jnp.ones(1),
        bands,
        fs.ffpe.tridiagonal_shifted_solve,
        fs.ffpe._space.apply_tridiagonal,
        fs.ffpe.Grid1D(0.0, 1.0, 1),
        t_final,
        n,
        kw.get("save_at", [t_final]),
        grading,
        kw.get("graded_until"),
        stepper,
        history,
    )
    return sol.p[:, 0]


def _order(ns, errors):
    return -np.polyfit(np.log(ns), np.log(errors), 1)[0]


def _double_well(w):
    return (w[0] ** 2 - 1.0) ** 2


def _gaussian(grid, centre=0.0, width=0.3):
    x = grid.centers[:, 0]
    p = np.exp(-((x - centre) ** 2) / (2 * width**2))
    return jnp.asarray(p / (p.sum() * grid.h))


# ------------------------------------------------------------------------- convergence orders


@pytest.mark.parametrize("alpha", [0.3, 0.7])
@pytest.mark.parametrize("history", [DIRECT, fs.ffpe.SOE(1e-12)], ids=["direct", "soe"])
def test_l1_on_uniform_meshes_is_first_order_at_a_fixed_time(x64, alpha, history):
    exact = _ml_reference(alpha, -1.0)
    ns = np.array([32, 64, 128, 256])
    err = [abs(float(_relax(alpha, 1.0, int(n), 1.0, history=history)[-1]) - exact) for n in ns]
    # Gracia, O'Riordan & Stynes (2018): O(N^{-1}) at t = T > 0 (the local slopes measured are
    # 1.01-1.03); 0.1 separates it from the O(N^{-α}) of the error near t = 0
    assert _order(ns, err) == pytest.approx(1.0, abs=0.1)


@pytest.mark.parametrize("alpha", [0.4, 0.5, 0.7])
def test_l1_on_the_graded_mesh_has_order_two_minus_alpha(x64, alpha):
    exact = _ml_reference(alpha, -1.0)
    ns = np.array([64, 128, 256, 512])
    r = (2 - alpha) / alpha
    err = [abs(float(_relax(alpha, 1.0, int(n), r)[-1]) - exact) for n in ns]
    # Stynes, O'Riordan & Gracia (2017), Thm 5.2: O(N^{-min(rα, 2-α)}) = O(N^{-(2-α)}); the
    # local slopes measured are within 0.02 of 2 - α, and 2 - α differs by >= 0.3 between the
    # α tested and from the uniform mesh's 1
    assert _order(ns, err) == pytest.approx(2 - alpha, abs=0.05)


@pytest.mark.parametrize("alpha", [0.4, 0.7])
def test_l21sigma_on_the_graded_mesh_is_second_order(x64, alpha):
    exact = _ml_reference(alpha, -1.0)
    ns = np.array([128, 256, 512, 1024, 2048])
    err = [
        abs(float(_relax(alpha, 1.0, int(n), 2 / alpha, L2S, fs.ffpe.SOE(1e-13))[-1]) - exact)
        for n in ns
    ]
    # Chen & Stynes (2019), Thm 4.1: O(N^{-min(rα, 2)}) = O(N^{-2}) for r = 2/α. The local
    # slopes approach 2 from below (α = 0.7: 1.84, 1.87, 1.90, 1.92 over N = 128 ... 2048, a
    # slowly decaying pre-asymptotic term), so the fit is 1.85-1.95: 0.2 keeps it well apart
    # from L1's 2 - α <= 1.6 on these meshes
    assert _order(ns, err) == pytest.approx(2.0, abs=0.2)
    assert err[-1] < 1e-7  # and small in absolute terms (E_α(−1) ≈ 0.4-0.6)


def test_graded_then_geometric_mesh_follows_long_relaxation(x64):
    """To t = 100 with 400 steps: graded on [0, 1], then geometric; the algebraic tail
    E_α(−t^α) ~ t^{−α}/Γ(1−α) is followed to a small relative error."""
    alpha = 0.5
    save = np.array([1.0, 10.0, 100.0])
    u = np.asarray(
        _relax(
            alpha,
            1.0,
            400,
            (2 - alpha) / alpha,
            L1,
            fs.ffpe.SOE(1e-12),
            t_final=100.0,
            save_at=save,
            graded_until=1.0,
        )
    )
    exact = np.array([_ml_reference(alpha, -(t**alpha)) for t in save])
    # measured relative errors ≈ 2e-4 ... 1e-3 (200 graded steps on [0, 1] at order 1.5,
    # 200 geometric steps of ratio ≈ 1.03 after); 5e-3 leaves margin, while a uniform mesh
    # with the same 400 steps is ≈ 6 % off at t = 1
    np.testing.assert_allclose(u, exact, rtol=5e-3)
    u_uniform = float(_relax(alpha, 1.0, 400, 1.0, t_final=100.0, save_at=[1.0])[0])
    assert abs(u_uniform / exact[0] - 1) > 0.02


def test_graded_then_geometric_mesh_shape():
    ts = fs.ffpe.graded_mesh(50.0, 30, 3.0, graded_until=2.0, graded_steps=10)
    tau = np.diff(ts)
    assert ts[0] == 0 and ts[10] == 2.0 and ts[-1] == 50.0 and ts.shape == (31,)
    np.testing.assert_allclose(ts[:11], 2.0 * (np.arange(11) / 10) ** 3)
    ratios = tau[11:] / tau[10:-1]
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-9)  # geometric, continuing τ_10
    assert ratios[0] > 1
    with pytest.raises(ValueError, match="graded_until"):
        fs.ffpe.graded_mesh(1.0, 10, 2.0, graded_until=1.5)
    with pytest.raises(ValueError, match="graded_steps"):
        fs.ffpe.graded_mesh(1.0, 10, 2.0, graded_until=0.5, graded_steps=10)
    with pytest.raises(ValueError, match="num_steps must be >= 2 with graded_until"):
        fs.ffpe.graded_mesh(10.0, 1, 2.0, graded_until=1.0)


def test_numpy_integer_graded_steps_and_non_numeric_soe_tol():
    """``graded_steps`` takes NumPy integers as ``num_steps`` does (it refused np.int64(10));
    an SOE ``tol`` that is not a number is a ValueError naming ``tol`` (None and lists raised
    TypeError, a string a ValueError that did not say which argument)."""
    ts = fs.ffpe.graded_mesh(50.0, 30, 3.0, graded_until=2.0, graded_steps=np.int64(10))
    np.testing.assert_array_equal(
        ts, fs.ffpe.graded_mesh(50.0, 30, 3.0, graded_until=2.0, graded_steps=10)
    )
    for bad in (None, [1e-8], "1e-8", True):
        with pytest.raises(ValueError, match="SOE tol"):
            fs.ffpe.SOE(tol=bad)


@pytest.mark.parametrize("t_final", [1.01, 1.1, 2.0])
def test_a_short_tail_is_equal_steps_not_shrinking_ones(t_final):
    """T − t_g shorter than the tail's steps at the last graded size: a geometric tail would
    shrink (q < 1; at T = 1.01, 35 steps of zero length); the tail is equal steps instead."""
    ts = fs.ffpe.graded_mesh(t_final, 100, 4.0, graded_until=1.0)
    tail = np.diff(ts)[50:]
    assert ts[50] == 1.0 and ts[-1] == t_final
    np.testing.assert_allclose(tail, (t_final - 1.0) / 50, rtol=1e-9)


def test_one_step_with_the_fast_history():
    """One L1 step has no history; SOE's kernel window was empty (t_min = t_max = T)."""
    grid = fs.ffpe.Grid1D(lo=-3.0, hi=3.0, cells=30)
    p0 = np.exp(-(grid.centers[..., 0] ** 2))
    p0 = p0 / (p0.sum() * grid.cell_volume)
    run = functools.partial(fs.ffpe.solve, fs.ffpe.Problem(alpha=0.4), grid, p0, t_final=1.0)
    np.testing.assert_allclose(
        run(num_steps=1, history=fs.ffpe.SOE()).p[-1], run(num_steps=1).p[-1], atol=1e-6
    )


# ------------------------------------------------------------------------- fast history


@pytest.mark.parametrize(
    ("args", "name"),
    [
        ((1e-3, 1.0, -1.0), "tol"),  # read "math domain error"
        ((1e-3, 1.0, 0.0), "tol"),  # ZeroDivisionError
        ((1e-3, 1.0, math.nan), "tol"),  # "cannot convert float NaN to integer"
        ((1e-3, 1.0, 0.5), "tol"),
        ((0.0, 1.0, 1e-6), "t_min"),
        ((1e-3, math.inf, 1e-6), "t_max"),
        ((1e-3, "1", 1e-6), "t_max"),
    ],
)
def test_soe_nodes_names_a_bad_argument(args, name):
    with pytest.raises(ValueError, match=rf"^{name} must be"):
        fs.ffpe.soe_nodes(*args)
    with pytest.raises(ValueError, match="t_min < t_max"):
        fs.ffpe.soe_nodes(1.0, 1e-3, 1e-6)


@pytest.mark.parametrize("tol", [1e-6, 1e-10])
def test_soe_kernel_meets_its_tolerance_for_every_alpha(x64, tol):
    t_min, t_max = 1e-6, 1e3
    x, h = fs.ffpe.soe_nodes(t_min, t_max, tol)
    t = np.geomspace(t_min, t_max, 3000)
    for alpha in [0.02, 0.2, 0.5, 0.8, 0.98]:
        s, w = fs.ffpe.soe_weights(jnp.asarray(x), h, alpha)
        approx = np.asarray(jnp.sum(w[:, None] * jnp.exp(-s[:, None] * t[None]), axis=0))
        exact = t**-alpha / math.gamma(1 - alpha)
        assert np.max(np.abs(approx / exact - 1)) <= tol  # the documented bound, relative
    # static and logarithmic in the window: 10x wider window, a handful more terms
    soe = fs.ffpe.SOE(tol)
    assert soe.num_terms(t_min / 10, t_max) - soe.num_terms(t_min, t_max) <= 10


@pytest.mark.parametrize("stepper", [L1, L2S], ids=["l1", "l21sigma"])
@pytest.mark.parametrize("tol", [1e-6, 1e-10])
def test_fast_history_equals_direct_to_the_soe_tolerance(x64, stepper, tol):
    grid = fs.ffpe.Grid1D(-2.5, 2.5, 100)
    prob = fs.ffpe.Problem(alpha=0.4, diffusion=0.3, gamma=1.0, potential=_double_well)
    p0 = _gaussian(grid, 1.2, 0.2)
    kw = dict(t_final=5.0, num_steps=300, grading=2.0, save_at=10)
    direct = fs.ffpe.solve(prob, grid, p0, **kw, stepper=stepper)
    fast = fs.ffpe.solve(prob, grid, p0, **kw, stepper=stepper, history=fs.ffpe.SOE(tol))
    # The kernel is perturbed by ≤ tol relative, so every history sum by ≤ tol Σ|g δ|; the
    # implicit step is a contraction in the L1 norm (M-matrix, zero column sums), so the
    # densities differ by O(tol) in L1 (measured: 3e-4 to 4e-3 times tol for tol = 1e-10 ... 1e-4)
    l1_diff = jnp.sum(jnp.abs(fast.p - direct.p), axis=1) * grid.h
    assert float(jnp.max(l1_diff)) <= tol


@pytest.mark.parametrize("stepper", [L1, L2S], ids=["l1", "l21sigma"])
@pytest.mark.parametrize("history", [DIRECT, fs.ffpe.SOE(1e-8)], ids=["direct", "soe"])
def test_invariants_for_every_stepper_and_history(x64, stepper, history):
    grid = fs.ffpe.Grid1D(-2.5, 2.5, 120)
    prob = fs.ffpe.Problem(alpha=0.6, diffusion=0.3, gamma=1.0, potential=_double_well)
    gibbs = np.asarray(fs.ffpe.stationary(prob, grid))
    kw = dict(t_final=20.0, num_steps=200, grading=3.0, stepper=stepper, history=history)
    sol = fs.ffpe.solve(prob, grid, jnp.asarray(gibbs), **kw)
    # δ_k = 0 and A p_G = 0 make every step the identity up to the tridiagonal solve's rounding
    assert float(jnp.max(jnp.abs(sol.p - gibbs[None]))) <= 1e-12 * gibbs.max()
    moving = fs.ffpe.solve(prob, grid, _gaussian(grid, 1.5, 0.1), **kw)
    # zero column sums and Σ δ_k = 0: mass to rounding over 200 steps
    np.testing.assert_allclose(moving.mass, 1.0, atol=1e-12)
    assert int(moving.result) == fs.ffpe.SUCCESS
    if isinstance(stepper, fs.ffpe.L1):  # L1 keeps positivity; L2-1σ only conditionally
        assert float(moving.p.min()) >= 0.0


def test_fast_history_memory_does_not_grow_with_the_number_of_steps(x64):
    """The scan carry of the SOE march holds (cells,), (terms, cells) and (saves, cells) arrays;
    the direct march carries all N differences."""
    grid = fs.ffpe.Grid1D(-2.0, 2.0, 16)
    prob = fs.ffpe.Problem(alpha=0.5)
    p0 = _gaussian(grid)

    def carry_shapes(history, n):
        traced = jax.make_jaxpr(
            lambda p: (
                fs.ffpe.solve(
                    prob, grid, p, t_final=1.0, num_steps=n, save_at=[0.5, 1.0], history=history
                ).p
            )
        )(p0)
        shapes = []

        def visit(jaxpr):
            for eqn in jaxpr.eqns:
                if eqn.primitive.name == "scan":
                    if "num_consts" in eqn.params:  # jax < 0.11
                        c, k = eqn.params["num_consts"], eqn.params["num_carry"]
                    else:  # jax >= 0.11: a flat tree of (consts, carry, xs), one leaf per input
                        c, k = (len(group.vals) for group in eqn.params["ft_in"].unpack()[:2])
                    shapes.extend(v.aval.shape for v in eqn.invars[c : c + k])
                for param in eqn.params.values():  # nested jit / scan bodies
                    if isinstance(param, jax.extend.core.ClosedJaxpr):
                        visit(param.jaxpr)

        visit(traced.jaxpr)
        assert shapes
        return shapes

    for n in (97, 389):
        soe = carry_shapes(fs.ffpe.SOE(1e-8), n)
        assert all(n not in s for s in soe), soe
        assert (n, 16) in carry_shapes(DIRECT, n)


# ------------------------------------------------------------------------- save_at


def test_save_at_times_are_linear_interpolants_of_the_mesh_states(x64):
    grid = fs.ffpe.Grid1D(-2.0, 2.0, 30)
    prob = fs.ffpe.Problem(alpha=0.5, diffusion=0.4, potential=_double_well)
    p0 = _gaussian(grid, 0.8, 0.2)
    kw = dict(t_final=2.0, num_steps=40, grading=2.0, history=fs.ffpe.SOE(1e-12))
    full = fs.ffpe.solve(prob, grid, p0, **kw)
    ts = np.asarray(full.ts)
    times = np.array([0.0, 0.013, 0.5, 0.5, 1.3, 2.0])
    part = fs.ffpe.solve(prob, grid, p0, **kw, save_at=times)
    np.testing.assert_array_equal(np.asarray(part.ts), times)
    expected = np.stack(
        [[np.interp(t, ts, np.asarray(full.p[:, i])) for i in range(30)] for t in times]
    )
    np.testing.assert_allclose(part.p, expected, rtol=0, atol=1e-13)
    every = fs.ffpe.solve(prob, grid, p0, **kw, save_at=15)  # steps 0, 15, 30 and the last
    np.testing.assert_allclose(every.ts, ts[[0, 15, 30, 40]])
    np.testing.assert_allclose(every.p, full.p[np.array([0, 15, 30, 40])], rtol=0, atol=1e-15)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(save_at=[0.5, 0.2]), "save_at"),
        (dict(save_at=[1.5]), "save_at"),
        (dict(save_at=0), "save_at"),
        (dict(stepper="l1"), "stepper"),
        (dict(history="soe"), "history"),
        (dict(graded_until=2.0), "graded_until"),
        (dict(problem=fs.ffpe.Problem(gamma=float("nan"))), "gamma"),
    ],
)
def test_bad_input(kwargs, match):
    problem = kwargs.pop("problem", fs.ffpe.Problem())
    with pytest.raises(ValueError, match=match):
        fs.ffpe.solve(
            problem, fs.ffpe.Grid1D(-1.0, 1.0, 20), np.ones(20), t_final=1.0, num_steps=10, **kwargs
        )
    with pytest.raises(ValueError, match="tol"):
        fs.ffpe.SOE(tol=0.5)


# ------------------------------------------------------------------------- vmap, grad, compile


def test_vmap_over_alpha_diffusion_gamma_matches_one_by_one_with_result_codes(x64):
    grid = fs.ffpe.Grid1D(-3.0, 3.0, 50)
    p0 = _gaussian(grid, 1.0, 0.3)

    def run(a, d, g):
        prob = fs.ffpe.Problem(alpha=a, diffusion=d, gamma=g, potential=_double_well)
        return fs.ffpe.solve(
            prob, grid, p0, t_final=2.0, num_steps=60, save_at=[1.0, 2.0],
            history=fs.ffpe.SOE(1e-10), stepper=L2S,
        )  # fmt: skip

    alphas = jnp.array([0.3, 0.6, 1.0, 1.5])  # the last is out of range
    ds = jnp.array([0.5, 0.2, 0.3, 0.3])
    gs = jnp.array([1.0, 2.0, 0.5, 1.0])
    batch = jax.vmap(run)(alphas, ds, gs)
    assert batch.p.shape == (4, 2, 50)
    np.testing.assert_array_equal(batch.result, [0, 0, 0, fs.ffpe.BAD_PARAMETER])
    for i in range(3):
        one = run(float(alphas[i]), float(ds[i]), float(gs[i]))
        # the same arithmetic batched: equal to rounding
        np.testing.assert_allclose(batch.p[i], one.p, rtol=0, atol=1e-13)
    with pytest.raises(ValueError, match="alpha"):
        run(1.5, 0.3, 1.0)  # concrete values are still checked before compiling


@pytest.mark.parametrize(
    ("stepper", "history"),
    [(L1, DIRECT), (L1, fs.ffpe.SOE(1e-12)), (L2S, DIRECT), (L2S, fs.ffpe.SOE(1e-12))],
    ids=["l1-direct", "l1-soe", "l21sigma-direct", "l21sigma-soe"],
)
def test_gradient_with_respect_to_alpha_matches_finite_differences(x64, stepper, history):
    f = lambda a: _relax(a, 1.0, 64, 2.0, stepper, history)[-1]
    g = float(jax.grad(f)(0.6))
    fd = (float(f(0.6 + 1e-5)) - float(f(0.6 - 1e-5))) / 2e-5
    # central differences with step 1e-5: truncation ≈ 1e-10 f''' and rounding ≈ 1e-11
    assert g == pytest.approx(fd, rel=1e-6)


def test_gradient_of_a_density_moment_through_the_fast_solve(x64):
    grid = fs.ffpe.Grid1D(-3.0, 3.0, 40)
    p0 = _gaussian(grid, 1.0, 0.3)

    def mean(a):
        prob = fs.ffpe.Problem(alpha=a, diffusion=0.5, gamma=1.0)
        sol = fs.ffpe.solve(
            prob, grid, p0, t_final=1.0, num_steps=50, save_at=[1.0], history=fs.ffpe.SOE(1e-12)
        )
        return sol.moment(1)[-1]

    g = float(jax.grad(mean)(0.6))
    fd = (float(mean(0.6 + 1e-5)) - float(mean(0.6 - 1e-5))) / 2e-5
    assert g == pytest.approx(fd, rel=1e-6)  # as above


def test_no_recompilation_for_new_parameter_values(x64):
    grid = fs.ffpe.Grid1D(-2.0, 2.0, 24)
    p0 = _gaussian(grid)
    kw = dict(t_final=1.0, num_steps=30, history=fs.ffpe.SOE(1e-8), save_at=[1.0])
    fs.ffpe.solve(fs.ffpe.Problem(alpha=0.5, diffusion=1.0), grid, p0, **kw)
    size = _solve._march._cache_size()
    fs.ffpe.solve(fs.ffpe.Problem(alpha=0.7, diffusion=0.3, gamma=2.0), grid, p0 * 2, **kw)
    assert _solve._march._cache_size() == size


def test_graded_then_geometric_mesh_with_many_geometric_steps():
    """10⁴ geometric steps: the ratio search must not overflow q^m (it used to raise
    OverflowError for the README's long-time example)."""
    ts = fs.ffpe.graded_mesh(1e4, 20_000, 4.0, graded_until=1.0)
    assert ts.shape == (20_001,) and ts[0] == 0.0 and ts[-1] == 1e4
    assert ts[10_000] == pytest.approx(1.0, rel=1e-12)
    assert np.all(np.diff(ts) > 0)
    steps = np.diff(ts)[10_000:]
    ratios = steps[1:] / steps[:-1]
    assert np.allclose(ratios, ratios[0], rtol=1e-6)  # geometric


def test_visible_negative_densities_get_their_result_code():
    """L2-1σ's explicit part undershoots a narrow peak on a coarse time mesh (−3 % of the peak
    here with 10 steps); the result says NEGATIVE instead of SUCCESS. L1 stays positive, and a
    finer mesh cures L2-1σ."""
    prob = fs.ffpe.Problem(alpha=0.5, diffusion=0.3, potential=lambda w: (w[0] ** 2 - 1) ** 2)
    grid = fs.ffpe.Grid1D(-2.5, 2.5, 50)
    x = np.asarray(grid.centers[:, 0])
    p = np.exp(-((x - 0.5) ** 2) / (2 * 0.05**2))
    p0 = jnp.asarray(p / (p.sum() * grid.h))

    def result(stepper, n):
        sol = fs.ffpe.solve(prob, grid, p0, t_final=1.0, num_steps=n, stepper=stepper)
        return int(sol.result), float(jnp.min(sol.p) / jnp.max(sol.p))

    code, dip = result(L2S, 10)
    assert code == fs.ffpe.NEGATIVE and dip < -0.01
    assert result(L1, 10) == (fs.ffpe.SUCCESS, 0.0)
    assert result(L2S, 100)[0] == fs.ffpe.SUCCESS
