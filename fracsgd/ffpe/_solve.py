"""Time-fractional Fokker–Planck equation of SGD: ``D_t^α p = ∇·(D∇p + γ p∇L)`` (theory.md §4),
implicit L1 in time (:mod:`fracsgd.ffpe._caputo`) and Scharfetter–Gummel finite volumes in space
(:mod:`fracsgd.ffpe._space`), and the stationary state by a null-space solve."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fracsgd._types import Array
from fracsgd.ffpe._caputo import graded_mesh, l1_weights
from fracsgd.ffpe._space import (
    Grid1D,
    check_grid,
    potential_values,
    sg_tridiagonal,
)

SUCCESS = 0
NONFINITE = 1


class Problem(NamedTuple):
    """``D_t^α p = ∇·(D∇p + γ p∇L)``.

    Attributes:
        alpha: Caputo order in (0, 1] (``α = 2H = 2/d_w``; 1 is the ordinary equation).
        diffusion: ``D > 0``, a number or a function ``D(w)`` of a point ``w`` of shape
            ``(dim,)`` (then the form ``∇·(D(w)(∇p + p∇(γL/D_0)))`` is solved; see
            :mod:`fracsgd.ffpe._space`).
        gamma: the drift strength γ (the learning rate, "friction").
        potential: ``L(w)`` for a point of shape ``(dim,)``, returning a scalar.
    """

    alpha: Any = 0.5
    diffusion: Any = 1.0
    gamma: Any = 1.0
    potential: Callable[[Array], Array] = lambda w: 0.5 * jnp.sum(w**2)


class Solution(NamedTuple):
    """Densities at the mesh times.

    Attributes:
        ts: ``(N + 1,)`` times; ``p``: ``(N + 1, cells)`` densities; ``mass``: ``(N + 1,)``
            ``Σ p·h``; ``result``: ``SUCCESS`` (0) or ``NONFINITE`` (1), per problem under vmap.
        centers: ``(cells, 1)`` cell centres.
    """

    ts: Array
    p: Array
    mass: Array
    result: Array
    centers: Array

    def moment(self, k: int) -> Array:
        """``∫ w^k p dw`` at every time, ``(N + 1,)``."""
        w = self.centers[:, 0]
        h = self.centers[1, 0] - self.centers[0, 0]
        return jnp.sum(self.p * (w**k).reshape(1, -1), axis=-1) * h

    def msd(self, x0: float = 0.0) -> Array:
        """``∫ (w − x0)² p dw`` at every time."""
        w = self.centers[:, 0]
        h = self.centers[1, 0] - self.centers[0, 0]
        return jnp.sum(self.p * ((w - x0) ** 2).reshape(1, -1), axis=-1) * h


def _check_problem(problem: Any) -> Problem:
    if not isinstance(problem, Problem):
        raise ValueError(f"problem must be a fracsgd.ffpe.Problem, got {type(problem).__name__}")
    a = float(problem.alpha)
    if not 0 < a <= 1:
        raise ValueError(f"alpha must be in (0, 1], got {problem.alpha}")
    if not callable(problem.diffusion) and not float(problem.diffusion) > 0:
        raise ValueError(f"diffusion must be > 0, got {problem.diffusion}")
    if not math.isfinite(float(problem.gamma)):
        raise ValueError(f"gamma must be finite, got {problem.gamma}")
    if not callable(problem.potential):
        raise ValueError("potential must be a function L(w) of a point w of shape (dim,)")
    return problem


def _operator(problem: Problem, grid: Grid1D):
    L = potential_values(problem.potential, grid)
    if callable(problem.diffusion):
        d_cells = jax.vmap(problem.diffusion)(jnp.asarray(grid.centers))
        if d_cells.shape != (grid.cells,):
            raise ValueError("diffusion(w) must return a scalar for a point of shape (1,)")
        d0 = jnp.mean(d_cells)
        d_faces = 0.5 * (d_cells[1:] + d_cells[:-1])
    else:
        d0 = jnp.asarray(problem.diffusion, L.dtype)
        d_faces = jnp.full((grid.cells - 1,), d0)
    phi = problem.gamma * L / d0
    return sg_tridiagonal(phi, d_faces, grid.h), phi


@functools.partial(jax.jit, static_argnums=(1,))
def _l1_march(bands, n_steps, ts, alpha, p0):
    lower, diag, upper = bands
    hist0 = jnp.zeros((n_steps + 1, p0.shape[0]), p0.dtype).at[0].set(p0)

    def step(hist, n):
        a = l1_weights(ts, n, alpha)  # (N,), a[k−1] = a_{n,k}
        diffs = hist[1:] - hist[:-1]  # (N, cells); row k−1 = u^k − u^{k−1}
        past = jnp.arange(1, n_steps + 1) < n
        history = jnp.sum(jnp.where(past[:, None], a[:, None] * diffs, 0.0), axis=0)
        a_n = a[n - 1]
        prev = hist[n - 1]
        rhs = a_n * prev - history
        dl = -lower
        d = a_n - diag
        du = -upper
        u = jax.lax.linalg.tridiagonal_solve(dl, d, du, rhs[:, None])[:, 0]
        return hist.at[n].set(u), None

    hist, _ = jax.lax.scan(step, hist0, jnp.arange(1, n_steps + 1))
    return hist


def solve(
    problem: Problem, grid: Grid1D, p0: Any, *, t_final: float, num_steps: int, grading: float = 1.0
) -> Solution:
    """March the SGD-FFPE from ``p0`` to ``t_final`` with implicit L1 / Scharfetter–Gummel.

    Direct history (O(N²) work, O(N·cells) memory) — the reference method. Mass is conserved
    and positivity kept to rounding; the discrete Gibbs state ``∝ exp(−γL/D)`` is a fixed
    point.

    Args:
        problem: a :class:`Problem`.
        grid: a :class:`~fracsgd.ffpe.Grid1D`.
        p0: initial density at the cell centres, shape ``(cells,)``; non-negative with positive
            finite mass (it is not renormalised).
        t_final: final time > 0.
        num_steps: N > 0.
        grading: mesh grading ``r ≥ 1`` (``t_k = T (k/N)^r``; ``(2−α)/α`` is optimal for L1).

    Examples:
        >>> import jax.numpy as jnp
        >>> import fracsgd as fs
        >>> grid = fs.ffpe.Grid1D(-4.0, 4.0, 64)
        >>> p0 = jnp.exp(-grid.centers[:, 0] ** 2 * 8); p0 = p0 / (p0.sum() * grid.h)
        >>> sol = fs.ffpe.solve(fs.ffpe.Problem(alpha=0.6), grid, p0, t_final=1.0, num_steps=50)
        >>> bool(abs(sol.mass[-1] - 1) < 1e-5), int(sol.result)
        (True, 0)
    """
    problem = _check_problem(problem)
    grid = check_grid(grid)
    p = jnp.asarray(p0)
    if p.shape != (grid.cells,):
        raise ValueError(f"p0 must have shape ({grid.cells},), got {p.shape}")
    p_np = np.asarray(p, np.float64)
    if not np.all(np.isfinite(p_np)) or np.any(p_np < 0) or not p_np.sum() > 0:
        raise ValueError("p0 must be finite, non-negative and have positive mass")
    ts = jnp.asarray(graded_mesh(t_final, num_steps, grading), p.dtype)
    bands, _ = _operator(problem, grid)
    hist = _l1_march(bands, int(num_steps), ts, jnp.asarray(problem.alpha, p.dtype), p)
    mass = jnp.sum(hist, axis=1) * grid.h
    result = jnp.where(jnp.all(jnp.isfinite(hist)), SUCCESS, NONFINITE)
    return Solution(ts, hist, mass, result, jnp.asarray(grid.centers, p.dtype))


def stationary(problem: Problem, grid: Grid1D) -> Array:
    """The stationary density: the null vector of the discrete operator (never by time stepping:
    relaxation is algebraic, ``E_α(−μ t^α)``), normalised to ``Σ p h = 1``.

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
    grid = check_grid(grid)
    bands, _ = _operator(problem, grid)
    lower, _, upper = bands
    # The 1-D operator's null space is spanned by the zero-flux vector: J_{i+½} = 0 gives
    # p_{i+1}/p_i = A[i+1, i]/A[i, i+1] (= B(δ)/B(−δ) = e^{−δ}); accumulated in logs, this is
    # the exact null vector to rounding, where a dense solve loses accuracy in the tails.
    log_ratio = jnp.log(lower[1:]) - jnp.log(upper[:-1])
    log_p = jnp.concatenate([jnp.zeros(1, log_ratio.dtype), jnp.cumsum(log_ratio)])
    p = jnp.exp(log_p - jnp.max(log_p))
    return p / (jnp.sum(p) * grid.h)
