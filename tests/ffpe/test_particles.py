"""fracsgd.ffpe.ctrw: CTRW / subordinated-Langevin particles against closed forms that hold
exactly for the simulated scheme, and against the FFPE solver's density. float64 (x64).

Exact laws used (module docstring of fracsgd.ffpe._particles): the jump count N(t) is a
fractional Poisson process of rate λ = 1/τ₀^α = 1/dτ, with generating function
E[u^N] = E_α(−(1 − u) λ t^α) (Laskin 2003), mean λt^α/Γ(1+α) and factorial moment
E[N(N−1)] = 2λ²t^{2α}/Γ(1+2α). Every statistical tolerance below is 4 standard errors of the
estimator (a fixed key makes the test deterministic; 4σ keeps a re-keyed run passing with
probability ≈ 1 − 6e-5 per check).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fracsgd as fs
from fracsgd.ffpe import mittag_leffler


def _count_moments(alpha, t, step):
    lam = 1 / step
    mean = lam * t**alpha / math.gamma(1 + alpha)
    second = mean + 2 * lam**2 * t ** (2 * alpha) / math.gamma(1 + 2 * alpha)
    return mean, second


@pytest.mark.parametrize("dim", [1, 2])
def test_free_msd_is_exact_for_any_step(x64, dim):
    """Free particles: |w(t) − w₀|² = σ² × (N(t) jumps' χ²), σ² = 2D dτ, so
    ⟨|w − w₀|²⟩ = 2·dim·D·t^α/Γ(1+α) exactly — even with a coarse operational step."""
    alpha, d, step, n = 0.6, 0.7, 0.05, 20_000
    times = np.array([0.5, 2.0, 5.0])
    prob = fs.ffpe.Problem(alpha=alpha, diffusion=d, gamma=0.0, potential=lambda w: 0.0 * w[0])
    out = fs.ffpe.ctrw(jax.random.key(1), prob, jnp.zeros((n, dim)), times, step=step)
    assert bool(out.complete.all())
    msd = np.asarray(jnp.mean(jnp.sum(out.positions**2, axis=-1), axis=0))
    sigma2 = 2 * d * step
    for t, m in zip(times, msd, strict=True):
        mean_n, second_n = _count_moments(alpha, t, step)
        expected = 2 * dim * d * t**alpha / math.gamma(1 + alpha)
        assert sigma2 * dim * mean_n == pytest.approx(expected)
        # |x|² given N is σ²·χ²_{dim·N}: E|x|⁴ = σ⁴ E[(dim N)² + 2 dim N]
        var = sigma2**2 * (dim**2 * second_n + 2 * dim * mean_n) - expected**2
        assert abs(m - expected) < 4 * math.sqrt(var / n), (t, m, expected)


def test_harmonic_mean_and_second_moment_are_mittag_leffler(x64):
    """L = k|w|²/2 in 2-D: each jump maps a coordinate x → (1 − a)x + σξ, a = γk dτ, so
    E[x(t)] = x₀ E[(1 − a)^N] = x₀ E_α(−γk t^α) exactly, and
    E[x²(t)] = v + (x₀² − v) E_α(−γk(2 − a) t^α) with v = D/(γk(1 − a/2)) (the scheme's
    stationary variance; → D/(γk) as dτ → 0)."""
    alpha, d, gamma, k, step, n = 0.7, 0.4, 1.5, 2.0, 0.02, 20_000
    w0 = np.array([1.5, -0.8])
    times = np.array([0.1, 0.5, 1.0, 3.0])
    prob = fs.ffpe.Problem(
        alpha=alpha, diffusion=d, gamma=gamma, potential=lambda w: 0.5 * k * jnp.sum(w**2)
    )
    out = fs.ffpe.ctrw(jax.random.key(2), prob, jnp.tile(w0, (n, 1)), times, step=step)
    assert bool(out.complete.all())
    x = np.asarray(out.positions)  # (n, T, 2)
    a = gamma * k * step
    v = d / (gamma * k * (1 - a / 2))
    decay = np.asarray(mittag_leffler(alpha, -gamma * k * times**alpha))
    decay2 = np.asarray(mittag_leffler(alpha, -gamma * k * (2 - a) * times**alpha))
    mean = w0[None, :] * decay[:, None]
    second = v + (w0[None, :] ** 2 - v) * decay2[:, None]
    var = second - mean**2
    np.testing.assert_array_less(np.abs(x.mean(0) - mean), 4 * np.sqrt(var / n))
    # the standard error of the mean of x² from the sample's own variance (CLT, n = 20 000)
    np.testing.assert_array_less(np.abs((x**2).mean(0) - second), 4 * np.sqrt((x**2).var(0) / n))


def _double_well(w):
    return (w[0] ** 2 - 1.0) ** 2


def test_histogram_matches_the_ffpe_density_in_a_double_well(x64):
    """1-D double well, α = 0.7: the Kolmogorov–Smirnov distance between the particles at
    t = 1 and the CDF of fracsgd.ffpe.solve. The particles start from the solver's p₀ (a
    narrow Gaussian); the KS statistic of 20 000 exact samples stays below 1.95/√n = 0.0138
    with probability 0.999. The Euler–Maruyama bias is first order in dτ (measured with 10⁵
    particles: KS ≈ 0.024, 0.012, 0.006 at dτ = 0.04, 0.02, 0.01, and ≈ 0.003 — the sampling
    noise — at 0.005), so 0.005 on top covers the bias at dτ = 0.005 and the solver's error."""
    alpha, d, gamma, n, t_end = 0.7, 0.3, 1.0, 20_000, 1.0
    prob = fs.ffpe.Problem(alpha=alpha, diffusion=d, gamma=gamma, potential=_double_well)
    centre, width = 0.4, 0.1
    w0 = centre + width * jax.random.normal(jax.random.key(3), (n, 1))
    out = fs.ffpe.ctrw(jax.random.key(4), prob, w0, [t_end], step=0.005)
    assert bool(out.complete.all())
    grid = fs.ffpe.Grid1D(-2.5, 2.5, 500)
    x = grid.centers[:, 0]
    p0 = np.exp(-((x - centre) ** 2) / (2 * width**2))
    p0 /= p0.sum() * grid.h
    sol = fs.ffpe.solve(
        prob, grid, jnp.asarray(p0), t_final=t_end, num_steps=200, grading=(2 - alpha) / alpha
    )
    edges = np.linspace(grid.lo, grid.hi, grid.cells + 1)
    cdf_edges = np.concatenate([[0.0], np.cumsum(np.asarray(sol.p[-1]) * grid.h)])
    samples = np.sort(np.asarray(out.positions[:, 0, 0]))
    model = np.interp(samples, edges, cdf_edges)  # piecewise-linear CDF of the cell density
    empirical_hi = np.arange(1, n + 1) / n
    ks = max(np.max(empirical_hi - model), np.max(model - (empirical_hi - 1 / n)))
    assert ks < 1.95 / math.sqrt(n) + 0.005, ks


def test_recording_and_incomplete_flags(x64):
    """Observation times before the first jump see w₀; a cap on jumps is flagged per particle."""
    prob = fs.ffpe.Problem(alpha=0.5, diffusion=1.0, gamma=0.0, potential=lambda w: 0.0 * w[0])
    w0 = jnp.arange(6.0).reshape(3, 2)
    out = fs.ffpe.ctrw(jax.random.key(0), prob, w0, [1e-30], step=0.1)
    np.testing.assert_array_equal(np.asarray(out.positions[:, 0]), np.asarray(w0))
    assert out.positions.shape == (3, 1, 2) and bool(out.complete.all())
    capped = fs.ffpe.ctrw(jax.random.key(0), prob, w0, [1e6], step=0.1, max_jumps=5)
    assert not bool(capped.complete.any())
    # a capped particle stays where its last jump took it and counts every jump: with
    # γ = 1, L = w²/2 and D ≈ 0 each jump is w ← (1 − γ·step) w, so 3 jumps from 5 give 5·0.9³
    well = fs.ffpe.Problem(alpha=0.5, diffusion=1e-30, gamma=1.0, potential=lambda w: 0.5 * w @ w)
    out = fs.ffpe.ctrw(
        jax.random.key(1), well, jnp.full((4, 1), 5.0), [1e6, 2e6], step=0.1, max_jumps=3
    )
    assert not bool(out.complete.any())
    np.testing.assert_allclose(np.asarray(out.positions), 5 * 0.9**3, rtol=1e-12)
    np.testing.assert_array_equal(np.asarray(out.jumps), 3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(problem=fs.ffpe.Problem(alpha=0.0)), "alpha"),
        (dict(problem=fs.ffpe.Problem(alpha=1.2)), "alpha"),
        (dict(problem=fs.ffpe.Problem(diffusion=0.0)), "diffusion"),
        (dict(problem=fs.ffpe.Problem(diffusion=lambda w: 1.0)), "diffusion"),
        (dict(problem=fs.ffpe.Problem(reference_diffusion=1.0)), "reference_diffusion"),
        (dict(w0=np.zeros(5)), "w0"),
        (dict(times=[1.0, 0.5]), "times"),
        (dict(times=[0.0, 1.0]), "times"),
        (dict(step=0.0), "step"),
        (dict(max_jumps=0), "max_jumps"),
    ],
)
def test_bad_input(kwargs, match):
    args = dict(problem=fs.ffpe.Problem(), w0=np.zeros((5, 1)), times=[1.0], step=0.1, max_jumps=10)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        fs.ffpe.ctrw(
            jax.random.key(0),
            args["problem"],
            args["w0"],
            args["times"],
            step=args["step"],
            max_jumps=args["max_jumps"],
        )


def test_numeric_parameters_are_traced_data():
    """vmap over γ, α and the starting points equals the calls one by one (γ and w0 to float32
    rounding of the vectorised loop; α changes the waiting times only through its value); a
    vmapped α keeps the free law ⟨w²⟩ = 2 t^α / Γ(1 + α); the check of a traced value is its
    shape."""
    key = jax.random.key(0)
    harmonic = fs.ffpe.Problem(alpha=0.5, diffusion=1.0, gamma=1.0, potential=lambda w: 0.5 * w @ w)
    w0 = jnp.zeros((64, 1))
    by_gamma = jax.vmap(
        lambda g: fs.ffpe.ctrw(key, harmonic._replace(gamma=g), w0, [1.0, 3.0], step=0.05)
    )(jnp.array([0.5, 1.0]))
    one = fs.ffpe.ctrw(key, harmonic, w0, [1.0, 3.0], step=0.05)
    np.testing.assert_allclose(by_gamma.positions[1], one.positions, atol=1e-5)
    np.testing.assert_array_equal(by_gamma.jumps[1], one.jumps)
    starts = jnp.stack([w0, w0 + 1.0])
    by_start = jax.vmap(lambda w: fs.ffpe.ctrw(key, harmonic, w, [1.0, 3.0], step=0.05))(starts)
    np.testing.assert_allclose(by_start.positions[0], one.positions, atol=1e-5)
    free = fs.ffpe.Problem(alpha=0.5, diffusion=1.0, gamma=0.0)
    alphas = jnp.array([0.5, 0.9])
    by_alpha = jax.vmap(
        lambda a: fs.ffpe.ctrw(key, free._replace(alpha=a), jnp.zeros((4000, 1)), [1.0], step=0.05)
    )(alphas)
    assert bool(by_alpha.complete.all())
    for i, a in enumerate((0.5, 0.9)):
        single = fs.ffpe.ctrw(key, free._replace(alpha=a), jnp.zeros((4000, 1)), [1.0], step=0.05)
        np.testing.assert_allclose(by_alpha.positions[i], single.positions, atol=1e-5)
        msd = float(jnp.mean(by_alpha.positions[i, :, -1, 0] ** 2))
        # 4 000 particles, ⟨w⁴⟩/⟨w²⟩² ≲ 6 here: the MSD to ≈ 4 % (1 sd)
        assert msd == pytest.approx(2 / math.gamma(1 + a), rel=0.15)
    with pytest.raises(ValueError, match="gamma must be a scalar"):
        jax.vmap(lambda g: fs.ffpe.ctrw(key, harmonic._replace(gamma=g), w0, [1.0]))(
            jnp.ones((2, 3))
        )


def test_observation_times_may_be_traced():
    """vmap over sets of observation times equals the calls one by one (the jumps do not depend
    on the times they are recorded at, only how far each particle runs)."""
    key = jax.random.key(1)
    harmonic = fs.ffpe.Problem(alpha=0.7, diffusion=1.0, gamma=1.0, potential=lambda w: 0.5 * w @ w)
    w0 = jnp.zeros((32, 1))
    times = jnp.array([[0.5, 2.0], [1.0, 3.0]])
    batch = jax.vmap(lambda t: fs.ffpe.ctrw(key, harmonic, w0, t, step=0.05))(times)
    for i in range(2):
        one = fs.ffpe.ctrw(key, harmonic, w0, np.asarray(times[i]), step=0.05)
        np.testing.assert_allclose(batch.positions[i], one.positions, atol=1e-5)
        np.testing.assert_array_equal(batch.jumps[i], one.jumps)
    with pytest.raises(ValueError, match="times must be a 1-D array"):
        jax.jit(lambda t: fs.ffpe.ctrw(key, harmonic, w0, t))(jnp.ones((2, 2)))
