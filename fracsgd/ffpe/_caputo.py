"""Caputo time stepping on uniform, graded and graded-then-geometric meshes (theory.md §4): the
L1 and L2-1σ schemes as strategy objects, and the direct or sum-of-exponentials (fast) history.

Caputo derivative of order ``0 < α ≤ 1`` (with ``f'(τ)`` inside the integral — the paper
prints ``f'(t)``)::

    D_t^α u(t) = 1/Γ(1−α) ∫_0^t u'(τ) (t − τ)^{−α} dτ

Every scheme here writes the derivative at its target time ``t_n*`` as a combination of the
differences ``δ_k = u^k − u^{k−1}``::

    D^α u(t_n*) ≈ Σ_{k=1}^{n} g_{n,k} δ_k,

so constants (and with them the Gibbs state of the Fokker–Planck operator) pass through
exactly, and mass is conserved whenever the spatial operator conserves it.

**L1** (:class:`L1`; Lin & Xu 2007; Stynes, O'Riordan & Gracia 2017 for graded meshes): ``u``
piecewise linear, ``t_n* = t_n``::

    g_{n,k} = a_{n,k} = [(t_n − t_{k−1})^{1−α} − (t_n − t_k)^{1−α}] / (Γ(2−α) τ_k),

the bracket computed without cancellation as ``x^{1−α} expm1((1−α) log1p(τ_k/x))`` with
``x = t_n − t_k`` (``τ_n^{1−α}`` when ``k = n``), so strongly graded meshes keep their accuracy.
The weights are positive and decrease away from ``k = n``: the implicit scheme keeps positivity
for an M-matrix operator. ``α = 1`` is backward Euler. Error ``O(N^{−min(rα, 2−α)})`` on the
mesh ``t_k = T (k/N)^r`` (Stynes et al. 2017, Thm 5.2), so ``r = (2−α)/α`` gives ``2 − α``; on
a uniform mesh the error is ``O(N^{−α})`` near ``t = 0`` but ``O(N^{−1})`` at a fixed time
``t > 0`` (Gracia, O'Riordan & Stynes 2018).

**L2-1σ** (:class:`L21Sigma`; Alikhanov 2015; on nonuniform meshes Liao, McLean & Zhang 2019,
Chen & Stynes 2019): ``t_n* = t_{n−1} + σ τ_n`` with ``σ = 1 − α/2``; ``u`` quadratic on each
past interval ``[t_{k−1}, t_k]`` (through ``u^{k−1}, u^k, u^{k+1}``) and linear on
``[t_{n−1}, t_n*]``; the equation is taken at ``t_n*`` with ``u(t_n*) ≈ σ u^n + (1−σ) u^{n−1}``.
Error ``O(N^{−min(rα, 2)})`` on graded meshes (Chen & Stynes 2019, Thm 4.1), so ``r = 2/α``
gives second order. It is only *conditionally* positive: the explicit part
``(1−σ) A u^{n−1}`` can make densities negative when ``τ`` is large against the cell size.
``α = 1`` is Crank–Nicolson.

**Histories** — how ``Σ_{k<n} g_{n,k} δ_k`` is evaluated:

* :class:`Direct`: every weight, ``O(N²)`` work and ``O(N · cells)`` memory; the reference.
* :class:`SOE`: the kernel is replaced on ``[Δt_min, T]`` by a sum of exponentials
  ``t^{−α}/Γ(1−α) ≈ Σ_j ω_j e^{−s_j t}`` (relative error ``≤ tol``), whose integrals over each
  interval are exact, so the history is carried by a recursion in ``lax.scan`` (Jiang, Zhang,
  Zhang & Zhang 2017; Yan, Sun & Zhang 2017 for L2-1σ): ``O(N · terms)`` work and memory
  independent of ``N``. The sum comes from the trapezoidal rule in ``x = log s`` for
  ``t^{−α} = 1/Γ(α) ∫_0^∞ s^{α−1} e^{−st} ds`` (McLean 2018, "Exponential sum approximations
  for t^{−β}"), with all nodes ``s_j`` and the number of terms chosen statically from ``tol``
  (for every ``α ∈ (0, 1]`` at once) and only the weights depending on (traced) ``α``; the part
  of the integral below the first node is summed exactly as a geometric series into a node at
  ``s = 0``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from fracsgd._checks import check_number, refuse_traced_static, refuse_traced_value
from fracsgd._types import Array

# ----------------------------------------------------------------------------------- meshes


def _increasing(ts: np.ndarray) -> np.ndarray:
    """``ts`` if strictly increasing; a grading so strong that steps underflow is refused."""
    if not np.all(np.diff(ts) > 0):
        raise ValueError(
            "grading is too strong for num_steps: the first mesh steps underflow to zero "
            "(use a smaller grading or more steps)"
        )
    return ts


def graded_mesh(
    t_final: float,
    num_steps: int,
    grading: float = 1.0,
    *,
    graded_until: float | None = None,
    graded_steps: int | None = None,
) -> np.ndarray:
    """``t_k = T (k/N)^r``, ``k = 0 … N`` (``r = 1``: uniform; ``r = (2−α)/α``: optimal for L1;
    ``r = 2/α``: for L2-1σ), optionally followed by geometrically growing steps.

    Args:
        t_final: ``T > 0``.
        num_steps: ``N > 0``, the total number of steps.
        grading: ``r ≥ 1``.
        graded_until: if given (``0 < t_g < T``), the graded mesh covers ``[0, t_g]`` with
            ``graded_steps`` steps and the remaining steps grow geometrically,
            ``τ_{k+1} = q τ_k``, from the last graded step to ``T`` (``q`` solved for) — long
            times at logarithmic cost, resolved like ``t^α`` needs. When ``T − t_g`` is at most
            ``N − graded_steps`` steps of the last graded size (``q`` would be below 1, the
            steps shrinking towards zero), the tail is ``N − graded_steps`` equal steps.
        graded_steps: steps in the graded part (default ``N // 2``; ``1 ≤ · < N``).

    Examples:
        >>> graded_mesh(1.0, 4, 2.0).tolist()
        [0.0, 0.0625, 0.25, 0.5625, 1.0]
        >>> ts = graded_mesh(100.0, 8, 2.0, graded_until=1.0)
        >>> float(ts[4]), float(ts[-1]), bool(np.all(np.diff(np.diff(ts)[3:]) > 0))
        (1.0, 100.0, True)
    """
    why = "the time mesh is built on the host"
    for name, value in (("t_final", t_final), ("grading", grading), ("graded_until", graded_until)):
        refuse_traced_static(name, value, why)
    t_final = check_number("t_final", t_final, lo=0.0, lo_open=True)
    refuse_traced_value("num_steps", num_steps, "a positive integer")
    if isinstance(num_steps, bool) or not isinstance(num_steps, int | np.integer) or num_steps <= 0:
        raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")
    num_steps = int(num_steps)
    grading = check_number("grading", grading, lo=1.0)
    if graded_until is None:
        return _increasing(t_final * (np.arange(num_steps + 1) / num_steps) ** grading)
    t_g = check_number("graded_until", graded_until)
    if not 0 < t_g < t_final:
        raise ValueError(f"graded_until must be in (0, t_final={t_final}), got {graded_until}")
    if graded_steps is None and num_steps < 2:
        raise ValueError(
            f"num_steps must be >= 2 with graded_until (num_steps // 2 steps are graded, the "
            f"rest grow geometrically), got {num_steps}"
        )
    n_g = num_steps // 2 if graded_steps is None else graded_steps
    if isinstance(n_g, bool) or not isinstance(n_g, int | np.integer) or not 1 <= n_g < num_steps:
        raise ValueError(f"graded_steps must be an integer in [1, num_steps), got {n_g!r}")
    n_g = int(n_g)
    head = _increasing(t_g * (np.arange(n_g + 1) / n_g) ** grading)
    tau = head[-1] - head[-2]
    m = num_steps - n_g
    span = (t_final - t_g) / tau  # Σ_{j=1}^{m} q^j must equal this

    def total(q: float) -> float:
        if q == 1:
            return float(m)
        x = m * math.log(q)
        if x > 700:  # q^m overflows a float: the sum certainly exceeds any finite span
            return math.inf
        return q * math.expm1(x) / (q - 1)

    lo, hi = 1e-12, 2.0
    while total(hi) < span:
        hi *= 2
    for _ in range(200):  # bisection: total(q) is increasing in q
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if total(mid) < span else (lo, mid)
    q = 0.5 * (lo + hi)
    if span <= m:  # even m steps of the last graded size τ reach past t_final: equal steps
        q = 1.0
    steps = tau * q ** np.arange(1, m + 1)
    tail = t_g + np.cumsum(steps) * ((t_final - t_g) / np.sum(steps))  # exact end point
    tail[-1] = t_final
    return _increasing(np.concatenate([head, tail]))


# ----------------------------------------------------------------------------------- weights


def _inv_gamma_2ma(alpha: Array) -> Array:
    return jnp.exp(-jax.lax.lgamma(2.0 - alpha))


def _bracket(x: Array, tau: Array, alpha: Array) -> Array:
    """``(x + τ)^{1−α} − x^{1−α}`` without cancellation (``x > 0``)."""
    return x ** (1 - alpha) * jnp.expm1((1 - alpha) * jnp.log1p(tau / x))


def l1_weights(ts: Array, n: Array, alpha: Array) -> Array:
    """Row ``n`` of the L1 weights: ``a_{n,k}`` for ``k = 1 … N`` (zero for ``k > n``), shape
    ``(N,)``; ``ts`` has ``N + 1`` points. Differentiable in ``alpha``.

    ``a_{n,k} = [(t_n − t_{k−1})^{1−α} − (t_n − t_k)^{1−α}] / (Γ(2−α) τ_k)`` is the Caputo
    derivative at ``t_n`` of the piecewise-linear interpolant, integrated exactly on each
    interval (``(1−α)Γ(1−α) = Γ(2−α)``), so ``D^α u(t_n) ≈ Σ_k a_{n,k} δ_k``. Source: the L1
    scheme (Oldham & Spanier 1974, "The Fractional Calculus"; on a uniform mesh, with weights
    ``(j+1)^{1−α} − j^{1−α}``, Lin & Xu 2007, J. Comput. Phys. 225, 1533; on nonuniform and
    graded meshes Stynes, O'Riordan & Gracia 2017, SIAM J. Numer. Anal. 55, 1057); the
    bracket is evaluated without cancellation as in the module docstring (theory.md §4).

    Args:
        ts: ``(N + 1,)`` increasing mesh times, ``t_0 = 0`` (e.g. :func:`graded_mesh`).
        n: the row, ``1 ≤ n ≤ N``.
        alpha: Caputo order in ``(0, 1]`` (1: backward Euler).

    Returns:
        ``(N,)`` weights ``a_{n,1} … a_{n,N}``, zero after ``k = n``.

    Examples:
        >>> import math, numpy as np, jax.numpy as jnp
        >>> [round(float(a), 4) for a in l1_weights(np.arange(4.0), 2, 0.5)]  # [√2 − 1, 1]/Γ(3/2)
        [0.4674, 1.1284, 0.0]
        >>> l1_weights(np.arange(4.0), 3, 1.0).round(6).tolist()  # α = 1: backward Euler
        [0.0, 0.0, 1.0]
        >>> ts = graded_mesh(1.0, 8, 2.0)  # exact for u = t: Σ_k a_{8,k} τ_k = D^½ t at 1
        >>> w = l1_weights(ts, 8, 0.5)
        >>> round(float(jnp.sum(w * jnp.diff(ts))), 5), round(1 / math.gamma(1.5), 5)
        (1.12838, 1.12838)
    """
    t = jnp.asarray(ts)
    k = jnp.arange(1, t.shape[0])
    tau = t[1:] - t[:-1]
    x = t[n] - t[1:]  # t_n − t_k
    safe_x = jnp.where(x > 0, x, 1.0)
    bracket = jnp.where(x > 0, _bracket(safe_x, tau, alpha), tau ** (1 - alpha))
    w = bracket * _inv_gamma_2ma(alpha) / tau
    return jnp.where(k <= n, w, 0.0)


_SERIES_TERMS = 24  # y ≤ 1/8: the neglected terms are ≤ 8^{−21} of the first, below rounding


def _quadratic_moment(x: Array, tau: Array, alpha: Array) -> Array:
    """``Γ(2−α)/Γ(1−α) ∫ (s − m)(t* − s)^{−α} ds`` over an interval of length ``τ`` with
    midpoint ``m``, ending ``x = t* − t_k > 0`` before ``t*``: ``x^{2−α} B(τ/x)`` with
    ``B(y) = (1 + y/2) E₁ − (1−α)/(2−α) E₂``, ``E_i = (1+y)^{i−α} − 1``. Its ``y`` and ``y²``
    terms cancel exactly (``B ≈ α(1−α) y³/12``), so small ``y`` uses the power series from
    ``y³`` on and large ``y`` the closed form (which then loses at most ``64×`` to
    cancellation)."""
    y = tau / x
    small = y <= 0.125
    ys = jnp.where(small, y, 0.0)
    # c_j = C(1−α, j) + C(1−α, j−1)/2 − (1−α)/(2−α) C(2−α, j), j ≥ 3, with the binomials as
    # cumulative products; C(2−α, j)(1−α)/(2−α) = C(1−α, j−1)(1−α)/j.
    j = jnp.arange(1, _SERIES_TERMS + 3, dtype=ys.dtype)
    binom = jnp.cumprod((2 - alpha - j) / j)  # C(1−α, j), j = 1 … J+2
    prev = binom[1:-1]  # C(1−α, j−1), j = 3 … J+2
    coef = binom[2:] + prev / 2 - prev * (1 - alpha) / j[2:]
    series = ys**3 * jnp.polyval(coef[::-1], ys)
    yl = jnp.where(small, 1.0, y)
    lg = jnp.log1p(yl)
    closed = (1 + yl / 2) * jnp.expm1((1 - alpha) * lg) - (1 - alpha) / (2 - alpha) * jnp.expm1(
        (2 - alpha) * lg
    )
    return x ** (2 - alpha) * jnp.where(small, series, closed)


def l21sigma_weights(ts: Array, n: Array, alpha: Array) -> Array:
    """Row ``n`` of the nonuniform L2-1σ weights ``g_{n,k}``, ``k = 1 … N`` (zero for
    ``k > n``): ``D^α u(t_{n−1} + σ τ_n) ≈ Σ_k g_{n,k} δ_k``, ``σ = 1 − α/2``. Differentiable
    in ``alpha``; cancellation-free (see :func:`_quadratic_moment`). The weights are
    homogeneous of degree ``−α`` in time, so they are computed in units of the row's own time
    ``t_n`` and scaled back by ``t_n^{−α}``; products of steps are divided one at a time: on a
    graded mesh in float32 (``r = 2/α``, ``t_1 ≈ 10⁻²⁶ T``) the products ``τ_k(τ_k + τ_{k+1})``
    of absolute times underflowed to 0 and gave 0/0.

    Source: Alikhanov's L2-1σ formula (Alikhanov 2015, "A new difference scheme for the time
    fractional diffusion equation", J. Comput. Phys. 280, 424): ``u`` quadratic through
    ``u^{k−1}, u^k, u^{k+1}`` on each past interval, linear on ``[t_{n−1}, t_n*]``; on
    nonuniform meshes as in Liao, McLean & Zhang (2019) and Chen & Stynes (2019) (module
    docstring; theory.md §4).

    Args:
        ts: ``(N + 1,)`` increasing mesh times, ``t_0 = 0`` (e.g. :func:`graded_mesh`).
        n: the row, ``1 ≤ n ≤ N``.
        alpha: Caputo order in ``(0, 1]`` (1: Crank–Nicolson).

    Returns:
        ``(N,)`` weights ``g_{n,1} … g_{n,N}``, zero after ``k = n``.

    Examples:
        >>> import math, numpy as np, jax.numpy as jnp
        >>> l21sigma_weights(np.arange(4.0), 3, 1.0).round(6).tolist()  # α = 1: Crank–Nicolson
        [0.0, 0.0, 1.0]
        >>> ts = graded_mesh(1.0, 8, 4.0)  # exact for u = t: D^½ t = t^½/Γ(3/2) at t_8*
        >>> g = l21sigma_weights(ts, 8, 0.5)
        >>> t_star = float(ts[7] + 0.75 * (ts[8] - ts[7]))  # σ = 1 − α/2 = 3/4
        >>> round(float(jnp.sum(g * jnp.diff(ts))), 5), round(t_star**0.5 / math.gamma(1.5), 5)
        (1.06842, 1.06842)
    """
    scale = jnp.asarray(ts)[n]
    t = jnp.asarray(ts) / scale
    num = t.shape[0] - 1
    k = jnp.arange(1, num + 1)
    tau = t[1:] - t[:-1]
    sigma = 1 - alpha / 2
    t_star = t[n - 1] + sigma * tau[n - 1]
    x = t_star - t[1:]  # > 0 for k ≤ n − 1
    past = k <= n - 1
    safe_x = jnp.where(past, x, 1.0)
    i0 = jnp.where(past, _bracket(safe_x, tau, alpha), 0.0)  # Γ(2−α) ∫ kernel
    i1 = jnp.where(past, _quadratic_moment(safe_x, tau, alpha), 0.0)  # Γ(2−α) ∫ (s−m) kernel
    tau_next = jnp.concatenate([tau[1:], tau[-1:]])  # τ_{k+1}
    tau_prev = jnp.concatenate([tau[:1], tau[:-1]])  # τ_{k−1}
    i1_prev = jnp.concatenate([jnp.zeros(1, i1.dtype), i1[:-1]])
    w = i0 / tau - 2 * (i1 / tau) / (tau + tau_next)
    w = w + jnp.where(k >= 2, 2 * (i1_prev / tau) / (tau_prev + tau), 0.0)
    w = w + jnp.where(k == n, (sigma * tau) ** (1 - alpha) / tau, 0.0)
    return jnp.where(k <= n, w * _inv_gamma_2ma(alpha), 0.0) * scale ** (-alpha)


# ----------------------------------------------------------------------------------- strategies


@dataclasses.dataclass(frozen=True)
class L1:
    """Implicit L1 stepping (the default): positivity and mass preserving.

    ``order = 1`` is what it guarantees at a fixed time for every ``α`` on a uniform mesh; on
    the graded mesh ``r = (2−α)/α`` it reaches ``2 − α`` (module docstring).

    Examples:
        >>> L1().order, L1().theta(0.5)
        (1, 1.0)
    """

    order: ClassVar[int] = 1

    def theta(self, alpha: Array) -> Array | float:
        """Weight of ``u^n`` in the state at the target time (1: fully implicit)."""
        return 1.0

    def weights(self, ts: Array, n: Array, alpha: Array) -> Array:
        return l1_weights(ts, n, alpha)


@dataclasses.dataclass(frozen=True)
class L21Sigma:
    """Alikhanov's L2-1σ, second order on graded meshes ``r ≥ 2/α`` (Chen & Stynes 2019), and
    on nonuniform meshes in the form of Liao, McLean & Zhang (2019). Mass preserving; only
    conditionally positive (module docstring).

    Examples:
        >>> L21Sigma().order, L21Sigma().theta(0.5)
        (2, 0.75)
    """

    order: ClassVar[int] = 2

    def theta(self, alpha: Array) -> Array | float:
        """``σ = 1 − α/2``."""
        return 1 - alpha / 2

    def weights(self, ts: Array, n: Array, alpha: Array) -> Array:
        return l21sigma_weights(ts, n, alpha)


@dataclasses.dataclass(frozen=True)
class Direct:
    """The direct history: all weights, ``O(N²)`` work, ``O(N · cells)`` memory (reference).

    Examples:
        >>> import inspect
        >>> from fracsgd.ffpe import solve
        >>> inspect.signature(solve).parameters["history"].default  # the default history
        Direct()
    """


@dataclasses.dataclass(frozen=True)
class SOE:
    """Fast history by a sum of exponentials with relative kernel error ``≤ tol`` on
    ``[Δt_min, T]`` for every ``α ∈ (0, 1]`` (module docstring); ``O(terms · cells)`` memory.

    Examples:
        >>> SOE(tol=1e-8).num_terms(1e-4, 1.0)
        70
    """

    tol: float = 1e-10

    def __post_init__(self) -> None:
        # a number in [1e-15, 0.1); None, strings and sequences are refused with the same
        # message (float() alone raised TypeError, or a ValueError not naming tol)
        check_number("SOE tol", self.tol, lo=1e-15, hi=0.1, hi_open=True)

    def nodes(self, t_min: float, t_max: float) -> tuple[np.ndarray, float]:
        """Static ``(x, h)``: the exponents are ``s_j = e^{x_j}`` on the grid ``x`` of spacing
        ``h``, plus a node ``s = 0`` (see :func:`soe_weights`)."""
        return soe_nodes(t_min, t_max, self.tol)

    def num_terms(self, t_min: float, t_max: float) -> int:
        """Exponentials used on ``[t_min, t_max]`` (the ``s = 0`` node included)."""
        return self.nodes(t_min, t_max)[0].shape[0] + 1


def soe_nodes(t_min: float, t_max: float, tol: float) -> tuple[np.ndarray, float]:
    """Static trapezoidal grid ``x_j = x_lo + j h`` (``s_j = e^{x_j}``) for the SOE of
    ``t^{−α}`` on ``[t_min, t_max]``, each of three error sources ``≤ tol/3`` (relative):

    * spacing: the trapezoidal error for ``e^{αx − e^x t}``, analytic in ``|Im x| < π/2``, is
      ``≈ 2 e^α (2π/(αh))^α e^{−π²/h}`` (strip width ``π/2 − αh/2π``), largest at ``α = 1``;
    * upper cut ``e^{x_hi} t_min = y``: ``Γ(α, y)/Γ(α) ≤ e^{−y}/Γ_min``, ``Γ_min = 0.8856``;
    * lower cut: the terms below ``x_lo`` are summed as the geometric series of ``e^{αx}``
      (the ``s = 0`` node); what that neglects, ``e^{αx}(1 − e^{−e^x t})``, is at most
      ``z^{1+α}/((1+α)Γ(α))`` with ``z = e^{x_lo} t_max`` (maximised over ``α``).

    Sources: the trapezoidal rule in ``x = log s`` for ``t^{−α}`` and its truncation (McLean
    2018, "Exponential sum approximations for t^{−β}", in Contemporary Computational
    Mathematics, Springer); the spacing error of the trapezoidal rule on the real line for
    integrands analytic in a strip (Trefethen & Weideman 2014, SIAM Rev. 56, 385, §5).

    Args:
        t_min, t_max: the interval ``0 < t_min < t_max`` (smallest step to final time).
        tol: target relative error of the kernel approximation.

    Returns:
        ``(x, h)``: the grid ``x`` (NumPy, static) and its spacing ``h``.

    Examples:
        >>> import math, numpy as np
        >>> x, h = soe_nodes(1e-3, 1.0, 1e-6)
        >>> x.shape, bool(np.allclose(np.diff(x), h))
        ((43,), True)
        >>> 2 * math.e * (2 * math.pi / h) * math.exp(-math.pi**2 / h) <= 1e-6 / 3  # spacing
        True
    """
    for name, value in (("t_min", t_min), ("t_max", t_max), ("tol", tol)):
        refuse_traced_static(name, value, "they set the number of nodes, chosen on the host")
    tol = check_number("tol", tol, lo=1e-15, hi=0.1, hi_open=True)  # as SOE's
    t_min = check_number("t_min", t_min, lo=0.0, lo_open=True)
    t_max = check_number("t_max", t_max, lo=0.0, lo_open=True)
    if not t_min < t_max:
        raise ValueError(f"need 0 < t_min < t_max, got {t_min}, {t_max}")
    third = tol / 3
    h = 1.0
    while 2 * math.e * (2 * math.pi / h) * math.exp(-(math.pi**2) / h) > third:
        h *= 0.98
    y = math.log(1 / (0.8856 * third))
    alphas = np.linspace(1e-3, 1.0, 1000)
    gam = np.array([math.gamma(a) for a in alphas])
    # largest z with max_α z^{1+α}/((1+α)Γ(α)) ≤ tol/3, by bisection in log z
    lo, hi = -80.0, 0.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        worst = np.max(np.exp((1 + alphas) * mid) / ((1 + alphas) * gam))
        lo, hi = (mid, hi) if worst <= third else (lo, mid)
    x_lo = lo - math.log(t_max)
    x_hi = math.log(y / t_min)
    count = math.ceil((x_hi - x_lo) / h) + 1
    return x_lo + h * np.arange(count), h


def soe_weights(x: Array, h: Array, alpha: Array) -> tuple[Array, Array]:
    """``(s, ω)`` with ``t^{−α}/Γ(1−α) ≈ Σ_j ω_j e^{−s_j t}``, nodes from :func:`soe_nodes`
    plus ``s = 0`` first. ``ω_j = h e^{αx_j} sin(πα)/π`` (``1/(Γ(α)Γ(1−α)) = sin(πα)/π``, so
    ``α = 1`` gives zero memory) and the ``s = 0`` weight ``h e^{αx_0}/expm1(αh) · sin(πα)/π``,
    the exact sum of the geometric tail ``j < 0``. Differentiable in ``alpha``.

    Sources: ``t^{−α} = (1/Γ(α)) ∫_0^∞ s^{α−1} e^{−st} ds`` (Euler's integral, DLMF 5.2.1,
    with ``s`` scaled by ``t``), discretised by the trapezoidal rule in ``x = log s`` (McLean
    2018, "Exponential sum approximations for t^{−β}"), and ``Γ(α)Γ(1−α) = π/sin(πα)``
    (DLMF 5.5.3). Jiang, Zhang, Zhang & Zhang (2017, Commun. Comput. Phys. 21, 650) use such
    a sum for the fast L1 history (:class:`SOE`), with nodes from Gauss quadrature instead.

    Examples:
        >>> import jax.numpy as jnp
        >>> x, h = soe_nodes(1e-3, 1.0, 1e-6)
        >>> s, w = soe_weights(jnp.asarray(x), h, 0.3)
        >>> t = 0.0037
        >>> approx = float(jnp.sum(w * jnp.exp(-s * t)))
        >>> exact = t**-0.3 / math.gamma(0.7)
        >>> abs(approx / exact - 1) < 2e-6  # tol 1e-6, float32 sums
        True
    """
    x = jnp.asarray(x)
    c = jnp.sin(jnp.pi * alpha) / jnp.pi
    w = h * jnp.exp(alpha * x) * c
    w0 = h * jnp.exp(alpha * x[0]) / jnp.expm1(alpha * h) * c
    s = jnp.concatenate([jnp.zeros(1, x.dtype), jnp.exp(x)])
    return s, jnp.concatenate([jnp.reshape(w0, (1,)), w])


def phi1(z: Array) -> Array:
    """``(1 − e^{−z})/z`` (1 at 0): the mean of ``e^{−s(t−σ)}`` over one step, ``z = s τ``."""
    small = z < 1e-8
    safe = jnp.where(small, 1.0, z)
    return jnp.where(small, 1 - z / 2, -jnp.expm1(-safe) / safe)


def phi2(z: Array) -> Array:
    """``∫_0^1 (½ − u) e^{−z u} du = Σ_{j≥1} (−1)^{j+1} j z^j / (2 (j+1)(j+2) j!)``: the first
    moment about the midpoint (series up to ``z = 1``, closed form above)."""
    small = z <= 1.0
    zs = jnp.where(small, z, 0.0)
    j = np.arange(1, 31)
    coef = (-1.0) ** (j + 1) * j / (2 * (j + 1) * (j + 2) * np.cumprod(j.astype(np.float64)))
    series = zs * jnp.polyval(jnp.asarray(coef[::-1], zs.dtype), zs)
    zl = jnp.where(small, 1.0, z)
    e = jnp.exp(-zl)
    closed = 0.5 * (-jnp.expm1(-zl)) / zl - (1 - e * (1 + zl)) / zl**2
    return jnp.where(small, series, closed)
