"""The Mittag-Leffler function ``E_{α,β}(z) = Σ_k z^k / Γ(αk + β)`` for real ``z``, by the
inverse Laplace transform on a parabolic contour (Garrappa 2015; Weideman & Trefethen 2007).

Representation (Garrappa 2015, Eq. 2.3, with ``t = 1``)::

    E_{α,β}(z) = (1/2πi) ∫_C e^s s^{α−β} / (s^α − z) ds  +  Σ residues of poles right of C,

``C`` a contour that leaves the branch cut of ``s^α`` (the negative real axis) on its left. For
``0 < α ≤ 1`` and real ``z`` the only pole on the principal sheet is ``s* = z^{1/α}`` (``z > 0``),
with residue ``e^{s*} s*^{1−β}/α``. The contour is the parabola ``s(u) = μ(1 + iu)²`` crossing
the real axis at ``μ``, discretised by the trapezoidal rule ``u_k = kh``, ``|k| ≤ N``; for real
data the integrand at ``−u`` is minus the conjugate of that at ``u``, so only ``k ≥ 0`` is summed.
The error has four parts (Weideman & Trefethen 2007, §2; Garrappa 2015, §3): discretisation
towards the branch cut ``~ e^{−2πd/h}`` (``d`` the distance in ``u`` to the nearest singularity),
towards the right ``~ e^{μ(1+c)² − 2πc/h}``, truncation ``~ e^{μ(1 − N²h²)}``, and round-off
``~ ε e^μ``. Garrappa chooses ``(μ, h, N)`` per point by an optimisation; here ``N = 64`` is
fixed (one compiled shape) and three parameter sets are chosen so every part is below
``≈ e^{−37}`` relative to the value:

* ``z ≤ 0`` (no pole): ``μ = 1``, ``h = 0.12`` — the small ``μ`` keeps round-off at ``e·ε``;
* ``z > 0``, ``s* ≤ 1``: the pole lies inside the parabola (no residue), ``μ = 3``, ``h = 0.08``
  (``d = 1 − sqrt(s*/μ) ≥ 0.42``);
* ``z > 0``, ``s* > 1``: the parabola passes left of the pole, ``μ = s*/(1 + 0.96)²``,
  ``h = 0.16``, and the residue is added (``μ`` is capped at 500: the value overflows anyway).

``α = β = 1`` returns ``exp(z)`` exactly (the contour's absolute accuracy cannot resolve
``e^{−100}``); its derivative in ``α`` and ``β`` still comes from the contour formula.

``1 < α ≤ 2`` (``E_2(−x²) = cos x``, ``E_2(x²) = cosh x``, ``E_{2,2}(−x²) = sin x / x``): for
``z > 0`` the real pole is the only one on the principal sheet, as above. For ``z < 0`` it is a
complex pair ``s_± = ρ e^{±iπ/α}``, ``ρ = |z|^{1/α}``, in the left half-plane (on the imaginary
axis at ``α = 2``), with residues ``2 Re(e^{s_+} s_+^{1−β})/α``. On the parabola's ``u``-plane
the pair sits at ``±√(ρ/μ) sin(π/2α) + i(1 − √(q/μ))``, ``q = ρ cos²(π/2α)``:

* ``q ≤ 1.5``: left of the parabola, no residue, ``μ = max(3, 3q)``, ``h = 0.08`` (the pair at
  ``Im u ≥ 0.42``, as a real pole inside);
* ``q > 1.5``: right of it, residues added, ``μ = min(q/1.96², 2.5)`` (values are of order one
  or less here, so ``μ`` stays small: round-off ``~ ε e^μ``), the pair at ``Im u = −c``,
  ``c = √(q/μ) − 1``, and ``h = min(0.16, 2πc/(q + 37))`` so that the lower strip's error
  ``e^{q − 2πc/h}`` stays below ``e^{−37}``;
* ``ρ > 100``: the contour would need more than ``N`` nodes (``q`` grows like ``ρ``), and the
  asymptotic expansion is exact to rounding instead (the residues plus the algebraic series of
  the collapsed contour; Gorenflo et al. 2020, ch. 4):
  ``E_{α,β}(z) = 2 Re(e^{s_+} s_+^{1−β})/α − Σ_{k=1}^{16} z^{−k}/Γ(β − αk)``, whose first
  omitted term, at most ``Γ(17α − β + 1)/(π ρ^{17α})``, is below ``10⁻¹⁹`` in absolute value
  for ``ρ ≥ 100``, every ``α ∈ (1, 2]`` and ``β ∈ (0, 3]``.

Accuracy (float64, measured against mpmath at 40 digits, ``tests/ffpe/test_mittag_leffler.py``):
relative error ≲ 1e-13 for ``0 < α ≤ 0.99`` and ``α = 1``, ``0.5 ≤ β ≤ 2``, ``z ∈ [−100, 0]``
(for ``α`` within ``≈ 0.01`` of 1 and ``β = 1`` the value at large ``|z|`` is ``≈ (1−α)/|z|`` —
the contour's absolute error ~1e-16 then gives ≈ ``1e-16/(1−α)`` relative: 6e-13 measured at
``α = 0.9999``, 5e-10 at ``α = 1 − 10⁻⁷``); on the positive axis the
relative error is ≲ ``10 s* ε`` (the conditioning of ``e^{z^{1/α}}``), e.g. ≲ 1e-13 up to
``z = 50`` for ``α ≥ 0.75``; values beyond float64 are ``inf``. Derivatives come from
differentiating the quadrature with the contour held fixed (``μ``, ``h`` under
``stop_gradient``), which approximates the derivative integral with the same accuracy.
For ``1 < α ≤ 2`` (``tests/ffpe/test_mittag_leffler.py``, 60–130-digit mpmath series up to
``ρ = 130``, the branch-cut integral beyond, the closed forms of ``α = 2``): error below
``1e-12 |E| + 5e-15`` for ``0.4 ≤ β ≤ 2.5`` on ``z ∈ [−130^α, 30]`` (measured: relative
≤ 2e-13 wherever ``|E| ≥ 0.01``, absolute ≤ 3.3e-15 near the zeros of the oscillating ``E``);
``cos x`` to 7.5e-15 absolute for ``x < 3`` (``|z| < 9``, measured near ``x = 2.9``) and to
4.4e-16 beyond, up to ``x = 2·10⁴`` (``z = −4·10⁸``), and bounded by 1 out to
``z = −10³⁰⁰``; ``E_{α,β}(−∞) = 0`` for ``α < 2`` (and for ``α = 2``, ``β > 1``).

References:
    R. Garrappa, "Numerical evaluation of two and three parameter Mittag-Leffler functions",
    SIAM J. Numer. Anal. 53(3), 1350–1369 (2015).
    R. Gorenflo, A. A. Kilbas, F. Mainardi, S. V. Rogosin, *Mittag-Leffler Functions, Related
    Topics and Applications*, 2nd ed., Springer (2020).
    J. A. C. Weideman, L. N. Trefethen, "Parabolic and hyperbolic contours for computing the
    Bromwich integral", Math. Comp. 76, 1341–1356 (2007).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fracsgd._types import Array

_N = 64  # nodes u_k = k h, k = 0 … N (the mirror half by conjugate symmetry)
_NEG_MU, _NEG_H = 1.0, 0.12
_IN_MU, _IN_H = 3.0, 0.08
_LEFT_C, _LEFT_H = 0.96, 0.16  # the pole sits at u = −ic in the lower strip: c = 6h
_MU_CAP = 500.0
#: ``1 < α ≤ 2``, ``z < 0``: contour parameters for the complex pole pair (module docstring)
_PAIR_Q = 1.5  # up to this q = ρ cos²(π/2α) the pair lies left of the parabola, μ = max(3, 3q)
_PAIR_MU = 2.5  # beyond it, μ ≤ 2.5 keeps round-off e^μ ε small for values of order one
_PAIR_ASYMPTOTIC = 100.0  # ρ = |z|^{1/α} beyond which the asymptotic series is used
_PAIR_TERMS = 16  # its algebraic terms −Σ_{k≤16} z^{−k}/Γ(β − αk)


#: largest β the contour resolves to float64 accuracy (measured against 50–120-digit mpmath
#: series: relative error ≤ 1.3e-13 for 0.05 ≤ β ≤ 3 on z ∈ [−100, 3] on the sessions' grids;
#: a review's finer scan found up to 8.6e-12 just above z = 1 for β = 3 (α = 0.05,
#: z = 1 + 1e-9; 4.8e-12 at α = 0.2, z = 1.0001), 2.3e-13 at β = 2.5 and ≤ 6e-15 for β ≤ 2;
#: at β = 5 it is 2e-8 near z = 1.5, at β = 10 1e-3 for z = −5)
BETA_MAX = 3.0


def _check(alpha: Any, z: Any, beta: Any) -> None:
    """Range checks of concrete ``alpha`` and ``beta`` (tracers are left to the caller); every
    argument must hold real numbers."""
    for name, v in (("alpha", alpha), ("z", z), ("beta", beta)):
        if isinstance(v, jax.core.Tracer):
            continue
        if isinstance(v, str | bytes) or np.asarray(v).dtype.kind not in "iuf":  # no bools
            raise ValueError(f"{name} must hold real numbers, got {v!r:.60}")
    if not isinstance(alpha, jax.core.Tracer):
        a = np.asarray(alpha, np.float64)
        if not np.all((a > 0) & (a <= 2)):
            raise ValueError(f"alpha must be in (0, 2], got {alpha}")
    if not isinstance(beta, jax.core.Tracer):
        b = np.asarray(beta, np.float64)
        if not np.all((b > 0) & (b <= BETA_MAX)):
            raise ValueError(
                f"beta must be in (0, {BETA_MAX:g}], got {beta} (the fixed integration contour's "
                "absolute error ~1e-16 exceeds 1/Γ(β) beyond: 6e-10 relative at β = 7, 1e-3 at 10)"
            )


def _parabola_sum(alpha: Array, z: Array, beta: Array, mu: Array, h: Array) -> Array:
    """``(1/2πi) ∫ e^s s^{α−β}/(s^α − z) ds`` on ``s = μ(1+iu)²`` by the trapezoidal rule."""
    k = jnp.arange(_N + 1, dtype=z.dtype).reshape((1,) * z.ndim + (_N + 1,))
    u = h[..., None] * k
    one_iu = 1 + 1j * u
    s = mu[..., None] * one_iu**2
    log_s = jnp.log(s)
    a, b, zz = alpha[..., None], beta[..., None], z[..., None]
    g = jnp.exp(s + (a - b) * log_s) / (jnp.exp(a * log_s) - zz) * (2j * mu[..., None] * one_iu)
    weights = jnp.where(k == 0, 1.0, 2.0).astype(z.dtype)
    return h / (2 * math.pi) * jnp.sum(weights * g.imag, axis=-1)


def _rgamma(x: Array) -> Array:
    """``1/Γ(x)`` for real ``x`` (``x < 1/2`` by reflection, ``1/Γ(x) = Γ(1 − x) sin(πx)/π``,
    exactly 0 at the poles ``x = 0, −1, −2, …``)."""
    frac = x - jnp.round(x)  # sin(πx) = ±sin(π frac): exact zeros at integers
    sign = jnp.where(jnp.round(x) % 2 == 0, 1.0, -1.0).astype(x.dtype)
    low = x < 0.5
    # (where, not minimum/maximum: at the tie x = 0.5 those pass x only half its gradient)
    reflected = jnp.exp(jax.scipy.special.gammaln(1 - jnp.where(low, x, 0.5))) * sign
    reflected = reflected * jnp.sin(math.pi * frac) / math.pi
    direct = jnp.exp(-jax.scipy.special.gammaln(jnp.where(low, 0.5, x)))
    return jnp.where(low, reflected, direct)


def _general(alpha: Array, z: Array, beta: Array) -> Array:
    positive = z > 0
    pair = (z < 0) & (alpha > 1)  # the poles ρ e^{±iπ/α} lie on the principal sheet
    safe_z = jnp.where(positive | pair, jnp.abs(z), 1.0)
    pole = safe_z ** (1 / alpha)  # s* = z^{1/α}, or the pair's modulus ρ = |z|^{1/α}
    theta = jnp.where(pair, math.pi / alpha, 0.0).astype(z.dtype)
    left = positive & (pole > 1)
    params = jax.lax.stop_gradient(pole)
    # the pair crosses the parabola where q = ρ cos²(θ/2) > μ (u = ... − i(√(q/μ) − 1))
    q = params * jnp.cos(jax.lax.stop_gradient(theta) / 2) ** 2
    pair_left = pair & (q > _PAIR_Q)
    pair_mu = jnp.minimum(q / (1 + _LEFT_C) ** 2, _PAIR_MU)
    mu = jnp.where(
        left,
        jnp.minimum(params / (1 + _LEFT_C) ** 2, _MU_CAP),
        jnp.where(
            pair_left,
            pair_mu,
            jnp.where(pair, jnp.maximum(_IN_MU, 3 * q), jnp.where(positive, _IN_MU, _NEG_MU)),
        ),
    )
    # the pair at u = ±x − ic, c = √(q/μ) − 1: the lower strip's error e^{q − 2πc/h} ≤ e^{−37}
    c = jnp.sqrt(jnp.where(pair_left, q, 4.0) / jnp.where(pair_left, pair_mu, 1.0)) - 1
    pair_h = jnp.minimum(_LEFT_H, 2 * math.pi * c / (q + 37.0))
    h = jnp.where(
        left,
        _LEFT_H,
        jnp.where(pair_left, pair_h, jnp.where(positive | pair, _IN_H, _NEG_H)),
    ).astype(z.dtype)
    integral = _parabola_sum(alpha, z, beta, jax.lax.stop_gradient(mu), h)
    # e^{s*} s*^{1−β} / α in one exponential: e^{s*} alone overflows first when β > 1
    # (at 1 where no residue is added: an unused overflowing residue would make the gradient NaN)
    real_pole = jnp.where(left, pole, 1.0)
    residue = jnp.exp(real_pole + (1 - beta) * jnp.log(real_pole)) / alpha
    # the pair's residues, 2 Re(e^{s} s^{1−β})/α at s = ρ e^{iπ/α}, with Re s = ρ cos(π/α)
    # written −ρ sin(π(2 − α)/2α): exactly 0 at α = 2, where fl(cos(π/2)) = 6e-17 > 0 grew
    # e^{6e-17 ρ} into inf by |z| = 1e38 (at 1 where no residue is added, as above)
    far = pair & (params > _PAIR_ASYMPTOTIC)
    rho = jnp.where(pair_left | far, pole, 1.0)
    s_pair = rho * (-jnp.sin(math.pi * (2 - alpha) / (2 * alpha)) + 1j * jnp.sin(math.pi / alpha))
    pair_residues = 2 * jnp.real(jnp.exp(s_pair + (1 - beta) * jnp.log(s_pair))) / alpha
    # far out (ρ > _PAIR_ASYMPTOTIC) the contour would need more than N nodes: the asymptotic
    # expansion E = residues − Σ_k z^{−k}/Γ(β − αk) (module docstring), whose first omitted
    # term is below 1e-19 there
    k = jnp.arange(1, _PAIR_TERMS + 1, dtype=z.dtype).reshape((1,) * z.ndim + (_PAIR_TERMS,))
    inv_z = 1 / jnp.where(far, z, -1.0)[..., None]
    tail = jnp.sum(inv_z**k * _rgamma(beta[..., None] - alpha[..., None] * k), axis=-1)
    with_pair = jnp.where(
        far, pair_residues - tail, integral + jnp.where(pair_left, pair_residues, 0.0)
    )
    # an infinite residue is an overflowing value (the contour's terms are at most e^μ with
    # μ ≈ s*/3.84, so they overflow only after the residue): +inf, never inf − inf; so is an
    # infinite pole (z^{1/α} overflowed), whose residue reads inf + (1 − β)·inf: NaN for β ≥ 1
    overflow = left & (jnp.isposinf(residue) | jnp.isposinf(pole))
    value = jnp.where(pair, with_pair, integral + jnp.where(left, residue, 0.0))
    # z → −∞ with α > 1: the residues decay (α < 2) or shrink like ρ^{1−β} (α = 2, β > 1), the
    # tail like 1/|z|: the limit is 0 (α = 2, β ≤ 1 oscillates without one: NaN)
    to_zero = pair & jnp.isneginf(z) & ((alpha < 2) | (beta > 1))
    return jnp.where(overflow, jnp.inf, jnp.where(to_zero, 0.0, value))


def mittag_leffler(alpha: Any, z: Any, beta: Any = 1.0) -> Array:
    """The Mittag-Leffler function ``E_{α,β}(z) = Σ_{k≥0} z^k / Γ(αk + β)``, elementwise.

    ``E_α(−λ t^α)`` solves the fractional relaxation equation ``D_t^α u = −λu``, ``u(0) = 1``
    (Caputo); ``E_1(z) = e^z``, ``E_{1/2}(−x) = e^{x²} erfc(x)`` and ``E_2(−x²) = cos x``
    (``1 < α < 2``: the fractional oscillation equation). Evaluated by the inverse
    Laplace transform on a parabolic contour plus the residues of the poles (Garrappa 2015;
    for ``α > 1``, ``z < 0`` and ``|z|^{1/α} > 100`` the exact asymptotic expansion);
    see the module docstring for the parameters, the error analysis and the measured accuracy
    (relative error ≲ 1e-13 for ``z ∈ [−100, 0]``, ``0 < α ≤ 0.99``, in float64; within 0.01
    of ``α = 1`` it grows like ``1e-16/(1 − α)``, 5e-10 at ``α = 1 − 10⁻⁷``). Pure, jit- and
    vmap-compatible, differentiable in ``z``, ``alpha`` and ``beta`` wherever the value is
    finite (where it overflows to ``inf`` the derivatives are not meaningful: NaN, or 0 on
    the first points past overflow). The result's dtype follows the inputs' (a float32
    ``alpha`` gives a float32 result even with x64). Enable float64
    (``jax.config.update("jax_enable_x64", True)``) for the stated accuracy.

    Args:
        alpha: order in ``(0, 2]``; broadcasts with ``z`` and ``beta``.
        z: real argument(s); any value (``inf`` where the value overflows the dtype: float32
            by default, float64 with x64).
        beta: second parameter in ``(0, 3]`` (:data:`BETA_MAX`; relative error ≤ 6e-15
            measured for ``β ≤ 2``, up to 2.3e-13 at ``β = 2.5`` and 8.6e-12 at ``β = 3`` just
            above ``z = 1``: the contour's absolute error is ~1e-16 while the function scales
            like ``1/Γ(β)``, so larger β lose digits; a traced β out of range gives NaN).

    Returns:
        ``E_{α,β}(z)`` with the broadcast shape of the inputs.

    Raises:
        ValueError: ``alpha`` outside ``(0, 2]`` or ``beta`` outside ``(0, 3]`` (checked for
            concrete values; a traced one out of range gives NaN in its element).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from fracsgd.ffpe import mittag_leffler
        >>> with jax.enable_x64(True):
        ...     x = jnp.array([0.5, 2.0, 10.0])
        ...     e = mittag_leffler(0.5, -x)
        ...     ref = jax.scipy.special.erfc(x) * jnp.exp(x**2)
        ...     bool(jnp.allclose(e, ref, rtol=1e-13, atol=0))
        True
        >>> with jax.enable_x64(True):
        ...     float(mittag_leffler(1.0, -100.0)) == float(jnp.exp(-100.0))
        True
        >>> with jax.enable_x64(True):  # α = 2: E_2(−x²) = cos x
        ...     x = jnp.array([0.5, 3.0, 40.0, 900.0])
        ...     bool(jnp.allclose(mittag_leffler(2.0, -(x**2)), jnp.cos(x), rtol=0, atol=1e-13))
        True

    References:
        R. Garrappa, SIAM J. Numer. Anal. 53(3), 1350–1369 (2015), doi:10.1137/140971191.
    """
    _check(alpha, z, beta)
    dtype = jnp.result_type(float, alpha, z, beta)
    a, zz, b = (jnp.asarray(v, dtype) for v in (alpha, z, beta))
    a, zz, b = jnp.broadcast_arrays(a, zz, b)
    is_exp = (a == 1) & (b == 1)
    # α = β = 1: exp(z) exactly; d/dz from exp, d/dα and d/dβ from the contour formula
    general = _general(a, jnp.where(is_exp, jax.lax.stop_gradient(zz), zz), b)
    # value: exp(z); the zero-valued tangent term is dropped where the contour overflowed
    tangent = general - jax.lax.stop_gradient(general)
    exact = jnp.exp(zz) + jnp.where(jnp.isfinite(general), tangent, 0.0)
    # E_{α,β}(z) → +inf as z → +inf (its growth is exp(z^{1/α}) / α)
    out = jnp.where(jnp.isposinf(zz), jnp.inf, jnp.where(is_exp, exact, general))
    # a traced α or β outside its range (checked above only when concrete) reads NaN in its
    # element, not the finite number the contour would give there
    return jnp.where((a > 0) & (a <= 2) & (b > 0) & (b <= BETA_MAX), out, jnp.nan)
