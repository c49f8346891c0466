"""Bad input, systematically: the fractional Fokker–Planck solver (issue #7).

Correct results: ``solve`` conserves mass (L1 stepping; 1e-4 relative in float32 over four
steps) with ``result == SUCCESS`` and finite, non-negative densities; ``stationary`` is a
positive density with ``Σ p h = 1``; ``mittag_leffler`` gives ``E_{α,β}(0) = 1/Γ(β)`` and
propagates a NaN ``z`` to its own element; CTRW particles have finite positions. Every problem,
grid or time argument out of range is a ``ValueError`` naming it — never a NaN density.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
from _fuzz import BAD_INTS, BAD_SCALARS, FAST, FEW, NOT_A_NUMBER, raises_naming
from hypothesis import given
from hypothesis import strategies as st

import fracsgd as fs

F = fs.ffpe
KEY = jax.random.key(0)
GRID = F.Grid1D(-2.0, 2.0, 8)
P0 = jnp.full(8, 0.25)  # Σ p h = 1


def _solve(problem=None, grid=GRID, p0=P0, **kw):
    kw = {"t_final": 1.0, "num_steps": 4, **kw}
    return F.solve(F.Problem() if problem is None else problem, grid, p0, **kw)


def _assert_good(sol, mass0=1.0):
    assert int(sol.result) == F.SUCCESS
    assert bool(jnp.all(jnp.isfinite(sol.p))) and float(jnp.min(sol.p)) >= -1e-6
    np.testing.assert_allclose(np.asarray(sol.mass), mass0, rtol=1e-4)  # L1 conserves mass


PARAM = st.one_of(st.floats(0.05, 1.0), BAD_SCALARS, st.just(1.5))


@FEW
@given(
    alpha=PARAM,
    diffusion=PARAM,
    gamma=st.one_of(st.floats(-3, 3), NOT_A_NUMBER, st.sampled_from([math.nan, math.inf])),
)
def test_problem_parameters_solve_or_named_error(alpha, diffusion, gamma):
    problem = F.Problem(alpha=alpha, diffusion=diffusion, gamma=gamma)
    try:
        sol = _solve(problem)
    except ValueError as err:
        assert str(err).split()[0] in ("alpha", "diffusion", "gamma"), str(err)
        return
    _assert_good(sol)


@FAST
@given(
    lo=st.one_of(st.floats(-3, 0), NOT_A_NUMBER, st.sampled_from([math.nan, -math.inf])),
    hi=st.one_of(st.floats(0.5, 3), st.sampled_from([math.inf, -5.0, None])),
    cells=st.one_of(st.just(8), BAD_INTS, st.just(2)),
)
def test_grid_solve_or_named_error(lo, hi, cells):
    try:
        sol = _solve(grid=F.Grid1D(lo, hi, cells))
    except ValueError as err:
        assert "grid" in str(err), str(err)
        return
    _assert_good(sol, mass0=0.25 * (hi - lo))  # p0 = 1/4 on every cell of width h


@FAST
@given(
    values=st.lists(
        st.sampled_from([0.0, 0.5, 1.0, -0.1, math.nan, math.inf, 1e39]), min_size=8, max_size=8
    ),
    as_int=st.booleans(),
)
def test_p0_or_named_error(values, as_int):
    p0 = np.asarray(values)
    if as_int and np.all(np.isfinite(p0)) and p0.max() < 1e6:
        p0 = (p0 * 2).astype(np.int64)  # integer densities are accepted and marched as floats
    try:
        sol = _solve(p0=p0)
    except ValueError as err:
        assert "p0" in str(err), str(err)
        p = np.asarray(p0, np.float64)
        assert not (np.all(np.isfinite(p)) and np.all(p >= 0) and p.sum() > 0 and p.max() < 4e37)
        return
    _assert_good(sol, mass0=float(np.sum(np.asarray(p0, np.float32)) * GRID.h))


def test_p0_of_wrong_type_or_shape_is_named():
    for p0 in ("abc", None, jnp.ones(7), [[1.0] * 8]):
        raises_naming(lambda p0=p0: _solve(p0=p0), "p0")


@FAST
@given(
    t_final=st.one_of(st.floats(0.01, 100), BAD_SCALARS, st.just(np.array([1.0, 2.0]))),
    grading=st.one_of(st.floats(1, 4), BAD_SCALARS, st.sampled_from([0.5, 1e6, math.inf])),
    save_at=st.one_of(
        st.none(), st.sampled_from([2, 0, -1, "abc", [0.5], [[0.5]], [math.nan], [5e3], 0.5])
    ),
)
def test_time_arguments_or_named_error(t_final, grading, save_at):
    try:
        sol = _solve(t_final=t_final, grading=grading, save_at=save_at)
    except ValueError as err:
        assert any(n in str(err) for n in ("t_final", "grading", "save_at")), str(err)
        return
    _assert_good(sol)


@FEW
@given(num_steps=BAD_INTS)
def test_num_steps_is_named(num_steps):
    raises_naming(lambda: _solve(num_steps=num_steps), "num_steps")


@FEW
@given(
    where=st.integers(0, 7),
    bad=st.sampled_from([math.nan, math.inf, -math.inf]),
    gamma=st.sampled_from([1.0, 1e30]),
    two_d=st.booleans(),
)
def test_stationary_is_a_density_or_named_error(where, bad, gamma, two_d):
    def potential(w):
        return jnp.where(jnp.abs(w[0] - (-1.75 + 0.5 * where)) < 1e-3, bad, 0.5 * jnp.sum(w**2))

    grid = F.Grid2D((-2.0, -2.0), (2.0, 2.0), (8, 4)) if two_d else GRID
    raises_naming(
        lambda: F.stationary(F.Problem(gamma=gamma, potential=potential), grid), "potential"
    )
    p = F.stationary(F.Problem(gamma=gamma if gamma < 1e3 else 1.0), grid)
    assert bool(jnp.all(p > 0))
    np.testing.assert_allclose(float(jnp.sum(p)) * grid.cell_volume, 1.0, rtol=1e-5)  # float32


def test_stationary_overflow_and_bad_grids_are_named():
    # γ = 1e30: exp(−γL/D) underflows off the minimum; the density is the (correct) limit,
    # all mass on the two cells beside w = 0
    p = np.asarray(F.stationary(F.Problem(gamma=1e30), GRID))
    np.testing.assert_allclose(p * GRID.h, [0, 0, 0, 0.5, 0.5, 0, 0, 0])
    steep = F.Problem(gamma=3e38, potential=lambda w: 10.0 + w[0] ** 2)  # γL/D = inf everywhere
    raises_naming(lambda: F.stationary(steep, GRID), "gamma")
    raises_naming(lambda: F.stationary(F.Problem(), F.Grid1D(-math.inf, math.inf, 8)), "grid")
    for lo in (None, 1.0, ("a", 0.0)):
        raises_naming(
            lambda lo=lo: F.stationary(F.Problem(), F.Grid2D(lo, (1.0, 1.0), (4, 4))), "grid"
        )
    raises_naming(lambda: _solve(problem=F.Problem(potential=lambda w: w)), "potential")
    raises_naming(lambda: _solve(problem=F.Problem(potential=None)), "potential")


@FAST
@given(
    alpha=st.one_of(st.floats(0.1, 1.0), st.sampled_from([0.0, 1.5, math.nan, -1.0])),
    beta=st.one_of(st.floats(0.5, 2.0), st.sampled_from([0.0, -1.0, math.nan, math.inf])),
    as_array=st.booleans(),
    nan_at=st.integers(0, 2),
)
def test_mittag_leffler_values_or_named_error(alpha, beta, as_array, nan_at):
    a = np.asarray([alpha, 0.5, 1.0]) if as_array else alpha  # concrete arrays are checked too
    z = np.asarray([0.0, -1.0, -2.0])
    z[nan_at] = math.nan if nan_at else z[nan_at]
    try:
        e = np.asarray(F.mittag_leffler(a, z, beta))
    except ValueError as err:
        assert "alpha" in str(err) or "beta" in str(err), str(err)
        return
    np.testing.assert_allclose(e[0], 1 / math.gamma(beta), rtol=1e-5)  # E_{α,β}(0) = 1/Γ(β)
    for i in (1, 2):
        assert math.isnan(e[i]) == (i == nan_at)  # NaN z stays in its own element
    assert np.all(np.isfinite(e[~np.isnan(z)]))


def test_mittag_leffler_types_and_infinities():
    for bad in ("a", None, [1j]):
        raises_naming(lambda bad=bad: F.mittag_leffler(bad, 1.0), "alpha")
        raises_naming(lambda bad=bad: F.mittag_leffler(0.5, bad), "z")
    assert float(F.mittag_leffler(0.5, math.inf)) == math.inf  # grows without bound
    assert float(F.mittag_leffler(0.5, -math.inf)) == 0.0


FREE = F.Problem(alpha=0.5, gamma=0.0)


@FAST
@given(
    key=st.one_of(st.just(KEY), st.sampled_from([0, None, jax.random.split(KEY, 2)])),
    w0=st.one_of(
        st.just(np.zeros((3, 1))),
        st.sampled_from([np.full((3, 1), np.nan), np.zeros(3), "w", np.zeros((3, 1), int)]),
    ),
    times=st.one_of(st.just([0.1, 0.2]), st.sampled_from([[], [0.2, 0.1], [0.1, math.inf], "t"])),
    step=st.one_of(st.just(0.05), BAD_SCALARS),
    alpha=st.one_of(st.just(0.5), BAD_SCALARS, st.just(np.ones(2))),
)
def test_ctrw_particles_or_named_error(key, w0, times, step, alpha):
    try:
        out = F.ctrw(key, FREE._replace(alpha=alpha), w0, times, step=step, max_jumps=50)
    except ValueError as err:
        names = ("key", "w0", "times", "step", "alpha")
        assert str(err).split()[0] in names, str(err)
        return
    assert np.all(np.isfinite(np.asarray(out.positions)))
    assert out.positions.shape == (3, 2, 1)
