"""Time-fractional Fokker–Planck equation of SGD: ``D_t^α p = ∇·(D∇p + γ p∇L)`` (theory.md §4),
Caputo time stepping (:mod:`fracsgd.ffpe._caputo`: L1 or L2-1σ, direct or fast history) and
Scharfetter–Gummel finite volumes in space (:mod:`fracsgd.ffpe._space`), and the stationary
state by a null-space solve.

The time march is generic over the spatial operator: it takes an operator pytree ``op`` (arrays)
and two static module-level functions, ``shifted_solve(op, c, rhs)`` solving
``(c I − A) u = rhs`` and ``apply(op, u) = A u``. In 1-D these are a tridiagonal solve and a
tridiagonal product (:func:`tridiagonal_shifted_solve`, :func:`apply_tridiagonal`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fracsgd._checks import check_number, refuse_traced_static
from fracsgd._types import Array
from fracsgd.ffpe._caputo import (
    L1,
    SOE,
    Direct,
    L21Sigma,
    graded_mesh,
    phi1,
    phi2,
    soe_weights,
)
from fracsgd.ffpe._space import (
    Grid1D,
    apply_tridiagonal,
    check_diffusion_values,
    check_grid,
    check_point_indexing,
    potential_values,
    restore_mass,
    sg_tridiagonal,
)
from fracsgd.ffpe._space2d import (
    Grid2D,
    apply2d,
    check_grid2d,
    gibbs2d,
    operator2d,
    shifted_solve2d,
)

SUCCESS = 0
NONFINITE = 1
#: A traced ``alpha``, ``diffusion`` or ``gamma`` (under ``vmap``/``jit``) outside its range.
BAD_PARAMETER = 2
#: A saved density went visibly below zero (``< −√ε · max|p|`` at the same saved time: 1.5e-8
#: relative in float64, 3.5e-4 in float32; smaller dips are tail oscillations of no weight):
#: the L2-1σ stepper is only conditionally positive (its explicit part, for steps long against
#: the cell size).
NEGATIVE = 3

Stepper = L1 | L21Sigma
History = Direct | SOE
_L1, _DIRECT = L1(), Direct()  # the defaults


class Problem(NamedTuple):
    """``D_t^α p = ∇·(D∇p + γ p∇L)``.

    Attributes:
        alpha: Caputo order in (0, 1] (``α = 2H = 2/d_w``; 1 is the ordinary equation).
        diffusion: ``D > 0``, a number or a function ``D(w)`` of a point ``w`` of shape
            ``(dim,)`` (then the form ``∇·(D(w)(∇p + p∇(γL/D_0)))`` is solved; see
            :mod:`fracsgd.ffpe._space`).
        gamma: the drift strength γ (the learning rate, "friction").
        potential: ``L(w)`` for a point of shape ``(dim,)``, returning a scalar.
        reference_diffusion: ``D_0 > 0`` of that form, for a ``D(w)`` function only: the
            temperature of the stationary state ``∝ exp(−γL/D_0)`` (``D(w)`` sets how fast it
            is reached, not where). ``None`` (default) takes the mean of ``D`` over the grid's
            cell centres, which depends on the grid's extent — cells added where ``p`` is
            negligible still change ``D_0`` and so the equation; give ``D_0`` to make the
            problem independent of the grid. With a constant ``diffusion``, ``D_0 = D``.

    ``alpha``, ``diffusion`` (a number), ``gamma`` and ``reference_diffusion`` may be traced
    arrays (``jax.vmap`` over problems, ``jax.grad`` in ``alpha``): concrete values are
    validated with ``ValueError``, traced ones give the result code ``BAD_PARAMETER`` in the
    :class:`Solution`.

    Examples:
        >>> import numpy as np
        >>> import fracsgd as fs
        >>> prob = Problem(alpha=0.5, diffusion=0.5, gamma=1.0, potential=lambda w: 0.5 * w[0] ** 2)
        >>> grid = fs.ffpe.Grid1D(-6.0, 6.0, 600)
        >>> p = np.asarray(fs.ffpe.stationary(prob, grid))  # ∝ exp(−γL/D): variance D/γ
        >>> round(float(np.sum(p * grid.centers[:, 0] ** 2) * grid.h), 3)
        0.5
    """

    alpha: Any = 0.5
    diffusion: Any = 1.0
    gamma: Any = 1.0
    potential: Callable[[Array], Array] = lambda w: 0.5 * jnp.sum(w**2)
    reference_diffusion: Any = None


class Solution(NamedTuple):
    """Densities at the save times.

    Attributes:
        ts: ``(S,)`` save times; ``p``: ``(S, *cells)`` densities; ``mass``: ``(S,)``
            ``Σ p · cell volume``; ``result``: ``SUCCESS`` (0), ``NONFINITE`` (1),
            ``BAD_PARAMETER`` (2) or ``NEGATIVE`` (3: a density below ``−√ε · max|p|`` of its
            saved time, which only the conditionally positive :class:`L21Sigma` produces;
            refine the time mesh or use :class:`L1`), per problem under vmap; the first that
            applies of
            ``BAD_PARAMETER``, ``NONFINITE``, ``NEGATIVE``.
        centers: ``(*cells, dim)`` cell centres.
        cell_volume: the grid's cell volume (``h`` in 1-D), as the moments integrate with it;
            ``None`` (a hand-built ``Solution``) takes it from the centres' spacing.
    """

    ts: Array
    p: Array
    mass: Array
    result: Array
    centers: Array
    cell_volume: Any = None

    def _integrate(self, f: Array) -> Array:
        """``∫ f p dw`` at every time for ``f`` of shape ``(*cells, …)``: ``(S, …)``."""
        c = self.centers
        dim = c.shape[-1]
        # the grid's own volume: differences of rounded centres lose digits on offset grids
        # in float32 (centres near 1000 with h = 0.01: 0.1 % of the mass)
        volume = (
            self.cell_volume
            if self.cell_volume is not None
            else math.prod(
                c[(0,) * d + (1,) + (0,) * (dim - d - 1)][d] - c[(0,) * dim][d] for d in range(dim)
            )
        )
        cell_axes = tuple(range(dim))
        return jnp.tensordot(self.p, f, axes=(tuple(a + 1 for a in cell_axes), cell_axes)) * volume

    def _batch_ndim(self) -> int:
        """Leading batch axes (from ``jax.vmap(solve)``): ``centers`` is ``(*batch, *cells,
        dim)`` with as many cell axes as coordinates."""
        return self.centers.ndim - 1 - self.centers.shape[-1]

    def moment(self, k: int) -> Array:
        """``∫ w^k p dw`` at every time: ``(S,)`` in 1-D, ``(S, dim)`` (one per coordinate) on
        a :class:`~fracsgd.ffpe.Grid2D`; a batch of solutions from ``jax.vmap(solve)`` gives
        ``(*batch, S)`` / ``(*batch, S, dim)``."""
        if self._batch_ndim() > 0:
            return jax.vmap(lambda s: s.moment(k))(self)
        m = self._integrate(self.centers**k)
        return m[:, 0] if self.centers.shape[-1] == 1 else m

    def msd(self, x0: Any = 0.0) -> Array:
        """``∫ |w − x0|² p dw`` at every time, ``(S,)`` (``(*batch, S)`` for a batch of
        solutions from ``jax.vmap(solve)``); ``x0`` a number or a point ``(dim,)``."""
        dim = self.centers.shape[-1]
        if isinstance(x0, str | bytes) or np.shape(x0) not in ((), (dim,)):
            raise ValueError(f"x0 must be a number or a point of shape ({dim},), got {x0!r:.60}")
        if self._batch_ndim() > 0:
            return jax.vmap(lambda s: s.msd(x0))(self)
        x0 = jnp.broadcast_to(jnp.asarray(x0, self.centers.dtype), (dim,))
        x0 = x0.reshape((1,) * (self.centers.ndim - 1) + (dim,))
        return self._integrate(jnp.sum((self.centers - x0) ** 2, axis=-1))


# ------------------------------------------------------------------------------ validation


def _concrete(x: Any, name: str) -> float | None:
    """``float(x)`` for a concrete scalar, ``None`` for a tracer (checked as data instead)."""
    if isinstance(x, jax.core.Tracer):
        return None
    if isinstance(x, bool | np.bool_ | str | bytes):  # float("0.5") would pass
        raise ValueError(f"{name} must be a real number, got {x!r}")
    if np.ndim(x) != 0:
        raise ValueError(f"{name} must be a scalar, got shape {np.shape(x)} (vmap over problems)")
    try:
        return float(x)
    except (TypeError, ValueError, OverflowError) as err:
        raise ValueError(f"{name} must be a real number, got {x!r}") from err


def _check_problem(problem: Any) -> Problem:
    if not isinstance(problem, Problem):
        raise ValueError(f"problem must be a fracsgd.ffpe.Problem, got {type(problem).__name__}")
    a = _concrete(problem.alpha, "alpha")
    if a is not None and not 0 < a <= 1:
        raise ValueError(f"alpha must be in (0, 1], got {problem.alpha}")
    if not callable(problem.diffusion):
        d = _concrete(problem.diffusion, "diffusion")
        if d is not None and not (d > 0 and math.isfinite(d)):
            raise ValueError(f"diffusion must be finite and > 0, got {problem.diffusion}")
    g = _concrete(problem.gamma, "gamma")
    if g is not None and not math.isfinite(g):
        raise ValueError(f"gamma must be finite, got {problem.gamma}")
    if problem.reference_diffusion is not None:
        if not callable(problem.diffusion):
            raise ValueError(
                "reference_diffusion is for a diffusion function D(w) only (with a constant "
                f"diffusion D_0 = D), got reference_diffusion={problem.reference_diffusion!r}"
            )
        d0 = _concrete(problem.reference_diffusion, "reference_diffusion")
        if d0 is not None and not (d0 > 0 and math.isfinite(d0)):
            raise ValueError(
                f"reference_diffusion must be finite and > 0, got {problem.reference_diffusion}"
            )
    if not callable(problem.potential):
        raise ValueError("potential must be a function L(w) of a point w of shape (dim,)")
    return problem


def _check_functions_index_the_point(problem: Problem, grid: Any) -> None:
    """The potential (and a ``D(w)`` function) must not index ``w`` beyond the grid's
    dimension (:func:`~fracsgd.ffpe._space.check_point_indexing`)."""
    c = jnp.asarray(grid.centers)
    point = c.reshape(-1, c.shape[-1])[0]
    check_point_indexing(problem.potential, "potential", point)
    if callable(problem.diffusion):
        check_point_indexing(problem.diffusion, "diffusion", point)


def _parameters_ok(problem: Problem, grid: Any) -> Array:
    """The range checks as data (for traced parameters), a ``D(w)`` function's values at the
    cell centres included."""
    a = jnp.asarray(problem.alpha)
    ok = (a > 0) & (a <= 1) & jnp.isfinite(jnp.asarray(problem.gamma))
    if callable(problem.diffusion):
        c = jnp.asarray(grid.centers)
        d = jax.vmap(problem.diffusion)(c.reshape(-1, c.shape[-1]))
        if problem.reference_diffusion is not None:
            d0 = jnp.asarray(problem.reference_diffusion)
            ok = ok & (d0 > 0) & jnp.isfinite(d0)
    else:
        d = jnp.asarray(problem.diffusion)
    return ok & jnp.all((d > 0) & jnp.isfinite(d))


def _check_p0(p0: Any, shape: tuple[int, ...]) -> Array:
    # the dtype of jax arrays and tracers without converting them; complex ones are refused too
    # (a complex jax.Array once lost its imaginary part with a warning)
    if isinstance(p0, str | bytes):
        real = False
    else:
        dt = p0.dtype if hasattr(p0, "dtype") else np.asarray(p0).dtype
        real = bool(  # bfloat16 and float8 have NumPy kind 'V': ask jax, not the kind
            jnp.issubdtype(dt, jnp.floating)
            or jnp.issubdtype(dt, jnp.integer)
            or jnp.issubdtype(dt, jnp.bool_)
        )
    if not real:
        what = type(p0).__name__ + (f" of dtype {p0.dtype}" if hasattr(p0, "dtype") else "")
        raise ValueError(f"p0 must be an array of real numbers, got {what}")
    if np.shape(p0) != shape:
        raise ValueError(f"p0 must have shape {shape}, got {np.shape(p0)}")
    raw_dtype = p0.dtype if hasattr(p0, "dtype") else np.asarray(p0).dtype  # tracers have one
    dtype = jax.dtypes.canonicalize_dtype(np.result_type(raw_dtype))
    # at least the default float dtype, which the operator is built in (float32 p0 with x64
    # enabled would mix dtypes in the solves)
    dtype = (
        jnp.promote_types(dtype, jnp.result_type(float))
        if jnp.issubdtype(dtype, jnp.floating)
        else jnp.result_type(float)
    )
    if not isinstance(p0, jax.core.Tracer):
        p_np = np.asarray(p0, np.float64)
        big = float(jnp.finfo(dtype).max) / max(p_np.size, 1)  # the mass must stay finite too
        if not np.all(np.isfinite(p_np)) or np.any(p_np < 0) or not p_np.sum() > 0:
            raise ValueError("p0 must be finite, non-negative and have positive mass")
        if p_np.max() > big:
            raise ValueError(f"p0 values must stay below {big:.3g} for a finite {dtype} mass")
    return jnp.asarray(p0, dtype)


def _check_strategies(stepper: Any, history: Any) -> None:
    if not isinstance(stepper, L1 | L21Sigma):
        raise ValueError(f"stepper must be fracsgd.ffpe.L1() or L21Sigma(), got {stepper!r}")
    if not isinstance(history, Direct | SOE):
        raise ValueError(f"history must be fracsgd.ffpe.Direct() or SOE(tol), got {history!r}")


# ------------------------------------------------------------------------------ 1-D space


def reference_diffusion(problem: Problem, d_cells: Array) -> Array:
    """``D_0`` of ``∇·(D(w)(∇p + p∇(γL/D_0)))``: the problem's ``reference_diffusion``, or
    the mean of ``D`` over the cell centres ``d_cells`` when it is None."""
    if problem.reference_diffusion is None:
        return jnp.mean(d_cells)
    return jnp.asarray(problem.reference_diffusion, d_cells.dtype)


def _operator(problem: Problem, grid: Grid1D):
    L = potential_values(problem.potential, grid)
    if callable(problem.diffusion):
        d_cells = jax.vmap(problem.diffusion)(jnp.asarray(grid.centers))
        if d_cells.shape != (grid.cells,):
            raise ValueError("diffusion(w) must return a scalar for a point of shape (1,)")
        check_diffusion_values(d_cells)
        d0 = reference_diffusion(problem, d_cells)
        d_faces = 0.5 * (d_cells[1:] + d_cells[:-1])
    else:
        d0 = jnp.asarray(problem.diffusion, L.dtype)
        d_faces = jnp.full((grid.cells - 1,), d0)
    phi = problem.gamma * L / d0
    return sg_tridiagonal(phi, d_faces, grid.h), phi


def tridiagonal_shifted_solve(op: tuple[Array, Array, Array], c: Array, rhs: Array) -> Array:
    """``u`` with ``(c I − A) u = rhs`` for the tridiagonal bands ``op = (lower, diag, upper)``
    of :func:`~fracsgd.ffpe.sg_tridiagonal` (exact, ``O(cells)``).

    The implicit step's linear system (``c`` is the step's leading Caputo weight over the
    implicit fraction), solved by ``jax.lax.linalg.tridiagonal_solve`` (Thomas elimination).
    The solver itself also restores the exact mass ``Σ u = Σ rhs / c`` after rounding; this
    function does not.

    Args:
        op: ``(lower, diag, upper)`` bands, each ``(cells,)``, as :func:`sg_tridiagonal`.
        c: the shift, a scalar (``c I − A`` nonsingular; ``c > 0`` for an SG operator).
        rhs: ``(cells,)`` right-hand side.

    Returns:
        ``(cells,)`` the solution ``u``.

    Examples:
        >>> import jax.numpy as jnp
        >>> from fracsgd.ffpe import sg_tridiagonal
        >>> phi = jnp.array([0.0, 1.0, 3.0, 2.0, 0.5])
        >>> op = sg_tridiagonal(phi, jnp.full(4, 0.7), 0.5)
        >>> rhs = jnp.array([1.0, 0.0, 0.0, 0.0, 0.0])
        >>> u = tridiagonal_shifted_solve(op, 2.0, rhs)
        >>> A = jnp.diag(op[1]) + jnp.diag(op[2][:-1], 1) + jnp.diag(op[0][1:], -1)
        >>> bool(jnp.abs(2.0 * u - A @ u - rhs).max() < 1e-6)  # the residual
        True
        >>> round(float(u.sum()), 5)  # columns of A sum to 0: Σu = Σrhs / c
        0.5
    """
    lower, diag, upper = op
    return jax.lax.linalg.tridiagonal_solve(-lower, c - diag, -upper, rhs[:, None])[:, 0]


def _mass_exact_tridiagonal_solve(op: tuple[Array, Array, Array], c: Array, rhs: Array) -> Array:
    """:func:`tridiagonal_shifted_solve` for a mass-conserving operator (the solver's SG bands,
    whose columns sum to zero), with the mass of its solution made exact.

    The exact solution has mass ``Σ u = Σ rhs / c``. The elimination's rounding does not keep
    it: in float32 a double well of 300 cells lost or gained ~1e-4 of its mass within 500
    steps. As :func:`~fracsgd.ffpe.cg_solve2d` does, ``u ← u + (Σ rhs / c − Σ u) |u| / Σ|u|``
    restores it, keeping every entry's sign, with a change whose 1-norm is the mass error
    (5e-7 there after 2 000 steps)."""
    return restore_mass(c, rhs, tridiagonal_shifted_solve(op, c, rhs))


def _discretise(problem: Problem, grid: Any) -> tuple[Any, Callable, Callable]:
    """``(op, shifted_solve, apply)`` for the march (module-level functions: static, so the
    compiled march is reused)."""
    if isinstance(grid, Grid2D):  # matrix-free SG on the 5-point stencil, Jacobi-CG solves
        return operator2d(problem, grid), shifted_solve2d, apply2d
    bands, _ = _operator(problem, grid)
    return bands, _mass_exact_tridiagonal_solve, apply_tridiagonal


# ------------------------------------------------------------------------------ saving


class _SavePlan(NamedTuple):
    ts: np.ndarray  # (S,) save times
    at_start: np.ndarray  # (S,) bool: saved from p0
    rows: np.ndarray  # (N, m) int: rows written at step n (S = dropped)
    theta: np.ndarray  # (N, m): u^{n−1} + θ (u^n − u^{n−1})


def _save_plan(ts: np.ndarray, save_at: Any) -> _SavePlan:
    n = ts.shape[0] - 1
    if save_at is None:
        times = ts
    elif isinstance(save_at, int | np.integer) and not isinstance(save_at, bool):
        save_at = int(save_at)
        if save_at <= 0:
            raise ValueError(f"save_at as an int (every k-th step) must be > 0, got {save_at}")
        idx = np.unique(np.concatenate([np.arange(0, n + 1, save_at), [n]]))
        times = ts[idx]
    else:
        try:
            if isinstance(save_at, str | bytes):  # np.asarray("1.0", float) would pass
                raise TypeError
            times = np.asarray(save_at, np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"save_at must be None, an int k, or a 1-D array of times, got {save_at!r:.60}"
            ) from err
        if times.ndim != 1 or times.size == 0:
            raise ValueError("save_at must be None, an int k, or a non-empty 1-D array of times")
        if not np.all(np.isfinite(times)) or np.any(np.diff(times) < 0):
            raise ValueError("save_at times must be finite and non-decreasing")
        if times[0] < 0 or times[-1] > ts[-1] * (1 + 1e-12):
            raise ValueError(f"save_at times must lie in [0, t_final={ts[-1]}]")
        times = np.minimum(times, ts[-1])
    s = times.shape[0]
    at_start = times <= 0
    step = np.maximum(np.searchsorted(ts, times, side="left"), 1)  # t_{n−1} < t ≤ t_n
    theta = np.clip((times - ts[step - 1]) / (ts[step] - ts[step - 1]), 0.0, 1.0)
    step = np.where(at_start, 0, step)
    m = max(1, int(np.max(np.bincount(step[~at_start], minlength=n + 1), initial=0)))
    rows = np.full((n, m), s, np.int32)
    thetas = np.ones((n, m))
    idx = np.flatnonzero(~at_start)  # steps are non-decreasing along the sorted times
    slot = idx - np.searchsorted(step[idx], step[idx], side="left") - idx[0] if idx.size else idx
    rows[step[idx] - 1, slot] = idx
    thetas[step[idx] - 1, slot] = theta[idx]
    return _SavePlan(times, at_start, rows, thetas)


# ------------------------------------------------------------------------------ the march


def _expand(v: Array, ndim: int) -> Array:
    return v.reshape(v.shape + (1,) * ndim)


def _soe_window(ts: np.ndarray, stepper: Stepper) -> tuple[float, float]:
    """The kernel arguments the fast history meets: ``[σ min τ_{n≥2}, T]`` (``σ = 1`` for L1,
    ``≥ ½`` for L2-1σ)."""
    tau = np.diff(ts)
    t_min = float(np.min(tau[1:] if tau.shape[0] > 1 else tau))
    if isinstance(stepper, L21Sigma):
        t_min *= 0.5
    # one L1 step has no history (t_min = T): any window will do, and the kernel needs t_min < T
    return t_min, max(float(ts[-1]), 2 * t_min)


@functools.partial(
    jax.jit, static_argnames=("shifted_solve", "apply", "stepper", "history", "cells_ndim")
)
def _march(
    op: Any,
    p0: Array,
    ts: Array,
    alpha: Array,
    soe_x: Array,
    soe_h: Array,
    save_rows: Array,
    save_theta: Array,
    save_at_start: Array,
    *,
    shifted_solve: Callable,
    apply: Callable,
    stepper: Stepper,
    history: History,
    cells_ndim: int,
) -> Array:
    """March ``p0`` over the mesh ``ts`` and return the saved states ``(S, *cells)``.

    Step ``n`` solves ``c_n δ_n + H_n = A(θ u^n + (1−θ) u^{n−1})`` for ``u^n`` with
    ``c_n = g_{n,n}`` and the history ``H_n = Σ_{k<n} g_{n,k} δ_k``, i.e.
    ``(c_n/θ I − A) u^n = (c_n u^{n−1} − H_n + (1−θ) A u^{n−1}) / θ``.
    """
    nd = cells_ndim
    num = ts.shape[0] - 1
    tau = ts[1:] - ts[:-1]
    theta = stepper.theta(alpha)
    inv_g2 = jnp.exp(-jax.lax.lgamma(2.0 - alpha))

    if isinstance(history, Direct):
        hist0: Any = jnp.zeros((num, *p0.shape), p0.dtype)
    else:
        s, w = soe_weights(soe_x, soe_h, alpha)
        hist0 = jnp.zeros(s.shape + p0.shape, p0.dtype)
        if isinstance(stepper, L21Sigma):
            hist0 = (hist0, jnp.zeros_like(p0))

    def memory(state, n):
        """``(c_n, H_n)``."""
        if isinstance(history, Direct):
            row = stepper.weights(ts, n, alpha)  # δ_k for k ≥ n are still zero in the state
            return row[n - 1], jnp.tensordot(row, state, axes=1)
        tau_n = tau[n - 1]
        if isinstance(stepper, L1):
            c = tau_n ** (-alpha) * inv_g2
            return c, jnp.tensordot(w * jnp.exp(-s * tau_n), state, axes=1)
        # L2-1σ: t_n* = t_{n−1} + σ τ_n; the interval n−1 is quadratic through u^n (δ_n)
        big_w, d_prev = state
        sig = 1 - alpha / 2
        c_local = (sig * tau_n) ** (1 - alpha) * inv_g2 / tau_n
        tp = tau[jnp.maximum(n - 2, 0)]
        decay = w * jnp.exp(-s * sig * tau_n)
        f1, f2 = phi1(s * tp), phi2(s * tp)
        has_past = n >= 2
        c_past = jnp.sum(decay * f2) * tp**2 * 2 / (tau_n * (tp + tau_n))
        known = jnp.tensordot(decay * jnp.exp(-s * tp), big_w, axes=1)
        known = known + jnp.sum(decay * (f1 - f2 * tp * 2 / (tp + tau_n))) * d_prev
        return c_local + jnp.where(has_past, c_past, 0.0), jnp.where(has_past, known, 0.0)

    def update(state, n, delta):
        if isinstance(history, Direct):
            return state.at[n - 1].set(delta)
        tau_n = tau[n - 1]
        if isinstance(stepper, L1):
            z = s * tau_n
            return _expand(jnp.exp(-z), nd) * state + _expand(phi1(z), nd) * delta[None]
        big_w, d_prev = state
        tp = tau[jnp.maximum(n - 2, 0)]
        z = s * tp
        d2 = 2 * (delta / tau_n - d_prev / tp) / (tp + tau_n)  # u'' on interval n−1
        new_w = (
            _expand(jnp.exp(-z), nd) * big_w
            + _expand(phi1(z), nd) * d_prev[None]
            + _expand(phi2(z) * tp**2, nd) * d2[None]
        )
        return jnp.where(n >= 2, new_w, big_w), delta

    buf0 = jnp.where(
        _expand(save_at_start, nd), p0[None], jnp.zeros((save_at_start.shape[0], *p0.shape))
    ).astype(p0.dtype)

    def step(carry, xs):
        u_prev, state, buf = carry
        n, rows, thetas = xs
        c, h = memory(state, n)
        rhs = c * u_prev - h
        if isinstance(stepper, L21Sigma):
            rhs = (rhs + (1 - theta) * apply(op, u_prev)) / theta
        u = shifted_solve(op, c / theta, rhs)
        delta = u - u_prev
        vals = u_prev[None] + _expand(thetas, nd) * delta[None]
        buf = buf.at[rows].set(vals, mode="drop")
        return (u, update(state, n, delta), buf), None

    xs = (jnp.arange(1, num + 1), save_rows, save_theta)
    (_, _, buf), _ = jax.lax.scan(step, (p0, hist0, buf0), xs)
    return buf


def solve(
    problem: Problem,
    grid: Grid1D | Grid2D,
    p0: Any,
    *,
    t_final: float,
    num_steps: int,
    save_at: Any = None,
    grading: float = 1.0,
    graded_until: float | None = None,
    stepper: Stepper = _L1,
    history: History = _DIRECT,
) -> Solution:
    """March the SGD-FFPE from ``p0`` to ``t_final`` (Caputo stepping, Scharfetter–Gummel).

    With :class:`L1` (the default) mass is conserved and positivity kept to rounding; with
    either stepper the discrete Gibbs state ``∝ exp(−γL/D)`` is a fixed point and mass is
    conserved. ``alpha``, ``diffusion`` and ``gamma`` may be traced: the function works under
    ``jax.vmap`` over problems and ``jax.grad`` in ``alpha`` (compiled once per shape, stepper
    and history).

    Args:
        problem: a :class:`Problem`.
        grid: a :class:`~fracsgd.ffpe.Grid1D` or :class:`~fracsgd.ffpe.Grid2D` (2-D: each
            implicit step is a Jacobi-CG solve to the tolerance of
            :func:`~fracsgd.ffpe.cg_solve2d`, mass and positivity kept exactly; a CG that
            does not converge gives ``NONFINITE``).
        p0: initial density at the cell centres, shape ``(cells,)`` (2-D: ``(nx, ny)``);
            non-negative with positive finite mass (it is not renormalised).
        t_final: final time > 0.
        num_steps: N > 0.
        save_at: ``None``: every mesh time (``N + 1`` states — ``O(N · cells)`` memory); an
            ``int`` ``k``: every ``k``-th mesh time and the last; or a 1-D array of times in
            ``[0, t_final]``, each saved as the linear interpolant between the two mesh times
            around it (the L1 scheme's own interpolant). Only the saved states are stored, so
            with ``history=SOE(...)`` memory does not grow with ``N``.
        grading: mesh grading ``r ≥ 1`` (``t_k = T (k/N)^r``; ``(2−α)/α`` is optimal for L1,
            ``2/α`` for L2-1σ).
        graded_until: if given, the graded mesh covers ``[0, graded_until]`` with ``N // 2``
            steps and the rest grow geometrically to ``t_final``
            (:func:`~fracsgd.ffpe.graded_mesh`).
        stepper: :class:`L1` (default) or :class:`L21Sigma`.
        history: :class:`Direct` (default; ``O(N²)``) or :class:`SOE` (``O(N · terms)``).

    Examples:
        >>> import jax.numpy as jnp
        >>> import fracsgd as fs
        >>> grid = fs.ffpe.Grid1D(-4.0, 4.0, 64)
        >>> p0 = jnp.exp(-grid.centers[:, 0] ** 2 * 8); p0 = p0 / (p0.sum() * grid.h)
        >>> sol = fs.ffpe.solve(fs.ffpe.Problem(alpha=0.6), grid, p0, t_final=1.0, num_steps=50)
        >>> bool(abs(sol.mass[-1] - 1) < 1e-5), int(sol.result), sol.p.shape
        (True, 0, (51, 64))
        >>> fast = fs.ffpe.solve(fs.ffpe.Problem(alpha=0.6), grid, p0, t_final=1.0,
        ...                      num_steps=50, history=fs.ffpe.SOE(1e-6), save_at=[0.5, 1.0])
        >>> fast.p.shape, bool(jnp.max(jnp.abs(fast.p[-1] - sol.p[-1])) < 1e-4)
        ((2, 64), True)
    """
    problem = _check_problem(problem)
    _check_strategies(stepper, history)
    if isinstance(grid, Grid2D):
        grid = check_grid2d(grid)
        p = _check_p0(p0, grid.cells)
    else:
        grid = check_grid(grid)
        p = _check_p0(p0, (grid.cells,))
    _check_functions_index_the_point(problem, grid)
    op, shifted_solve, apply = _discretise(problem, grid)
    return _run(
        problem,
        p,
        op,
        shifted_solve,
        apply,
        grid,
        t_final,
        num_steps,
        save_at,
        grading,
        graded_until,
        stepper,
        history,
    )


def _check_mesh_resolvable(ts: np.ndarray, dtype: Any, grading: float, num_steps: int) -> None:
    """The march runs in ``p0``'s dtype: every step relative to ``t_final`` must stay clear of
    that dtype's underflow (at least ``tiny/eps``: 1.4·10⁻³¹ in float32), or the Caputo weights
    lose their first steps to 0 and 0/0 (NaN). float64 meshes are checked by
    :func:`graded_mesh` itself."""
    info = np.finfo(dtype)
    floor = float(info.tiny) / float(info.eps)
    t_final = float(ts[-1])
    steps = np.diff(np.asarray(ts, dtype).astype(np.float64))
    smallest = float(np.min(steps)) / t_final
    if not smallest >= floor:
        raise ValueError(
            f"grading {grading:g} with num_steps {num_steps} gives a first step of "
            f"{smallest:.3g}·t_final, below what {np.dtype(dtype).name} resolves (≥ "
            f"{floor:.2g}·t_final): use a smaller grading or fewer steps, or run in float64 "
            "(jax.config.update('jax_enable_x64', True) and a float64 p0)"
        )


def _run(
    problem: Problem,
    p: Array,
    op: Any,
    shifted_solve: Callable,
    apply: Callable,
    grid: Any,
    t_final: float,
    num_steps: int,
    save_at: Any,
    grading: float,
    graded_until: float | None,
    stepper: Stepper,
    history: History,
) -> Solution:
    """Mesh, save plan, march and result codes — shared by every spatial discretisation."""
    refuse_traced_static("t_final", t_final, "the time mesh is built on the host")
    refuse_traced_static("save_at", save_at, "the save plan is built on the host")
    t_final = check_number("t_final", t_final, lo=0.0, lo_open=True)
    ts_np = graded_mesh(t_final, num_steps, grading, graded_until=graded_until)
    plan = _save_plan(ts_np, save_at)
    dtype = p.dtype
    _check_mesh_resolvable(ts_np, dtype, grading, num_steps)
    if isinstance(history, SOE):
        x, h = history.nodes(*_soe_window(ts_np, stepper))
    else:
        x, h = np.zeros(1), 1.0
    alpha = jnp.asarray(problem.alpha, dtype)
    saved = _march(
        op,
        p,
        jnp.asarray(ts_np, dtype),
        alpha,
        jnp.asarray(x, dtype),
        jnp.asarray(h, dtype),
        jnp.asarray(plan.rows),
        jnp.asarray(plan.theta, dtype),
        jnp.asarray(plan.at_start),
        shifted_solve=shifted_solve,
        apply=apply,
        stepper=stepper,
        history=history,
        cells_ndim=p.ndim,
    )
    cell_axes = tuple(range(1, saved.ndim))
    mass = jnp.sum(saved, axis=cell_axes) * grid.cell_volume
    # per saved time: a dip is measured against that time's own peak
    floor = -jnp.sqrt(jnp.finfo(saved.dtype).eps) * jnp.max(jnp.abs(saved), axis=cell_axes)
    result = jnp.where(jnp.any(jnp.min(saved, axis=cell_axes) < floor), NEGATIVE, SUCCESS)
    result = jnp.where(jnp.all(jnp.isfinite(saved)), result, NONFINITE)
    result = jnp.where(_parameters_ok(problem, grid), result, BAD_PARAMETER)
    centers = jnp.asarray(grid.centers, dtype)
    return Solution(
        jnp.asarray(plan.ts, dtype), saved, mass, result, centers, float(grid.cell_volume)
    )


def stationary(problem: Problem, grid: Grid1D | Grid2D) -> Array:
    """The stationary density: the null vector of the discrete operator (never by time stepping:
    relaxation is algebraic, ``E_α(−μ t^α)``), normalised to ``Σ p h = 1``.

    On a :class:`~fracsgd.ffpe.Grid2D` the null vector is ``∝ exp(−φ)`` itself, ``φ = γL/D_0``
    (every face flux vanishes on it; see :func:`fracsgd.ffpe._space2d.gibbs2d`), normalised to
    ``Σ p · cell_volume = 1``. Under ``vmap``/``jit`` over the parameters, a traced value out
    of range (``D ≤ 0``, ``α ∉ (0, 1]``, non-finite ``γ``) gives NaN everywhere.

    Examples:
        >>> import jax.numpy as jnp
        >>> import fracsgd as fs
        >>> grid = fs.ffpe.Grid1D(-5.0, 5.0, 101)
        >>> p = fs.ffpe.stationary(fs.ffpe.Problem(gamma=2.0), grid)
        >>> gibbs = jnp.exp(-2.0 * 0.5 * grid.centers[:, 0] ** 2)
        >>> bool(jnp.allclose(p, gibbs / (gibbs.sum() * grid.h), rtol=1e-5, atol=0))
        True
    """
    problem = _check_problem(problem)
    if isinstance(grid, Grid2D):
        grid = check_grid2d(grid)
        _check_functions_index_the_point(problem, grid)
        p2 = gibbs2d(operator2d(problem, grid), grid.cell_volume)
        return _check_stationary(jnp.where(_parameters_ok(problem, grid), p2, jnp.nan))
    grid = check_grid(grid)
    _check_functions_index_the_point(problem, grid)
    _, phi = _operator(problem, grid)
    # The 1-D operator's null space is spanned by the zero-flux vector: J_{i+½} = 0 gives
    # p_{i+1}/p_i = A[i+1, i]/A[i, i+1] = B(δ)/B(−δ) = e^{−δ} with δ = φ_{i+1} − φ_i, whatever
    # the face diffusivities, so the null vector is exp(−φ) itself, exact to rounding (a dense
    # solve loses accuracy in the tails). Taken from φ, not from the bands: B(±δ) underflows
    # for steep faces (|δ| ≳ 88 in float32) while exp(−(φ − min φ)) only lets tails reach 0.
    p = jnp.exp(-(phi - jnp.min(phi)))
    # traced parameters out of range (checked, with ValueError, when concrete): NaN, as solve
    # flags BAD_PARAMETER, never a plausible-looking density
    ok = _parameters_ok(problem, grid)
    return _check_stationary(jnp.where(ok, p / (jnp.sum(p) * grid.h), jnp.nan))


def _check_stationary(p: Array) -> Array:
    """Refuses a concrete non-finite stationary density (traced ones are returned as they are)."""
    if not isinstance(p, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(p))):
        raise ValueError(
            "the stationary density is not finite: gamma * potential / diffusion overflows on "
            "this grid (use a smaller gamma or domain, or float64)"
        )
    return p
