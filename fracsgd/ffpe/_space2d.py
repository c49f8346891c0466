"""Scharfetter–Gummel (Chang–Cooper) finite volumes on 2-D cell-centred grids with zero-flux
walls, and the shifted solves ``(c I − A) u = rhs`` of implicit time stepping by conjugate
gradients on the symmetrised operator (theory.md §4).

The operator is the 1-D one of :mod:`fracsgd.ffpe._space` on the 5-point stencil::

    ∂_t p = ∇·( D(w) (∇p + p ∇φ) ),   φ = γ L / D_0,

with ``D_0 = D`` for a constant diffusion and, for ``D(w)``, the problem's
``reference_diffusion`` or (when None) the mean of ``D(w)`` over the cell centres (the form
whose stationary state is ``∝ e^{−γL/D_0}``; ``∇·(D∇p + γp∇L)`` has a different one and is
not what this module solves). Across every interior face between
cells ``P`` and ``Q = P + e_x`` (or ``P + e_y``) at distance ``h``, with ``δ = φ_Q − φ_P``::

    J_{P→Q} = (D_face/h) [ B(δ) p_P − B(−δ) p_Q ],   B(x) = x / (e^x − 1),

``D_face`` the mean of ``D`` at the two centres. Walls carry no flux. ``A`` has non-negative
off-diagonals and zero column sums (mass conservation; with implicit steps, positivity), and
every face flux vanishes on ``p ∝ e^{−φ}``, so the discrete Gibbs state is an exact null vector.

``A`` is self-adjoint in the weight ``e^{φ}``: ``S = e^{φ/2} A e^{−φ/2}`` (diagonal scalings)
has the diagonal of ``A`` and the symmetric off-diagonals
``(D_face/h²) B(δ) e^{δ/2} = (D_face/h²) (δ/2)/sinh(δ/2)``, and is negative semi-definite, so
``c I − S`` is symmetric positive definite for ``c > 0``: :func:`shifted_solve2d` solves it by
Jacobi-preconditioned conjugate gradients (see there for tolerance, preconditioner and the
post-processing that keeps mass and positivity exact).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fracsgd._types import Array
from fracsgd.ffpe._space import (
    bernoulli,
    check_diffusion_values,
    check_potential_values,
    restore_mass,
)


class Grid2D(NamedTuple):
    """Cell-centred grid on ``[x0, x1] × [y0, y1]`` with ``cells = (nx, ny)`` cells and
    zero-flux walls.

    Examples:
        >>> grid = Grid2D(lo=(-1.0, 0.0), hi=(1.0, 1.0), cells=(4, 5))
        >>> grid.centers.shape, grid.h, grid.cell_volume
        ((4, 5, 2), (0.5, 0.2), 0.1)
    """

    lo: tuple[float, float]
    hi: tuple[float, float]
    cells: tuple[int, int]

    @property
    def h(self) -> tuple[float, float]:
        """``(hx, hy)`` cell widths."""
        return (
            (self.hi[0] - self.lo[0]) / self.cells[0],
            (self.hi[1] - self.lo[1]) / self.cells[1],
        )

    @property
    def centers(self) -> np.ndarray:
        """``(nx, ny, 2)`` cell centres; ``centers[i, j] = (x_i, y_j)``."""
        hx, hy = self.h
        x = self.lo[0] + (np.arange(self.cells[0]) + 0.5) * hx
        y = self.lo[1] + (np.arange(self.cells[1]) + 0.5) * hy
        return np.stack(np.meshgrid(x, y, indexing="ij"), axis=-1)

    @property
    def cell_volume(self) -> float:
        hx, hy = self.h
        return hx * hy


def check_grid2d(grid: Any) -> Grid2D:
    """Validate a :class:`Grid2D` (``ValueError`` naming the argument)."""
    if not isinstance(grid, Grid2D):
        raise ValueError(f"grid must be a fracsgd.ffpe.Grid2D, got {type(grid).__name__}")
    for name in ("lo", "hi", "cells"):
        value = getattr(grid, name)
        if isinstance(value, str | bytes) or not hasattr(value, "__len__") or len(value) != 2:
            raise ValueError(f"grid.{name} must have 2 entries, got {getattr(grid, name)!r}")
    for n in grid.cells:
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 3:
            raise ValueError(f"grid.cells must be two integers >= 3, got {grid.cells!r}")
    for a, b in zip(grid.lo, grid.hi, strict=True):
        try:
            a, b = float(a), float(b)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"grid.lo and grid.hi must hold numbers, got {grid.lo!r}, {grid.hi!r}"
            ) from err
        if not (np.isfinite(a) and np.isfinite(b) and b > a and np.isfinite(b - a)):
            raise ValueError(f"grid needs finite hi > lo per axis, got lo={grid.lo}, hi={grid.hi}")
    return Grid2D(
        (float(grid.lo[0]), float(grid.lo[1])),
        (float(grid.hi[0]), float(grid.hi[1])),
        (int(grid.cells[0]), int(grid.cells[1])),
    )


class SG2D(NamedTuple):
    """The 2-D Scharfetter–Gummel operator ``A`` (``dp/dt = A p``), matrix-free: a pytree of
    face coefficients (``A[Q, P]`` is the rate from cell ``P`` into its neighbour ``Q``).

    Attributes:
        out_x: ``(nx − 1, ny)``, ``A[(i+1, j), (i, j)] = (D/hx²) B(δ)``.
        in_x: ``(nx − 1, ny)``, ``A[(i, j), (i+1, j)] = (D/hx²) B(−δ)``.
        out_y: ``(nx, ny − 1)``, ``A[(i, j+1), (i, j)]``.
        in_y: ``(nx, ny − 1)``, ``A[(i, j), (i, j+1)]``.
        phi: ``(nx, ny)``, the reduced potential ``φ = γL/D_0`` (the symmetrising weight).

    Examples:
        >>> import jax.numpy as jnp
        >>> phi = jnp.arange(12.0).reshape(4, 3) % 5 * 0.3
        >>> op = sg_operator2d(phi, 0.7, (0.5, 1.0))
        >>> op.out_x.shape, op.in_y.shape
        ((3, 3), (4, 2))
        >>> bool(jnp.abs(apply2d(op, jnp.exp(-phi))).max() < 1e-5)  # Gibbs state: A e^{−φ} = 0
        True
    """

    out_x: Array
    in_x: Array
    out_y: Array
    in_y: Array
    phi: Array


def sg_operator2d(phi: Array, diffusion: Any, h: tuple[float, float]) -> SG2D:
    """The SG operator for the reduced potential ``phi`` ``(nx, ny)`` and ``diffusion``, a
    scalar or ``D`` at the cell centres ``(nx, ny)`` (face values: the mean of the two
    neighbours), on cells of widths ``h = (hx, hy)``.

    Examples:
        >>> import jax.numpy as jnp
        >>> op = sg_operator2d(jnp.zeros((4, 3)), 2.0, (0.5, 1.0))  # φ = 0: 2·Laplacian
        >>> op.out_x.shape, op.out_y.shape, float(op.out_x[0, 0]), float(op.out_y[0, 0])
        ((3, 3), (4, 2), 8.0, 2.0)
    """
    phi = jnp.asarray(phi)
    d = jnp.broadcast_to(jnp.asarray(diffusion, phi.dtype), phi.shape)
    dx = phi[1:, :] - phi[:-1, :]
    dy = phi[:, 1:] - phi[:, :-1]
    cx = 0.5 * (d[1:, :] + d[:-1, :]) / h[0] ** 2
    cy = 0.5 * (d[:, 1:] + d[:, :-1]) / h[1] ** 2
    return SG2D(
        cx * bernoulli(dx), cx * bernoulli(-dx), cy * bernoulli(dy), cy * bernoulli(-dy), phi
    )


def diagonal2d(op: SG2D) -> Array:
    """The diagonal of ``A`` (minus the total outflow rate of each cell), ``(nx, ny)``."""
    diag = jnp.zeros_like(op.phi)
    diag = diag.at[:-1, :].add(-op.out_x).at[1:, :].add(-op.in_x)
    return diag.at[:, :-1].add(-op.out_y).at[:, 1:].add(-op.in_y)


def apply2d(op: SG2D, u: Array) -> Array:
    """``A u`` for ``u`` of shape ``(nx, ny)``, in flux form (the face fluxes leave one cell
    and enter the other, so ``Σ A u = 0`` to rounding).

    Examples:
        >>> import jax.numpy as jnp
        >>> grid = Grid2D((-2.0, -2.0), (2.0, 2.0), (6, 5))
        >>> phi = jnp.asarray(0.5 * (grid.centers**2).sum(-1), jnp.float32)
        >>> op = sg_operator2d(phi, 0.7, grid.h)
        >>> u = jnp.arange(30.0).reshape(6, 5)
        >>> bool(abs(apply2d(op, u).sum()) < 1e-3)  # mass conserved
        True
        >>> bool(jnp.abs(apply2d(op, jnp.exp(-phi))).max() < 1e-5)  # the Gibbs null vector
        True
    """
    jx = op.out_x * u[:-1, :] - op.in_x * u[1:, :]  # net flux (i, j) → (i+1, j)
    jy = op.out_y * u[:, :-1] - op.in_y * u[:, 1:]
    out = jnp.zeros_like(u).at[:-1, :].add(-jx).at[1:, :].add(jx)
    return out.at[:, :-1].add(-jy).at[:, 1:].add(jy)


def _apply_transpose(op: SG2D, diag: Array, u: Array) -> Array:
    """``Aᵀ u`` (``Aᵀ[Q, P] = A[P, Q]``: each face's two rates swapped; the same diagonal)."""
    out = diag * u
    out = out.at[1:, :].add(op.in_x * u[:-1, :]).at[:-1, :].add(op.out_x * u[1:, :])
    return out.at[:, 1:].add(op.in_y * u[:, :-1]).at[:, :-1].add(op.out_y * u[:, 1:])


class CGInfo(NamedTuple):
    """Diagnostics of :func:`cg_solve2d`: ``converged`` (the CG residual met the tolerance),
    ``iterations``, and the true relative residual ``‖rhs − (cI − A)u‖₂/‖rhs‖₂`` of the final
    iterate (before the post-processing), recomputed from it; it can sit above the recursively
    updated one by rounding, ``O(ε κ)``."""

    converged: Array
    iterations: Array
    residual: Array


def default_rtol(dtype: Any) -> float:
    """The CG tolerance used by :func:`shifted_solve2d`: ``1e-11`` in float64, ``1e-5`` in
    float32 (a few hundred rounding units times the condition numbers of implicit steps)."""
    return 1e-11 if jnp.dtype(dtype) == jnp.float64 else 1e-5


def default_max_iter(cells: tuple[int, ...]) -> int:
    """``30·max(nx, ny)`` CG iterations: Jacobi-CG needs ``O(√κ log(1/rtol))`` and
    ``√κ ≲ max(nx, ny)`` for the shifted SG operator, ``κ ≤ 1 + 8D/(c h²)``."""
    return 30 * max(cells)


@functools.partial(jax.jit, static_argnames=("rtol", "max_iter"))
def cg_solve2d(
    op: SG2D, c: Array, rhs: Array, *, rtol: float | None = None, max_iter: int | None = None
) -> tuple[Array, CGInfo]:
    """Solve ``(c I − A) u = rhs`` (``c > 0``) by Jacobi-preconditioned conjugate gradients on
    the symmetrised system, with diagnostics.

    With ``E = diag(e^{φ})``: ``(c I − S) v = E^{1/2} rhs``, ``u = E^{−1/2} v``, ``S`` the
    symmetric form of ``A`` (module docstring). CG minimises the error in the energy norm of
    ``c I − S``, a norm weighted by ``e^{φ}`` that favours the tails of a density; the stopping
    test is therefore on the residual of the original, unweighted system,
    ``‖rhs − (cI − A)u‖₂ ≤ rtol ‖rhs‖₂`` (a test in the weighted norm leaves the bulk of the
    density up to ``e^{Δφ/2}`` times less accurate). The error is then at most
    ``κ · rtol`` relative, ``κ ≤ 1 + 2 max|diag A| / c``; rounding limits the true residual to
    about ``ε κ``. The iteration is carried out in ``u`` itself with the inner products
    ``Σ x y e^{φ}`` formed in logs (mathematically the CG iterates on ``S``), so no range of
    ``φ`` overflows or flushes the bulk of a density, in float32 too. The initial guess is
    ``rhs / c`` (exact when ``rhs`` is a multiple of the Gibbs state, which therefore passes
    through unchanged).

    Preconditioner: Jacobi, ``1/(c − diag A)``. It is free, keeps the solve matrix-free and
    vmappable, and removes the spread of the diagonal, which is large where ``|∇φ|`` or ``D``
    is (the confinement part of ``S``): on a 64 × 64 double well (``φ`` up to 100, ``c`` from
    0.1 to 10) it saves 25–40 % of the iterations (about 3·max(nx, ny) remain at rtol 1e-11),
    and it is neutral for weak drift. A fast-Poisson (DCT) preconditioner would remove the
    Laplacian part of the iterations but not the potential part, which dominates for strong
    drift; Jacobi is the robust, simplest choice.

    Post-processing (both exact properties of the true solution, neither moving the iterate
    by more than its error): the exact solution has mass ``Σ u = Σ rhs / c`` (zero column
    sums of ``A``), and is non-negative when ``rhs`` is (``c I − A`` is an M-matrix). When
    ``rhs ≥ 0`` to rounding the iterate is projected onto ``u ≥ 0`` (which can only reduce each
    entry's error); then ``u ← u + (Σ rhs / c − Σ u) |u| / Σ|u|`` restores the mass exactly,
    keeping every entry's sign, with a change whose 1-norm is ``|Σ (u − u_exact)|``.

    Differentiable in ``op``, ``c`` and ``rhs`` (forward and reverse mode) by implicit
    differentiation (:func:`jax.lax.custom_linear_solve`): the tangent and adjoint systems are
    solved by the same CG (the adjoint ``c I − Aᵀ = E (c I − A) E^{−1}`` with ``E^{−1/2}`` in
    place of ``E^{1/2}``), never by differentiating the iterations.

    Args:
        op: an :class:`SG2D`.
        c: the shift, ``> 0`` (traced).
        rhs: ``(nx, ny)``.
        rtol: tolerance; :func:`default_rtol` by default (static).
        max_iter: iteration cap; :func:`default_max_iter` by default (static).

    Returns:
        ``(u, CGInfo)``.

    Examples:
        >>> import jax.numpy as jnp
        >>> grid = Grid2D((-1.0, -1.0), (1.0, 1.0), (10, 10))
        >>> op = sg_operator2d(jnp.asarray((grid.centers**2).sum(-1), jnp.float32), 1.0, grid.h)
        >>> u, info = cg_solve2d(op, 5.0, jnp.ones((10, 10)))
        >>> bool(info.converged), bool(info.residual < 1e-4), round(float(u.sum()), 4)  # Σrhs/c
        (True, True, 20.0)
    """
    rtol = default_rtol(rhs.dtype) if rtol is None else float(rtol)
    max_iter = default_max_iter(rhs.shape) if max_iter is None else int(max_iter)
    c = jnp.asarray(c, rhs.dtype)

    def matvec(u):
        return c * u - apply2d(op, u)

    def solve(_, b):
        return _postprocess(c, b, *_cg(op, c, b, rtol, max_iter, transpose=False))

    def transpose_solve(_, b):
        return _cg(op, c, b, rtol, max_iter, transpose=True)

    # derivatives by the implicit function theorem (CG's while_loop is not differentiated);
    # the adjoint system (c I − Aᵀ) is the same CG with the weight e^{−φ}
    return jax.lax.custom_linear_solve(matvec, rhs, solve, transpose_solve, has_aux=True)


def _wdot(x: Array, y: Array, log_w: Array) -> tuple[Array, Array]:
    """``Σ x y e^{log_w}`` as ``(s, T)`` with value ``s e^{T}``, formed in logs: the weight
    ``e^{±φ}`` spans any range without overflow and without flushing the density's bulk."""
    t = jnp.log(jnp.abs(x)) + jnp.log(jnp.abs(y)) + log_w
    top = jnp.max(t)
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    return jnp.sum(jnp.sign(x) * jnp.sign(y) * jnp.exp(t - top)), top


def _ratio(a: tuple[Array, Array], b: tuple[Array, Array]) -> Array:
    return a[0] / b[0] * jnp.exp(a[1] - b[1])


def _cg(
    op: SG2D, c: Array, rhs: Array, rtol: float, max_iter: int, *, transpose: bool
) -> tuple[Array, CGInfo]:
    """Jacobi-CG for ``(c I − A) u = rhs`` (``transpose``: ``(c I − Aᵀ) u = rhs``), without
    post-processing.

    CG on the symmetrised system ``(c I − S) v = E^{1/2} rhs``, ``v = E^{1/2} u``, carried out
    in the variable ``u`` itself: the iterates are those of CG on ``S``, with the inner
    products ``⟨x, y⟩_E = Σ x y e^{φ}`` (in which ``A`` is self-adjoint) formed in logs. So the
    vectors keep the density's own scale (in ``v`` a density's bulk and tails differ by an
    extra ``e^{Δφ/2}``, which float32 cannot hold for ``Δφ`` beyond ≈ 170). ``Aᵀ = E A E^{−1}``
    is self-adjoint in the weight ``e^{−φ}``: the transpose is the same CG with ``−φ``.
    """
    log_w = -op.phi if transpose else op.phi
    log_w = log_w - jnp.min(log_w)
    diag = diagonal2d(op)

    def matvec(u):
        return c * u - (_apply_transpose(op, diag, u) if transpose else apply2d(op, u))

    minv = 1.0 / (c - diag)
    tol2 = rtol**2 * jnp.sum(rhs * rhs)
    x0 = rhs / c
    r0 = rhs - matvec(x0)
    z0 = minv * r0
    init = (x0, r0, z0, _wdot(r0, z0, log_w), jnp.sum(r0 * r0), jnp.zeros((), jnp.int32))

    def cond(state):
        _, _, _, _, rr, k = state
        return (rr > tol2) & (k < max_iter)

    def body(state):
        x, r, p, rz, _, k = state
        ap = matvec(p)
        step = _ratio(rz, _wdot(p, ap, log_w))
        x = x + step * p
        r = r - step * ap
        z = minv * r
        rz_new = _wdot(r, z, log_w)
        return x, r, z + _ratio(rz_new, rz) * p, rz_new, jnp.sum(r * r), k + 1

    x, _, _, _, rr, k = jax.lax.while_loop(cond, body, init)
    true_r = rhs - matvec(x)
    rhs2 = jnp.sum(rhs * rhs)
    residual = jnp.sqrt(jnp.sum(true_r * true_r) / jnp.where(rhs2 > 0, rhs2, 1.0))
    return x, CGInfo(rr <= tol2, k, residual)


def _postprocess(c: Array, rhs: Array, u: Array, info: CGInfo) -> tuple[Array, CGInfo]:
    """Positivity (when ``rhs ≥ 0`` to rounding) and the exact mass ``Σ rhs / c``."""
    eps = jnp.finfo(rhs.dtype).eps
    nonneg = jnp.all(rhs >= -16 * eps * jnp.max(jnp.abs(rhs)))
    u = jnp.where(nonneg, jnp.maximum(u, 0.0), u)
    return restore_mass(c, rhs, u), info


@jax.jit
def shifted_solve2d(op: SG2D, c: Array, rhs: Array) -> Array:
    """``u`` with ``(c I − A) u = rhs``, ``c > 0``: :func:`cg_solve2d` at the default tolerance
    (:func:`default_rtol`) and iteration cap (:func:`default_max_iter`). If CG does not reach
    its tolerance the result is NaN, so time steppers report it through their non-finite
    result code instead of continuing with an inaccurate step.

    Examples:
        >>> import jax.numpy as jnp
        >>> grid = Grid2D((-1.0, -1.0), (1.0, 1.0), (8, 8))
        >>> phi = jnp.asarray((grid.centers**2).sum(-1), jnp.float32)
        >>> op = sg_operator2d(phi, 1.0, grid.h)
        >>> rhs = jnp.ones((8, 8))
        >>> u = shifted_solve2d(op, 2.0, rhs)
        >>> bool(jnp.allclose(2.0 * u - apply2d(op, u), rhs, atol=1e-4))
        True
    """
    u, info = cg_solve2d(op, c, rhs)
    return jnp.where(info.converged, u, jnp.nan)


def potential_values2d(potential: Callable, grid: Grid2D) -> Array:
    """``L`` at the cell centres ``(nx, ny)`` (vmapped over points of shape ``(2,)``)."""
    centers = jnp.asarray(grid.centers).reshape(-1, 2)
    vals = jax.vmap(potential)(centers)
    if vals.shape != (centers.shape[0],):
        raise ValueError(
            f"potential must map a point of shape (2,) to a scalar; got output shape "
            f"{vals.shape[1:]} per point"
        )
    return check_potential_values(vals.reshape(grid.cells))


def operator2d(problem: Any, grid: Grid2D) -> SG2D:
    """The SG operator of a :class:`~fracsgd.ffpe.Problem` (its ``potential``, ``diffusion``
    — a number or ``D(w)`` — and ``gamma``) on a :class:`Grid2D`; ``φ = γL/D_0``."""
    L = potential_values2d(problem.potential, grid)
    if callable(problem.diffusion):
        d = jax.vmap(problem.diffusion)(jnp.asarray(grid.centers, L.dtype).reshape(-1, 2))
        if d.shape != (L.size,):
            raise ValueError("diffusion(w) must return a scalar for a point of shape (2,)")
        check_diffusion_values(d)
        d = d.reshape(grid.cells)
        d0 = (
            jnp.mean(d)
            if problem.reference_diffusion is None
            else jnp.asarray(problem.reference_diffusion, d.dtype)
        )
    else:
        d = d0 = jnp.asarray(problem.diffusion, L.dtype)
    return sg_operator2d(problem.gamma * L / d0, d, grid.h)


def gibbs2d(op: SG2D, cell_volume: float) -> Array:
    """The null vector of ``A``, ``∝ e^{−φ}``, normalised to ``Σ p · cell_volume = 1``.

    No solve is needed: every face flux ``(D/h)[B(δ) p_P − B(−δ) p_Q]`` vanishes when
    ``p_Q/p_P = B(δ)/B(−δ) = e^{−δ} = e^{−(φ_Q − φ_P)}``, and these face ratios are consistent
    around every cycle of the grid because they are differences of one ``φ``; ``A`` is an
    irreducible M-matrix (all face rates positive), so its null space is this one vector
    (Perron–Frobenius). ``A e^{−φ} = 0`` holds to rounding (``B(δ) − B(−δ)e^{−δ}`` is
    evaluated, not cancelled symbolically).
    """
    p = jnp.exp(-(op.phi - jnp.min(op.phi)))
    return p / (jnp.sum(p) * cell_volume)
