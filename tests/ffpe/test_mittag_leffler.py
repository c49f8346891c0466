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
        (dict(alpha=2.5), "alpha"),
        (dict(alpha=2.000001), "alpha"),
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


# ----------------------------------------------------------------------------- 1 < α ≤ 2


@functools.cache
def _series(alpha: float, z: float, beta: float) -> float:
    """``Σ z^k/Γ(αk + β)`` in mpmath, the working precision raised by the ``e^{|z|^{1/α}}``
    that the terms reach (≈ 45 correct digits)."""
    digits = 45 + int(abs(z) ** (1 / alpha) / 2.3)
    with mp.workdps(digits):
        a, b, zz = mp.mpf(alpha), mp.mpf(beta), mp.mpf(z)
        return float(mp.nsum(lambda k: zz**k / mp.gamma(a * k + b), [0, mp.inf]))


def _pair_residues(a, b, z):
    """``2 Re(e^{s} s^{1−β})/α`` at ``s = |z|^{1/α} e^{iπ/α}`` (mpmath)."""
    s = abs(z) ** (1 / a) * mp.expjpi(1 / a)
    return 2 * mp.re(mp.exp(s) * s ** (1 - b)) / a


def test_alpha_above_one_against_series(x64):
    """1 < α ≤ 2 (the complex pole pair for z < 0; on both sides of the contour's switch
    q = 1.5 and of the asymptotic expansion's ρ = |z|^{1/α} = 100) against the high-precision
    series: error ≤ 1e-12 |E| + 5e-15, the contour's absolute floor counting near the zeros of
    the oscillating E (measured: 3.3e-15 absolute at |E| = 1e-3, α = 1.97, ρ = 99; relative
    ≤ 2e-13 wherever |E| ≥ 0.01)."""
    rhos = np.array([0.05, 0.6, 1.3, 2.0, 4.0, 9.0, 25.0, 60.0, 99.0, 101.0, 130.0])
    worst = 0.0
    for alpha in (1.02, 1.3, 1.5, 1.8, 1.97, 2.0):
        z = np.concatenate([-(rhos**alpha), [0.7, 5.0, 30.0]])
        for beta in (0.4, 1.0, alpha, 2.5):
            got = np.asarray(jax.jit(mittag_leffler)(alpha, jnp.asarray(z), beta))
            ref = np.array([_series(alpha, float(zi), beta) for zi in z])
            excess = np.abs(got - ref) - (1e-12 * np.abs(ref) + 5e-15)
            worst = max(worst, float(excess.max()))
    assert worst <= 0, worst


def test_alpha_two_closed_forms(x64):
    """E_2(−x²) = cos x, E_{2,2}(−x²) = sin x / x, E_2(x²) = cosh x: to 2e-15 absolute from
    x = 3 to 2·10⁴ (z = −4·10⁸; measured 4.4e-16: Re s is written −ρ sin(π(2 − α)/2α), exactly
    0 at α = 2) and to 1e-14 below x = 3 (measured 7.5e-15 near x = 2.9; the grid from 1e-3 in
    steps of 5 missed that range), and bounded by 1 (by 1/x) out to z = −1e300
    (fl(cos(π/2)) = 6e-17 made e^{6e-17 ρ} grow to inf by |z| = 1e38)."""
    x = np.linspace(1e-3, 2e4, 4001)
    got = np.asarray(mittag_leffler(2.0, jnp.asarray(-(x**2))))
    assert np.max(np.abs(got - np.cos(x))) < 2e-15
    # the documented small-|z| figure: 7.5e-15 measured, bound with a 1.3x margin
    xs = np.linspace(0.0, 3.0, 3001)
    got = np.asarray(mittag_leffler(2.0, jnp.asarray(-(xs**2))))
    assert np.max(np.abs(got - np.cos(xs))) < 1e-14
    got = np.asarray(mittag_leffler(2.0, jnp.asarray(-(x**2)), 2.0))
    assert np.max(np.abs(got - np.sin(x) / x)) < 1e-14
    x = np.linspace(1e-3, 25.0, 200)
    got = np.asarray(mittag_leffler(2.0, jnp.asarray(x**2)))
    np.testing.assert_allclose(got, np.cosh(x), rtol=1e-13, atol=0)
    z = -jnp.asarray([1e30, 1e34, 1e36, 1e40, 1e100, 1e300])
    assert np.all(np.abs(np.asarray(mittag_leffler(2.0, z))) <= 1)
    assert np.all(np.abs(np.asarray(mittag_leffler(2.0, z, 2.0))) <= 1 / np.sqrt(-np.asarray(z)))


def test_alpha_above_one_limits_and_finite_gradients(x64):
    """z → −∞ gives 0 for α < 2 and for α = 2, β > 1 (α = 2, β ≤ 1 oscillates without a
    limit: NaN); the gradients stay finite where a branch an element does not use would
    overflow (the pair's residue at a tiny |z| with β = 3); and far out, where 1/Γ(β − αk)
    meets x = 1/2 exactly (β = α + 1/2), ∂/∂α and ∂/∂β equal their values at β + 1e-9
    (jnp.maximum passed half the gradient at the tie)."""
    assert float(mittag_leffler(1.5, -jnp.inf)) == 0.0
    assert float(mittag_leffler(2.0, -jnp.inf, 2.0)) == 0.0
    assert np.isnan(float(mittag_leffler(2.0, -jnp.inf)))
    grad = jax.grad(mittag_leffler, argnums=(0, 1, 2))
    tiny = np.asarray(grad(1.5, -1e-300, 3.0))
    near = np.asarray(grad(1.5, -1e-230, 3.0))
    assert np.all(np.isfinite(tiny)) and np.allclose(tiny, near, rtol=1e-12, atol=1e-15)
    for alpha, beta in [(1.5, 2.0), (1.25, 1.75), (2.0, 2.5)]:
        z = -(101.0**alpha)
        at = np.asarray(grad(alpha, z, beta))
        off = np.asarray(grad(alpha, z, beta + 1e-9))
        np.testing.assert_allclose(at[[0, 2]], off[[0, 2]], rtol=1e-6)


def test_alpha_above_one_far_out_against_the_branch_cut_integral(x64):
    """Far out on the negative axis (ρ = |z|^{1/α} ≫ 100: the asymptotic expansion) against an
    independent representation: the Hankel contour collapsed onto the branch cut (the real
    integral of ``_branch_cut``) plus the pair's residues, at 40 digits. Relative 1e-13."""
    for alpha, z, beta in [(1.2, -3e4, 1.0), (1.5, -1e5, 1.5), (1.5, -1e7, 0.6), (1.8, -1e6, 2.2)]:
        with mp.workdps(40):
            a, b, zz = mp.mpf(alpha), mp.mpf(beta), mp.mpf(z)
            ref = float(_branch_cut(a, b, zz) + _pair_residues(a, b, zz))
        got = float(mittag_leffler(alpha, z, beta))
        assert abs(got - ref) <= 1e-13 * abs(ref), (alpha, z, beta, got, ref)


def test_alpha_above_one_derivatives(x64):
    """d/dz E_{α,β}(z) = (E_{α,β−1}(z) − (β − 1) E_{α,β}(z)) / (αz) (term-by-term
    differentiation of the series) on the contour and asymptotic branches; d/dα against the
    series' mpmath derivative."""
    g = jax.grad(mittag_leffler, argnums=(0, 1))
    for alpha, z in [
        (1.4, -3.0),
        (1.7, -60.0),
        (1.3, -(300.0**1.3)),
        (2.0, -(150.0**2)),
        (1.6, 4.0),
    ]:
        beta = 2.0
        _, dz = g(alpha, z, beta)
        identity = (mittag_leffler(alpha, z, 1.0) - mittag_leffler(alpha, z, 2.0)) / (alpha * z)
        assert abs(float(dz) - float(identity)) <= 1e-11 * abs(float(identity)), (alpha, z)
    for alpha, z in [(1.4, -3.0), (1.9, -20.0)]:
        da, _ = g(alpha, z, 1.0)
        with mp.workdps(50):
            ref = mp.diff(
                lambda a, z=z: mp.nsum(lambda k: mp.mpf(z) ** k / mp.gamma(a * k + 1), [0, mp.inf]),
                mp.mpf(alpha),
            )
        assert abs(float(da) - float(ref)) <= 1e-10 * abs(float(ref)), (alpha, z)


def test_orders_across_one_and_two_in_one_program(x64):
    """One compiled call over α on both sides of 1 (and α = 2) gives each order's value, and
    new values of the same shapes compile nothing new."""
    f = jax.jit(mittag_leffler)
    alphas = jnp.array([0.5, 1.0, 1.5, 2.0])
    z = jnp.array([-2.0, -2.0, -2.0, -4.0])
    got = np.asarray(f(alphas, z))
    ref = [float(_reference(0.5, -2.0)), math.exp(-2.0), _series(1.5, -2.0, 1.0), math.cos(2.0)]
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    size = f._cache_size()
    f(alphas * 0.99, z * 3)
    assert f._cache_size() == size


def test_traced_order_or_beta_out_of_range_reads_nan_in_its_element(x64):
    """Concrete α ∉ (0, 2] or β ∉ (0, 3] raise; traced ones cannot, and used to give the finite
    value the contour happens to produce there (E_{2.5}(−1) read 0.707, E_{−1}(−1) 0.632)."""
    f = jax.jit(mittag_leffler)
    alphas = jnp.array([-1.0, 0.0, 0.5, 2.0, 2.5])
    got = np.asarray(f(alphas, -1.0))
    assert np.isnan(got[[0, 1, 4]]).all()
    np.testing.assert_allclose(got[[2, 3]], [mittag_leffler(0.5, -1.0), math.cos(1.0)], rtol=1e-13)
    betas = jnp.array([-0.5, 0.0, 1.0, 3.0, 3.5])
    got = np.asarray(jax.vmap(lambda b: mittag_leffler(0.5, -1.0, b))(betas))
    assert np.isnan(got[[0, 1, 4]]).all() and np.isfinite(got[[2, 3]]).all()
    # the mask does not disturb derivatives inside the range
    da = jax.grad(lambda a: mittag_leffler(a, -1.0))(0.7)
    h = 1e-6
    fd = (mittag_leffler(0.7 + h, -1.0) - mittag_leffler(0.7 - h, -1.0)) / (2 * h)
    assert abs(float(da) - float(fd)) <= 1e-8
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 2\]"):
        mittag_leffler(2.5, -1.0)
