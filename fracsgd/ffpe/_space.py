"""Finite-volume Scharfetter–Gummel (Chang–Cooper) drift–diffusion on cell-centred grids with
zero-flux walls (theory.md §4).

The equation (sign decision of theory.md §4, so that the stationary state is the Gibbs state)::

    ∂_t p = ∇·( D ∇p + γ p ∇L ) = ∇·( D (∇p + p ∇φ) ),   φ = γ L / D   (constant D)

Flux between neighbouring cells ``i → i+1`` at distance ``h`` (Scharfetter & Gummel 1969)::

    J_{i+½} = (D/h) [ B(δ) p_i − B(−δ) p_{i+1} ],   δ = φ_{i+1} − φ_i,   B(x) = x / (e^x − 1)

It vanishes exactly on ``p ∝ e^{−φ}``, so the discrete Gibbs state is an exact fixed point; the
operator has non-negative off-diagonals and zero column sums (mass conservation, positivity
with implicit time stepping). With a space-dependent ``D(w)`` we solve
``∂_t p = ∇·(D(w) (∇p + p ∇φ))`` with ``φ = γL/D_0`` (``D_0`` = the problem's
``reference_diffusion``, or when it is None the mean of ``D`` over the grid's cell centres,
which then depends on the grid's extent), whose stationary state is ``∝ e^{−γL/D_0}``; the
alternative
``∇·(D∇p + γp∇L)`` has a different stationary state and is not what this solver solves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fracsgd._types import Array


class Grid1D(NamedTuple):
    """Cell-centred 1-D grid on ``[lo, hi]`` with ``cells`` cells and zero-flux walls.

    Examples:
        >>> g = Grid1D(-1.0, 1.0, 4)
        >>> g.h, g.centers[:, 0].tolist(), g.cell_volume
        (0.5, [-0.75, -0.25, 0.25, 0.75], 0.5)
    """

    lo: float
    hi: float
    cells: int

    @property
    def h(self) -> float:
        c = self.cells
        if isinstance(c, bool) or not isinstance(c, int | np.integer) or c < 1:
            raise ValueError(f"grid.cells must be a positive integer, got {c!r}")
        return (self.hi - self.lo) / c

    @property
    def centers(self) -> np.ndarray:
        """``(cells, 1)`` cell centres."""
        h = self.h  # checks cells
        return (self.lo + (np.arange(self.cells) + 0.5) * h)[:, None]

    @property
    def cell_volume(self) -> float:
        return self.h


def check_grid(grid: Any) -> Grid1D:
    if not isinstance(grid, Grid1D):
        raise ValueError(f"grid must be a fracsgd.ffpe.Grid1D, got {type(grid).__name__}")
    if isinstance(grid.cells, bool) or not isinstance(grid.cells, int | np.integer):
        raise ValueError(f"grid.cells must be an integer >= 3, got {grid.cells!r}")
    if grid.cells < 3:
        raise ValueError(f"grid.cells must be an integer >= 3, got {grid.cells!r}")
    grid = grid._replace(cells=int(grid.cells))
    try:
        lo, hi = float(grid.lo), float(grid.hi)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"grid.lo and grid.hi must be numbers, got {grid.lo!r}, {grid.hi!r}"
        ) from err
    if not (
        np.isfinite(lo) and np.isfinite(hi) and hi > lo and np.isfinite((hi - lo) / grid.cells)
    ):
        raise ValueError(f"grid needs finite hi > lo, got lo={grid.lo}, hi={grid.hi}")
    return grid


def bernoulli(x: Array) -> Array:
    """``B(x) = x/(e^x − 1)``, with ``B(0) = 1`` and no cancellation near 0.

    The Bernoulli function of the Scharfetter–Gummel flux (Scharfetter & Gummel 1969, "Large-
    signal analysis of a silicon Read diode oscillator", IEEE Trans. Electron Devices 16, 64;
    module docstring). Below ``|x| = 10⁻⁶`` it is the series ``1 − x/2 + x²/12`` of the
    Bernoulli-number generating function ``x/(e^x − 1) = Σ B_n xⁿ/n!`` (DLMF 24.2.1; the next
    term, ``−x⁴/720``, is below 10⁻²⁶); above, ``x/expm1(x)``.

    Args:
        x: array (elementwise).

    Returns:
        ``B(x)``, positive, decreasing, with ``B(−x) = B(x) + x``.

    Examples:
        >>> import math
        >>> float(bernoulli(0.0)), round(float(bernoulli(math.log(2))), 6)  # B(log 2) = log 2
        (1.0, 0.693147)
        >>> float(bernoulli(-3.0) - bernoulli(3.0))  # B(−x) − B(x) = x
        3.0
    """
    small = jnp.abs(x) < 1e-6
    safe = jnp.where(small, 1.0, x)
    return jnp.where(small, 1 - x / 2 + x * x / 12, safe / jnp.expm1(safe))


def potential_values(potential: Callable, grid: Grid1D) -> Array:
    """``L`` at the cell centres (vmapped over points of shape ``(dim,)``)."""
    centers = jnp.asarray(grid.centers)
    vals = jax.vmap(potential)(centers)
    if vals.shape != (grid.cells,):
        raise ValueError(
            f"potential must map a point of shape (1,) to a scalar; got output shape "
            f"{vals.shape[1:]} per point"
        )
    return check_potential_values(vals)


def check_point_indexing(fn: Callable, name: str, point: Array) -> None:
    """Raises ValueError when ``fn`` indexes its point ``w`` beyond ``point.shape``.

    JAX clamps out-of-range indices silently: a potential written for two dimensions
    (``w[0]**2 + w[1]**2``) on a 1-D grid would read ``w[1]`` as ``w[0]`` and solve another
    equation. One evaluation at ``point`` under :func:`jax.experimental.checkify` index checks
    finds it; out-of-range lookups into other arrays (a closed-over table read with
    ``mode="clip"``) are not the point's and pass, unless the table has the point's shape. Best
    effort: a function that cannot be evaluated there on its own (e.g. it closes over traced
    values) is left to the other checks.

    Examples:
        >>> import jax.numpy as jnp
        >>> check_point_indexing(lambda w: w[0] ** 2 + w[1] ** 2, "potential", jnp.zeros(1))
        Traceback (most recent call last):
        ...
        ValueError: potential indexes its point w (shape (1,)) out of range: index 1 is out of bounds for axis 0 with size 1 (JAX would clamp it silently); is the grid's dimension the one potential is written for?
    """  # noqa: E501
    from jax.experimental import checkify

    try:
        err, _ = checkify.checkify(fn, errors=checkify.index_checks)(point)
        msg = err.get()
    except Exception:  # best effort; the evaluation proper reports real errors
        return
    # only lookups into an array of the point's shape: a clamped lookup into a closed-over
    # table (mode="clip"/"fill", jnp.take) is the function's own business
    if msg and f"array of shape {tuple(point.shape)}:" in msg:
        detail = msg.strip().split(": ", 1)[-1].rstrip(".")
        raise ValueError(
            f"{name} indexes its point w (shape {tuple(point.shape)}) out of range: {detail} "
            f"(JAX would clamp it silently); is the grid's dimension the one {name} is written "
            "for?"
        )


def check_potential_values(vals: Array) -> Array:
    """Refuses concrete potential values that are NaN or inf (a tracer is passed through)."""
    if not isinstance(vals, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(vals))):
        raise ValueError("potential must be finite at every cell centre of the grid")
    return vals


def sg_tridiagonal(phi: Array, diffusion_faces: Array, h: float):
    """The SG operator ``A`` (``dp/dt = A p``) as tridiagonal bands ``(lower, diag, upper)``.

    Face ``i+½`` carries the exponentially fitted flux
    ``J = (D/h)[B(δ) p_i − B(−δ) p_{i+1}]``, ``δ = φ_{i+1} − φ_i``, ``B`` = :func:`bernoulli`
    (Scharfetter & Gummel 1969; for Fokker–Planck equations Chang & Cooper 1970, J. Comput.
    Phys. 6, 1; module docstring, theory.md §4), divided by the cell width ``h``; the walls
    carry no flux. So the columns of ``A`` sum to zero (mass conservation), its off-diagonals
    are ``≥ 0``, and ``A e^{−φ} = 0`` (the discrete Gibbs state is stationary).

    Args:
        phi: ``(cells,)`` the potential ``φ = γL/D_0`` at the cell centres.
        diffusion_faces: ``D`` at the ``cells − 1`` interior faces.
        h: cell width.

    Returns:
        ``(lower, diag, upper)``, each ``(cells,)``: ``lower[i] = A[i, i−1]`` (``lower[0] = 0``),
        ``diag[i] = A[i, i]``, ``upper[i] = A[i, i+1]`` (``upper[-1] = 0``).

    Examples:
        >>> import jax.numpy as jnp
        >>> lo, d, up = sg_tridiagonal(jnp.zeros(4), jnp.ones(3), 1.0)  # φ = 0: the Laplacian
        >>> lo.tolist(), d.tolist(), up.tolist()  # with zero-flux walls
        ([0.0, 1.0, 1.0, 1.0], [-1.0, -2.0, -2.0, -1.0], [1.0, 1.0, 1.0, 0.0])
        >>> phi = jnp.array([0.0, 1.0, 3.0, 2.0, 0.5])
        >>> lo, d, up = sg_tridiagonal(phi, jnp.full(4, 0.7), 0.5)
        >>> A = jnp.diag(d) + jnp.diag(up[:-1], 1) + jnp.diag(lo[1:], -1)
        >>> bool(jnp.abs(A @ jnp.exp(-phi)).max() < 1e-5), bool(jnp.abs(A.sum(0)).max() < 1e-5)
        (True, True)
    """
    delta = phi[1:] - phi[:-1]
    coef = diffusion_faces / h**2
    out_right = coef * bernoulli(delta)  # from cell i to i+1 (uses p_i)
    in_left = coef * bernoulli(-delta)  # from cell i+1 to i (uses p_{i+1})
    n = phi.shape[0]
    diag = jnp.zeros(n).at[:-1].add(-out_right).at[1:].add(-in_left)
    upper = jnp.zeros(n).at[:-1].set(in_left)  # A[i, i+1]
    lower = jnp.zeros(n).at[1:].set(out_right)  # A[i+1, i]
    return lower, diag, upper


def apply_tridiagonal(bands, p: Array) -> Array:
    lower, diag, upper = bands
    out = diag * p
    out = out.at[1:].add(lower[1:] * p[:-1])
    return out.at[:-1].add(upper[:-1] * p[1:])


def restore_mass(c: Array, rhs: Array, u: Array) -> Array:
    """``u`` of ``(c I − A) u = rhs`` for a mass-conserving ``A`` (zero column sums), moved
    to its exact mass ``Σ u = Σ rhs / c``: ``u ← u + (Σ rhs / c − Σ u) |u| / Σ|u|``, which
    keeps every entry's sign and changes ``u`` by the mass error in 1-norm."""
    abs_mass = jnp.sum(jnp.abs(u))
    correction = (jnp.sum(rhs) / c - jnp.sum(u)) / jnp.where(abs_mass > 0, abs_mass, 1.0)
    return u + correction * jnp.abs(u)


def check_diffusion_values(d: Array) -> None:
    """Refuses a concrete diffusion coefficient ``D(w)`` that is not finite and positive at
    every cell centre (traced values pass: under ``vmap`` the solve's result code is then
    ``BAD_PARAMETER``)."""
    if not isinstance(d, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(d) & (d > 0))):
        finite = bool(jnp.all(jnp.isfinite(d)))
        got = f"a minimum of {float(jnp.min(d))}" if finite else "a non-finite value"
        raise ValueError(f"diffusion(w) must be finite and > 0 at every cell centre, got {got}")
