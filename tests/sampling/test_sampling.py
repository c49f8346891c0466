"""SGLD kernels: the update convention, masks, and chain diagnostics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fracsgd as fs
from fracsgd import sampling


def _quadratic(w, batch):
    return 0.5 * jnp.mean(batch) * jnp.sum(w**2) + jnp.sum(w**3) / 3


def test_noiseless_sgld_step_is_the_gradient_step_exactly():
    center = {"a": jnp.array([0.3, -0.2]), "b": jnp.array(0.5)}
    position = {"a": jnp.array([1.0, 2.0]), "b": jnp.array(-1.0)}
    batch = jnp.array([1.0, 2.0, 3.0])

    def loss(w, b):
        return _quadratic(w["a"], b) + w["b"] ** 2

    est = sampling.localized_gradient(loss, center, nbeta=7.0, localization=3.0)
    kernel = sampling.build_kernel()
    state, info = kernel(
        jax.random.key(0), sampling.init(position), batch, est, 0.01, noise_scale=0.0
    )
    g = jax.grad(loss)(position, batch)
    expected = jax.tree.map(
        lambda w, gi, c: w - 0.005 * (7.0 * gi + 3.0 * (w - c)), position, g, center
    )
    jax.tree.map(np.testing.assert_array_equal, state.position, expected)
    np.testing.assert_allclose(info.loss, loss(position, batch), rtol=1e-6)
    assert float(info.noise_norm) == 0.0


def test_mask_blocks_drift_and_noise():
    mask = jnp.array([1.0, 0.0, 1.0])
    est = sampling.localized_gradient(
        lambda w, b: jnp.sum(w**2), jnp.zeros(3), nbeta=1.0, localization=1.0
    )
    for kernel, init in (
        (sampling.build_kernel(mask), sampling.init),
        (sampling.build_psgld_kernel(mask), sampling.psgld_init),
    ):
        state = init(jnp.ones(3))
        for i in range(5):
            state, _ = kernel(jax.random.key(i), state, None, est, 0.1)
        assert float(state.position[1]) == 1.0
        assert float(state.position[0]) != 1.0


def test_a_masked_entry_stays_put_even_where_its_gradient_is_not_finite():
    """The mask selects, it does not multiply: 0·inf was NaN (d√w/dw at w = 0)."""
    est = sampling.localized_gradient(
        lambda w, b: w[0] ** 2 + jnp.sqrt(w[1]), jnp.zeros(2), nbeta=1.0, localization=0.0
    )
    for kernel, init in (
        (sampling.build_kernel(jnp.array([1.0, 0.0])), sampling.init),
        (sampling.build_psgld_kernel(jnp.array([1.0, 0.0])), sampling.psgld_init),
    ):
        state, _ = kernel(jax.random.key(0), init(jnp.array([1.0, 0.0])), None, est, 0.1)
        assert float(state.position[1]) == 0.0 and np.isfinite(float(state.position[0]))


def test_float64_masks_and_hyperparameters_keep_float32_leaves_float32(x64):
    """Under x64 a float64 mask or step size promoted float32 leaves, and the chain's state
    changed dtype between steps (a scan carry error in fracsgd.llc.estimate)."""
    center = {"w": jnp.zeros(3, jnp.float32), "v": jnp.zeros(2, jnp.float64)}
    mask = {"w": np.array([1.0, 0.0, 1.0]), "v": np.ones(2)}
    est = sampling.localized_gradient(
        lambda p, b: jnp.sum(p["w"] ** 2) + jnp.sum(p["v"] ** 2),
        center,
        nbeta=np.float64(10.0),
        localization=np.float64(1.0),
    )
    for kernel, init in (
        (sampling.build_kernel(mask), sampling.init),
        (sampling.build_psgld_kernel(mask), sampling.psgld_init),
    ):
        state, _ = kernel(jax.random.key(0), init(center), None, est, np.float64(1e-3))
        assert state.position["w"].dtype == jnp.float32
        assert state.position["v"].dtype == jnp.float64
    loss = lambda w, b: 0.5 * jnp.sum(w**2) + 0.0 * jnp.sum(b)
    res = fs.llc.estimate(
        jax.random.key(0),
        loss,
        jnp.zeros(3, jnp.float32),
        jnp.zeros((100, 1)),
        num_chains=2,
        num_draws=5,
        step_size=1e-3,
        localization=0.0,
        nbeta=10.0,
        batch_size=1,
        mask=np.array([1.0, 0.0, 1.0]),
    )
    assert np.isfinite(res.llc_mean)


def test_sampling_layer_names_its_bad_inputs():
    bad_loss = sampling.localized_gradient(
        lambda w, b: w**2, jnp.zeros(3), nbeta=1.0, localization=0.0
    )
    with pytest.raises(ValueError, match="loss_fn must return a floating-point scalar"):
        bad_loss(jnp.ones(3), None)
    with pytest.raises(ValueError, match="mask must hold numbers"):
        sampling.build_kernel({"a": jnp.ones(3), "b": np.array(["1", "0"])})
    for f in (sampling.split_rhat, sampling.effective_sample_size):
        with pytest.raises(ValueError, match="at least 1 chain"):
            f(np.ones((0, 10)))


def test_sgld_samples_a_gaussian_with_the_expected_variance():
    """U = (a/2) w² ⇒ the discrete chain is AR(1) with stationary variance 1/(a(1 − εa/4))."""
    a, eps = 4.0, 0.05
    est = sampling.localized_gradient(
        lambda w, b: 0.5 * jnp.sum(w**2), jnp.zeros(1), nbeta=a, localization=0.0
    )
    alg = sampling.sgld(est, eps)

    def chain(key):
        def step(state, k):
            state, _ = alg.step(k, state, None)
            return state, state.position[0]

        _, xs = jax.lax.scan(step, alg.init(jnp.zeros(1)), jax.random.split(key, 20_000))
        return xs[1000:]

    xs = jax.jit(jax.vmap(chain))(jax.random.split(jax.random.key(0), 16))
    expected = 1 / (a * (1 - eps * a / 4))
    # 16 × 19 000 draws, autocorrelation time ≈ 2/(εa) = 10: ~30 000 effective samples, so the
    # variance is known to ≈ 1 %; 3 % is a > 3σ band
    np.testing.assert_allclose(np.var(np.asarray(xs)), expected, rtol=0.03)


def _ar1(phi, chains, draws, seed):
    """AR(1) chains from NumPy's legacy RandomState (its stream is frozen across versions)."""
    e = np.random.RandomState(seed).standard_normal((chains, draws))
    x = np.zeros((chains, draws))
    x[:, 0] = e[:, 0]
    for t in range(1, draws):
        x[:, t] = phi * x[:, t - 1] + e[:, t]
    return x


@pytest.mark.parametrize(
    ("phi", "chains", "draws", "seed", "arviz"),
    [
        # ArviZ 0.23.4, az.ess(x, method="mean") (Stan's algorithm), on these exact arrays; the
        # previous version (pair sums cut at the first negative pair, over all lags) read the
        # relative differences noted
        (-0.8, 4, 200, 1, 2322.471989593555),  # antithetic: capped at S log10 S
        (-0.3, 2, 57, 2, 229.51241853906032),  # capped
        (0.0, 8, 100, 3, 823.5153753674695),
        (0.6, 4, 301, 4, 310.124017263738),
        (0.3, 4, 120, 20, 271.7044729667036),  # the stopping pair's positive even term: +1.0 %
        (0.7, 4, 120, 11, 120.95584195308678),  # the same: +0.2 %
        (0.95, 3, 150, 5, 18.109414542040646),  # stopped at t < n - 3, monotone: -0.08 %
        (0.999, 2, 40, 6, 3.730632165780542),  # the same: -16 %
        (0.5, 1, 9, 7, 7.224719895935548),  # stopped at t < n - 3, capped: -69 %
    ],
)
def test_ess_is_stans_and_arviz(phi, chains, draws, seed, arviz):
    """Stan's / ArviZ's ESS exactly (Vehtari et al. 2021): matched to 1e-10 on 400 random AR(1)
    shapes during development; these cases pin it."""
    x = _ar1(phi, chains, draws, seed)
    np.testing.assert_allclose(sampling.effective_sample_size(x), arviz, rtol=1e-10)
    batched = sampling.effective_sample_size(np.stack([x, x[::-1]]))  # leading axes
    assert batched.shape == (2,) and batched[0] == sampling.effective_sample_size(x)


def test_split_rhat_and_ess_on_known_processes():
    rng = np.random.default_rng(0)
    iid = rng.normal(size=(4, 2000))
    assert abs(sampling.split_rhat(iid) - 1) < 0.01
    assert 6000 < sampling.effective_sample_size(iid) < 10_000
    ar = np.zeros((4, 4000))
    for t in range(1, 4000):
        ar[:, t] = 0.9 * ar[:, t - 1] + rng.normal(size=4)
    # AR(1) with φ = 0.9: ESS = N (1 − φ)/(1 + φ) = 16 000 / 19 ≈ 842; ±35 % for estimation noise
    np.testing.assert_allclose(sampling.effective_sample_size(ar), 16_000 / 19, rtol=0.35)
    shifted = iid.copy()
    shifted[0] += 2.0
    assert sampling.split_rhat(shifted) > 1.2


def test_noise_norm_is_the_root_mean_square_of_the_injected_noise():
    """SGLD: sqrt(E||noise||²) = scale·sqrt(ε d) over the d unmasked entries, and the realized
    squared norm of the position change (zero drift) averages to it; pSGLD: sqrt(ε Σ G)."""
    d, eps, scale = 1000, 0.01, 0.5
    mask = {"a": jnp.ones(d).at[:100].set(0.0), "b": jnp.ones(())}
    active = d - 100 + 1
    zero = sampling.localized_gradient(
        lambda w, b: 0.0 * w["b"], jax.tree.map(jnp.zeros_like, mask), nbeta=1.0, localization=0.0
    )
    kernel = jax.jit(
        lambda k: sampling.build_kernel(mask)(
            k, sampling.init(jax.tree.map(jnp.zeros_like, mask)), None, zero, eps, scale
        )
    )
    sq = []
    for i in range(20):
        state, info = kernel(jax.random.key(i))
        np.testing.assert_allclose(float(info.noise_norm), scale * np.sqrt(eps * active), rtol=1e-6)
        sq.append(sum(float(jnp.sum(x**2)) for x in jax.tree.leaves(state.position)))
        assert float(jnp.abs(state.position["a"][:100]).max()) == 0.0
    # mean of 20 scaled chi²(901)/901: std sqrt(2/901/20) ≈ 0.011
    assert abs(np.mean(sq) / (scale**2 * eps * active) - 1.0) < 0.05
    # a fractional mask would scale drift and noise entrywise, i.e. sample those coordinates at
    # another temperature: refused
    half = {"a": mask["a"] * 0.5, "b": jnp.ones(())}
    with pytest.raises(ValueError, match="mask must hold only 0 and 1"):
        sampling.build_kernel(half)(
            jax.random.key(0), sampling.init(jax.tree.map(jnp.zeros_like, mask)), None, zero, eps
        )

    w0 = jnp.linspace(-1.0, 1.0, 8)
    m = jnp.ones(8).at[3].set(0.0)
    est = sampling.localized_gradient(
        lambda w, b: 0.5 * jnp.sum(w**2), w0, nbeta=1.0, localization=0.0
    )
    _, info = sampling.build_psgld_kernel(m, delta=1e-3)(
        jax.random.key(0), sampling.psgld_init(w0), None, est, eps
    )
    precond = 1.0 / (1e-3 + np.abs(np.asarray(w0)))  # one step: V̂ = g², g = w0
    want = np.sqrt(eps * np.sum(np.asarray(m) * precond))
    np.testing.assert_allclose(float(info.noise_norm), want, rtol=1e-5)


def test_psgld_frozen_step_is_langevin_with_the_adapted_preconditioner():
    """``adapt=True`` folds g² into V (bias-corrected) and counts; ``adapt=False`` keeps V and the
    count and steps with ``G = 1/(δ + sqrt(V̂))`` of the state: with the noise drawn from the
    same key, the step is ``w − (ε/2) G ∇U + sqrt(εG) ξ`` exactly."""
    alpha, delta, eps = 0.9, 0.1, 1e-2
    kernel = sampling.build_psgld_kernel(alpha=alpha, delta=delta)
    est = sampling.localized_gradient(
        lambda w, b: 0.5 * jnp.sum(w**2), jnp.zeros(3), nbeta=10.0, localization=0.0
    )
    w0 = jnp.array([1.0, -2.0, 0.0])
    s1, _ = kernel(jax.random.key(0), sampling.psgld_init(w0), None, est, eps)
    g0 = 10.0 * np.asarray(w0)
    np.testing.assert_allclose(np.asarray(s1.square_avg), (1 - alpha) * g0**2, rtol=1e-6)
    assert int(s1.step) == 1
    G = np.asarray(sampling.psgld_preconditioner(s1, delta=delta, alpha=alpha))
    np.testing.assert_allclose(G, 1.0 / (delta + np.abs(g0)), rtol=1e-6)  # V̂ = g0² after one
    s2, info = kernel(jax.random.key(1), s1, None, est, eps, adapt=False)
    assert int(s2.step) == 1
    np.testing.assert_array_equal(np.asarray(s2.square_avg), np.asarray(s1.square_avg))
    xi = np.asarray(sampling._sgld._noise_like(jax.random.key(1), s1.position))
    w1 = np.asarray(s1.position)
    want = w1 - 0.5 * eps * G * (10.0 * w1) + np.sqrt(eps * G) * xi
    np.testing.assert_allclose(np.asarray(s2.position), want, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(float(info.noise_norm), np.sqrt(eps * G.sum()), rtol=1e-5)
    with pytest.raises(ValueError, match="adapt"):
        kernel(jax.random.key(1), s1, None, est, eps, adapt=jnp.bool_(False))
    # noise_scale as in SGLD: 0 is the preconditioned gradient step exactly, ½ halves the noise
    s3, info3 = kernel(jax.random.key(1), s1, None, est, eps, adapt=False, noise_scale=0.0)
    np.testing.assert_array_equal(
        np.asarray(s3.position), np.asarray(s1.position - 0.5 * eps * G * (10.0 * s1.position))
    )
    assert float(info3.noise_norm) == 0.0
    s4, _ = kernel(jax.random.key(1), s1, None, est, eps, adapt=False, noise_scale=0.5)
    np.testing.assert_allclose(
        np.asarray(s4.position) - np.asarray(s3.position),
        0.5 * np.sqrt(eps * G) * xi,
        rtol=1e-5,
        atol=1e-6,
    )
    with pytest.raises(ValueError, match="noise_scale"):
        kernel(jax.random.key(1), s1, None, est, eps, noise_scale=-1.0)


def test_frozen_psgld_step_on_a_fresh_state_is_refused():
    """A fresh state has no preconditioner (G is NaN): adapt=False there gave all-NaN positions."""
    est = sampling.localized_gradient(
        lambda w, b: 0.5 * jnp.sum(w**2), jnp.zeros(2), nbeta=10.0, localization=0.0
    )
    kernel = sampling.build_psgld_kernel()
    with pytest.raises(ValueError, match="adapted at least once"):
        kernel(jax.random.key(0), sampling.psgld_init(jnp.ones(2)), None, est, 1e-3, adapt=False)
