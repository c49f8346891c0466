"""LLC estimation against known learning coefficients, failure handling and bad input.

Statistical tolerances: every accuracy test pools many vmapped chains; the comment at each
assertion says what the tolerance covers (sampling error and SGLD discretisation bias)."""

import itertools
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fracsgd as fs
from fracsgd.llc import _estimate

DUMMY = jnp.zeros((1000, 1))  # data for potentials that do not depend on data


def _potential(fn):
    return lambda w, batch: fn(w) + 0.0 * jnp.sum(batch)


# --- ground truth -----------------------------------------------------------------------------


def test_aoyagi_hand_derived_cases():
    assert fs.llc.aoyagi_lambda((10, 5, 10), 2) == 29.0  # theory.md Appendix B
    # M = (2,2,2,2): 𝓜 = all, ℓ = 3, S = 8, M̄ = 3, a = 2:
    # 2·1/12 − (3·2/4)(8/3)² + ½·6·4 = 1/6 − 32/3 + 12 = 3/2
    assert fs.llc.aoyagi_lambda((2, 2, 2, 2), 0) == pytest.approx(1.5)
    # rank-one factorisation 3 → 1 → 3 at zero: K = |a|²|b|², λ = min(3/2, 3/2) = 3/2
    assert fs.llc.aoyagi_lambda((3, 1, 3), 0) == pytest.approx(1.5)
    # a full-rank square two-layer network is regular in the product: λ = (−r² + 2rH)/2 = H²/2
    assert fs.llc.aoyagi_lambda((4, 4, 4), 4) == 8.0


def test_aoyagi_reductions():
    for h1 in range(1, 6):
        for h2 in range(1, 6):
            assert fs.llc.aoyagi_lambda((h1, h2), 0) == h1 * h2 / 2  # one layer: d/2
            for h3 in range(1, 7):
                lam = fs.llc.aoyagi_lambda((h1, h2, h3), 0)
                assert lam == pytest.approx(fs.llc.reduced_rank_lambda(h1, h2, h3))
                for r in range(1, min(h1, h2, h3)):
                    base = (-(r**2) + r * (h1 + h3)) / 2
                    shifted = fs.llc.reduced_rank_lambda(h1 - r, h2 - r, h3 - r)
                    assert fs.llc.aoyagi_lambda((h1, h2, h3), r) == pytest.approx(base + shifted)


@pytest.mark.parametrize(
    ("widths", "rank"),
    [((3, 0, 2), 0), ((3, 2), 3), ("ab", 0), ((2, 3), -1), ((True, 5, 10), 0)],
)
def test_aoyagi_bad_input(widths, rank):
    with pytest.raises(ValueError, match=r"widths|rank"):
        fs.llc.aoyagi_lambda(widths, rank)


@pytest.mark.parametrize(
    ("args", "name"),
    [((0, 2, 3), "m"), ((2, 2.5, 3), "h"), ((2, 2, "3"), "n"), ((True, 2, 3), "m")],
)
def test_reduced_rank_lambda_names_its_bad_argument(args, name):
    """Its arguments are m, h, n: the message used to speak of ``widths``, which it has not."""
    with pytest.raises(ValueError, match=rf"^{name} must be an integer"):
        fs.llc.reduced_rank_lambda(*args)


# --- accuracy ---------------------------------------------------------------------------------


def test_regular_model_gives_half_the_dimension():
    """U = nβ·½|w|²: E[nβ L] = (d/2)/(1 − εnβ/4) for the discrete chain (+1 % here)."""
    d = 10
    res = fs.llc.estimate(
        jax.random.key(0),
        _potential(lambda w: 0.5 * jnp.sum(w**2)),
        jnp.zeros(d),
        DUMMY,
        num_chains=32,
        num_draws=4000,
        num_burnin=500,
        step_size=4e-5,
        localization=0.0,
        nbeta=1000.0,
        batch_size=1,
    )
    # 32 chains × 4000 draws, autocorrelation ≈ 50 steps: sampling error ≈ 1 %, bias +1 %
    assert res.llc_mean == pytest.approx(d / 2, rel=0.05)
    assert not res.diverged.any() and res.rhat < 1.05


def test_sum_of_monomials_gives_sum_of_inverse_orders():
    """K = w₁² + w₂⁴ + w₃⁶: λ = 1/2 + 1/4 + 1/6 (each coordinate contributes 1/(2k))."""
    ks = jnp.array([1.0, 2.0, 3.0])
    truth = float(jnp.sum(1 / (2 * ks)))
    res = fs.llc.estimate(
        jax.random.key(1),
        _potential(lambda w: jnp.sum(w ** (2 * ks))),
        jnp.zeros(3),
        DUMMY,
        num_chains=32,
        num_draws=6000,
        num_burnin=1000,
        step_size=5e-5,
        localization=0.0,
        nbeta=1000.0,
        batch_size=1,
    )
    # the flat w⁶ direction mixes slowest; 10 % covers its sampling error and the +2.5 % bias
    # of the stiff w² direction (εnβ = 0.05)
    assert res.llc_mean == pytest.approx(truth, rel=0.10)


def _localized_product_expectation(k2: int, nbeta: float, gamma: float) -> float:
    """Exact E[nβ K] for K = w₁² w₂^(2 k2) under p ∝ exp(−nβ K − (γ/2)|w|²): given w₂, w₁ is
    Gaussian with precision 2nβ w₂^(2k2) + γ, so E[nβ K | w₂] = nβ w₂^(2k2) / (2nβ w₂^(2k2) + γ)
    and w₂ has density ∝ exp(−γ w₂²/2) (2nβ w₂^(2k2) + γ)^(−1/2); one quadrature."""
    from scipy import integrate

    def marginal(u):
        return np.exp(-gamma * u * u / 2) / np.sqrt(2 * nbeta * u ** (2 * k2) + gamma)

    def conditional(u):
        return nbeta * u ** (2 * k2) / (2 * nbeta * u ** (2 * k2) + gamma)

    num = integrate.quad(lambda u: marginal(u) * conditional(u), -np.inf, np.inf, limit=400)[0]
    return num / integrate.quad(marginal, -np.inf, np.inf, limit=400)[0]


@pytest.mark.parametrize(("k2", "key"), [(2, 3), (1, 4)], ids=["w1^2 w2^4", "w1^2 w2^2"])
def test_product_monomial_matches_its_localized_posterior_expectation(k2, key):
    """K = w₁² w₂⁴ (λ = min(1/2, 1/4) = 1/4) and w₁² w₂² (λ = 1/2, multiplicity 2): at
    nβ = 1000, γ = 10 the tempered posterior is far from its asymptotics (E[nβ K] = 0.124 and
    0.290), so the check is against the exact expectation the chains target."""
    nbeta, gamma = 1000.0, 10.0
    res = fs.llc.estimate(
        jax.random.key(key),
        _potential(lambda w: w[0] ** 2 * w[1] ** (2 * k2)),
        jnp.zeros(2),
        DUMMY,
        num_chains=32,
        num_draws=20000,
        num_burnin=2000,
        step_size=3e-4,
        localization=gamma,
        nbeta=nbeta,
        batch_size=1,
    )
    truth = _localized_product_expectation(k2, nbeta, gamma)
    # 32 chains: standard error 3.7 % (w2^4) and 1.5 % (w2^2) of the truth, measured; the
    # discretisation bias at ε = 3e-4 is ≲ 1 % (curvatures ≲ 40); 12 % is about 3 standard errors
    assert res.llc_mean == pytest.approx(truth, rel=0.12)
    assert not res.diverged.any() and res.rhat < 1.05


def test_anisotropic_quadratic_in_seven_dimensions():
    """U = nβ · ½ Σ a_i w_i² with a from 0.3 to 3 (γ = 0): the discrete chain's exact value is
    Σ ½ / (1 − ε nβ a_i / 4) = 3.514 (λ = d/2 = 3.5)."""
    a = np.linspace(0.3, 3.0, 7)
    nbeta, eps = 1000.0, 1e-5
    aj = jnp.asarray(a, jnp.float32)
    res = fs.llc.estimate(
        jax.random.key(5),
        _potential(lambda w: 0.5 * jnp.sum(aj * w**2)),
        jnp.zeros(7),
        DUMMY,
        num_chains=32,
        num_draws=8000,
        num_burnin=1000,
        step_size=eps,
        localization=0.0,
        nbeta=nbeta,
        batch_size=1,
    )
    truth = float(np.sum(0.5 / (1 - eps * nbeta * a / 4)))
    # 32 chains × 8000 draws, slowest direction's autocorrelation ≈ 2/(ε nβ a_min) ≈ 670 steps:
    # standard error ≈ 1.7 % (measured); 6 % is about 3.5 of them
    assert res.llc_mean == pytest.approx(truth, rel=0.06)


@pytest.mark.parametrize(
    ("centre", "localization", "local_lambda"),
    [((0.0, 0.0, 1.0), 100.0, 1.0), ((1.0, 0.0, 0.0), 10.0, 0.5)],
    ids=["on-the-line", "on-the-plane"],
)
def test_the_coefficient_is_local(centre, localization, local_lambda):
    """K = (x² + y²) z² vanishes on the line x = y = 0 and on the plane z = 0. Its global
    learning coefficient is 1/2 (at the origin, where they cross). At a smooth point of the
    zero set the local one is half the codimension: 1 on the line at (0, 0, 1), 1/2 on the plane
    at (1, 0, 0). The localization keeps the chains at their point (|z − 1| ~ 0.1); the exact
    expectations at these (nβ, γ) are 0.949 and 0.494 (Gaussian in x, y given z, or in z given
    x, y, then a quadrature over the rest), and SGLD adds about +2.6 % (εh/4 for the stiff
    directions)."""
    res = fs.llc.estimate(
        jax.random.key(0),
        _potential(lambda w: (w[0] ** 2 + w[1] ** 2) * w[2] ** 2),
        jnp.array(centre),
        DUMMY,
        num_chains=16,
        num_draws=3000,
        num_burnin=600,
        step_size=5e-5,
        localization=localization,
        nbeta=1000.0,
        batch_size=1,
    )
    # 16 chains: standard error ≈ 2.5 %; measured over five keys 0.947–0.995 and 0.471–0.513
    assert res.llc_mean == pytest.approx(local_lambda, rel=0.10)
    assert not res.diverged.any() and res.rhat < 1.05


DLN_CASES = [
    # widths, teacher rank, step size ε, draws. Common: n = 10 000, noise σ = 1, nβ = n/log n,
    # γ = 1, batch 500, same-batch estimator, 16 chains, burn-in = draws/4. Measured over three
    # keys: (10,5,10) −3…−5 %, (6,4,3,5) −6…−8 %, (4,3,3,4) −8…−9 %. (A rank-0 teacher on
    # (4,3,3,4) came out −15 % with these settings: the chains under-explore the most singular
    # directions; not used here, see the issue notes.) Aoyagi's λ is global; at these teacher
    # points the local λ(w*) is larger, 30, 10 and 6.5 (aoyagi_lambda's docs); with γ = 1 the
    # chains range far along the true set's flat directions (LLCResult.distance ≈ 1.8–3.4) and
    # the estimates read near the global value: a pre-asymptotic agreement, not locality.
    ((10, 5, 10), 2, 3e-5, 3000),
    ((6, 4, 3, 5), 1, 6e-5, 4000),
    ((4, 3, 3, 4), 1, 6e-5, 4000),
]


@pytest.mark.parametrize(("widths", "rank", "step_size", "draws"), DLN_CASES)
def test_deep_linear_network_at_the_true_parameter(widths, rank, step_size, draws):
    teacher = fs.data.deep_linear_teacher(jax.random.key(0), widths, rank=rank, n=10_000, noise=1.0)
    model = fs.models.deep_linear(widths)
    params = fs.models.deep_linear_params(teacher.factors)

    def loss_fn(p, batch):
        x, y = batch
        return fs.models.squared_error(model.apply(p, x), y)  # Gaussian NLL, σ = 1

    data = (teacher.dataset.x_train, teacher.dataset.y_train)
    res = fs.llc.estimate(
        jax.random.key(1),
        loss_fn,
        params,
        data,
        num_chains=16,
        num_draws=draws,
        num_burnin=draws // 4,
        step_size=step_size,
        localization=1.0,
        batch_size=500,
        same_batch=True,
    )
    truth = fs.llc.aoyagi_lambda(widths, rank)
    # finite-n fluctuations of the empirical loss plus SGLD bias: the 15 % band
    assert res.llc_mean == pytest.approx(truth, rel=0.15)
    assert res.nbeta == pytest.approx(10_000 / math.log(10_000))


HELD_OUT_DLN_CASES = [
    # shapes and ranks no other test uses, at teachers where the local λ(w*) equals Aoyagi's
    # global one (the product map's differential has rank 2λ there, checked below), so the
    # comparison does not lean on the chains wandering to more singular points. Measured with
    # ε = 1e-5: −1.5 % and −4.1 % (standard error 2–3 %). At ε = 5e-5 they read +32 % and
    # +14 %: ε nβ a / 4 reaches 0.25 and 0.19 at the largest curvature a of these teachers.
    ((4, 2, 3, 3), 2),
    ((3, 4, 2, 3), 1),
]


@pytest.mark.slow
@pytest.mark.parametrize(("widths", "rank"), HELD_OUT_DLN_CASES)
def test_deep_linear_network_held_out_shapes(widths, rank):
    teacher = fs.data.deep_linear_teacher(jax.random.key(0), widths, rank=rank, n=10_000, noise=1.0)
    truth = fs.llc.aoyagi_lambda(widths, rank)

    def product(flat):
        out, i = None, 0
        for h_in, h_out in itertools.pairwise(widths):
            w = flat[i : i + h_in * h_out].reshape(h_out, h_in)
            out, i = (w if out is None else w @ out), i + h_in * h_out
        return out.ravel()

    flat = jnp.concatenate([f.ravel() for f in teacher.factors])
    assert np.linalg.matrix_rank(np.asarray(jax.jacfwd(product)(flat)), tol=1e-4) == 2 * truth

    model = fs.models.deep_linear(widths)

    def loss_fn(p, batch):
        x, y = batch
        return fs.models.squared_error(model.apply(p, x), y)

    res = fs.llc.estimate(
        jax.random.key(1),
        loss_fn,
        fs.models.deep_linear_params(teacher.factors),
        (teacher.dataset.x_train, teacher.dataset.y_train),
        num_chains=16,
        num_draws=10_000,
        num_burnin=2_500,
        step_size=1e-5,
        localization=1.0,
        batch_size=500,
        same_batch=True,
    )
    # finite-n fluctuations of the empirical loss (its minimum lies below the teacher's loss)
    # plus SGLD bias and 2–3 % sampling error: the 15 % band of the other deep linear cases
    assert res.llc_mean == pytest.approx(truth, rel=0.15)
    assert not res.diverged.any()


# --- batching, failures, diagnostics ----------------------------------------------------------


def _bomb(w, edge=0.3):
    # a quadratic bowl whose loss is NaN beyond w₀ > edge
    return 0.5 * jnp.sum(w**2) + jnp.where(w[0] > edge, jnp.nan, 0.0)


def _overflow(w, edge=0.5):
    # finite loss, but beyond w₀ > edge its scaled gradient nβ·1e38 overflows float32: the
    # drift is inf, and the position it gives makes the next step's loss inf
    return 0.5 * jnp.sum(w**2) + jnp.where(w[0] > edge, 1e38 * w[1], 0.0)


@pytest.mark.parametrize("potential", [lambda w: _bomb(w, 0.5), _overflow], ids=["nan", "inf"])
def test_diverging_chains_are_flagged_and_excluded(potential):
    # posterior std 1/sqrt(20) ≈ 0.22: within 100 draws some chains reach w₀ > 0.5, some not
    with pytest.warns(fs.llc.DivergedChainsWarning) as caught:
        res = fs.llc.estimate(
            jax.random.key(0),
            _potential(potential),
            jnp.zeros(2),
            DUMMY,
            num_chains=16,
            num_draws=100,
            step_size=1e-2,
            localization=0.0,
            nbeta=20.0,
            batch_size=1,
        )
    assert 0 < res.diverged.sum() < 16
    (w,) = caught
    assert f"{res.diverged.sum()} of 16 chains diverged" in str(w.message)
    assert "step_size=0.01" in str(w.message)
    good = ~res.diverged
    assert np.isnan(res.llc_per_chain[res.diverged]).all()
    assert res.llc_mean == pytest.approx(np.mean(res.llc_per_chain[good]))
    assert np.isfinite(res.llc_mean)
    assert np.isnan(res.grad_noise_ratio[res.diverged]).all()
    assert np.isfinite(res.grad_noise_ratio[good]).all()


@pytest.mark.parametrize(
    ("num_draws", "thinning", "num_burnin", "straight_line"),
    [(21, 1, 0, False), (19, 2, 3, False), (5, 1, 0, False), (16, 1, 2, False), (19, 2, 3, True)],
)
def test_grad_noise_ratio_has_its_closed_form_at_the_measured_draws(
    monkeypatch, num_draws, thinning, num_burnin, straight_line
):
    """L(w) = ½|w|² centred at w* = 0: ∇U(w) = (nβ + γ) w, so at draw j's step the ratio is
    (ε/2)(nβ + γ)|w_j| / sqrt(ε d) with |w_j| = sqrt(2 L(w_j)) read off the loss trace. It is
    averaged over draws j with (j + 1) mod DRIFT_NORM_EVERY = 0 and the last draw.
    straight_line: the norms computed at every step and kept at the measured draws, the path
    of fracsgd._xla.STRAIGHT_LINE_PLATFORMS, run here on the CPU."""
    if straight_line:
        monkeypatch.setattr(fs._xla, "STRAIGHT_LINE_PLATFORMS", ("cpu",))
    eps, gamma, nbeta, d = 1e-2, 3.0, 20.0, 5
    res = fs.llc.estimate(
        jax.random.key(3),
        _potential(lambda w: 0.5 * jnp.sum(w**2)),
        jnp.zeros(d),
        DUMMY,
        num_chains=3,
        num_draws=num_draws,
        num_burnin=num_burnin,
        thinning=thinning,
        step_size=eps,
        localization=gamma,
        nbeta=nbeta,
        batch_size=1,
    )
    k = fs.llc.DRIFT_NORM_EVERY
    assert k > 1
    j = np.array(sorted({*range(k - 1, num_draws, k), num_draws - 1}))
    loss = np.asarray(res.loss_trace, np.float64)
    ratio = 0.5 * eps * (nbeta + gamma) * np.sqrt(2 * loss) / np.sqrt(eps * d)
    np.testing.assert_allclose(res.grad_noise_ratio, ratio[:, j].mean(axis=1), rtol=1e-5)
    # another choice of draws would give another mean
    assert not np.allclose(res.grad_noise_ratio, ratio.mean(axis=1), rtol=1e-3)
    # the distance from the centre at the same draws: |w_j|² = 2 L(w_j), root-mean-squared
    np.testing.assert_allclose(res.distance, np.sqrt((2 * loss[:, j]).mean(axis=1)), rtol=1e-5)


def test_distance_is_the_radius_the_localization_allows():
    """L = ½(w₁² + w₂² + w₃²) with three more coordinates it ignores: in the tempered posterior
    the flat ones are N(0, 1/γ) and the others N(0, 1/h), h = nβ + γ. The discrete chain
    inflates a variance 1/a to 1/(a(1 − εa/4)), so E||w − w*||² = 3/(γ(1 − εγ/4)) +
    3/(h(1 − εh/4)) = 0.3047 (RMS distance 0.552) and λ̂ = E[nβ L] = 1.5 nβ/(h(1 − εh/4)) =
    1.987 (ε = 10⁻³, γ = 10, nβ = 1000)."""
    eps, gamma, nbeta = 1e-3, 10.0, 1000.0
    h = nbeta + gamma
    res = fs.llc.estimate(
        jax.random.key(2),
        _potential(lambda w: 0.5 * jnp.sum(w[:3] ** 2)),
        jnp.zeros(6),
        DUMMY,
        num_chains=64,
        num_draws=4000,
        num_burnin=1000,
        step_size=eps,
        localization=gamma,
        nbeta=nbeta,
        batch_size=1,
    )
    flat, stiff = 1 / (gamma * (1 - eps * gamma / 4)), 1 / (h * (1 - eps * h / 4))
    # 64 chains × 500 measured draws, the flat directions relaxing over ~2/(εγ) = 200 steps:
    # measured over five keys within 1.5 % of the RMS distance and 0.5 % of λ̂
    assert np.sqrt(np.mean(res.distance**2)) == pytest.approx(
        np.sqrt(3 * flat + 3 * stiff), rel=0.04
    )
    # λ̂ sees only the three stiff directions
    assert res.llc_mean == pytest.approx(1.5 * nbeta * stiff, rel=0.03)


def test_distance_is_measured_from_each_models_own_centre():
    """Centres at the minimum a = (3, −2, 100) of L(w) = ½|w − a|²: the distance from the
    centre at draw j is |w_j − a| = sqrt(2 L(w_j)), read off the loss trace (the distance from 0
    would be ~100)."""
    a = jnp.array([3.0, -2.0, 100.0])
    res = fs.llc.estimate(
        jax.random.key(4),
        _potential(lambda w: 0.5 * jnp.sum((w - a) ** 2)),
        a,
        DUMMY,
        num_chains=3,
        num_draws=21,
        step_size=1e-2,
        localization=1.0,
        nbeta=20.0,
        batch_size=1,
    )
    k = fs.llc.DRIFT_NORM_EVERY
    j = np.array(sorted({*range(k - 1, 21, k), 20}))
    loss = np.asarray(res.loss_trace, np.float64)
    np.testing.assert_allclose(res.distance, np.sqrt((2 * loss[:, j]).mean(axis=1)), rtol=1e-4)
    assert (res.distance < 1.0).all()


@pytest.mark.parametrize("straight_line", [False, True])
def test_straight_line_programs_have_no_per_step_conditional(monkeypatch, straight_line):
    """On the platforms of fracsgd._xla.STRAIGHT_LINE_PLATFORMS the SGLD program computes the
    drift's norm at every step instead of under a conditional; elsewhere (by default everywhere)
    the conditional stays. Checked in the compiled program, with the CPU listed or not."""
    if straight_line:
        monkeypatch.setattr(fs._xla, "STRAIGHT_LINE_PLATFORMS", ("cpu",))
    texts = []
    compiled = _estimate._compiled

    def capture(static, *args, **kw):
        texts.append(compiled.lower(static, *args, **kw).compile().as_text())
        return compiled(static, *args, **kw)

    monkeypatch.setattr(_estimate, "_compiled", capture)
    data = jnp.linspace(0.0, 1.0, 300).reshape(100, 3)
    fs.llc.estimate(
        jax.random.key(0),
        lambda w, batch: 0.5 * jnp.sum((w - jnp.mean(batch, axis=0)) ** 2),
        jnp.mean(data, axis=0),  # the minimum
        data,
        num_chains=2,
        num_draws=9,
        step_size=1e-3,
        localization=1.0,
        batch_size=10,
        sampling="epoch",
    )
    (text,) = texts
    conditionals = text.count(" conditional(")
    assert (conditionals == 0) == straight_line


@pytest.mark.parametrize("same_batch", [False, True])
def test_a_diverged_chain_reads_no_below_init_fraction(same_batch):
    """Found by a review: a diverged chain's ``below_init_fraction`` read 0 — "never below the
    centre", a healthy minimum's reading — from its NaN tail (NaN < x is False), while its other
    per-chain readings (λ̂, drift ratio, distance) are NaN; with every chain diverged the result
    reported all zeros."""
    kw = dict(num_chains=16, num_draws=100, step_size=1e-2, localization=0.0, nbeta=20.0)
    with pytest.warns(fs.llc.DivergedChainsWarning):
        res = fs.llc.estimate(
            jax.random.key(0),
            _potential(lambda w: _bomb(w, 0.5)),
            jnp.zeros(2),
            DUMMY,
            batch_size=1,
            same_batch=same_batch,
            **kw,
        )
    assert 0 < res.diverged.sum() < 16  # as in test_diverging_chains_are_flagged_and_excluded
    assert np.isnan(res.below_init_fraction[res.diverged]).all()
    assert np.isfinite(res.below_init_fraction[~res.diverged]).all()
    with pytest.warns(fs.llc.DivergedChainsWarning, match="all 4 chains diverged"):
        gone = fs.llc.estimate(
            jax.random.key(0),
            _potential(_bomb),
            jnp.array([1.0, 0.0]),
            DUMMY,
            **{**kw, "num_chains": 4, "batch_size": 1, "same_batch": same_batch},
        )
    assert np.isnan(gone.below_init_fraction).all() and not gone.not_minimum


def test_all_chains_diverging_is_reported_not_raised():
    with pytest.warns(fs.llc.DivergedChainsWarning, match="all 4 chains diverged"):
        res = fs.llc.estimate(
            jax.random.key(0),
            _potential(_bomb),
            jnp.array([1.0, 0.0]),
            DUMMY,
            num_chains=4,
            num_draws=50,
            step_size=1e-3,
            localization=0.0,
            nbeta=20.0,
            batch_size=1,
        )
    assert res.diverged.all() and math.isnan(res.llc_mean)


def test_many_models_in_one_call_match_single_estimates():
    centers = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]])  # the middle one is a NaN bomb
    kw = dict(
        num_chains=8, num_draws=200, step_size=1e-3, localization=1.0, nbeta=50.0, batch_size=1
    )
    loss = _potential(lambda w: _bomb(w, 0.9))  # 0.9 is > 6 posterior std from the origin
    with pytest.warns(
        fs.llc.DivergedChainsWarning, match=r"8 of 24 chains diverged \(in models 1\)"
    ):
        many = fs.llc.estimate_many(jax.random.key(3), loss, centers, DUMMY, **kw)
    assert many.diverged[1].all() and not many.diverged[[0, 2]].any()
    one = fs.llc.estimate(jax.random.key(3), loss, centers[0], DUMMY, **kw)
    # model i uses fold_in(key, i): model 0 has the same chains as a single estimate with key
    np.testing.assert_allclose(many.llc_per_chain[0], one.llc_per_chain, rtol=1e-4)


def test_point_that_is_not_a_minimum_warns():
    with pytest.warns(fs.llc.NotAMinimumWarning):
        res = fs.llc.estimate(
            jax.random.key(0),
            _potential(lambda w: 0.5 * jnp.sum((w - 3.0) ** 2)),
            jnp.zeros(2),
            DUMMY,
            num_chains=4,
            num_draws=200,
            step_size=1e-3,
            localization=0.1,
            nbeta=50.0,
            batch_size=1,
        )
    assert res.not_minimum and res.llc_mean < 0


def test_same_batch_variant_psgld_and_mala_on_a_minibatch_loss():
    """L_B(w) = ½|w − x̄_B|²: plain λ̂ carries the minibatch variance nβ·d/(2B); the same-batch
    estimator cancels it (Lau et al. Algorithm 1)."""
    x = jax.random.normal(jax.random.key(5), (2000, 4))
    center = jnp.mean(x, axis=0)

    def loss(w, batch):
        return 0.5 * jnp.sum((w - jnp.mean(batch, axis=0)) ** 2)

    kw = dict(
        num_chains=16, num_draws=2000, num_burnin=300, localization=0.0, nbeta=100.0, batch_size=50
    )
    same = fs.llc.estimate(
        jax.random.key(0), loss, center, x, step_size=1e-3, same_batch=True, mala=True, **kw
    )
    plain = fs.llc.estimate(jax.random.key(0), loss, center, x, step_size=1e-3, **kw)
    # d/2 = 2; the plain estimator is biased up by nβ·d/(2B) = 4 (sampling error ≈ 5 %)
    assert same.llc_mean == pytest.approx(2.0, rel=0.15)
    assert plain.llc_mean == pytest.approx(2.0 + 4.0, rel=0.15)
    assert 0.5 < float(np.mean(same.mala_acceptance)) <= 1.0
    long = {**kw, "num_draws": 6000, "num_burnin": 2000}
    pre = fs.llc.estimate(
        jax.random.key(0), loss, center, x, step_size=1e-3, sampler="psgld", same_batch=True, **long
    )
    # pSGLD adapts G during burn-in and samples with it frozen: exact Langevin with a constant
    # preconditioner, so no Γ(w) term is missing (an always-adapting G read +10 % to +30 % here)
    assert pre.llc_mean == pytest.approx(2.0, rel=0.15)
    assert np.isnan(pre.mala_acceptance).all()


def test_psgld_from_an_exact_minimum_is_unbiased_and_needs_burnin():
    """At a zero-gradient centre the first adapting step sees g = 0; δ = 0.1 caps G at 10 (with
    δ = 1e-5 the chains were thrown ~15 away and λ̂ read 1.7e4). With G frozen after burn-in the
    chains sample exp(−nβ|w|²/2): λ = d/2 = 2. Per-chain spread ≈ 0.3 (G ≈ 0.1 slows mixing
    tenfold against SGLD), so 8 chains give ≈ 5 % standard error."""
    loss = _potential(lambda w: 0.5 * jnp.sum(w**2))
    kw = dict(num_chains=8, localization=0.0, nbeta=100.0, batch_size=1, step_size=1e-3)
    res = fs.llc.estimate(
        jax.random.key(0),
        loss,
        jnp.zeros(4),
        DUMMY,
        num_draws=8000,
        num_burnin=300,
        sampler="psgld",
        mala=True,
        **kw,
    )
    assert res.llc_mean == pytest.approx(2.0, rel=0.15)
    assert not res.diverged.any()
    # with G frozen the MALA proxy is exact MALA with that preconditioner: near 1 at εGnβ ≈ 0.01
    assert 0.95 < float(np.mean(res.mala_acceptance)) <= 1.0
    with pytest.raises(ValueError, match="num_burnin"):
        fs.llc.estimate(
            jax.random.key(0), loss, jnp.zeros(4), DUMMY, num_draws=10, sampler="psgld", **kw
        )


def test_new_step_sizes_do_not_recompile():
    loss = _potential(lambda w: 0.5 * jnp.sum(w**2))
    kw = dict(num_chains=2, num_draws=20, batch_size=1)
    fs.llc.estimate(
        jax.random.key(0),
        loss,
        jnp.zeros(2),
        DUMMY,
        step_size=1e-3,
        localization=1.0,
        nbeta=10.0,
        **kw,
    )
    size = _estimate._compiled._cache_size()
    fs.llc.estimate(
        jax.random.key(1),
        loss,
        jnp.zeros(2),
        DUMMY,
        step_size=2e-3,
        localization=3.0,
        nbeta=7.0,
        **kw,
    )
    assert _estimate._compiled._cache_size() == size


def test_minibatch_noise_ratio_checks_its_inputs():
    assert fs.llc.minibatch_noise_ratio(1e-3, 100.0, 0.0) == 0.0
    assert math.isnan(fs.llc.minibatch_noise_ratio(1e-3, 100.0, math.nan))  # a diverged chain
    for args, name in (
        ((-1e-3, 100.0, 2.0), "step_size"),
        ((1e-3, 0.0, 2.0), "nbeta"),
        ((1e-3, 1.0, -2.0), "gradient_variance"),
        (("1", 1.0, 1.0), "step_size"),
    ):
        with pytest.raises(ValueError, match=name):
            fs.llc.minibatch_noise_ratio(*args)


def test_nbeta_rules():
    assert fs.llc.resolve_nbeta(None, 1000, 10) == pytest.approx(1000 / math.log(1000))
    assert fs.llc.resolve_nbeta("batch/log batch", 1000, 64) == pytest.approx(64 / math.log(64))
    assert fs.llc.resolve_nbeta(5.0, 1000, 10) == 5.0
    with pytest.raises(ValueError, match="nbeta"):
        fs.llc.resolve_nbeta("B/log B", 1000, 10)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (dict(step_size=0.0), "step_size"),
        (dict(step_size=-1.0), "step_size"),
        (dict(localization=-0.1), "localization"),
        (dict(nbeta=0.0), "nbeta"),
        (dict(nbeta=-3.0), "nbeta"),
        (dict(num_draws=0), "num_draws"),
        (dict(num_chains=0), "num_chains"),
        (dict(batch_size=0), "batch_size"),
        (dict(batch_size=1001), "batch_size"),
        (dict(sampler="hmc"), "sampler"),
        (dict(sampling="shuffle"), "sampling"),
        (dict(sampler="psgld"), "num_burnin"),  # pSGLD adapts during burn-in
        (dict(step_size=1e-50), "step_size"),  # 0 in float32
        (dict(nbeta=1e39), "nbeta"),  # inf in float32
        (dict(localization=1e39), "localization must be 0 or a normal float32"),  # inf
        (dict(localization=1e-46), "localization must be 0 or a normal float32"),  # 0
        (dict(mala="no"), "mala"),
        (dict(same_batch=1), "same_batch"),
        (dict(mask=jnp.ones(3)), "mask"),
        (dict(params=jnp.zeros(2, jnp.float16)), "float32 or float64"),
        (dict(params=jnp.zeros(2, jnp.bfloat16)), "params"),
        # strings used to pass float(): the chains ran, then the noise ratio failed
        (dict(step_size="0.001"), "step_size must be a number"),
        (dict(localization="1.0"), "localization must be a number"),
        (dict(nbeta="10"), "nbeta"),
    ],
)
def test_bad_input_raises_before_compiling(change, match):
    kw = dict(
        num_chains=2, num_draws=10, step_size=1e-3, localization=1.0, nbeta=10.0, batch_size=4
    )
    kw.update(change)
    params = kw.pop("params", jnp.zeros(2))
    before = _estimate._compiled._cache_size()
    with pytest.raises(ValueError, match=match):
        fs.llc.estimate(jax.random.key(0), _potential(lambda w: jnp.sum(w**2)), params, DUMMY, **kw)
    assert _estimate._compiled._cache_size() == before


@pytest.mark.parametrize(
    "loss_fn",
    [
        lambda w, b: w * jnp.sum(b),
        lambda w, b: (jnp.sum(w**2),),  # one scalar in a tuple is not a scalar
        lambda w, b: {"loss": jnp.sum(w**2)},
    ],
)
def test_loss_fn_must_return_a_scalar(loss_fn):
    with pytest.raises(ValueError, match="scalar"):
        fs.llc.estimate(
            jax.random.key(0),
            loss_fn,
            jnp.zeros(2),
            DUMMY,
            num_chains=2,
            num_draws=10,
            step_size=1e-3,
            localization=1.0,
            batch_size=4,
        )


@pytest.mark.parametrize("variant", [{}, {"same_batch": True}, {"mala": True}])
def test_a_loss_fn_returning_a_python_float_is_a_scalar(variant):
    """Found by a review: a loss_fn returning a Python float passed the scalar check and then
    failed while the chains were traced (AttributeError: 'float' object has no attribute
    'dtype'). It is a scalar: a constant loss has λ̂ = 0."""
    res = fs.llc.estimate(
        jax.random.key(0),
        lambda w, b: 1.0,
        jnp.zeros(2),
        DUMMY,
        num_chains=2,
        num_draws=8,
        step_size=1e-3,
        localization=1.0,
        nbeta=10.0,
        batch_size=4,
        **variant,
    )
    assert res.llc_mean == 0.0 and res.init_loss == 1.0 and not res.diverged.any()


def test_a_mask_needs_the_model_axis_of_params():
    """A mask whose model axis is shorter would be indexed out of range (clamped silently)."""
    kw = dict(num_chains=2, num_draws=10, step_size=1e-3, localization=0.0, nbeta=10.0)
    loss = _potential(lambda w: jnp.sum(w**2))
    for bad in (jnp.ones((1, 4)), jnp.ones((5, 4)), jnp.ones(4)):
        with pytest.raises(ValueError, match="mask"):
            fs.llc.estimate_many(
                jax.random.key(0), loss, jnp.zeros((3, 4)), DUMMY, mask=bad, batch_size=4, **kw
            )


def test_a_one_model_mask_is_refused_with_the_way_to_repeat_it():
    """estimate_many's docs said a mask "like one model" was accepted; it is refused (above),
    with only "mask leaves must have the shapes of params: (32,) vs (1, 32)" to go on. Found
    masking padded MNIST networks in a usage study: the message now says what to do."""
    kw = dict(num_chains=2, num_draws=10, step_size=1e-3, localization=0.0, nbeta=10.0)
    loss = _potential(lambda w: jnp.sum(w**2))
    with pytest.raises(ValueError, match=r"like one model.*broadcast_to\(m, \(3,\)"):
        fs.llc.estimate_many(
            jax.random.key(0), loss, jnp.zeros((3, 4)), DUMMY, mask=jnp.ones(4), batch_size=4, **kw
        )
    assert "like one model is refused" in " ".join(fs.llc.estimate_many.__doc__.split())


def test_a_mask_must_be_zero_or_one():
    """A mask multiplies drift and noise: a value m would sample at temperature m (a review
    measured λ̂ = 3.34 for the 1.25 of a 0/1 mask, the closed form at m = 2 being 3.33)."""
    kw = dict(num_chains=2, num_draws=10, step_size=1e-3, localization=0.0, nbeta=10.0)
    loss = _potential(lambda w: jnp.sum(w**2))
    for bad in (jnp.array([2.0, 0.0, 1.0, 1.0]), jnp.array([0.5, 1.0, 1.0, 1.0])):
        with pytest.raises(ValueError, match="mask must hold only 0 and 1"):
            fs.llc.estimate(
                jax.random.key(0), loss, jnp.zeros(4), DUMMY, mask=bad, batch_size=4, **kw
            )
        with pytest.raises(ValueError, match="mask must hold only 0 and 1"):
            fs.sampling.build_kernel(bad)(
                jax.random.key(0),
                fs.sampling.init(jnp.zeros(4)),
                None,
                fs.sampling.localized_gradient(
                    lambda w, b: jnp.sum(w**2), jnp.zeros(4), nbeta=1.0, localization=0.0
                ),
                0.1,
            )
    ok = jnp.array([True, False, True, True])  # booleans are 0/1
    fs.llc.estimate(jax.random.key(0), loss, jnp.zeros(4), DUMMY, mask=ok, batch_size=4, **kw)


def test_no_warning_at_an_exact_least_squares_minimum_with_skewed_minibatch_losses():
    """Minibatch losses of 10 squared errors are skewed (median below mean): at the exact
    least-squares solution over half of single draws lie below L_n(w*). The not-a-minimum rule
    reads block means, whose skew is √b smaller; a shifted centre is still caught."""
    x = jax.random.normal(jax.random.key(0), (1000, 3))
    y = x @ jnp.array([1.0, -2.0, 0.5]) + jax.random.normal(jax.random.key(1), (1000,))

    def loss(w, batch):
        return 0.5 * jnp.mean((batch[0] @ w - batch[1]) ** 2)

    w_star = jnp.linalg.lstsq(x, y)[0]
    kw = dict(num_chains=4, num_draws=1000, step_size=1e-4, localization=0.0, batch_size=10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = fs.llc.estimate(jax.random.key(2), loss, w_star, (x, y), num_burnin=200, **kw)
    single = np.mean(res.loss_trace < res.init_loss)
    assert single > 0.5  # what the per-draw rule misread
    assert np.mean(res.below_init_fraction) < 0.5 and not res.not_minimum
    with pytest.warns(fs.llc.NotAMinimumWarning):
        off = fs.llc.estimate(jax.random.key(2), loss, w_star + 0.3, (x, y), **kw)
    assert off.not_minimum and np.mean(off.below_init_fraction) > 0.9


def test_no_warning_at_a_minimum():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fs.llc.estimate(
            jax.random.key(0),
            _potential(lambda w: 0.5 * jnp.sum(w**2)),
            jnp.zeros(2),
            DUMMY,
            num_chains=4,
            num_draws=200,
            step_size=1e-3,
            localization=1.0,
            nbeta=50.0,
            batch_size=1,
        )


def test_width_masked_network_has_the_narrow_networks_llc():
    """Padded units get no drift and no noise, so the padded chain samples the narrow posterior."""
    widths, wide_widths = (3, 2, 3), (3, 8, 3)
    teacher = fs.data.deep_linear_teacher(jax.random.key(0), widths, rank=1, n=4000, noise=1.0)
    narrow = fs.models.deep_linear(widths)
    wide = fs.models.deep_linear(wide_widths)
    mask = wide.width_mask((2,))
    p_narrow = fs.models.deep_linear_params(teacher.factors)
    p_wide = fs.models.pad_params(p_narrow, wide)
    data = (teacher.dataset.x_train, teacher.dataset.y_train)

    def loss_of(model, m):
        def loss_fn(p, batch):
            return fs.models.squared_error(model.apply(p, batch[0], m), batch[1])

        return loss_fn

    kw = dict(
        num_chains=32,
        num_draws=2000,
        num_burnin=500,
        step_size=3e-5,
        localization=1.0,
        batch_size=200,
        same_batch=True,
    )
    a = fs.llc.estimate(jax.random.key(1), loss_of(narrow, None), p_narrow, data, **kw)
    b = fs.llc.estimate(
        jax.random.key(2), loss_of(wide, mask), p_wide, data, mask=wide.param_mask(mask), **kw
    )
    # independent chains of the same target: the difference is within 4 standard errors
    se = np.hypot(a.llc_std, b.llc_std) / np.sqrt(32)
    assert abs(a.llc_mean - b.llc_mean) < 4 * se
    # and padding that were *not* masked would add 6 hidden units' worth of directions
    # (measured over keys: 7.5–10 standard errors above the masked chain)
    c = fs.llc.estimate(jax.random.key(2), loss_of(wide, None), p_wide, data, **kw)
    assert c.llc_mean > b.llc_mean + 4 * se


@pytest.mark.filterwarnings("ignore::fracsgd.llc.NotAMinimumWarning")
def test_epoch_sampling_visits_every_sample_once_per_epoch():
    """With ``sampling="epoch"`` each chain's minibatches partition the data every n/B steps:
    a loss that is the batch mean of the sample indices averages exactly (n − 1)/2 per epoch;
    with replacement it does not."""
    n, b, epochs = 240, 8, 3
    data = jnp.arange(n, dtype=jnp.float32)

    def loss(w, batch):
        return jnp.mean(batch) + 0.0 * jnp.sum(w)

    kw = dict(num_chains=4, num_draws=epochs * n // b, step_size=1e-3, localization=1.0)
    res = fs.llc.estimate(
        jax.random.key(0),
        loss,
        jnp.zeros(2),
        data,
        batch_size=b,
        sampling="epoch",
        nbeta=10.0,
        **kw,
    )
    assert res.sampling == "epoch"
    per_epoch = res.loss_trace.reshape(4, epochs, n // b).mean(axis=2)
    np.testing.assert_allclose(per_epoch, (n - 1) / 2, rtol=1e-5)
    assert not np.allclose(res.loss_trace[0], res.loss_trace[1])  # chains shuffle differently
    rep = fs.llc.estimate(
        jax.random.key(0), loss, jnp.zeros(2), data, batch_size=b, nbeta=10.0, **kw
    )
    assert rep.sampling == "replacement"
    assert np.abs(rep.loss_trace.reshape(4, epochs, n // b).mean(axis=2) - (n - 1) / 2).max() > 1


@pytest.mark.filterwarnings("ignore::fracsgd.llc.NotAMinimumWarning")  # random centres
def test_full_data_loss_reads_the_data_in_chunks_that_fit():
    """With room for one chain but not for the loss over all 4 096 rows at once, ``L_n(w*)`` is
    the mean over equal row chunks that fit: the same number as in one pass."""
    x = jax.random.normal(jax.random.key(0), (4096, 16))
    w = 0.1 * jax.random.normal(jax.random.key(1), (2, 16, 8))

    def loss(p, b):
        return jnp.mean(jnp.tanh(b @ p) ** 2)

    kw = dict(num_chains=1, num_draws=5, step_size=1e-4, localization=1.0, batch_size=8)
    free = fs.llc.estimate_many(jax.random.key(0), loss, w, x, **kw)
    per, fixed = fs.llc.chain_bytes(loss, w[0], x, batch_size=8, num_draws=5)
    whole = _estimate._activation_bytes(loss, w[0], x)
    assert fixed + per + 1000 < fixed + 3 * whole  # one pass over the data would not fit
    tight = fs.llc.estimate_many(
        jax.random.key(0), loss, w, x, memory_limit=fixed + per + 1000, **kw
    )
    np.testing.assert_allclose(tight.init_loss, free.init_loss, rtol=1e-6)
    want = [float(jnp.mean(jnp.tanh(x @ w[i]) ** 2)) for i in range(2)]
    np.testing.assert_allclose(tight.init_loss, want, rtol=1e-5)


def test_estimates_run_when_the_device_memory_is_unknown(monkeypatch):
    """``device_memory`` returns None where the platform reports nothing (no memory stats, no
    /proc/meminfo): then nothing is chunked, and the full-data loss reads the largest chunk."""
    monkeypatch.setattr(_estimate, "device_memory", lambda mesh=None: None)
    res = fs.llc.estimate(
        jax.random.key(0),
        _potential(lambda w: 0.5 * jnp.sum(w**2)),
        jnp.zeros(2),
        DUMMY,
        num_chains=2,
        num_draws=50,
        step_size=1e-3,
        localization=0.0,
        nbeta=50.0,
        batch_size=4,
    )
    assert np.isfinite(res.llc_mean) and res.init_loss == 0.0


def test_loss_trace_keeps_the_chains_dtype(x64):
    """float64 parameters under x64 run float64 chains; the trace must not be rounded to
    float32 (a loss 1 + 1e-12 would read 1)."""
    loss = _potential(lambda w: 1.0 + 1e-12 + 0.5 * jnp.sum(w**2))
    kw = dict(num_chains=2, num_draws=8, step_size=1e-8, localization=0.0, batch_size=4)
    res = fs.llc.estimate(jax.random.key(0), loss, jnp.zeros(2), DUMMY, nbeta=50.0, **kw)
    assert res.loss_trace.dtype == np.float64
    assert np.all(res.loss_trace > 1.0)
    res32 = fs.llc.estimate(
        jax.random.key(0), loss, jnp.zeros(2, jnp.float32), DUMMY, nbeta=50.0, **kw
    )
    assert res32.loss_trace.dtype == np.float32


# 30 draws are too few for the not-a-minimum check's block means; this test compares bits only
@pytest.mark.filterwarnings("ignore::fracsgd.llc.NotAMinimumWarning")
@pytest.mark.parametrize("sampling", ["replacement", "epoch"])
def test_a_float32_estimate_does_not_depend_on_x64(sampling):
    """The minibatch indices are drawn as int32 whatever ``jax_enable_x64`` says: randint's
    default int64 under x64 drew other bits, so the same float32 problem, key and settings gave
    other minibatches (and λ̂) with x64 on (replacement sampling; the epoch walk was unaffected)."""
    x = jnp.asarray(np.random.default_rng(0).normal(size=(300, 3)), jnp.float32)
    y = x @ jnp.array([1.0, -1.0, 0.5], jnp.float32) + jnp.asarray(
        np.random.default_rng(1).normal(size=300), jnp.float32
    )

    def loss(w, batch):
        xb, yb = batch
        return 0.5 * jnp.mean((xb @ w - yb) ** 2)

    kw = dict(num_chains=2, num_draws=30, step_size=1e-4, localization=1.0, nbeta=100.0)
    kw |= dict(batch_size=20, sampling=sampling)
    w0 = jnp.linalg.lstsq(x, y)[0]  # a minimum: no NotAMinimumWarning
    plain = fs.llc.estimate(jax.random.key(0), loss, w0, (x, y), **kw)
    with jax.enable_x64(True):
        wide = fs.llc.estimate(jax.random.key(0), loss, w0, (x, y), **kw)
    assert wide.loss_trace.dtype == np.float32
    np.testing.assert_array_equal(wide.loss_trace, plain.loss_trace)
    assert wide.minibatch_noise_ratio == plain.minibatch_noise_ratio


def test_minibatch_noise_ratio_has_its_closed_form_and_predicts_the_bias():
    """L = mean_i ½|w − x_i|²: ∇L_B = w − x̄_B, so tr Cov(∇L_B)/d = s²/B (s² the per-coordinate
    variance of x; epoch batches × (n − B)/(n − 1)) and the ratio is ε nβ² s²/(4B). A chain
    with minibatch noise samples at temperature 1 + ratio: λ̂ ≈ (d/2)(1 + ratio) / (1 − εnβ/4)
    (the second factor: SGLD's discretisation on this quadratic)."""
    rng = np.random.default_rng(0)
    d, n, b, eps, nb = 60, 400, 20, 1e-3, 100.0
    x = jnp.asarray(rng.standard_normal((n, d)), jnp.float32)
    loss = lambda w, batch: 0.5 * jnp.mean(jnp.sum((w[None] - batch) ** 2, -1))
    s2 = float(np.mean(np.var(np.asarray(x, np.float64), axis=0)))
    kw = dict(num_chains=2, num_draws=10, step_size=eps, localization=0.0, nbeta=nb, batch_size=b)
    centre = jnp.mean(x, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fs.llc.NotAMinimumWarning)  # 10 draws: noisy
        r = fs.llc.estimate(jax.random.key(0), loss, centre, x, **kw)
        e = fs.llc.estimate(jax.random.key(0), loss, centre, x, sampling="epoch", **kw)
    want = eps * nb**2 * s2 / (4 * b)  # 0.125; 16 batches × 60 coordinates: ≈ 5 % error
    assert r.minibatch_noise_ratio == pytest.approx(want, rel=0.15)
    assert e.minibatch_noise_ratio == pytest.approx(want * (n - b) / (n - 1), rel=0.15)
    # the bias it predicts, on d = 3 (16 chains × 4000 draws: λ̂ to ≈ 1 %)
    x3 = x[:, :3]
    r3 = fs.llc.estimate(
        jax.random.key(1), loss, jnp.mean(x3, 0), x3, num_chains=16, num_draws=4000,
        num_burnin=500, step_size=eps, localization=0.0, nbeta=nb, batch_size=b, same_batch=True,
    )  # fmt: skip
    predicted = 1.5 * (1 + r3.minibatch_noise_ratio) / (1 - eps * nb / 4)
    assert r3.llc_mean == pytest.approx(predicted, rel=0.05)
    assert r3.llc_mean > 1.5 * 1.08  # the bias is real: ≈ 13 % here


@pytest.mark.filterwarnings("ignore::fracsgd.llc.NotAMinimumWarning")
def test_estimate_many_with_common_random_numbers_is_estimate_per_model():
    """``common_random_numbers=True``: model i's chains run on the keys ``estimate`` uses, so each
    model's result is ``estimate`` at its own centre and mask with the same key (to float32
    rounding: one program holds every model); without it, models after the first use their own
    keys. Width-masked models, epoch batches and the same-batch variant included."""
    model = fs.models.mlp((3, 6, 2))
    masks = [model.width_mask((w,)) for w in (6, 4, 2)]
    centers = [model.init(jax.random.key(i), m) for i, m in enumerate(masks)]
    x = jax.random.normal(jax.random.key(9), (120, 3))
    y = jax.random.normal(jax.random.key(8), (120, 2))

    def loss_fn(p, batch, m=None):
        return fs.models.squared_error(model.apply(p, batch[0], m), batch[1])

    pmasks = [model.param_mask(m) for m in masks]
    stack = lambda trees: jax.tree.map(lambda *a: jnp.stack(a), *trees)
    kw = dict(
        num_chains=3,
        num_draws=40,
        num_burnin=4,
        step_size=1e-4,
        localization=10.0,
        nbeta=60.0,
        batch_size=16,
        sampling="epoch",
        same_batch=True,
    )
    key = jax.random.key(4)
    many = fs.llc.estimate_many(
        key,
        loss_fn,
        stack(centers),
        (x, y),
        mask=stack(pmasks),
        common_random_numbers=True,
        **kw,
    )
    plain = fs.llc.estimate_many(key, loss_fn, stack(centers), (x, y), mask=stack(pmasks), **kw)
    for i in range(3):
        one = fs.llc.estimate(key, loss_fn, centers[i], (x, y), mask=pmasks[i], **kw)
        np.testing.assert_allclose(many.loss_trace[i], one.loss_trace, rtol=1e-5)
        np.testing.assert_allclose(many.llc_per_chain[i], one.llc_per_chain, rtol=1e-5)
        # the diagnostic too: its gradient batches are drawn under estimate's key, not model i's
        np.testing.assert_allclose(
            many.minibatch_noise_ratio[i], one.minibatch_noise_ratio, rtol=1e-5
        )
        if i:
            assert not np.allclose(plain.loss_trace[i], one.loss_trace, rtol=1e-3)
    with pytest.raises(ValueError, match="common_random_numbers"):
        fs.llc.estimate_many(
            key, loss_fn, stack(centers), (x, y), common_random_numbers="yes", **kw
        )


def test_a_mask_with_nothing_to_sample_is_refused():
    """λ̂ read 0 with NaN diagnostics and no warning."""

    def loss(w, b):
        return 0.5 * jnp.sum(w**2) + 0.0 * jnp.sum(b)

    kw = dict(num_chains=2, num_draws=5, step_size=1e-3, localization=0.0, nbeta=10.0)
    data = jnp.zeros((100, 1))
    with pytest.raises(ValueError, match="mask holds no 1"):
        fs.llc.estimate(
            jax.random.key(0), loss, jnp.zeros(3), data, mask=np.zeros(3), batch_size=1, **kw
        )
    with pytest.raises(ValueError, match=r"mask holds no 1 for model\(s\) \[1\]"):
        fs.llc.estimate_many(
            jax.random.key(0),
            loss,
            jnp.zeros((2, 3)),
            data,
            mask=np.array([[1.0, 0, 0], [0, 0, 0]], np.float32),
            batch_size=1,
            **kw,
        )
