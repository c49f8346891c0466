"""fracsgd.ffpe.mittag_leffler against high-precision mpmath references (40 digits), closed
forms, derivatives, and jit/vmap behaviour. float64 throughout (the x64 fixture)."""

import functools
import math

import jax
import jax.numpy as jnp
import mpmath as mp
import numpy as np
import pytest
import scipy.special

from fracsgd.ffpe import mittag_leffler

ALPHAS = (0.1, 0.25, 0.5, 0.75, 0.9, 1.0)
NEGATIVE_Z = (-100.0, -40.0, -12.0, -3.0, -1.0, -0.3, -1e-3, 0.0)
POSITIVE_Z = (1e-3, 0.4, 1.0, 3.0, 10.0, 50.0)


@functools.cache
def _reference(alpha: float, z: float, beta: float = 1.0) -> mp.mpf:
    """``E_{α,β}(z)`` to ≈ 40 digits, independently of the contour method under test.

    Power series where its cancellation is mild (``|z|^{1/α} ≤ 40``, with the working precision
    raised by the ``e^{|z|^{1/α}}`` the terms can reach); otherwise, for ``α < 1``, the real
    integral obtained by collapsing the Hankel contour onto the branch cut (Gorenflo et al.,
    *Mittag-Leffler Functions*, §3.7), in the variable ``v = r^α``::

        E_{α,β}(−x) = 1/(απ) ∫_0^∞ e^{−v^{1/α}} v^{(1−β)/α}
                      (v sin πβ − x sin π(α−β)) / (v² + 2xv cos πα + x²) dv,

    plus the residue ``e^{s*} s*^{1−β}/α``, ``s* = z^{1/α}``, for ``z = −x > 0``. It needs
    ``β < 1 + α``; larger ``β`` are brought down by ``E_{α,β} = (E_{α,β−α} − 1/Γ(β−α))/z``.
    """
    with mp.workdps(40):
        a, b, zz = mp.mpf(alpha), mp.mpf(beta), mp.mpf(z)
        if abs(z) ** (1 / alpha) <= 40 and abs(z) <= 8:
            with mp.workdps(40 + int(abs(z) ** (1 / alpha) / 2.3) + 10):
                return +mp.nsum(lambda k: zz**k / mp.gamma(a * k + b), [0, mp.inf])
        if alpha == 1.0:
            assert beta == 1.0
            return mp.exp(zz)
        if beta >= 1 + alpha / 2:
            return (_reference(alpha, z, beta - alpha) - 1 / mp.gamma(b - a)) / zz
        return _branch_cut(a, b, zz)


def _branch_cut(a, b, z):
    """The branch-cut integral (plus the residue for z > 0) at the current mpmath precision."""
    x = -z

    def integrand(v):
        return (
            mp.exp(-(v ** (1 / a)))
            * v ** ((1 - b) / a)
            * (v * mp.sinpi(b) - x * mp.sinpi(a - b))
            / (v * v + 2 * x * v * mp.cospi(a) + x * x)
        )

    points = [*sorted({mp.mpf(0), mp.mpf(0.5), mp.mpf(1), mp.mpf(2), abs(x)}), mp.inf]
    value = mp.quad(integrand, points) / (a * mp.pi)
    if z > 0:
        pole = z ** (1 / a)
        value += mp.exp(pole) * pole ** (1 - b) / a
    return value


def _relative_errors(alphas, zs, beta=1.0):
    return _relative_errors_at([(a, z) for a in alphas for z in zs], beta)


def _relative_errors_at(pairs, beta=1.0):
    a = np.array([p[0] for p in pairs])
    z = np.array([p[1] for p in pairs])
    got = np.asarray(jax.jit(mittag_leffler)(a, z, beta))
    ref = np.array([float(_reference(float(ai), float(zi), beta)) for ai, zi in pairs])
    return np.abs(got - ref) / np.abs(ref), a, z


def test_reference_representations_agree():
    """The two mpmath representations (series, branch-cut integral) agree to ≥ 18 digits where
    both apply (tanh-sinh on the v^{(1−β)/α} endpoint singularity stops near 1e-20), so the
    reference itself is trustworthy far below the 1e-12 level tested."""
    for alpha, z, beta in [(0.5, -3.0, 1.0), (0.3, -1.2, 1.0), (0.9, -6.0, 1.5), (0.7, 3.0, 1.0)]:
        series = _reference(alpha, z, beta)
        with mp.workdps(40):
            integral = _branch_cut(mp.mpf(alpha), mp.mpf(beta), mp.mpf(z))
            assert abs(integral / series - 1) < 1e-18


def test_negative_axis_relative_error_below_1e12(x64):
    # the target; the measured maximum on this grid is ≈ 1e-14
    err, a, z = _relative_errors(ALPHAS, NEGATIVE_Z)
    assert err.max() <= 1e-12, (err.max(), a[err.argmax()], z[err.argmax()])


@pytest.mark.parametrize("beta", [0.5, 1.5, 2.0])
def test_negative_axis_other_beta(x64, beta):
    err, a, z = _relative_errors((0.1, 0.5, 0.9), (-100.0, -10.0, -1.0, -0.01), beta)
    assert err.max() <= 1e-12, (err.max(), a[err.argmax()], z[err.argmax()])


def test_positive_axis_including_exponential_growth(x64):
    """z > 0: the residue e^{z^{1/α}}/α dominates. The value is computed to ≈ s*·ε relative
    (s* = z^{1/α} ≤ 709 for finite values: the rounding of z^{1/α} in the exponent), so the
    1e-12 bound also holds here; values beyond float64 must be inf, not nan."""
    finite = [(a, z) for a in ALPHAS for z in POSITIVE_Z if z ** (1 / a) < 700]
    err, a, z = _relative_errors_at(finite)
    assert err.max() <= 1e-12, (err.max(), a[err.argmax()], z[err.argmax()])
    assert float(mittag_leffler(0.5, 50.0)) == math.inf  # e^{2500}
    # α = β = 1 just past float64's exp: inf (was exp(z) + (inf − inf) = nan)
    assert float(mittag_leffler(1.0, 720.0)) == math.inf
    assert float(mittag_leffler(0.5, 27.0)) == math.inf  # e^{729}


def test_overflow_is_inf_in_float32():
    """The default dtype: e^{s*} overflows float32 beyond s* ≈ 88.7, and the value must read inf
    (it read nan: inf − inf in the contour and in exp(z) + tangent); values just below stay
    finite and right, including β = 3, where e^{s*} alone would overflow before s*^{1−β}/α
    brings it back (e^{81}/(81²·½) = 4.6e31)."""
    for a, z in ((1.0, 100.0), (0.5, 30.0), (0.5, 10.0), (0.9, 80.0)):
        assert float(mittag_leffler(a, z)) == math.inf, (a, z)
    got = float(mittag_leffler(0.5, 9.0, 3.0))
    assert got == pytest.approx(math.exp(81) / 81**2 / 0.5, rel=1e-4)
    assert float(mittag_leffler(1.0, 88.0)) == pytest.approx(math.exp(88), rel=1e-6)
    # z^{1/α} itself overflowing: its residue read inf + (1 − β)·inf, nan for β ≥ 1
    for a, z, b in ((0.05, 90.0, 1.0), (0.5, 1e20, 1.0), (0.5, 1e20, 2.0), (0.5, 1e20, 0.5)):
        assert float(mittag_leffler(a, z, b)) == math.inf, (a, z, b)


def test_positive_axis_near_the_pole_switch(x64):
    """Around s* = z^{1/α} = 1, where the contour changes from enclosing the pole to passing
    left of it and adding its residue: no jump beyond the accuracy."""
    for alpha in (0.1, 0.5, 0.9):
        z = np.array([0.999, 1.0, 1.001]) ** alpha
        got = np.asarray(mittag_leffler(alpha, jnp.asarray(z)))
        ref = np.array([float(_reference(alpha, float(zi))) for zi in z])
        np.testing.assert_allclose(got, ref, rtol=1e-13)


def test_special_cases(x64):
    x = np.concatenate([np.linspace(0, 5, 11), [10.0, 30.0, 100.0]])
    # E_{1/2}(−x) = e^{x²} erfc(x) (= erfcx, itself accurate to a few ulp)
    np.testing.assert_allclose(mittag_leffler(0.5, -x), scipy.special.erfcx(x), rtol=1e-13)
    np.testing.assert_allclose(mittag_leffler(0.5, x[:8]), scipy.special.erfcx(-x[:8]), rtol=1e-13)
    # E_1 = exp exactly, all the way down to e^{−100}
    z = np.linspace(-100, 20, 25)
    np.testing.assert_array_equal(np.asarray(mittag_leffler(1.0, z)), np.asarray(jnp.exp(z)))
    # E_{α,β}(0) = 1/Γ(β)
    for alpha in (0.1, 0.5, 1.0):
        for beta in (0.5, 1.0, 2.0, 3.0):
            got = float(mittag_leffler(alpha, 0.0, beta))
            assert got == pytest.approx(1 / math.gamma(beta), rel=1e-13)
    # β = 3 with positive z: E_{1,3}(z) = (e^z − 1 − z)/z²; beyond β = 3 the fixed contour's
    # absolute error exceeds 1/Γ(β) (2e-8 relative at β = 5, z = 1.5): refused, not wrong
    z = np.array([0.25, 1.5, 3.0, -5.0])
    np.testing.assert_allclose(mittag_leffler(1.0, z, 3.0), (np.expm1(z) - z) / z**2, rtol=2e-13)
    with pytest.raises(ValueError, match="beta"):
        mittag_leffler(0.9, -5.0, 5.0)
    # E_{1,2}(z) = (e^z − 1)/z
    z = np.array([-50.0, -2.0, 0.5, 5.0])
    np.testing.assert_allclose(mittag_leffler(1.0, z, 2.0), np.expm1(z) / z, rtol=1e-13)


def test_derivative_in_z(x64):
    """d/dz E_α(z) = E_{α,α}(z)/α (termwise differentiation of the series)."""
    points = [(0.5, -2.0), (0.25, -30.0), (0.9, -80.0), (0.75, 3.0), (1.0, -5.0), (0.1, -0.5)]
    dz = jax.jit(jax.vmap(jax.grad(mittag_leffler, argnums=1)))
    a, z = (jnp.array(v) for v in zip(*points, strict=True))
    got = np.asarray(dz(a, z))
    ref = np.array([float(_reference(ai, zi, ai) / ai) for ai, zi in points])
    # differentiating the fixed-contour quadrature: measured agreement ≤ 4e-16 on these points
    np.testing.assert_allclose(got, ref, rtol=1e-12)


def test_derivative_in_alpha(x64):
    """∂E_α(z)/∂α against a central difference of the 40-digit reference (step 1e-12: the
    O(step²) error and the cancellation are both below 1e-24)."""
    points = [(0.5, -2.0), (0.25, -30.0), (0.9, -80.0), (0.75, 3.0), (0.3, -0.5), (1.0, -5.0)]
    da = jax.jit(jax.vmap(jax.grad(mittag_leffler, argnums=0)))
    a, z = (jnp.array(v) for v in zip(*points, strict=True))
    got = np.asarray(da(a, z))
    step = 1e-12
    ref = []
    for alpha, zi in points:
        # at α = 1 one-sided (E is only defined here for α ≤ 1): O(step) = 1e-12 error
        a_hi, a_lo = (alpha + step if alpha < 1 else alpha), alpha - step
        with mp.workdps(40):  # divide by the exact float spacing, not by the nominal step
            slope = (_reference(a_hi, zi) - _reference(a_lo, zi)) / (mp.mpf(a_hi) - mp.mpf(a_lo))
        ref.append(float(slope))
    # measured agreement ≤ 5e-16, except 1e-12 at α = 1 (the one-sided quotient's O(step))
    np.testing.assert_allclose(got, np.array(ref), rtol=1e-11)


def test_broadcasting_vmap_and_no_recompilation(x64):
    z = -jnp.linspace(0.0, 50.0, 7)
    alphas = jnp.array([0.3, 0.6, 0.9])
    table = mittag_leffler(alphas[:, None], z[None, :])
    assert table.shape == (3, 7) and table.dtype == jnp.float64
    by_vmap = jax.vmap(lambda a: mittag_leffler(a, z))(alphas)
    np.testing.assert_array_equal(np.asarray(table), np.asarray(by_vmap))
    f = jax.jit(mittag_leffler)
    f(alphas, alphas)
    size = f._cache_size()
    f(alphas * 0.9, -alphas)  # new values, same shapes: no new program
    assert f._cache_size() == size


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(alpha=0.0), "alpha"),
        (dict(alpha=1.5), "alpha"),
        (dict(alpha=-0.5), "alpha"),
        (dict(beta=0.0), "beta"),
        (dict(beta=-1.0), "beta"),
        (dict(alpha=True), "alpha"),
    ],
)
def test_bad_input(kwargs, match):
    args = dict(alpha=0.5, z=-1.0, beta=1.0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        mittag_leffler(args["alpha"], args["z"], args["beta"])
