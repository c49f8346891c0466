"""Diffusion analysis against processes with known answers. Tolerances state the sampling error
they cover; every process is simulated vmapped over walkers in one compiled call."""

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fracsgd as fs
from fracsgd.diffusion import _correlation, _fit, _processes

D = fs.diffusion
KEY = jax.random.key(0)


def _fit_msd(x, window):
    msd = D.ensemble_msd(x)
    t = np.arange(msd.size, dtype=float)
    return D.fit_exponent(t[1:], np.sqrt(msd[1:]), window=window)


def test_exact_power_law_and_named_exponents():
    t = np.arange(1, 1001.0)
    fit = D.fit_exponent(t, 3 * t**0.3, window=(10, 1000))
    assert fit.H == pytest.approx(0.3, abs=1e-12) and fit.r2 == pytest.approx(1.0)
    assert fit.msd_exponent == pytest.approx(0.6) and fit.caputo_order == pytest.approx(0.6)
    assert fit.walk_dimension == pytest.approx(1 / 0.3)
    assert math.exp(fit.intercept) == pytest.approx(3.0)
    assert fit.ci[0] - 1e-9 <= 0.3 <= fit.ci[1] + 1e-9


def test_ci_covers_for_independent_and_for_correlated_residuals():
    """Independent noise around a power law: nominal coverage. One Brownian trajectory's R(t)
    (residuals correlated over the whole window in log-time): the classical interval alone
    almost never covers ½; the autocorrelation-robust one mostly does (0.85–0.89 and
    0.03–0.05 over three seeds at this size; binomial sd ≈ 0.03)."""
    rng = np.random.default_rng(0)
    t = np.geomspace(10, 1000, 20)
    iid = [D.fit_exponent(t, t**0.3 * np.exp(0.05 * rng.standard_normal(20))) for _ in range(300)]
    assert np.mean([f.ci[0] <= 0.3 <= f.ci[1] for f in iid]) >= 0.92
    steps = np.arange(1, 4001.0)
    covered, classical = [], []
    for _ in range(120):
        r = np.linalg.norm(np.cumsum(rng.standard_normal((4000, 50)), axis=0), axis=1)
        fit = D.fit_exponent(steps, r, window=(40, 4000))
        covered.append(fit.ci[0] <= 0.5 <= fit.ci[1])
        x = np.log(steps[39:])
        classical.append(
            abs(fit.H - 0.5) <= _fit._slope_ci(x, np.log(r[39:]) - fit.intercept - fit.H * x)[0]
        )
    assert np.mean(covered) >= 0.68
    assert np.mean(classical) <= 0.15


def test_brownian_motion_has_H_one_half():
    fit = _fit_msd(D.brownian(KEY, 2000, 2048, 2), (1, 2048))
    # 2000 walkers × 2 dims: the ensemble MSD is known to ≈ 2 %, the slope to ≈ 0.01
    assert fit.H == pytest.approx(0.5, abs=0.02)


@pytest.mark.parametrize("hurst", [0.3, 0.7])
def test_fractional_brownian_motion(hurst):
    fit = _fit_msd(D.fbm(KEY, 2000, 4096, hurst), (1, 4096))
    # exact Davies–Harte paths; 2000 walkers give the slope to ≈ 0.015
    assert fit.H == pytest.approx(hurst, abs=0.03)


@pytest.mark.parametrize("hurst", [0.2, 0.7, 0.95])
def test_fgn_autocovariance_is_accurate_at_long_lags_in_float32(hurst):
    """γ(k) as three powers cancels catastrophically in float32 (γ(4096) was off by > 100 %,
    and 54 888 circulant eigenvalues of 65 536 steps at H = 0.7 were negative and clipped)."""
    k = np.arange(2**16 + 1, dtype=np.float64)
    a = 2 * hurst
    want = 0.5 * (np.abs(k + 1) ** a - 2 * k**a + np.abs(k - 1) ** a)  # float64 reference
    got = np.asarray(D.fgn_autocovariance(2**16, hurst), np.float64)
    assert np.asarray(D.fgn_autocovariance(4, hurst)).dtype == np.float32  # default dtype
    np.testing.assert_allclose(got, want, rtol=5e-5)
    circ = np.concatenate([got, got[1:-1][::-1]])
    assert np.fft.fft(circ).real.min() > -1e-6  # the embedding is valid (fGn: λ ≥ 0 exactly)
    # far lags follow γ(k) ≈ H(2H − 1) k^{2H − 2}
    assert got[-1] == pytest.approx(hurst * (2 * hurst - 1) * k[-1] ** (a - 2), rel=1e-3)


def _fgn_autocovariance_mpmath(lags, hurst):
    import mpmath

    with mpmath.workdps(60):
        a = 2 * mpmath.mpf(hurst)
        ks = [mpmath.mpf(k) for k in range(1, lags + 1)]
        return np.array([1.0] + [float(((k + 1) ** a - 2 * k**a + (k - 1) ** a) / 2) for k in ks])


@pytest.mark.parametrize("hurst", [0.01, 0.3, 0.499, 0.4999, 0.50001, 0.7, 0.99])
def test_fgn_autocovariance_is_relatively_accurate_at_short_lags(hurst):
    """Near H = ½ every γ(k ≥ 1) is ∝ 2H − 1, and the three powers cancel at every lag: as
    written, float32 lost up to 3e-3 relative at lags 2–7 (H within 0.01 of ½) and far more
    at H = ½ ± 1e-4. The reference uses the float32 value of H, the function's input."""
    want = _fgn_autocovariance_mpmath(300, float(np.float32(hurst)))
    got = np.asarray(D.fgn_autocovariance(300, hurst), np.float64)
    np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize("hurst", [0.05, 0.4999, 0.75])
def test_fgn_autocovariance_in_float64_is_accurate_to_the_last_places(x64, hurst):
    want = _fgn_autocovariance_mpmath(120, hurst)
    got = np.asarray(D.fgn_autocovariance(120, hurst))
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-14)


def test_fbm_variance_at_every_scale_of_a_long_path():
    x = np.asarray(D.fbm(KEY, 400, 2**16, 0.7)[..., 0], np.float64)
    ts = np.array([1, 10, 100, 1000, 10_000, 2**16])
    ratio = np.mean(x[:, ts] ** 2, axis=0) / ts**1.4
    # 400 walkers: each ratio is a mean of 400 χ²₁/1 values, sd ≈ 0.07; the float32
    # covariance gave 11.2 at t = 1
    np.testing.assert_allclose(ratio, 1.0, atol=0.25)


@pytest.mark.parametrize("alpha", [0.5, 0.8])
def test_ctrw_ensemble_msd_exponent_is_alpha(alpha):
    times = np.geomspace(1, 1e4, 40)
    paths = D.ctrw(KEY, 20_000, times, alpha, max_jumps=4096)
    assert bool(paths.complete.all())
    msd = np.mean(np.sum(np.asarray(paths.positions) ** 2, axis=-1), axis=0)
    fit = D.fit_exponent(times, msd, window=(10, 1e4))  # MSD, so the slope is the MSD exponent
    # ⟨x²⟩ = t^α/Γ(1+α) for t ≫ 1; 20 000 walkers: slope to ≈ 0.01
    assert fit.H == pytest.approx(alpha, abs=0.03)
    assert msd[-1] == pytest.approx(1e4**alpha / math.gamma(1 + alpha), rel=0.1)


def test_ctrw_default_continues_every_walker_past_the_last_time():
    """One fixed block leaves the slow walkers short (flagged); the default continues each
    unfinished walker with fresh jumps until all pass the last time, so the MSD is right at
    every time. 8 000 walkers: each MSD to ≈ 3 %."""
    times = np.geomspace(1, 1e4, 20)
    short = D.ctrw(KEY, 8000, times, 0.5, max_jumps=128)  # mean jumps by 1e4: 113
    assert 0 < int(np.sum(~np.asarray(short.complete))) < 8000
    paths = D.ctrw(KEY, 8000, times, 0.5)
    assert bool(paths.complete.all())
    msd = np.mean(np.asarray(paths.positions[..., 0], np.float64) ** 2, axis=0)
    want = times**0.5 / math.gamma(1.5)
    np.testing.assert_allclose(msd[times >= 10], want[times >= 10], rtol=0.12)
    again = D.ctrw(KEY, 8000, times, 0.5)
    np.testing.assert_array_equal(np.asarray(again.positions), np.asarray(paths.positions))
    # under jit the continuation is a while_loop over every walker: the same paths, bitwise
    jitted = jax.jit(lambda k: D.ctrw(k, 8000, times, 0.5))(KEY)
    np.testing.assert_array_equal(np.asarray(jitted.positions), np.asarray(paths.positions))
    assert bool(jitted.complete.all())


def test_time_averaged_msd_differs_for_ctrw_but_not_brownian():
    x = D.brownian(KEY, 200, 4096, 1)
    ta = D.time_averaged_msd(x, [16, 64])
    np.testing.assert_allclose(ta.mean(axis=0), [16, 64], rtol=0.1)  # ergodic: = lag
    times = np.arange(1, 4097.0)
    c = D.ctrw(KEY, 200, times, 0.5, max_jumps=2048)
    ta_c = D.time_averaged_msd(c.positions, [16, 256])
    # weak ergodicity breaking: the time average grows ~linearly in the lag (ratio ≈ 16), while
    # the ensemble MSD grows as lag^0.5 (ratio 4)
    ratio = ta_c.mean(axis=0)[1] / ta_c.mean(axis=0)[0]
    assert ratio > 8


@pytest.mark.parametrize(("dt", "friction"), [(0.001, 1.0), (0.5, 1.0), (2.0, 3.0)])
def test_langevin_is_exact_at_any_step(dt, friction):
    """The joint Gaussian step leaves no discretisation error: at γ dt = 6 the trapezoid rule
    it replaced gave MSD/t ≈ 1 against the exact 2/γ = 0.67. 20 000 walkers: each MSD to ≈ 1 %."""
    x = np.asarray(D.langevin(KEY, 20_000, 100, dt, friction)[..., 0], np.float64)
    t = np.arange(101) * dt
    ratio = np.mean(x[:, 1:] ** 2, axis=0) / np.asarray(D.langevin_msd(t[1:], friction))
    np.testing.assert_allclose(ratio, 1.0, atol=0.05)
    # the one-step position variance against 50-digit arithmetic, across the series/closed-form
    # switch at u = 0.01
    import mpmath

    with mpmath.workdps(50):
        for u in (1e-7, 1e-3, 0.00999, 0.01, 0.7, 30.0):
            m = mpmath.mpf(u)
            want = float(2 * m - 3 + 4 * mpmath.exp(-m) - mpmath.exp(-2 * m))
            assert _processes._ou_position_variance(u) == pytest.approx(want, rel=1e-11)
        # and the closed-form MSD in float32, where u − 1 + e^{−u} as written lost 10 % at 1e-3
        us = (1e-6, 1e-3, 0.0999, 0.1, 3.0)
        got = np.asarray(D.langevin_msd(np.array(us), 1.0))
        want = [float(2 * (mpmath.mpf(u) - 1 + mpmath.exp(-mpmath.mpf(u)))) for u in us]
        np.testing.assert_allclose(got, want, rtol=1e-5)


def test_ballistic_to_diffusive_crossover_time():
    x = D.langevin(KEY, 4000, 3000, 0.01, 1.0)
    msd = D.ensemble_msd(x)
    t = np.arange(msd.size) * 0.01
    np.testing.assert_allclose(msd[1:], np.asarray(D.langevin_msd(t[1:], 1.0)), rtol=0.08)
    # closed form: the local slope of R, u(1−e^{−u}) / (2(u − 1 + e^{−u})) with u = γt, passes
    # 3/4 at u ≈ 2.15; the detector works on a 10-per-decade grid with half-decade fits
    u = np.linspace(0.5, 10, 100_000)
    slope = u * (1 - np.exp(-u)) / (2 * (u - 1 + np.exp(-u)))
    exact = u[np.argmax(slope < 0.75)]
    found = D.detect_crossover(t[1:], np.sqrt(msd[1:]), threshold=0.75)
    assert found is not None and exact / 1.35 < found < exact * 1.35


def test_fit_detects_the_super_to_subdiffusive_crossover():
    t = np.geomspace(1, 1e5, 400)
    tc = 300.0
    r = np.where(t < tc, t, tc * (t / tc) ** 0.3)  # ballistic, then H = 0.3
    fit = D.fit_exponent(t, r)
    assert fit.crossover == pytest.approx(tc, rel=0.5)
    assert fit.H == pytest.approx(0.3, abs=0.01)
    assert fit.window[0] >= fit.crossover and fit.window[1] == pytest.approx(1e5)


@pytest.mark.parametrize("h_late", [0.25, 0.4])
def test_detected_window_holds_no_diffusive_point(h_late):
    """R = t^½ up to t = 100, then ∝ t^H: the first half-decade local slope below ½ straddles
    t = 100 (centre 70.8), and a fit from there read H = 0.264 for 0.25; the default window
    starts where that local window ends, so a noiseless series gives H exactly."""
    t = np.geomspace(1, 1e4, 81)
    r = np.where(t < 100, t**0.5, 10 * (t / 100) ** h_late)
    fit = D.fit_exponent(t, r)
    assert fit.crossover < 100 <= fit.window[0]
    assert fit.H == pytest.approx(h_late, abs=1e-9)
    short = D.fit_exponent(t[:61], r[:61])  # late regime 100–1000 after the crossover
    assert short.crossover < 100 <= short.window[0]
    assert short.H == pytest.approx(h_late, abs=1e-9)
    # min_late_decades=1: the late window (178–1000) spans less than a decade, so no crossover
    # is kept; the fallback is the last decade or the last half in log-time, whichever is larger
    strict = D.fit_exponent(t[:61], r[:61], min_late_decades=1.0)
    assert strict.crossover is None and strict.window == pytest.approx((10**1.5, 1000.0))
    assert D.fit_exponent(t, r, min_late_decades=1.0).crossover is not None  # 178–10⁴


@pytest.mark.parametrize(("dim", "walkers"), [(1, 10_000), (2, 20_000)])
def test_spectral_dimension_on_lattices(dim, walkers):
    x = D.lattice_walk(KEY, walkers, 2000, dim)
    est = D.spectral_dimension(x, radius=2.0)
    assert est.d_s == pytest.approx(dim, rel=0.10)  # the 10 % band


def test_dimensions_use_the_elapsed_time_and_no_units():
    """A walk recorded from t = 1000 has the dimensions of the same walk from t = 0, and
    rescaling positions and ξ together changes nothing (the default window starts where the
    MSD reaches 10·ξ², not at a time 10·ξ² in the positions' units)."""
    x = D.lattice_walk(KEY, 10_000, 2000, 1)
    base = D.spectral_dimension(x, radius=2.0)
    later = D.spectral_dimension(x, radius=2.0, times=1000.0 + np.arange(x.shape[1]))
    assert later.d_s == base.d_s == pytest.approx(1.0, rel=0.1)
    small = D.spectral_dimension(x * 0.01, radius=0.02)  # SGD-like units
    assert small.d_s == pytest.approx(base.d_s, rel=1e-6) and small.fit.window == base.fit.window
    w0 = D.walk_dimension(x, window=(10, 2000))
    w1 = D.walk_dimension(x, times=1000.0 + np.arange(x.shape[1]), window=(10, 2000))
    assert w1.d_w == w0.d_w == pytest.approx(2.0, rel=0.05)
    with pytest.raises(ValueError, match="times"):
        D.walk_dimension(x, times=np.arange(x.shape[1])[::-1])
    with pytest.raises(ValueError, match="min_count"):
        D.spectral_dimension(x[:40], radius=2.0)  # 40 walkers cannot hold min_count = 50


def test_spectral_dimension_default_radius_is_one_and_a_half_steps():
    """design.md calls ``spectral_dimension(trajectories, **opts)``: without a radius ξ is 1.5
    RMS steps (1.5 spacings on Z^k), which scales with the units; walkers that never move
    have no step to measure."""
    x = np.asarray(D.lattice_walk(KEY, 4000, 400, 2), float)
    est = D.spectral_dimension(x)
    ref = D.spectral_dimension(x, radius=1.5)
    assert est.radius == 1.5 and est.d_s == ref.d_s
    assert est.ci[0] < 2 < est.ci[1]
    scaled = D.spectral_dimension(x * 1e-3)
    assert scaled.radius == pytest.approx(1.5e-3, rel=1e-6)
    assert scaled.d_s == pytest.approx(est.d_s, rel=1e-6)
    with pytest.raises(ValueError, match="never move; pass a radius"):
        D.spectral_dimension(np.zeros((10, 20, 1)))


def test_dimensions_are_free_of_units_and_offsets():
    """Lattice sites at exactly ξ stay in the ball at any scale (float32 rounding of the
    squared distance dropped them at c = 0.1 and 1/3: d_s 1.984 instead of 1.936), extreme
    scales neither overflow nor underflow, and a constant offset costs no accuracy (positions
    near 1e7 gave MSD 1.09 at lag 1 instead of 1.00)."""
    x = np.asarray(D.lattice_walk(KEY, 3000, 300, 2), float)
    ref = D.spectral_dimension(x, radius=1.0)
    for c in (0.1, 1 / 3, 10.0, 1e19, 1e-22):
        np.testing.assert_array_equal(D.return_probability(x * c, c), ref.return_probability)
        est = D.spectral_dimension(x * c, radius=c)
        assert est.d_s == ref.d_s and est.fit.window == ref.fit.window
        assert D.walk_dimension(x * c).d_w == pytest.approx(D.walk_dimension(x).d_w, rel=1e-6)
    b = np.asarray(D.brownian(KEY, 500, 50, 1), float)
    np.testing.assert_allclose(D.ensemble_msd(b + 1e7), D.ensemble_msd(b), rtol=1e-6)
    np.testing.assert_allclose(
        D.time_averaged_msd(b + 1e7, [1, 4]), D.time_averaged_msd(b, [1, 4]), rtol=1e-6
    )


def test_ctrw_paths_from_their_origin_give_the_walk_dimension():
    """CTRW paths are observed at t > 0 only; measured from the first observation instead of
    the origin the (aging) MSD exponent came out 0.278 for α = 0.5. From the origin: α/2."""
    times = np.unique(np.round(np.geomspace(1, 1000, 60)))
    c = D.ctrw(KEY, 4000, times, 0.5)
    o = c.from_origin()
    assert o.positions.shape == (4000, len(times) + 1, 1) and float(o.times[0]) == 0.0
    assert not np.asarray(o.positions[:, 0]).any()
    h = D.walk_dimension(o.positions, times=o.times, window=(10, 1000)).fit.H
    assert h == pytest.approx(0.25, abs=0.02)
    assert o.from_origin() is o


def test_spectral_and_walk_dimension_on_the_sierpinski_gasket():
    x = D.gasket_walk(KEY, 20_000, 3000, generation=8)
    est = D.spectral_dimension(x, radius=2.0)
    # 2 log 3/log 5 ≈ 1.365 (log-periodic oscillations average out over 2 decades)
    assert est.d_s == pytest.approx(D.GASKET_SPECTRAL_DIMENSION, rel=0.10)
    dw = D.walk_dimension(x)
    assert dw.d_w == pytest.approx(D.GASKET_WALK_DIMENSION, rel=0.10)
    # d_w's interval is H's under 1/H (the README used to promise a .ci it did not have)
    assert dw.ci == pytest.approx((1 / dw.fit.ci[1], 1 / dw.fit.ci[0]), rel=1e-12)
    assert dw.ci[0] < dw.d_w < dw.ci[1]
    recip = fs.diffusion._dimensions._reciprocal_interval
    assert recip(0.25, 0.5) == (2.0, 4.0) and recip(-0.1, 0.5) == (2.0, math.inf)
    assert all(math.isnan(v) for v in recip(-0.5, -0.1))
    g = D.sierpinski_gasket(3)
    # generation g: (3^{g+1} + 3)/2 nodes; corners have degree 2
    assert g.coords.shape[0] == (3**4 + 3) // 2 and sorted(g.degree)[:4] == [2, 2, 2, 4]


def test_effective_diffusion_and_alexander_orbach():
    assert D.effective_diffusion(0.5, 2.0, 2.0) == pytest.approx(1.0)  # d_w = 2: D_ξ = 1
    # λ = 3, d_s = 2: d_w = 3, D_ξ = ξ^{-1}
    assert D.effective_diffusion(0.25, 3.0, 2.0) == pytest.approx(4.0)
    assert D.walk_dimension_from_alexander_orbach(3.0, 2.0) == pytest.approx(3.0)
    assert D.paper_spectral_dimension(12.5, 0.3) == pytest.approx(7.5)
    with pytest.raises(ValueError, match="xi"):
        D.effective_diffusion(0.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="d_s"):
        D.effective_diffusion(0.5, 1.0, 0.0)
    # a failed estimate (NaN λ̂ or d_s) gives NaN in its own element only; ±inf is refused
    nan = math.nan
    out = D.effective_diffusion(0.25, [3.0, nan, 3.0], [2.0, 2.0, nan])
    np.testing.assert_allclose(out, [4.0, nan, nan])
    dw = D.walk_dimension_from_alexander_orbach([3.0, nan], [2.0, nan])
    np.testing.assert_allclose(dw, [3.0, nan])
    for args, name in (((0.5, math.inf, 2.0), "llc"), ((0.5, 1.0, -math.inf), "d_s")):
        with pytest.raises(ValueError, match=name):
            D.effective_diffusion(*args)
    with pytest.raises(ValueError, match="d_s"):
        D.walk_dimension_from_alexander_orbach(1.0, [2.0, -1.0])


@pytest.mark.parametrize(
    ("t", "r", "window", "match"),
    [
        ([1, 2, 2, 3], [1, 2, 3, 4], None, "increasing"),
        ([1, 2, 3, 4], [1, 2, 3], None, "shape"),
        ([1, 2, 3, 4], [1, -2, 3, 4], (1, 4), "R > 0"),
        ([1, 2, 3, 4, 5], [1, 2, 3, 4, 5], (4, 5), "at least 3"),
        ([1, 2, 3, 4, 5], [1, 2, 3, 4, 5], (5, 4), "window"),
    ],
)
def test_bad_fit_input(t, r, window, match):
    with pytest.raises(ValueError, match=match):
        D.fit_exponent(np.asarray(t, float), np.asarray(r, float), window=window)


def test_bad_trajectories():
    with pytest.raises(ValueError, match="trajectories"):
        D.spectral_dimension(np.zeros((10, 20)), radius=1.0)
    with pytest.raises(ValueError, match="radius"):
        D.spectral_dimension(np.zeros((10, 20, 1)), radius=0.0)
    with pytest.raises(ValueError, match="hurst"):
        D.fbm(KEY, 2, 8, 1.2)
    with pytest.raises(ValueError, match="alpha"):
        D.ctrw(KEY, 2, np.arange(1, 5.0), 1.5)
    # non-finite walkers are named (host and device arrays), not silently dropped
    x = np.asarray(D.lattice_walk(KEY, 8, 20, 1), np.float64)
    x[3, 10:] = np.nan
    x[5, 2, 0] = np.inf
    for arr in (x, jax.numpy.asarray(x, jax.numpy.float32)):
        with pytest.raises(ValueError, match=r"NaN or inf in 2 of 8 walkers \(3, 5\)"):
            D.walk_dimension(arr)
    finite = x[np.isfinite(x).all(axis=(1, 2))]
    assert finite.shape[0] == 6 and D.ensemble_msd(finite).shape == (21,)


# --- correlation dimension and lemma checks ---------------------------------------------------


def _chaos_game_gasket(n, seed=0):
    rng = np.random.default_rng(seed)
    corners = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, math.sqrt(3) / 2]])
    pts = np.empty((n, 2))
    x = np.array([0.1, 0.1])
    for i, c in enumerate(rng.integers(0, 3, n)):
        x = (x + corners[c]) / 2
        pts[i] = x
    return pts[100:]  # drop the transient


def test_correlation_dimension_of_sets_of_known_dimension():
    rng = np.random.default_rng(0)
    # uniform square: D₂ = 2 (edge effects bias low by a few %)
    assert D.correlation_dimension(rng.uniform(size=(3000, 2))).d2 == pytest.approx(2, rel=0.1)
    th = rng.uniform(0, 2 * np.pi, 3000)
    circle = np.stack([np.cos(th), np.sin(th)], axis=1)
    assert D.correlation_dimension(circle).d2 == pytest.approx(1, rel=0.05)
    gasket = _chaos_game_gasket(3100)
    assert D.correlation_dimension(gasket).d2 == pytest.approx(math.log(3) / math.log(2), rel=0.05)


def test_correlation_sum_counts_pairs_outside_the_theiler_window():
    x = np.random.default_rng(1).normal(size=(40, 2))
    r = np.array([0.5, 1.0, 2.0])
    res = D.correlation_dimension(x, theiler=3, radii=r, scaling_range=(0.5, 2.0))
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    i, j = np.triu_indices(40, k=4)  # j − i > 3
    expected = [(d[i, j] < rr).mean() for rr in r]
    np.testing.assert_allclose(res.correlation_sum, expected, rtol=1e-6)
    with pytest.raises(ValueError, match="theiler"):
        D.correlation_dimension(x, theiler=-1)
    with pytest.raises(ValueError, match="points"):
        D.correlation_dimension(np.zeros((5, 2)))


def test_bound_check_names_both_lambdas():
    ok = D.check_bound(3.0, 5.0, 6.0, d_s_source="return probability (λ-free)")
    assert ok.holds and ok.margin == 2.0 and ok.lambda_final == 6.0 and ok.note == ""
    bad = D.check_bound(7.0, 5.0, 6.0, d_s_source="2·λ̄·H (Eq. 17)")
    assert not bad.holds and "H ≤ 1/2" in bad.note
    with pytest.raises(ValueError, match="d_s_source"):
        D.check_bound(1.0, 2.0, 2.0, d_s_source="")
    # the text is only a fallback: an explicit flag wins either way
    free = D.check_bound(3.0, 5.0, 6.0, d_s_source="not from λ̄", uses_lambda_bar=False)
    assert free.note == ""
    eq17 = D.check_bound(3.0, 5.0, 6.0, d_s_source="Eq. 17", uses_lambda_bar=True)
    assert "H ≤ 1/2" in eq17.note
    with pytest.raises(ValueError, match="uses_lambda_bar"):
        D.check_bound(1.0, 2.0, 2.0, d_s_source="x", uses_lambda_bar="yes")
    # d_s = 2·λ̄·H ≤ λ̄ ⇔ λ̄(2H − 1) ≤ 0: the note follows the sign of λ̄ and agrees with holds
    for lam, H in [(-1.0, 0.3), (-1.0, 0.7), (2.0, 0.3), (2.0, 0.7), (0.0, 0.3)]:
        d_s = float(D.paper_spectral_dimension(lam, H))
        b = D.check_bound(d_s, lam, lam, d_s_source="2·λ̄·H")
        if lam > 0:
            assert "H ≤ 1/2" in b.note and b.holds == (H <= 0.5)
        elif lam < 0:
            assert "H ≥ 1/2" in b.note and b.holds == (H >= 0.5)
        else:
            assert "always" in b.note and b.holds


def test_near_stability():
    ns = D.near_stability(
        [10, 100, 1000],
        [5.0, 4.0, 6.0],
        [1, 10, 100, 1000],
        [9.0, 1.0, 2.0, 3.0],
        window=(100, 1000),
    )
    assert ns.num_checkpoints == 2 and ns.coefficient_of_variation == pytest.approx(0.2)
    assert ns.mean_grad_norm == pytest.approx(2.5)


# --- tempered-posterior comparison ------------------------------------------------------------


def test_distances_on_closed_forms():
    p, q = np.array([1.0, 0.0]), np.array([0.5, 0.5])
    assert D.kl_divergence(p, q) == pytest.approx(math.log(2))
    assert D.kl_divergence(q, q) == 0.0
    assert D.js_divergence(p, np.array([0.0, 1.0])) == pytest.approx(math.log(2))
    cost = np.array([[0.0, 3.0], [3.0, 0.0]])
    assert D.wasserstein(p, np.array([0.0, 1.0]), cost) == pytest.approx(3.0)
    assert D.wasserstein(p, q, cost) == pytest.approx(1.5)
    np.testing.assert_allclose(D.tempered_masses([0.5, 0.25, 0.25], 2.0), [2 / 3, 1 / 6, 1 / 6])


def test_tempered_comparison_recovers_the_xi_that_generated_the_posterior():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0, 0, 0], [5, 0, 0, 0], [0, 5, 0, 0]])
    counts = np.array([60, 30, 10])
    labels = np.repeat(np.arange(3), counts)
    sgd = centres[labels] + 0.1 * rng.normal(size=(100, 4))
    lam_c, ds_c = np.array([2.0, 3.0, 1.5]), np.array([1.0, 2.0, 1.0])
    m, xi_true = 3, 0.5
    q = counts / counts.sum()
    p = D.tempered_masses(q, m * xi_true ** (2 - 2 * lam_c / ds_c))
    n_post = np.round(p * 10_000).astype(int)
    post = centres[np.repeat(np.arange(3), n_post)] + 0.1 * rng.normal(size=(n_post.sum(), 4))
    xis = np.array([0.3, 0.4, 0.5, 0.6, 0.8])
    res = D.tempered_posterior_comparison(
        jax.random.key(0),
        sgd,
        post,
        num_clusters=3,
        m=m,
        llc=lam_c[labels],
        d_s=ds_c[labels],
        xis=xis,
    )
    assert res.best_xi == 0.5
    # exact up to rounding the 10 000 posterior sample counts (KL ~ 1e-6)
    assert res.kl[2] < 1e-4 and res.kl_untempered > 1e-2
    assert res.js[2] < 1e-4 and res.wasserstein[2] < 1e-2
    np.testing.assert_allclose(np.sort(res.sgd_masses), np.sort(q))


def test_tempered_comparison_bad_input():
    with pytest.raises(ValueError, match="xis"):
        D.tempered_posterior_comparison(
            jax.random.key(0),
            np.zeros((4, 2)),
            np.zeros((4, 2)),
            num_clusters=2,
            m=10,
            llc=np.ones(4),
            d_s=np.ones(4),
            xis=[-1.0],
        )
    with pytest.raises(ValueError, match="same F"):
        D.tempered_posterior_comparison(
            jax.random.key(0),
            np.zeros((4, 2)),
            np.zeros((4, 3)),
            num_clusters=2,
            m=10,
            llc=np.ones(4),
            d_s=np.ones(4),
            xis=[0.5],
        )


def test_tempered_masses_are_exact_in_log_space_and_take_the_overflow_limit():
    """A KL of clamped masses read the same at every exponent (12.786 for 800, 200 and 50);
    from the log masses it is the exact Σ p (log p − log q̃)."""
    q, p = np.array([0.6, 0.3, 0.1]), np.array([0.5, 0.3, 0.2])
    for e in (800.0, 200.0, 50.0):
        log_qt = e * np.log(q) - e * np.log(0.6) - np.log1p(np.sum((q[1:] / 0.6) ** e))
        np.testing.assert_allclose(D.tempered_log_masses(q, e), log_qt, rtol=1e-12, atol=1e-12)
    kls = [D._bayes._kl_from_log(p, D.tempered_log_masses(q, e)) for e in (800.0, 200.0, 50.0)]
    exact = [np.sum(p * (np.log(p) - e * np.log(q / 0.6))) for e in (800.0, 200.0, 50.0)]
    np.testing.assert_allclose(kls, exact, rtol=1e-4)  # the (q₂/q₁)^e corrections: < 1e-4
    assert kls[0] > kls[1] > kls[2]
    # kl_divergence guards only empty bins: 0.5 log(0.5/1e-20) + 0.5 log(0.5/(1 − 1e-20))
    assert D.kl_divergence([0.5, 0.5], [1 - 1e-20, 1e-20]) == pytest.approx(
        0.5 * math.log(0.5 / 1e-20) + 0.5 * math.log(0.5)
    )
    # counts and fractions are the same masses (different exponents per cluster)
    np.testing.assert_allclose(
        D.tempered_masses([50, 25, 25], [1.0, 2.0, 3.0]),
        D.tempered_masses([0.5, 0.25, 0.25], [1.0, 2.0, 3.0]),
        rtol=1e-12,
    )
    # e·log q overflows: the limit, all mass on the smallest e_c·(−log q_c), ties shared
    np.testing.assert_array_equal(D.tempered_masses([0.1] * 4, 1e308), [0.25] * 4)
    np.testing.assert_array_equal(D.tempered_masses([0.4, 0.3, 0.3], 1e308), [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(D.tempered_masses([0.4, 0.3, 0.3], np.inf), [1.0, 0.0, 0.0])
    # e·log q = −inf, −1.20e308, −0.80e308: the last wins, the others underflow
    np.testing.assert_array_equal(
        D.tempered_masses([0.5, 0.3, 0.2], [np.inf, 1e308, 5e307]), [0.0, 0.0, 1.0]
    )
    # every e·log q overflows (all q < e^−1.8): the smallest e_c·(−log q_c) wins,
    # 1e308·1.83 against 5e307·1.97 for the two largest clusters
    q8 = np.array([0.16, 0.14] + [0.7 / 6] * 6)
    np.testing.assert_array_equal(D.tempered_masses(q8, 1e308), np.eye(8)[0])
    np.testing.assert_array_equal(D.tempered_masses(q8, [1e308, 5e307] + [1e308] * 6), np.eye(8)[1])
    np.testing.assert_array_equal(D.tempered_masses([0.4, 0.3, 0.3], [np.inf, 5, 5]), [0, 0.5, 0.5])
    np.testing.assert_array_equal(D.tempered_masses([1.0, 0.0], 1e308), [1.0, 0.0])
    # a cluster below float64's resolution next to another is still a cluster (q₁/Σq rounds
    # to 1), and masses whose sum overflows are still normalised
    np.testing.assert_allclose(D.tempered_log_masses([1.0, 1e-20], 0.0), np.log([0.5, 0.5]))
    np.testing.assert_allclose(D.tempered_log_masses([1.0, 1e-20], 1.0), [0.0, math.log(1e-20)])
    np.testing.assert_allclose(D.tempered_masses([1.5e308, 1e308], 1.0), [0.6, 0.4])
    np.testing.assert_allclose(D.tempered_masses([1.5e308, 1e308, 0.0], 0.0), [0.5, 0.5, 0.0])
    with pytest.raises(ValueError, match="exponents must be >= 0"):
        D.tempered_masses([0.5, 0.5], -1.0)


def test_tempered_comparison_picks_the_xi_by_exact_kl_and_tempers_by_gamma():
    """m = 200 (a moons-sized training set): the tempered minority masses underflow; the exact
    KL still orders the ξ. And the steady state exp(−γL/D_ξ) is tempered by m·D_ξ/γ."""
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]])
    counts, post_counts = (60, 30, 10), (50, 30, 20)
    sgd = np.concatenate(
        [c + 0.1 * rng.normal(size=(n, 2)) for c, n in zip(centres, counts, strict=True)]
    )
    post = np.concatenate(
        [c + 0.1 * rng.normal(size=(n, 2)) for c, n in zip(centres, post_counts, strict=True)]
    )
    kw = dict(num_clusters=3, llc=np.full(100, 2.0), d_s=np.full(100, 1.0), xis=[0.5, 1.0, 2.0])
    res = D.tempered_posterior_comparison(jax.random.key(0), sgd, post, m=200, **kw)
    np.testing.assert_allclose(res.d_xi[:, 0], [4.0, 1.0, 0.25])
    q, p = res.sgd_masses, res.sgld_masses
    top = np.argmax(q)
    for i, d in enumerate([4.0, 1.0, 0.25]):
        e = 200 * d
        log_qt = e * np.log(q / q[top]) - np.log(np.sum((q / q[top]) ** e))
        np.testing.assert_allclose(res.log_tempered[i], log_qt, rtol=1e-9)
        assert res.kl[i] == pytest.approx(np.sum(p * (np.log(p) - log_qt)), rel=1e-9)
    assert res.kl[0] > res.kl[1] > res.kl[2] and res.best_xi == 2.0
    assert res.gamma == 1.0
    # γ = 4 at ξ = 0.5 (D_ξ = 4) tempers as γ = 1 at ξ = 1 (D_ξ = 1)
    res4 = D.tempered_posterior_comparison(jax.random.key(0), sgd, post, m=200, gamma=4.0, **kw)
    np.testing.assert_allclose(res4.log_tempered[0], res.log_tempered[1], rtol=1e-12)
    with pytest.raises(ValueError, match="gamma"):
        D.tempered_posterior_comparison(jax.random.key(0), sgd, post, m=200, gamma=0.0, **kw)


def test_kmeans_does_not_recompile_on_a_second_call():
    """conventions.md 11: new points and a new key (and so tempered_posterior_comparison's
    second call) reuse the compiled program; it was a fresh jit of a closure over the points,
    compiled again on every call."""
    compiles = []

    def listen(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(event)

    rng = np.random.default_rng(0)
    D.kmeans(KEY, rng.normal(size=(40, 3)), 3, iterations=5, restarts=2)
    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        D.kmeans(jax.random.key(1), rng.normal(size=(40, 3)), 3, iterations=5, restarts=2)
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert compiles == []


def test_kmeans_is_unit_free_and_assign_checks_its_input():
    x = np.concatenate([np.zeros((5, 2)), np.ones((7, 2)) * 10])
    for scale in (1e-22, 1.0, 1e22):  # 1e-22: squared distances underflowed float32
        cl = D.kmeans(jax.random.key(0), x * scale + 3.0 * scale, 2)
        assert sorted(np.bincount(cl.labels).tolist()) == [5, 7]
        np.testing.assert_allclose(np.sort(cl.centroids[:, 0]) / scale, [3.0, 13.0], rtol=1e-6)
        assert cl.inertia / scale**2 < 1e-6
    # distinct in float64 but not in the float32 that is clustered: a cluster would stay empty
    with pytest.raises(ValueError, match="exceeds the 3 distinct points"):
        D.kmeans(jax.random.key(0), np.array([[0.0], [1.0], [1 + 1e-9], [0.5]]), 4)
    with pytest.raises(ValueError, match="centroids must have shape"):
        D.assign(np.ones((3, 2)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="points must have shape"):
        D.assign(np.ones(3), np.ones((2, 1)))
    with pytest.raises(ValueError, match="centroids must have shape"):
        D.assign(np.ones((3, 2)), np.ones((0, 2)))
    with pytest.raises(ValueError, match="points contains NaN"):
        D.assign([[np.nan, 0.0], [1.0, 1.0]], np.ones((1, 2)))
    np.testing.assert_array_equal(
        D.assign([[0.0, 0.0], [9.0, 9.0]], [[10.0, 10.0], [1.0, 0.0]]), [1, 0]
    )


@pytest.mark.parametrize(
    "call",
    [
        lambda v: D.kl_divergence(v, v),
        lambda v: D.tempered_masses(v, 2.0),
        lambda v: D.check_bound(v[0], 1.0, 1.0, d_s_source="x"),
        lambda v: D.correlation_dimension(jnp.tile(v, (5, 1))),
        lambda v: D.kmeans(jax.random.key(0), v[:, None], 1),
        lambda v: D.near_stability([1.0, 2.0], v, [1.0, 2.0], v, (1, 2)),
    ],
)
def test_host_side_analysis_refuses_tracers_by_name(call):
    with pytest.raises(ValueError, match="runs on the host"):
        jax.jit(call)(jnp.array([0.5, 0.5]))


def test_near_stability_inputs_and_degenerate_windows():
    with pytest.raises(ValueError, match="grad_norm must be finite and >= 0"):
        D.near_stability([1, 2], [1.0, 2.0], [1, 2], [-1.0, 1.0], (1, 2))
    with pytest.raises(ValueError, match="llc must be finite"):
        D.near_stability([1, 2], [np.inf, 2.0], [1, 2], [1.0, 1.0], (1, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no division or empty-mean warnings
        zero_mean = D.near_stability([1, 2], [-1.0, 1.0], [1, 2], [np.nan, np.nan], (1, 2))
        assert zero_mean.coefficient_of_variation == math.inf
        assert math.isnan(zero_mean.mean_grad_norm)
        flat = D.near_stability([1, 2], [0.0, 0.0], [1, 2], [np.nan, 2.0], (1, 2))
        assert math.isnan(flat.coefficient_of_variation) and flat.mean_grad_norm == 2.0


def test_correlation_dimension_names_a_short_scaling_range():
    x = np.random.default_rng(0).uniform(size=(200, 2))
    with pytest.raises(ValueError, match=r"scaling_range \(0.02, 0.025\) holds 1 of the radii"):
        D.correlation_dimension(x, radii=np.geomspace(0.01, 0.5, 10), scaling_range=(0.02, 0.025))


@pytest.mark.parametrize("n", [10, 64, 65, 130, 201])
def test_pair_counts_equal_a_brute_force_count(n):
    """Every unordered pair once (odd and even N, blocks that end mid-way), the Theiler window
    from 0 to N − 3 (pairs half a circle apart included), strict ``<`` at exact ties: lattice
    points at distances 1, 2 and √2, and radii equal to those distances."""
    x = np.random.default_rng(n).integers(0, 4, size=(n, 2)).astype(np.float32)
    radii = np.array([0.5, 1.0, math.sqrt(2), 1.5, 2.0, 2.5, 10.0], np.float32)
    d = np.sqrt(np.sum(np.square(x[:, None] - x[None]), axis=-1, dtype=np.float32))
    i, j = np.triu_indices(n, 1)
    for theiler in sorted({0, 1, n // 2 - 1, n // 2, n // 2 + 1, n - 3}):
        far = j - i > theiler
        expected = [int(np.sum(d[i, j][far] < r)) for r in radii]
        got = _correlation._pair_counts(jnp.asarray(x), jnp.asarray(radii), theiler)
        assert got.tolist() == expected, theiler


@pytest.mark.slow
def test_pair_counts_do_not_overflow_int32():
    """65 537 points closer than every radius: 2 147 516 416 pairs, above 2³¹ − 1 (an int32 sum
    wrapped to −2 147 450 880)."""
    x = jnp.asarray(np.random.default_rng(0).uniform(size=(65_537, 1)), jnp.float32)
    counts = _correlation._pair_counts(x, jnp.array([2.0, 3.0], jnp.float32), 0)
    np.testing.assert_array_equal(counts, [65_537 * 65_536 // 2] * 2)


@pytest.mark.parametrize("h", [0.2, 0.45])
def test_a_series_subdiffusive_throughout_has_no_crossover_and_is_fitted_whole(h):
    t = np.geomspace(1, 1e4, 81)
    assert D.detect_crossover(t, 2 * t**h) is None
    fit = D.fit_exponent(t, 2 * t**h)
    assert fit.crossover is None and fit.window == (1.0, 1e4) and fit.num_points == 81
    assert fit.H == pytest.approx(h, abs=1e-12)
    # a diffusive start is still a crossover
    r = np.where(t < 100, t**0.5, 10 * (t / 100) ** h)
    assert D.fit_exponent(t, r).crossover is not None


def test_crossover_on_a_short_series_with_undefined_trailing_slopes():
    """Four points over a decade: the local-slope windows near the end hold fewer than three
    points (NaN slopes); they must neither count as 'above' nor index past the grid."""
    t = np.array([10.0, 20.0, 30.0, 40.0])
    r = t**0.3
    c = fs.diffusion.detect_crossover(t, r)
    assert c is None or t[0] <= c <= t[-1]
    fit = fs.diffusion.fit_exponent(t, r)
    assert abs(fit.H - 0.3) < 1e-12  # an exact power law, whatever window is chosen


def test_formulas_are_jit_and_vmap_compatible():
    """The contract: array functions are pure and jit/vmap-compatible. D_ξ = ξ^{2 − 2λ/d_s},
    d_w = 2λ/d_s and d_s = 2λH under jit and vmap equal the eager values."""
    llc = jax.numpy.array([1.0, 2.0, 3.0])
    eager = np.asarray(D.effective_diffusion(0.5, np.asarray(llc), 2.0))
    traced = jax.jit(jax.vmap(lambda lam: D.effective_diffusion(0.5, lam, 2.0)))(llc)
    np.testing.assert_allclose(np.asarray(traced), eager, rtol=1e-6)
    np.testing.assert_allclose(eager, 0.5 ** (2 - np.asarray(llc)), rtol=1e-12)
    dw = jax.jit(D.walk_dimension_from_alexander_orbach)(llc, 2.0)
    np.testing.assert_allclose(np.asarray(dw), np.asarray(llc), rtol=1e-6)
    ds = jax.vmap(D.paper_spectral_dimension)(llc, jax.numpy.full(3, 0.25))
    np.testing.assert_allclose(np.asarray(ds), 0.5 * np.asarray(llc), rtol=1e-6)
    grad = jax.grad(lambda lam: D.effective_diffusion(0.5, lam, 2.0))(1.0)
    assert float(grad) == pytest.approx(-np.log(0.5) * 0.5, rel=1e-5)  # d/dλ ξ^{2−λ}


def test_nan_tails_parity_zeros_labels_and_resampling():
    """A diverged run's R ends in NaN: the default fit stops at its last finite point. On Z¹
    with ξ = 0.5 the walk is back only at even times: the zero counts are left out. Labels
    beyond num_clusters are refused (their mass would vanish), and log_resample takes the
    nearest recorded time in log-time."""
    t = np.arange(1, 1001.0)
    r = 2 * t**0.3
    r[700:] = np.nan
    fit = D.fit_exponent(t, r)
    assert fit.H == pytest.approx(0.3, abs=1e-9) and fit.window[1] == 700
    x = D.lattice_walk(KEY, 10_000, 2000, 1)
    odd = D.spectral_dimension(x, radius=0.5)
    assert odd.d_s == pytest.approx(1.0, rel=0.1)
    assert (odd.return_probability[1::2] == 0).all()
    with pytest.raises(ValueError, match="num_clusters"):
        D.masses([0, 1, 3], 3)
    ts, vs = D.log_resample(np.array([0.0, 1, 2, 100, 1000]), np.arange(5.0), 4)
    np.testing.assert_array_equal(ts, [1, 2, 100, 1000])  # 10 is nearer 2 than 100 in log
    np.testing.assert_array_equal(vs, [1, 2, 3, 4])


def test_generators_take_traced_parameters_and_ctrw_one_block_jits():
    """The contract: array functions are jit/vmap-compatible. A traced H, α or t is data."""
    x = jax.vmap(lambda h: D.fbm(KEY, 4, 16, h))(jax.numpy.array([0.3, 0.7]))
    np.testing.assert_array_equal(x[1], D.fbm(KEY, 4, 16, 0.7))
    w = jax.vmap(lambda a: D.mittag_leffler_waiting_times(KEY, (64,), a))(
        jax.numpy.array([0.5, 1.0])
    )
    np.testing.assert_allclose(w[0], D.mittag_leffler_waiting_times(KEY, (64,), 0.5), rtol=1e-5)
    np.testing.assert_allclose(w[1], D.mittag_leffler_waiting_times(KEY, (64,), 1.0), rtol=1e-6)
    t = jax.numpy.array([0.5, 2.0])
    np.testing.assert_allclose(jax.jit(lambda s: D.langevin_msd(s, 1.0))(t), D.langevin_msd(t, 1.0))
    times = np.array([1.0, 2.0])
    jitted = jax.jit(lambda k: D.ctrw(k, 3, times, 0.5, max_jumps=8).positions)(KEY)
    np.testing.assert_array_equal(jitted, D.ctrw(KEY, 3, times, 0.5, max_jumps=8).positions)
    # the default's host loop cannot run on a traced key: the same blocks in a while_loop
    keys = jax.random.split(KEY, 2)
    batch = jax.vmap(lambda k: D.ctrw(k, 3, times, 0.5))(keys)
    assert batch.positions.shape == (2, 3, 2, 1) and bool(batch.complete.all())
    for i in range(2):
        np.testing.assert_array_equal(batch.positions[i], D.ctrw(keys[i], 3, times, 0.5).positions)


def test_langevin_and_ctrw_take_traced_parameters():
    """vmap over the friction / dt of ``langevin`` and the α of ``ctrw``: the same walks as
    concrete calls (the device coefficients agree with the host's float64 ones to float32
    rounding across the series/closed-form switch at u = 1), and the CTRW law holds."""
    from fracsgd.diffusion import _processes

    for dt in (1e-4, 0.01, 0.5, 0.999, 1.001, 3.0, 40.0):
        for g in (0.3, 1.0, 3.0):
            host = np.array(_processes._langevin_coefficients(dt, g))
            dev = np.array(jax.jit(_processes._langevin_coefficients_traced)(dt, g), np.float64)
            # (atol: e^{−u} underflows float32 at u = 120)
            np.testing.assert_allclose(dev, host, rtol=3e-6, atol=1e-30, err_msg=f"dt={dt}, γ={g}")
    x = jax.vmap(lambda g: D.langevin(KEY, 8, 20, 0.1, g))(jax.numpy.array([0.5, 5.0]))
    np.testing.assert_allclose(x[1], D.langevin(KEY, 8, 20, 0.1, 5.0), atol=1e-6)
    y = jax.jit(lambda dt: D.langevin(KEY, 8, 20, dt, 5.0))(0.1)
    np.testing.assert_allclose(y, x[1], atol=1e-6)
    t = np.array([1e-3, 0.5, 30.0])
    msd = jax.vmap(lambda g: D.langevin_msd(t, g))(jax.numpy.array([0.5, 5.0]))
    np.testing.assert_allclose(msd[1], D.langevin_msd(t, 5.0), rtol=1e-6)
    times = np.geomspace(1.0, 1e3, 6)
    alphas = jax.numpy.array([0.5, 0.8])
    one = jax.vmap(lambda a: D.ctrw(KEY, 50, times, a, max_jumps=64))(alphas)
    np.testing.assert_array_equal(one.positions[1], D.ctrw(KEY, 50, times, 0.8, max_jumps=64)[1])
    paths = jax.vmap(lambda a: D.ctrw(KEY, 4000, times, a))(alphas)
    assert bool(paths.complete.all())
    for i, a in enumerate((0.5, 0.8)):
        msd = np.mean(np.asarray(paths.positions[i, ..., 0], np.float64) ** 2, axis=0)
        # 4 000 walkers: each MSD to ≈ 4 % (1 sd of x² / √4000 relative, x² ~ heavy-ish tails)
        np.testing.assert_allclose(msd, times**a / math.gamma(1 + a), rtol=0.12)
    with pytest.raises(ValueError, match="alpha must be a scalar"):
        jax.vmap(lambda a: D.ctrw(KEY, 3, times, a))(jax.numpy.ones((2, 2)))


def test_ctrw_continuation_under_jit_equals_the_host_loop_over_many_blocks(monkeypatch):
    """Blocks of 64 jumps against a mean of 113 by t = 1e4 (at α = ½ the count is ≈ √(2t)|Z|,
    so about two thirds of the walkers need 2 to ~8 blocks): the while_loop (traced key) must
    give the host loop's paths bitwise."""
    from fracsgd.diffusion import _processes

    monkeypatch.setattr(_processes, "CTRW_BLOCK_ELEMENTS", 500 * 64)
    assert _processes._ctrw_block_size(1e4, 0.5, 500) == 64
    times = np.geomspace(1, 1e4, 8)
    host = D.ctrw(KEY, 500, times, 0.5)
    traced = jax.jit(lambda k: D.ctrw(k, 500, times, 0.5))(KEY)
    np.testing.assert_array_equal(np.asarray(traced.positions), np.asarray(host.positions))
    assert bool(host.complete.all()) and bool(traced.complete.all())
    one_block = D.ctrw(KEY, 500, times, 0.5, max_jumps=64)
    assert np.mean(~np.asarray(one_block.complete)) > 0.5  # P(√(2e4)|Z| > 64) ≈ 0.65
    with pytest.raises(ValueError, match=">= 0"):
        D.ctrw(KEY, 3, [-1.0, 2.0], 0.5)
    with pytest.raises(ValueError, match="float32"):
        D.ctrw(KEY, 3, [1.0, 1.0 + 1e-9], 0.5)


def test_comparison_and_dimension_inputs_are_checked_by_name():
    with pytest.raises(ValueError, match="cost must be non-negative"):
        D.wasserstein([0.5, 0.5], [0.3, 0.7], -np.ones((2, 2)))
    with pytest.raises(ValueError, match="eps"):
        D.kl_divergence([0.5, 0.5], [1.0, 0.0], eps=0.0)
    two = np.concatenate([np.zeros((5, 2)), np.ones((7, 2))])
    with pytest.raises(ValueError, match="exceeds the 2 distinct points"):
        D.kmeans(KEY, two, 3)
    pts = np.random.default_rng(0).uniform(size=(500, 2))
    with pytest.raises(ValueError, match=r"C\(r\) = 0 .* scaling_range"):
        D.correlation_dimension(pts, radii=np.geomspace(1e-6, 1, 20), scaling_range=(1e-6, 1))
    # unit- and offset-free like the other dimensions
    ref = D.correlation_dimension(pts).d2
    assert D.correlation_dimension(pts * 1e20).d2 == pytest.approx(ref, rel=1e-9)
    assert D.correlation_dimension(pts + 1e7).d2 == pytest.approx(ref, rel=1e-6)
    t = np.arange(1, 1001.0)
    r = t**0.3
    r[500] = np.nan
    with pytest.raises(ValueError, match=r"at t = 501 \(index 500\) R = nan"):
        D.fit_exponent(t, r)
    # P(0) = 1 has no log time: a window from τ = 0 fits from the first τ > 0
    x = np.asarray(D.lattice_walk(KEY, 2000, 200, 2), float)
    est = D.spectral_dimension(x, radius=1.5, window=(0, 200))
    assert est.fit.window[0] == 1.0


def test_ctrw_runs_in_float64_under_x64(x64):
    """With x64 the waiting times are float64: the walk's clock and positions follow them
    (a float32 clock mixed the two, which JAX warns will become an error), in the host loop
    and in the traced while_loop alike."""
    times = np.array([1.0, 10.0])
    host = D.ctrw(KEY, 64, times, 0.5)
    traced = jax.jit(lambda k: D.ctrw(k, 64, times, 0.5))(KEY)
    assert host.positions.dtype == traced.positions.dtype == np.float64
    np.testing.assert_array_equal(np.asarray(host.positions), np.asarray(traced.positions))
    assert bool(host.complete.all())


def test_diffusive_ensembles_rarely_report_a_crossover():
    """Lattice walks on Z¹–Z³ are diffusive at every time (H = ½). Noise ends such a series
    below ½ now and then; a crossover is kept only when H after it is significantly below ½.
    On these 12 ensembles (2 000 walkers, 3 000 steps) 8 reported one without that rule and 3
    with it (7.5 ± 1.7 % over 240 ensembles); min_late_decades=1 keeps none here (0.4 %)."""
    found, found_strict, hs = 0, 0, []
    for dim in (1, 2, 3):
        for s in range(4):
            w = np.asarray(D.lattice_walk(jax.random.key(s), 2000, 3000, dim), np.float64)
            r = np.sqrt(np.mean(np.sum(w**2, axis=-1), axis=0))
            t = np.arange(r.size, dtype=np.float64)
            fit = D.fit_exponent(t[1:], r[1:])
            found += fit.crossover is not None
            hs.append(fit.H)
            if fit.crossover is not None:
                assert fit.ci[1] < 0.5  # kept only when significant
            strict = D.fit_exponent(t[1:], r[1:], min_late_decades=1.0)
            found_strict += strict.crossover is not None
            if strict.crossover is not None:
                assert strict.window[1] >= 10 * strict.window[0]
    # 3 of 12 here: the CI is picked after the window, so the gate is not a 5 % test; fewer
    # than half, against 8 of 12 without it. Strict: at 0.4 %, P(≥ 2 of 12) ≈ 0.1 %
    assert found < 6 and found_strict <= 1
    # the mean of 12 fits of ½: its spread over ensembles is ~0.01
    assert np.mean(hs) == pytest.approx(0.5, abs=3 * 0.01 / np.sqrt(12))


def test_a_crossover_needs_half_a_decade_of_late_regime():
    """A crossover at the last local slope used to leave a fit of the last 5 of 2 000 points:
    on this Z² walk (no crossover) d_w = −133 with an interval excluding ½. A late window must
    span _fit.CROSSOVER_SPAN decades, else the last decade is fitted."""
    x = D.lattice_walk(jax.random.key(71), 2000, 2000, 2)
    t = np.arange(1, 2001.0)
    r = np.sqrt(np.asarray(D.ensemble_msd(x), np.float64)[1:])
    _, slopes = D.local_slopes(t, r, span=_fit.CROSSOVER_SPAN)
    assert slopes[-1] < 0.5 <= slopes[-2]  # what a crossover at the last local slope looks like
    fit = D.fit_exponent(t, r)
    assert fit.crossover is None and fit.window == (45.0, 2000.0)  # the fallback window
    assert fit.H == pytest.approx(0.5, abs=0.02)
    wd = D.walk_dimension(x)
    assert wd.fit.crossover is None and wd.d_w == pytest.approx(2.0, abs=0.1)
    # an exact power law bending to H = 0.3 0.4 decades before the end: too late to keep;
    # a span and a half before the end: kept, and H is exact
    tt = np.arange(1, 10001.0)
    for decades, kept in ((0.4, False), (1.0, True)):
        tc = tt[-1] / 10**decades
        rr = np.where(tt < tc, tt**0.5, tc**0.5 * (tt / tc) ** 0.3)
        f = D.fit_exponent(tt, rr)
        assert (f.crossover is not None) == kept, (decades, f)
        if kept:
            assert f.H == pytest.approx(0.3, abs=1e-9)
            assert f.window[1] >= 10**_fit.CROSSOVER_SPAN * f.window[0] * (1 - 1e-6)


def test_walk_dimension_keeps_a_crossover_only_by_the_walkers_interval():
    """The curve's own interval keeps false crossovers on diffusive walks (the ensemble MSD's
    residuals are correlated); walk_dimension repeats the test with the jackknife over walkers.
    Z² walks, 2 000 × 2 000: of 100 ensembles fit_exponent kept 4, walk_dimension 2; seed 7 is
    one it drops (jackknife interval (0.480, 0.502))."""
    x = D.lattice_walk(jax.random.key(7), 2000, 2000, 2)
    t = np.arange(1, 2001.0)
    r = np.sqrt(np.asarray(D.ensemble_msd(x), np.float64)[1:])
    curve = D.fit_exponent(t, r)
    assert curve.crossover is not None and curve.ci[1] < 0.5
    wd = D.walk_dimension(x)
    assert wd.fit.crossover is None and wd.fit.ci[0] < 0.5 < wd.fit.ci[1]
    assert wd.fit.window == (45.0, 2000.0)  # the fallback: last half of log-time


def test_dimension_intervals_cover_by_the_jackknife_over_walkers():
    """The intervals of walk_dimension and spectral_dimension come from a delete-a-group
    jackknife over 20 groups of walkers: on 40 independent Z¹ ensembles (fixed windows) they
    cover the true H = ½ and d_s = 1 about 95 % of the time. The fitted curve's own interval
    covered 67–75 % (walk) and 55–67 % (spectral) in a review's Monte Carlo."""
    cover_w = cover_s = 0
    for s in range(40):
        x = D.lattice_walk(jax.random.key(1000 + s), 1000, 1000, 1)
        w = D.walk_dimension(x, window=(10, 1000))
        cover_w += w.fit.ci[0] < 0.5 < w.fit.ci[1]
        e = D.spectral_dimension(x, radius=1.5, window=(20, 1000))
        cover_s += e.ci[0] < 1.0 < e.ci[1]
    # binomial(40, 0.95): ≥ 33 with probability 0.9995; at 0.72 only 7 %
    assert cover_w >= 33 and cover_s >= 33, (cover_w, cover_s)


def test_displacement_from_checkpoints_needs_one_structure():
    with pytest.raises(ValueError, match="same pytree structure"):
        D.displacement_from_checkpoints({"a": np.ones((3, 2))}, {"b": np.zeros(2)})
    got = D.displacement_from_checkpoints({"a": np.ones((3, 2))}, {"a": np.zeros(2)})
    np.testing.assert_allclose(got, np.sqrt(2.0))


def test_paper_spectral_dimension_treats_inf_and_nan_as_effective_diffusion_does():
    assert D.paper_spectral_dimension(12.5, 0.3) == pytest.approx(7.5)
    assert np.isnan(D.paper_spectral_dimension(np.nan, 0.3))  # a failed λ̂: NaN in its element
    with pytest.raises(ValueError, match="llc must be finite"):
        D.paper_spectral_dimension(np.inf, 0.25)
    with pytest.raises(ValueError, match="traces must be an array of numbers"):
        fs.sampling.split_rhat("abc")


def _two_regime_curves():
    t = np.arange(1, 3001.0)
    rng = np.random.default_rng(0)
    kink = np.where(t < 100, t, 100 * (t / 100) ** 0.3) * np.exp(0.01 * rng.normal(size=t.size))
    brownian = np.sqrt(t) * np.exp(0.01 * rng.normal(size=t.size))
    return t, np.stack([kink, brownian])


def test_fit_exponent_under_jit_and_vmap_is_the_host_fit():
    """Under jit/vmap the fit runs on the host per curve (pure_callback): the same window,
    crossover (NaN for None), point count and H as the host call, to float32 rounding."""
    t, curves = _two_regime_curves()
    host = [fs.diffusion.fit_exponent(t, r) for r in curves]
    assert host[0].crossover is not None and host[1].crossover is None
    fits = jax.jit(jax.vmap(lambda r: fs.diffusion.fit_exponent(t, r)))(curves)
    assert fits.H.shape == fits.crossover.shape == fits.num_points.shape == (2,)
    for i, h in enumerate(host):
        np.testing.assert_allclose(float(fits.H[i]), h.H, rtol=1e-6)
        np.testing.assert_allclose([float(fits.ci[0][i]), float(fits.ci[1][i])], h.ci, rtol=1e-6)
        assert (float(fits.window[0][i]), float(fits.window[1][i])) == pytest.approx(h.window)
        assert int(fits.num_points[i]) == h.num_points
    assert float(fits.crossover[0]) == pytest.approx(host[0].crossover, rel=1e-6)
    assert np.isnan(float(fits.crossover[1]))
    np.testing.assert_allclose(np.asarray(fits.walk_dimension), [1 / h.H for h in host], rtol=1e-6)
    # a traced window, and detect_crossover (NaN for None) under vmap
    h = jax.jit(lambda r, a, b: fs.diffusion.fit_exponent(t, r, window=(a, b)).H)(
        curves[0], 200.0, 3000.0
    )
    assert float(h) == pytest.approx(fs.diffusion.fit_exponent(t, curves[0], window=(200, 3000)).H)
    cross = jax.vmap(lambda r: fs.diffusion.detect_crossover(t, r, threshold=0.4))(curves)
    expected = fs.diffusion.detect_crossover(t, curves[0], threshold=0.4)
    assert float(cross[0]) == pytest.approx(expected)
    assert np.isnan(float(cross[1]))


def test_a_diverged_curve_reads_nan_in_its_element_under_vmap():
    """conventions.md 9: one diverged network never sinks a sweep. Under vmap a curve that is
    NaN from step 1 on (or has a NaN inside the window) gives NaN fields in its own element,
    while the others keep their exact H; the host call raises the ValueError."""
    t = np.arange(0.0, 1001.0)
    good = np.where(t > 0, 2 * t**0.3, 0.0)
    diverged = np.where(t > 0, np.nan, 0.0)  # R(0) = 0, NaN from the first step on
    holed = good.copy()
    holed[500] = np.nan
    curves = jnp.asarray(np.stack([good, diverged, holed]))
    fits = jax.vmap(lambda r: D.fit_exponent(t, r))(curves)
    assert float(fits.H[0]) == pytest.approx(0.3, rel=1e-5)  # exact power law, float32
    assert np.isnan(np.asarray(fits.H[1:])).all() and np.isnan(np.asarray(fits.r2[1:])).all()
    assert np.asarray(fits.num_points[1:]).tolist() == [0, 0]
    windowed = jax.vmap(lambda r: D.fit_exponent(t, r, window=(10.0, 1000.0)).H)(curves)
    assert float(windowed[0]) == pytest.approx(0.3, rel=1e-5)
    assert np.isnan(np.asarray(windowed[1:])).all()
    cross = jax.vmap(lambda r: D.detect_crossover(t, r))(curves[:2])
    assert np.isnan(np.asarray(cross)).all()
    for r in (diverged, holed):
        with pytest.raises(ValueError, match="finite R > 0"):
            D.fit_exponent(t, r)
    # a problem of the call, not of one curve's values, still raises under vmap
    with pytest.raises(Exception, match="holds 0 points"):
        jax.block_until_ready(
            jax.vmap(lambda r: D.fit_exponent(t, r, window=(2000.0, 3000.0)).H)(curves)
        )


def test_fit_exponent_under_jit_keeps_untraced_inputs_in_float64():
    """Only the traced inputs pass through JAX's dtype: a float64 t closed over under jit (x64
    off) was rounded to float32, which moved the window (25.1 → 31.6) and made
    t = 2²⁴ + 1, 2²⁴ + 2, … non-increasing."""
    t = np.geomspace(0.1, 1e3, 41)
    r = np.where(t < 10, t, 10**0.7 * t**0.3)
    host = fs.diffusion.fit_exponent(t, r)
    fit = jax.jit(lambda r: fs.diffusion.fit_exponent(t, r))(r)
    assert (float(fit.window[0]), int(fit.num_points)) == (
        pytest.approx(host.window[0], rel=1e-6),
        host.num_points,
    )
    t2 = 2.0**24 + np.arange(1, 41.0)
    h = jax.jit(lambda r: fs.diffusion.fit_exponent(t2, r, window=(t2[0], t2[-1])).H)
    assert float(h((t2 - 2**24) ** 0.5)) == pytest.approx(
        fs.diffusion.fit_exponent(t2, (t2 - 2**24) ** 0.5, window=(t2[0], t2[-1])).H, rel=1e-6
    )


def test_fit_exponent_under_jit_checks_what_it_can_before_running():
    t, curves = _two_regime_curves()
    fit = jax.jit(fs.diffusion.fit_exponent, static_argnames=("window",))
    with pytest.raises(ValueError, match="R must have the shape of t"):
        fit(t, curves)
    with pytest.raises(ValueError, match="window must be"):
        fit(t, curves[0], window=(1000.0, 10.0))
    with pytest.raises(ValueError, match="min_points"):
        jax.jit(lambda r: fs.diffusion.fit_exponent(t, r, min_points=2))(curves[0])
    # value checks run with the program: the host's message inside jax's runtime error
    with pytest.raises(Exception, match="holds 0 points"):
        jax.block_until_ready(fit(t, curves[0], window=(3000.5, 4000.0)))


def test_walker_estimators_under_jit_and_vmap_are_the_host_estimates():
    """walk_dimension, spectral_dimension and the MSD / return-probability helpers run on the
    host per element of a batch under jit/vmap: the same numbers as the host calls (to float32
    rounding), with traced radius, times and window as well."""
    walks = jax.vmap(lambda k: D.lattice_walk(k, 400, 120, 2))(jax.random.split(KEY, 2))
    spec = jax.jit(jax.vmap(lambda x: D.spectral_dimension(x, min_count=20)))(walks)
    walk = jax.jit(jax.vmap(lambda x: D.walk_dimension(x, window=(5.0, 119.0))))(walks)
    assert spec.d_s.shape == walk.d_w.shape == spec.fit.num_points.shape == (2,)
    assert spec.times.shape == spec.return_probability.shape == (2, 121)
    for i, x in enumerate(walks):
        s, w = D.spectral_dimension(x, min_count=20), D.walk_dimension(x, window=(5, 119))
        np.testing.assert_allclose(float(spec.d_s[i]), s.d_s, rtol=1e-5)
        np.testing.assert_allclose([float(c[i]) for c in spec.ci], s.ci, rtol=1e-5)
        np.testing.assert_allclose(np.asarray(spec.return_probability[i]), s.return_probability)
        assert float(spec.radius[i]) == s.radius and int(spec.fit.num_points[i]) == s.fit.num_points
        np.testing.assert_allclose(float(walk.d_w[i]), w.d_w, rtol=1e-5)
        np.testing.assert_allclose([float(c[i]) for c in walk.ci], w.ci, rtol=1e-5)
        assert np.isnan(float(walk.fit.crossover[i])) and w.fit.crossover is None
    x = walks[0]
    times = 10.0 + 2.0 * np.arange(121)  # 120 steps: 121 rows
    traced = jax.jit(
        lambda x, r, t, a: D.spectral_dimension(x, radius=r, times=t, window=(a, 200.0))
    )(x, 2.0, times, 20.0)
    host = D.spectral_dimension(x, radius=2.0, times=times, window=(20.0, 200.0))
    np.testing.assert_allclose(float(traced.d_s), host.d_s, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(traced.times), host.times)
    np.testing.assert_allclose(jax.jit(D.ensemble_msd)(x), D.ensemble_msd(x), rtol=1e-6)
    p = jax.vmap(lambda r: D.return_probability(x, r))(jnp.array([1.0, 3.0]))
    np.testing.assert_allclose(p[1], D.return_probability(x, 3.0))
    tamsd = jax.jit(lambda x: D.time_averaged_msd(x, [1, 4]))(x)
    np.testing.assert_allclose(tamsd, D.time_averaged_msd(x, [1, 4]), rtol=1e-6)


def test_walker_estimators_under_jit_check_what_they_can_before_running():
    x = jnp.zeros((30, 20, 2))
    with pytest.raises(ValueError, match="trajectories must have shape"):
        jax.jit(D.spectral_dimension)(x[0])
    with pytest.raises(ValueError, match="at least 4 time points"):
        jax.jit(D.walk_dimension)(x[:, :3])
    with pytest.raises(ValueError, match="min_count = 50 exceeds the 30 walkers"):
        jax.jit(D.spectral_dimension)(x)
    with pytest.raises(ValueError, match="radius must be"):
        jax.jit(lambda x: D.return_probability(x, -1.0))(x)
    with pytest.raises(ValueError, match="times must have shape"):
        jax.jit(lambda x, t: D.walk_dimension(x, times=t))(x, jnp.arange(5.0))
    with pytest.raises(ValueError, match="lags must be concrete"):
        jax.jit(D.time_averaged_msd)(x, jnp.array([1]))
    with pytest.raises(ValueError, match="window must be"):
        jax.jit(lambda x: D.walk_dimension(x, window=(5.0, 1.0)))(x)
    # a NaN walker is a value of one ensemble: NaN in its element under jit/vmap (the others
    # keep their estimates, conventions.md 9); the eager call names the walkers
    x = jnp.cumsum(jax.random.normal(KEY, (30, 60, 2)), axis=1)  # Brownian walkers
    bad = x.at[3, 5, 0].set(jnp.nan)
    assert np.isnan(float(jax.jit(lambda x: D.walk_dimension(x).d_w)(bad)))
    both = jnp.stack([x, bad])
    d_w = jax.vmap(lambda x: D.walk_dimension(x).d_w)(both)
    assert d_w[0] == np.float32(D.walk_dimension(np.asarray(x)).d_w) and np.isnan(d_w[1])
    spec = jax.vmap(lambda x: D.spectral_dimension(x, radius=1.0, window=(4.0, 40.0)))(both)
    assert np.isfinite(spec.d_s[0]) and np.isnan(spec.d_s[1]) and int(spec.fit.num_points[1]) == 0
    # walkers that never move (radius=None has no step to scale) are a value problem too
    still = jnp.stack([x, jnp.zeros_like(x)])
    spec = jax.vmap(lambda x: D.spectral_dimension(x, window=(4.0, 40.0)))(still)
    assert np.isfinite(spec.d_s[0]) and np.isnan(spec.d_s[1])
    with pytest.raises(ValueError, match="never move"):
        D.spectral_dimension(np.zeros((30, 60, 2)), window=(4.0, 40.0))
    msd = jax.vmap(D.ensemble_msd)(both)
    assert np.all(np.isfinite(msd[0])) and np.all(np.isnan(msd[1]))
    with pytest.raises(ValueError, match="NaN or inf in 1 of 30 walkers"):
        D.walk_dimension(np.asarray(bad))


def test_graph_walks_take_traced_starts_and_gasket_walk_jits():
    """gasket_walk under jit is the eager walk; graph_walk vmapped over starts equals the calls
    one by one, and a traced start outside the graph gives the path −1 (not a clamped node)."""
    np.testing.assert_array_equal(
        jax.jit(lambda k: D.gasket_walk(k, 3, 6, 3))(KEY), D.gasket_walk(KEY, 3, 6, 3)
    )
    g = D.sierpinski_gasket(3)
    starts = jnp.array([[0, 1], [2, 3]])
    batch = jax.vmap(lambda s: D.graph_walk(KEY, g, s, 5))(starts)
    for i in range(2):
        np.testing.assert_array_equal(batch[i], D.graph_walk(KEY, g, np.asarray(starts[i]), 5))
    n = g.neighbors.shape[0]
    bad = jax.jit(lambda s: D.graph_walk(KEY, g, s, 5))(jnp.array([0, n, -1]))
    assert (bad[1:] == -1).all() and (bad[0] >= 0).all()
    with pytest.raises(ValueError, match="start must be a 1-D integer array"):
        jax.jit(lambda s: D.graph_walk(KEY, g, s, 5))(jnp.array([0.0, 1.0]))


def test_the_cached_gasket_graph_cannot_be_changed_by_a_caller():
    """sierpinski_gasket returns one cached Graph per generation: writing into its arrays used
    to change every later sierpinski_gasket and gasket_walk of that generation (hidden global
    state; found while checking purity: the same key gave another walk)."""
    before = D.gasket_walk(KEY, 3, 6, 3)
    g = D.sierpinski_gasket(3)
    for field in g:
        with pytest.raises(ValueError, match="read-only"):
            field[0] = 0
    np.testing.assert_array_equal(D.gasket_walk(KEY, 3, 6, 3), before)
    with pytest.raises(ValueError, match="generation must be an integer"):
        D.sierpinski_gasket([3])  # was "unhashable type: 'list'" from the cache


def test_gasket_walk_is_in_the_default_float_dtype(x64):
    """As brownian, fbm, langevin and ctrw: float64 under x64 (the coordinates were float32
    always), with unit steps to float64 rounding (√3/2 held exactly as a float64)."""
    x = D.gasket_walk(KEY, 3, 20, 3)
    assert x.dtype == jnp.float64
    steps = np.linalg.norm(np.diff(np.asarray(x), axis=1), axis=-1)
    np.testing.assert_allclose(steps, 1.0, rtol=1e-14)  # every move is along one unit edge


def test_langevin_keeps_float64_under_x64(x64):
    """The host's float64 coefficients are not rounded to float32: eager equals jit in x64."""
    eager = D.langevin(KEY, 2, 6, 0.1, 1.0)
    traced = jax.jit(lambda g: D.langevin(KEY, 2, 6, 0.1, g))(1.0)
    assert eager.dtype == jnp.float64
    np.testing.assert_allclose(eager, traced, rtol=1e-13, atol=1e-15)


def test_return_probability_is_an_exact_fraction_in_float64():
    x = np.zeros((3, 4, 1))
    x[0, 1:, 0] = 5.0
    p = D.return_probability(x, 1.0)
    assert p.dtype == np.float64 and p.tolist() == [1.0, 2 / 3, 2 / 3, 2 / 3]


def test_ctrw_walkers_are_at_the_origin_at_time_zero_for_small_alpha():
    """At α = 0.05 about 1.3 % of float32 waits fell below the smallest normal number and
    flushed to 0: a jump at t = 0 (235 of 20 000 walkers off the origin). Waits are positive."""
    waits = D.mittag_leffler_waiting_times(KEY, (200_000,), 0.05)
    assert float(waits.min()) >= float(jnp.finfo(waits.dtype).tiny)
    paths = D.ctrw(jax.random.key(2), 20_000, np.array([0.0, 1.0]), 0.05)
    assert not np.asarray(paths.positions[:, 0]).any()


def test_ctrw_times_beyond_float32_and_empty_graph_starts_are_named():
    with pytest.raises(ValueError, match="times must stay below"):
        D.ctrw(KEY, 5, np.array([1.0, 1e39]), 0.5)
    with pytest.raises(ValueError, match="start must be a non-empty 1-D array"):
        D.graph_walk(KEY, D.sierpinski_gasket(2), np.zeros(0, int), 3)


def test_a_window_from_step_zero_fits_the_positive_times():
    """R(0) = 0 has no logarithm: a window that starts at t = 0 (training records start there)
    fits from the first positive time, the same numbers as the window from t = 1; R ≤ 0 at a
    positive time inside the window is still an error."""
    t = np.arange(0, 201.0)
    r = 3.0 * t**0.3  # R(0) = 0
    from_zero = D.fit_exponent(t, r, window=(0, 200))
    from_one = D.fit_exponent(t, r, window=(1, 200))
    assert from_zero.num_points == from_one.num_points == 200
    assert from_zero.H == from_one.H
    assert from_zero.window == (1.0, 200.0)
    assert abs(from_zero.H - 0.3) < 1e-12 and abs(from_zero.intercept - np.log(3.0)) < 1e-12
    bad = r.copy()
    bad[50] = 0.0
    with pytest.raises(ValueError, match="R > 0"):
        D.fit_exponent(t, bad, window=(0, 200))
    with pytest.raises(ValueError, match="with t > 0"):
        D.fit_exponent(t, r, window=(0, 1.5))
