"""Calibration grids, λ along a trajectory, λ̄, and the plots."""

import itertools
import math
import warnings

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import pytest

import fracsgd as fs
from fracsgd.llc import _estimate

matplotlib.use("Agg")

DUMMY = jnp.zeros((1000, 1))


def _quad(w, batch):
    return 0.5 * jnp.sum(w**2) + 0.0 * jnp.sum(batch)


def test_calibration_grid_matches_the_localised_closed_form_in_one_call():
    """Target ∝ exp(−(nβ + γ)|w|²/2): E[nβ L] = nβ d / (2(nβ + γ)), so γ = nβ halves λ̂."""
    d, nbeta = 6, 500.0
    kw = dict(num_chains=16, num_draws=3000, num_burnin=300, batch_size=1)
    before = _estimate._compiled_common._cache_size()
    cal = fs.llc.calibrate(
        jax.random.key(0),
        _quad,
        jnp.zeros(d),
        DUMMY,
        step_sizes=(2e-5, 4e-5, 8e-5),
        localizations=(0.0, nbeta),
        nbetas=(nbeta,),
        **kw,
    )
    assert _estimate._compiled_common._cache_size() == before + 1  # the whole grid: one program
    assert cal.llc_mean.shape == (3, 2, 1)
    expected = nbeta * d / (2 * (nbeta + np.array([0.0, nbeta])))
    # 16 chains × 3000 draws per setting: ≈ 3 % sampling error; bias εnβ/4 ≤ 1 %
    np.testing.assert_allclose(cal.llc_mean[:, :, 0], np.broadcast_to(expected, (3, 2)), rtol=0.08)
    assert cal.valid.all()
    # results: one row per setting in C order, its settings included
    r = cal.results
    assert r.llc_mean.shape == r.step_size.shape == r.localization.shape == r.nbeta.shape == (6,)
    np.testing.assert_array_equal(r.step_size, np.repeat([2e-5, 4e-5, 8e-5], 2))
    np.testing.assert_array_equal(r.localization, np.tile([0.0, nbeta], 3))
    np.testing.assert_array_equal(r.llc_mean, cal.llc_mean.ravel())
    # the chains range over E|w|² = d/(nβ + γ): localisation at γ = nβ shrinks the radius √2×
    radius = np.sqrt(d / (nbeta + np.array([0.0, nbeta])))
    assert cal.distance.shape == (3, 2, 1)
    np.testing.assert_allclose(cal.distance[:, :, 0], np.broadcast_to(radius, (3, 2)), rtol=0.08)
    np.testing.assert_allclose(
        cal.distance.ravel(), np.sqrt(np.mean(r.distance**2, axis=1)), rtol=1e-12
    )
    rec = cal.recommended
    assert rec is not None and rec["localization"] == 0.0  # least localisation preferred
    assert rec["llc_mean"] == pytest.approx(d / 2, rel=0.08)
    # a new grid of the same size reuses the program
    fs.llc.calibrate(
        jax.random.key(1),
        _quad,
        jnp.zeros(d),
        DUMMY,
        step_sizes=(1e-5, 2e-5, 3e-5),
        localizations=(1.0, 2.0),
        nbetas=(100.0,),
        **kw,
    )
    assert _estimate._compiled_common._cache_size() == before + 1
    fig = cal.plot()
    assert len(fig.axes) == 1


def test_calibration_settings_share_their_chains_random_numbers():
    """Common random numbers: every setting's chain c runs on the key ``estimate`` gives its
    chain c, so each cell is ``estimate`` at that setting with the same key (to float32 rounding:
    one program holds all settings), and settings differ only through ε, γ and nβ."""
    x = jax.random.normal(jax.random.key(1), (200, 3))
    y = x @ jnp.array([1.0, -2.0, 0.5])

    def loss(w, batch):
        return 0.5 * jnp.mean((batch[0] @ w - batch[1]) ** 2)

    w0 = jnp.array([1.0, -2.0, 0.5])
    kw = dict(num_chains=3, num_draws=60, num_burnin=5, batch_size=20, sampling="epoch")
    steps, gammas, nbetas = (1e-4, 3e-4), (1.0, 10.0), (50.0, 80.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fs.llc.NotAMinimumWarning)
        cal = fs.llc.calibrate(
            jax.random.key(5),
            loss,
            w0,
            (x, y),
            step_sizes=steps,
            localizations=gammas,
            nbetas=nbetas,
            **kw,
        )
        for (i, eps), (j, gam), (k, nb) in itertools.product(
            enumerate(steps), enumerate(gammas), enumerate(nbetas)
        ):
            one = fs.llc.estimate(
                jax.random.key(5),
                loss,
                w0,
                (x, y),
                step_size=eps,
                localization=gam,
                nbeta=nb,
                **kw,
            )
            np.testing.assert_allclose(cal.llc_mean[i, j, k], one.llc_mean, rtol=1e-5)
            np.testing.assert_allclose(
                cal.results.llc_per_chain[(i * 2 + j) * 2 + k], one.llc_per_chain, rtol=1e-5
            )


def test_calibration_marks_diverging_settings_invalid():
    cal = fs.llc.calibrate(
        jax.random.key(0),
        _quad,
        jnp.zeros(2),
        DUMMY,
        step_sizes=(1e-3, 10.0),
        localizations=(0.0,),
        nbetas=(100.0,),
        num_chains=8,
        num_draws=1000,
        batch_size=1,
    )
    # ε·nβ = 1000 ≫ 4: the discrete chain is unstable and overflows
    assert cal.diverged_fraction[1, 0, 0] == 1.0 and not cal.valid[1, 0, 0]
    assert cal.valid[0, 0, 0]


def test_calibration_below_init_fraction_is_over_the_surviving_chains():
    """Found by a review: a setting's ``below_init_fraction`` averaged every chain, diverged ones
    included, which read 0 (their NaN tails never lie below the centre), so a setting whose
    chains all diverged read 0, a healthy minimum's value. It is the mean over the chains that
    did not diverge, NaN when none survived."""
    cal = fs.llc.calibrate(
        jax.random.key(0),
        _quad,
        jnp.zeros(2),
        DUMMY,
        step_sizes=(1e-3, 10.0),
        localizations=(0.0,),
        nbetas=(100.0,),
        num_chains=8,
        num_draws=200,
        batch_size=1,
    )
    assert cal.diverged_fraction[1, 0, 0] == 1.0  # ε·nβ = 1000 ≫ 4
    assert np.isnan(cal.below_init_fraction[1, 0, 0])
    assert cal.below_init_fraction[0, 0, 0] == pytest.approx(
        np.mean(cal.results.below_init_fraction[0])
    )


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (dict(key=jax.random.PRNGKey(0)), "key"),  # a raw uint32 key, not a typed one
        (dict(key=0), "key"),
        (dict(step_sizes=(1e-3, 1e-50)), "step_sizes"),  # 0 in float32
        (dict(localizations=(0.0, 1e39)), "localizations must be 0 or a normal float32"),
        (dict(same_batch="yes"), "same_batch"),
        (dict(step_sizes=np.array(1e-3)), "step_sizes must be a sequence"),  # was a TypeError
        (dict(localizations=jnp.array(1.0)), "localizations must be a sequence"),
    ],
)
def test_calibrate_bad_input_names_the_parameter(change, match):
    kw = dict(
        key=jax.random.key(0),
        step_sizes=(1e-3,),
        localizations=(0.0,),
        num_chains=2,
        num_draws=5,
        batch_size=10,
    )
    kw.update(change)
    before = _estimate._compiled_common._cache_size()
    with pytest.raises(ValueError, match=match):
        fs.llc.calibrate(loss_fn=_quad, params=jnp.zeros(2), data=DUMMY, **kw)
    assert _estimate._compiled_common._cache_size() == before
    if "step_sizes" in change:  # a jax array of step sizes is a sequence like a tuple
        kw["step_sizes"] = jnp.array([1e-3, 3e-3])
        cal = fs.llc.calibrate(loss_fn=_quad, params=jnp.zeros(2), data=DUMMY, **kw)
        np.testing.assert_allclose(cal.step_sizes, [1e-3, 3e-3], rtol=1e-6)


def test_time_average_is_the_trapezoid_over_the_window():
    assert fs.llc.time_average([1, 10, 100], [5.0, 1.0, 3.0], 10) == pytest.approx(2.0)
    assert fs.llc.time_average([1, 10, 100], [5.0, 1.0, 3.0], 100) == 3.0
    # constant λ averages to itself whatever the spacing
    assert fs.llc.time_average([1, 3, 50, 51], [4.0] * 4, 1) == pytest.approx(4.0)


def test_trajectory_llc_and_lambda_bar(tmp_path):
    d = 4
    ckpts = jnp.zeros((5, d))
    steps = [1, 10, 100, 1000, 10_000]
    traj = fs.llc.trajectory(
        jax.random.key(0),
        _quad,
        ckpts,
        steps,
        DUMMY,
        num_chains=8,
        num_draws=1000,
        num_burnin=200,
        step_size=1e-4,
        localization=0.0,
        nbeta=1000.0,
        batch_size=1,
    )
    assert traj.window == (100, 10_000)  # t ≥ T^(1/2)
    # every checkpoint is the same regular point: λ = d/2 (sampling error ≈ 5 %)
    np.testing.assert_allclose(traj.llc, d / 2, rtol=0.15)
    assert traj.lambda_bar == pytest.approx(d / 2, rel=0.1)
    assert traj.coefficient_of_variation < 0.15
    fig = fs.llc.plot_trace(traj.result, model=0)
    fig.savefig(tmp_path / "trace.png")
    assert (tmp_path / "trace.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="steps"):
        fs.llc.trajectory(
            jax.random.key(0),
            _quad,
            ckpts,
            [1, 1, 2, 3, 4],
            DUMMY,
            num_chains=2,
            num_draws=10,
            step_size=1e-4,
            localization=0.0,
            batch_size=1,
        )


def test_trajectory_window_starts_at_a_checkpoint_on_its_boundary():
    """t ≥ T^(1 − f): with T = 1000 and f = 1/3 the boundary is the checkpoint 100 itself, which
    1000.0 ** (1 − 1/3) = 100.00000000000006 used to leave out of the window."""
    traj = fs.llc.trajectory(
        jax.random.key(0),
        _quad,
        jnp.zeros((4, 2)),
        [1, 10, 100, 1000],
        DUMMY,
        late_fraction=1 / 3,
        num_chains=2,
        num_draws=10,
        step_size=1e-4,
        localization=0.0,
        nbeta=100.0,
        batch_size=1,
    )
    assert traj.window == (100, 1000)
    lam = traj.llc
    assert traj.lambda_bar == pytest.approx((lam[2] + lam[3]) / 2, rel=1e-12)  # trapezoid
    assert traj.coefficient_of_variation == pytest.approx(
        np.std(lam[2:]) / abs(np.mean(lam[2:])), rel=1e-12
    )


def test_trajectory_fractional_steps_and_a_diverged_checkpoint():
    """Steps below 1 (T^(1 − f) > T) give the last checkpoint as the window instead of an
    IndexError, fractional steps are kept exactly (not truncated by int), and a checkpoint whose
    chains all diverged is out of the coefficient of variation as it is out of λ̄."""
    kw = dict(
        num_chains=2, num_draws=10, step_size=1e-4, localization=0.0, nbeta=100.0, batch_size=1
    )
    traj = fs.llc.trajectory(jax.random.key(0), _quad, jnp.zeros((2, 2)), [0.1, 0.5], DUMMY, **kw)
    assert traj.window == (0.5, 0.5) and traj.lambda_bar == traj.llc[-1]
    traj = fs.llc.trajectory(
        jax.random.key(0), _quad, jnp.zeros((3, 2)), [1.5, 2.5, 6.25], DUMMY, **kw
    )
    assert traj.window == (2.5, 6.25)  # t ≥ 6.25^(1/2) = 2.5 (int() reported (2, 6))
    centres = jnp.zeros((4, 2)).at[1].set(jnp.nan)  # the checkpoint at step 10 diverges
    with pytest.warns(fs.llc.DivergedChainsWarning, match="in models 1"):
        traj = fs.llc.trajectory(
            jax.random.key(0), _quad, centres, [1, 10, 100, 1000], DUMMY, late_fraction=0.8, **kw
        )
    lam = traj.llc
    assert traj.window == (10, 1000) and np.isnan(lam[1])
    assert traj.coefficient_of_variation == pytest.approx(
        np.std(lam[2:]) / abs(np.mean(lam[2:])), rel=1e-12
    )


def test_trajectory_lambda_bar_leaves_out_checkpoints_that_are_not_minima():
    """A checkpoint flagged not a local minimum has no λ to estimate (theory.md Appendix B), and
    ``fracsgd reproduce`` leaves it out of λ̄; trajectory averaged its negative λ̂ in. Found in a
    usage study: a 300-step MNIST run whose late checkpoints read −22 … 5.9 gave λ̄ = 0.25, so
    Eq. 17's d_s = 2λ̄H was 0.33 and the bound read violated."""
    kw = dict(
        num_chains=2, num_draws=50, step_size=1e-3, localization=0.0, nbeta=100.0, batch_size=1
    )
    centres = jnp.zeros((4, 2)).at[2].set(3.0)  # the checkpoint at step 100 is no minimum
    with pytest.warns(fs.llc.NotAMinimumWarning, match="models \\[2\\]"):
        traj = fs.llc.trajectory(
            jax.random.key(0), _quad, centres, [1, 10, 100, 1000], DUMMY, late_fraction=2 / 3, **kw
        )
    lam = traj.llc
    assert traj.window == (10, 1000) and lam[2] < 0
    np.testing.assert_array_equal(np.asarray(traj.result.not_minimum), [False, False, True, False])
    assert traj.lambda_bar == pytest.approx((lam[1] + lam[3]) / 2, rel=1e-12)  # bridged
    assert traj.coefficient_of_variation == pytest.approx(
        np.std(lam[[1, 3]]) / abs(np.mean(lam[[1, 3]])), rel=1e-12
    )


@pytest.mark.parametrize("spacing", [2.0, 3.0, 10**0.25])
@pytest.mark.parametrize("curvature", [30.0, 100.0, 700.0])
def test_recommended_step_size_keeps_the_exact_sgld_bias_within_tolerance(spacing, curvature):
    """SGLD on ½ nβ a |w|² has the exact stationary λ̂(ε) = (d/2) / (1 − ε nβ a / 4), convex in
    ε: the first-order extrapolation from the next smaller step size bounds the true bias from
    above, so the recommended setting's bias is within STABILITY_TOLERANCE of λ̂ there. The
    plain neighbour difference (the rule before) accepted 12–19 % on the 2× and 1.78× grids."""
    from fracsgd.llc._calibrate import _recommend

    d = 4
    steps = 1e-5 * spacing ** np.arange(16)
    steps = steps[steps * curvature < 3.9]  # stable: ε nβ a < 4
    lam = (d / 2) / (1 - steps * curvature / 4)
    shape = (steps.size, 1, 1)
    cal = {
        "valid": np.ones(shape, bool),
        "llc_mean": lam.reshape(shape),
        "ess": np.full(shape, 1e3),
    }
    rec = _recommend(cal, steps, np.array([0.0]), np.array([1.0]))
    assert rec is not None
    i = int(np.flatnonzero(steps == rec["step_size"])[0])
    true_bias = lam[i] - d / 2
    assert 0 < true_bias <= fs.llc.STABILITY_TOLERANCE * lam[i - 1]
    assert true_bias <= rec["bias_estimate"]  # an upper bound for a convex λ̂(ε)
    # the largest such step: the next one's extrapolated bias is over the tolerance
    if i + 1 < steps.size:
        nxt = (lam[i + 1] - lam[i]) * steps[i + 1] / (steps[i + 1] - steps[i])
        assert nxt > fs.llc.STABILITY_TOLERANCE * lam[i]


def test_calibration_invalidates_settings_heated_by_minibatch_noise():
    """L(w; x) = ½|w|² − w·x with x ~ N(0, I₄): Cov(∇L_B) = I/B, so the minibatch noise ratio is
    ε nβ² / (4B) — 0.03 at ε = 3e-4 and 0.3 at 3e-3 (nβ = 20, B = 1). With γ = nβ the target
    gives λ̂ = nβ d / (2(nβ + γ)) = 1; the hot setting mixes and does not diverge, yet reads
    λ̂ ≈ 1 + 0.3 high: it must be invalid."""
    x = jax.random.normal(jax.random.key(7), (1000, 4))
    x = x - x.mean(0, keepdims=True)  # the centre 0 is the exact minimiser

    def loss(w, batch):
        return 0.5 * jnp.sum(w**2) - jnp.mean(batch @ w)

    cal = fs.llc.calibrate(
        jax.random.key(0),
        loss,
        jnp.zeros(4),
        x,
        step_sizes=(3e-4, 3e-3),
        localizations=(20.0,),
        nbetas=(20.0,),
        num_chains=8,
        num_draws=2000,
        num_burnin=200,
        thinning=10,
        batch_size=1,
    )
    ratio = cal.minibatch_noise_ratio[:, 0, 0]
    # 16 minibatch gradients estimate the variance: ~25 % relative error
    np.testing.assert_allclose(ratio, [0.03, 0.3], rtol=0.5)
    np.testing.assert_allclose(ratio, cal.results.minibatch_noise_ratio)
    lam, se = cal.llc_mean[:, 0, 0], cal.llc_std[:, 0, 0] / np.sqrt(8)  # se ≈ 0.05
    assert abs(lam[0] - 1.0) < 4 * se[0] + 0.03  # + the cold setting's own ~3 % heating
    # the hot setting reads significantly above λ = 1, by about the predicted +0.3 (0.32–0.35 over
    # keys 0–3, se ≈ 0.05–0.07); the settings share their chains' random numbers, so the
    # difference to the cold setting is the heating, not independent chain noise
    assert lam[1] - 1.0 > 4 * se[1]
    assert lam[1] - 1.0 > 0.15 and lam[1] - lam[0] > 0.15
    assert cal.valid[0, 0, 0] and not cal.valid[1, 0, 0]
    hot = (1, 0, 0)  # invalid for its noise alone
    assert cal.diverged_fraction[hot] == 0 and cal.rhat[hot] < 1.1 and cal.ess[hot] >= 100
    assert cal.below_init_fraction[hot] < 0.5
    assert cal.recommended is not None and cal.recommended["step_size"] == 3e-4


def test_time_average_drops_non_finite_values_and_bridges_the_gap():
    t = [1.0, 10.0, 100.0, 1000.0]
    # without the NaN at t = 100: the trapezoid over (10, 1) and (1000, 3) on [10, 1000]
    assert fs.llc.time_average(t, [9.0, 1.0, np.nan, 3.0], 10) == pytest.approx(2.0)
    # start between points: the average runs from the first point at or after it
    assert fs.llc.time_average([1, 10, 100], [1.0, 2.0, 3.0], 5) == pytest.approx(2.5)
    assert np.isnan(fs.llc.time_average(t, [1.0, np.nan, np.nan, np.nan], 10))


@pytest.mark.parametrize("steps", [[1, 100, 10], [100, 10, 1], [1, np.inf, 100], [1, np.nan, 100]])
def test_time_average_refuses_unordered_or_non_finite_steps(steps):
    """The trapezoid over unordered steps sums negative intervals ([1, 100, 10] with values
    [1, 1, 100] read -494; an infinite step read NaN): refused, naming steps."""
    with pytest.raises(ValueError, match="steps"):
        fs.llc.time_average(steps, [1.0, 1.0, 100.0], 0)
    # repeated steps are in order: a zero-width interval adds nothing
    assert fs.llc.time_average([1, 10, 10, 100], [2.0, 2.0, 2.0, 2.0], 0) == pytest.approx(2.0)


def test_the_distances_r_hat_flags_chains_the_loss_r_hat_passes():
    """Noisy 7-d regression (curvatures 0.1–10, n = 10 000, B = 100, nβ = n/log n, γ = 1): at
    ε = 1e-7 the chains barely leave the centre in 2 000 draws (λ̂ ≈ 1.5 against ≈ 3.7), but the
    minibatch noise of the loss traces gives R-hat ≈ 1 and an ESS near the number of draws.
    rhat_distance sees it, in estimate and in calibrate's grid (where it is reported, not a
    validity rule: it also flags a singular model's flat directions, which leave λ̂ alone)."""
    d, n = 7, 10_000
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(n, d)) * np.sqrt(np.logspace(-1, 1, d))).astype(np.float32)
    y = (x @ rng.normal(size=d) + rng.normal(size=n)).astype(np.float32)
    centre = np.linalg.lstsq(x.astype(np.float64), y, rcond=None)[0].astype(np.float32)

    def loss(w, batch):
        return 0.5 * jnp.mean((batch[0] @ w - batch[1]) ** 2)

    data = (jnp.asarray(x), jnp.asarray(y))
    kw = dict(num_chains=4, localization=1.0, batch_size=100)
    slow = fs.llc.estimate(
        jax.random.key(0), loss, jnp.asarray(centre), data, num_draws=2000, step_size=1e-7, **kw
    )
    assert slow.rhat < 1.01 and slow.ess > 0.9 * 4 * 2000  # the loss traces see nothing
    assert slow.llc_mean < 2.5  # far below the ≈ 3.7 of mixed chains
    assert slow.rhat_distance > 1.5
    mixed = fs.llc.estimate(
        jax.random.key(0),
        loss,
        jnp.asarray(centre),
        data,
        num_draws=4000,
        num_burnin=1000,
        step_size=1e-4,
        **kw,
    )
    assert mixed.rhat_distance < 1.1 and mixed.llc_mean > 3.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cal = fs.llc.calibrate(
            jax.random.key(0),
            loss,
            jnp.asarray(centre),
            data,
            step_sizes=(3e-8, 1e-7),
            localizations=(1.0,),
            num_chains=4,
            num_draws=2000,
            batch_size=1000,
            same_batch=True,
        )
    assert np.all(cal.rhat < 1.01) and np.all(cal.ess > 7000)
    assert np.all(cal.rhat_distance > 1.5)
    np.testing.assert_array_equal(cal.rhat_distance.ravel(), cal.results.rhat_distance)


def test_the_fallback_recommends_mixed_chains_not_the_largest_ess():
    """No step size is stable on a grid of 1e-7 and 1e-4 (λ̂ ≈ 0.2 and ≈ 3.5 on a 7-d regression,
    λ = d/2): the chains at 1e-7 have barely moved, yet their minibatch loss traces read the
    larger ESS. The fallback takes the setting whose positions mixed (rhat_distance < 1.1)."""
    d, n = 7, 2000
    rng = np.random.default_rng(3)
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = (x @ rng.normal(size=d) + 0.5 * rng.normal(size=n)).astype(np.float32)
    centre = np.linalg.lstsq(x.astype(np.float64), y, rcond=None)[0].astype(np.float32)

    def loss(w, batch):
        return 0.5 * jnp.mean((batch[0] @ w - batch[1]) ** 2)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cal = fs.llc.calibrate(
            jax.random.key(1),
            loss,
            jnp.asarray(centre),
            (jnp.asarray(x), jnp.asarray(y)),
            step_sizes=(1e-7, 1e-4),
            localizations=(0.0,),
            num_chains=4,
            num_draws=2000,
            batch_size=100,
        )
    assert cal.valid.all()
    slow, mixed = (1e-7, 1e-4)
    assert cal.ess[0, 0, 0] > cal.ess[1, 0, 0]  # the old rule's pick: the unmixed chains
    assert cal.llc_mean[0, 0, 0] < 0.5 * d / 2
    assert cal.rhat_distance[0, 0, 0] > 1.5 and cal.rhat_distance[1, 0, 0] < 1.1
    rec = cal.recommended
    assert rec["step_size"] == mixed and rec["step_size"] != slow
    assert math.isnan(rec["bias_estimate"]) and "mixed" in rec["reason"]
    assert rec["llc_mean"] == pytest.approx(d / 2, rel=0.1)


def test_the_fallback_order():
    """Mixed settings first (least localisation, then smallest step size); otherwise the same
    order among the settings tied for the smallest rhat_distance, NaN last."""
    from fracsgd.llc._calibrate import _fallback

    steps, gammas = np.array([1e-5, 1e-4, 1e-3]), np.array([1.0, 10.0])
    valid = np.ones((3, 2, 1), bool)
    ess = np.full((3, 2, 1), 500.0)
    rd = np.array([[1.5, 1.05], [1.08, 1.02], [1.01, 1.0]])[..., None]
    assert _fallback(valid, rd, ess, steps, gammas) == (1, 0, 0)  # γ = 1 first, then ε = 1e-4
    valid[1, 0, 0] = False
    assert _fallback(valid, rd, ess, steps, gammas) == (2, 0, 0)
    valid[2, 0, 0] = False
    assert _fallback(valid, rd, ess, steps, gammas) == (0, 1, 0)  # only γ = 10 mixed
    rd = np.array([[np.nan, 1.5], [1.3, 1.3], [1.2, np.inf]])[..., None]
    valid[:] = True
    ess[1, 1, 0] = 900.0
    assert _fallback(valid, rd, ess, steps, gammas) == (2, 0, 0)  # smallest rhat_distance
    valid[2, 0, 0] = False
    assert _fallback(valid, rd, ess, steps, gammas) == (1, 0, 0)  # the tie: least localised
    valid[1, 0, 0] = False
    assert _fallback(valid, rd, ess, steps, gammas) == (1, 1, 0)
    only_nan = np.zeros((3, 2, 1), bool)
    only_nan[0, 0, 0] = True
    assert _fallback(only_nan, rd, ess, steps, gammas) == (0, 0, 0)
    # equal settings, the ESS decides
    same = np.full((3, 2, 1), np.nan)
    assert _fallback(np.ones((3, 2, 1), bool), same, ess, steps, gammas) == (1, 1, 0)


def test_unmixed_fallback_ties_a_singular_models_rhat_distances():
    """A deep linear network (4, 2, 3, 3), rank 2, n = 10 000, λ = 5, γ = 1, 8 chains × 4 000
    draws (a review's run): no step size stable and none mixed, its flat directions holding
    rhat_distance near 2 everywhere. Taking the smallest of those equals picked ε = 5e-5, whose
    λ̂ read +30 %; tied (rhat_distance − 1 within UNMIXED_TIE), the smallest step size wins."""
    from fracsgd.llc._calibrate import UNMIXED_TIE, _fallback

    steps, gammas = np.array([5e-6, 1e-5, 2e-5, 5e-5]), np.array([1.0])
    rd = np.array([1.967, 1.973, 1.961, 1.936])[:, None, None]
    valid = np.ones((4, 1, 1), bool)
    ess = np.full((4, 1, 1), 800.0)
    assert _fallback(valid, rd, ess, steps, gammas) == (0, 0, 0)
    # a clear difference is no tie: a setting 30 % closer to mixing wins
    rd[3] = 1 + (1 + UNMIXED_TIE) ** -3 * (1.961 - 1)
    assert _fallback(valid, rd, ess, steps, gammas) == (3, 0, 0)
