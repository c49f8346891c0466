"""Hyper-parameter calibration (ε × γ × nβ in one compiled call), λ along a training trajectory
and its time average λ̄, and a trace plot."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from fracsgd._checks import check_key, check_number, real_array, refuse_traced
from fracsgd._types import PRNGKey, PyTree
from fracsgd.llc._estimate import (
    LLCResult,
    _check_flags,
    _check_float32,
    _check_int,
    _check_pos,
    _gradient_variance,
    _run,
    _stack_results,
    _summarise,
    _validate,
    estimate_many,
    minibatch_noise_ratio,
    resolve_nbeta,
)
from fracsgd.parallel import check_mesh

#: the relative discretisation bias of λ̂ the calibration rule accepts at its recommended step
#: size, estimated to first order in ε from the λ̂ at the next smaller step size
STABILITY_TOLERANCE = 0.10
#: effective sample size a setting needs to count as mixed
MIN_ESS = 100.0
#: the largest :func:`~fracsgd.llc.minibatch_noise_ratio` a valid setting may have: above it the
#: minibatch noise heats the chain (λ̂ ≈ λ (1 + ratio) on a locally quadratic loss) by more than
#: ``STABILITY_TOLERANCE`` allows for the discretisation
MAX_NOISE_RATIO = 0.10
#: the ``rhat_distance`` below which the recommendation's fallback counts a setting's chains'
#: positions as mixed (the split R-hat threshold of the loss traces' validity rule)
MIXED_RHAT_DISTANCE = 1.1
#: when no setting mixed, the fallback treats settings whose ``rhat_distance − 1`` is within
#: this fraction of the smallest one as tied: a singular model's flat directions keep
#: ``rhat_distance`` high at every step size, and the few-percent differences that remain are
#: noise (a deep linear network (4, 2, 3, 3), rank 2: 1.97, 1.97, 1.96, 1.94 at ε = 5e-6 …
#: 5e-5, whose λ̂ read 4.4, 4.7, 5.2 and 6.5 against λ = 5)
UNMIXED_TIE = 0.10


class Calibration(NamedTuple):
    """λ̂ over a step size × localisation × nβ grid.

    Attributes:
        step_sizes, localizations, nbetas: the axes (nβ resolved to numbers).
        llc_mean, llc_std, rhat, ess: ``(S, G, B)`` arrays.
        diverged_fraction, below_init_fraction: ``(S, G, B)`` arrays (``below_init_fraction``:
            the mean of ``LLCResult.below_init_fraction`` over the chains that did not diverge,
            NaN if all did).
        valid: ``(S, G, B)``: no divergence, a local minimum, R-hat < 1.1, ESS ≥ ``MIN_ESS``
            and ``minibatch_noise_ratio`` < ``MAX_NOISE_RATIO``.
        recommended: ``{"step_size", "localization", "nbeta", "llc_mean", "bias_estimate",
            "reason"}`` or None.
        results: the per-setting :class:`LLCResult`: every field has the leading axis ``S·G·B``
            in C order, ``step_size``, ``localization`` and ``nbeta`` included (setting ``i``
            ran ``results.step_size[i]``, …).
        minibatch_noise_ratio: ``(S, G, B)``: :func:`~fracsgd.llc.minibatch_noise_ratio` of
            each setting (from one estimate of the minibatch gradient variance at the centre).
        distance: ``(S, G, B)``: the root-mean-square of the chains' ``LLCResult.distance``
            (non-diverged chains; NaN if all diverged): how far from the centre each setting's
            chains range, the radius its λ̂ is local to.
        rhat_distance: ``(S, G, B)``: ``LLCResult.rhat_distance`` of each setting (read with
            ``distance`` and the stability of λ̂ across step sizes; not part of ``valid``).
    """

    step_sizes: np.ndarray
    localizations: np.ndarray
    nbetas: np.ndarray
    llc_mean: np.ndarray
    llc_std: np.ndarray
    rhat: np.ndarray
    ess: np.ndarray
    diverged_fraction: np.ndarray
    below_init_fraction: np.ndarray
    valid: np.ndarray
    recommended: dict[str, Any] | None
    results: LLCResult
    minibatch_noise_ratio: np.ndarray
    distance: Any = None
    rhat_distance: Any = None

    def plot(self, ax: Any = None) -> Any:
        """λ̂ against step size, one line per (γ, nβ); invalid settings hollow. Returns the
        matplotlib figure."""
        import matplotlib.pyplot as plt

        if ax is None:
            fig, ax = plt.subplots(figsize=(6.4, 4.4))
        else:
            fig = ax.figure
        for g, b in itertools.product(range(len(self.localizations)), range(len(self.nbetas))):
            y, e = self.llc_mean[:, g, b], self.llc_std[:, g, b]
            line = ax.errorbar(
                self.step_sizes,
                y,
                yerr=e,
                marker="o",
                capsize=3,
                label=f"γ={self.localizations[g]:g}, nβ={self.nbetas[b]:.4g}",
            )
            bad = ~self.valid[:, g, b]
            ax.scatter(
                self.step_sizes[bad],
                y[bad],
                facecolors="white",
                edgecolors=line[0].get_color(),
                zorder=3,
                s=40,
            )
        if self.recommended:
            ax.scatter(
                [self.recommended["step_size"]],
                [self.recommended["llc_mean"]],
                marker="*",
                s=200,
                color="k",
                zorder=4,
                label="recommended",
            )
        ax.set_xscale("log")
        ax.set_xlabel("SGLD step size ε")
        ax.set_ylabel("λ̂ (mean ± std over chains)")
        ax.set_title("LLC calibration (hollow: diverged, not a minimum, or not mixed)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        return fig


def _first_order_bias(eps0: float, lam0: float, eps1: float, lam1: float) -> float:
    """The discretisation bias of λ̂ at ``eps1``, ``λ̂(ε₁) − λ̂(0)``, from λ̂ linear in ε through
    the two settings: ``(λ̂₁ − λ̂₀) ε₁ / (ε₁ − ε₀)``. SGLD's stationary law is ε-biased to first
    order (on ``½ nβ a |w|²``: ``λ̂(ε) = (d/2) / (1 − ε nβ a / 4)`` exactly), so the change
    between neighbouring step sizes is only ``1 − ε₀/ε₁`` of the bias at the larger one: 2/3 on
    a grid spaced by 3×, 1/2 on one spaced by 2×.

    Examples:
        >>> lam = lambda eps: 1.0 / (1 - eps * 100 / 4)  # d = 2, nβ a = 100: exact SGLD λ̂
        >>> round(_first_order_bias(1e-4, lam(1e-4), 3e-4, lam(3e-4)), 4)  # true bias 0.0076
        0.0076
    """
    return (lam1 - lam0) * eps1 / (eps1 - eps0)


def _fallback(valid, rhat_distance, ess, steps, gammas) -> tuple[int, int, int]:
    """The fallback of :func:`_recommend` when no step size is stable: among the valid settings
    whose chains' positions mixed (``rhat_distance < MIXED_RHAT_DISTANCE``), the least
    localisation, then the smallest step size (least discretisation bias), then the first nβ.
    If none mixed, the same order among the valid settings tied for the smallest
    ``rhat_distance`` (``rhat_distance − 1`` within ``UNMIXED_TIE`` of the smallest; NaN last),
    then the larger ESS. The loss traces' ESS alone would pick the least-mixed setting: chains
    that have barely moved read an ESS near their number of draws (minibatch noise), and a λ̂
    far below λ (a noisy 7-d regression at ε = 1e-7: λ̂ 0.17 against 3.5 with ESS 7 697 of
    8 000). Without the ties, the smallest ``rhat_distance`` of a singular model was noise
    among equals, and it picked the largest, most biased step size (+30 % on a deep linear
    network)."""
    rd = np.where(np.isfinite(rhat_distance), rhat_distance, np.inf)
    cells = [(int(c[0]), int(c[1]), int(c[2])) for c in np.argwhere(valid)]
    mixed = [c for c in cells if rd[c] < MIXED_RHAT_DISTANCE]
    if mixed:
        return min(mixed, key=lambda c: (gammas[c[1]], steps[c[0]], c[2]))
    best = min(rd[c] for c in cells)
    if not np.isfinite(best):  # no finite rhat_distance: the largest ESS
        return min(cells, key=lambda c: (-ess[c], gammas[c[1]], steps[c[0]], c[2]))
    tied = [c for c in cells if rd[c] - 1 <= (1 + UNMIXED_TIE) * max(best - 1, 0.0)]
    return min(tied, key=lambda c: (gammas[c[1]], steps[c[0]], -ess[c], c[2]))


def _recommend(cal: dict[str, np.ndarray], steps, gammas, nbetas) -> dict[str, Any] | None:
    valid, lam, ess = cal["valid"], cal["llc_mean"], cal["ess"]
    order = np.argsort(steps)
    for g in np.argsort(gammas):  # least localisation first: strong γ pins the chains
        for b in range(len(nbetas)):
            best, best_bias = None, math.nan
            for prev, cur in itertools.pairwise(order):
                if not (valid[prev, g, b] and valid[cur, g, b]) or steps[cur] == steps[prev]:
                    continue
                bias = _first_order_bias(steps[prev], lam[prev, g, b], steps[cur], lam[cur, g, b])
                if abs(bias) <= STABILITY_TOLERANCE * abs(lam[prev, g, b]):
                    best, best_bias = cur, bias  # the largest stable step size wins (mixing)
            if best is not None:
                return {
                    "step_size": float(steps[best]),
                    "localization": float(gammas[g]),
                    "nbeta": float(nbetas[b]),
                    "llc_mean": float(lam[best, g, b]),
                    "bias_estimate": float(best_bias),
                    "reason": "smallest localisation with a step size whose discretisation bias, "
                    "extrapolated linearly in ε from the next smaller step size, is within "
                    f"{STABILITY_TOLERANCE:.0%}",
                }
    if valid.any():
        s, g, b = _fallback(valid, cal["rhat_distance"], ess, steps, gammas)
        mixed = cal["rhat_distance"][s, g, b] < MIXED_RHAT_DISTANCE
        return {
            "step_size": float(steps[s]),
            "localization": float(gammas[g]),
            "nbeta": float(nbetas[b]),
            "llc_mean": float(lam[s, g, b]),
            "bias_estimate": math.nan,
            "reason": "no step size was stable against its neighbour; "
            + (
                f"the least localised, then smallest, valid step size whose chains' positions "
                f"mixed (rhat_distance < {MIXED_RHAT_DISTANCE}); its discretisation bias is "
                "unchecked (add smaller step sizes, with chains long enough to mix there)"
                if mixed
                else "no valid setting's chains' positions mixed (rhat_distance ≥ "
                f"{MIXED_RHAT_DISTANCE}); among the valid settings tied for the smallest "
                f"rhat_distance (rhat_distance − 1 within {UNMIXED_TIE:.0%}), the least "
                "localised, then smallest step size; its discretisation bias is unchecked, and "
                "it is likely an underestimate if the chains have not mixed in λ̂'s directions "
                "(add step sizes, or use longer chains)"
            ),
        }
    return None


def calibrate(
    key: PRNGKey,
    loss_fn: Callable,
    params: PyTree,
    data: PyTree,
    *,
    step_sizes: Sequence[float],
    localizations: Sequence[float],
    nbetas: Sequence[Any] = (None,),
    num_chains: int,
    num_draws: int,
    num_burnin: int = 0,
    thinning: int = 1,
    batch_size: int,
    same_batch: bool = False,
    sampler: str = "sgld",
    sampling: str = "replacement",
    mesh: Mesh | None = None,
    memory_limit: int | None = None,
) -> Calibration:
    """Estimate λ at ``params`` for every (ε, γ, nβ) of a grid in one compiled call.

    The settings share their chains' random numbers (common random numbers): chain ``c`` of
    every setting runs on the key :func:`fracsgd.llc.estimate` gives its chain ``c``
    (``jax.random.split(fold_in(key, 0), num_chains)[c]``), so each cell is ``estimate`` at that
    setting with the same ``key`` (to float32 rounding), and settings differ only through ε, γ
    and nβ, which sharpens the comparisons the recommendation makes. Each chain's noise and
    minibatch indices are drawn once for all settings.

    The recommended setting follows a documented rule: a setting is *valid* when no chain
    diverged, the centre looks like a local minimum, split R-hat < 1.1, ESS ≥ ``MIN_ESS`` and
    the minibatch noise ratio is below ``MAX_NOISE_RATIO`` (0.1). The loss traces' R-hat and
    ESS pass chains that have not mixed when the loss is a minibatch loss, whose noise swamps
    the chain's slow drift (a noisy 7-d regression, B = 100, ε = 1e-7, 4 × 2 000 draws: R-hat
    1.0004, ESS 7 705 of 8 000, λ̂ 1.46 against 3.7): read ``rhat_distance`` too. It is not
    part of validity, because it also flags the flat directions of a singular model, which
    do not move λ̂ (``LLCResult.rhat_distance``). Taking localisations from the
    smallest (strong localisation pins the chains and biases λ̂ down; theory.md Appendix B),
    pick the largest step size ε₁ whose discretisation bias, extrapolated linearly in ε from
    the next smaller step size ε₀ — ``(λ̂(ε₁) − λ̂(ε₀)) ε₁/(ε₁ − ε₀)`` — is within
    ``STABILITY_TOLERANCE`` (10 %) of λ̂(ε₀), both settings valid (bias under control, best
    mixing); ``recommended["bias_estimate"]`` is that extrapolated bias. The plain difference
    of neighbouring λ̂ would understate it (by a third on a grid spaced by 3×). If no step size
    is stable, the fallback (``bias_estimate`` NaN, and ``reason`` says so) is, among the valid
    settings whose positions mixed (``rhat_distance`` < ``MIXED_RHAT_DISTANCE``, 1.1), the
    least localised, then the smallest step size; if none mixed, the same order among the
    valid settings tied for the smallest ``rhat_distance`` (``rhat_distance − 1`` within
    ``UNMIXED_TIE``, 10 %, of the smallest: a singular model's flat directions keep it high
    everywhere). (The loss traces' ESS, the fallback until the sixteenth
    session, picks the least-mixed setting: on a noisy 7-d regression over ε = 1e-7 … 1e-4 it
    chose ε = 1e-7, λ̂ 0.17 against 3.5.) If none is valid, ``recommended`` is None. The other
    arguments are those of :func:`fracsgd.llc.estimate` (``sampling`` included;
    ``sampler="psgld"`` needs ``num_burnin ≥ 1``, where its preconditioner adapts), ``mesh``
    (the ``settings × chains`` rows sharded over its devices) and ``memory_limit`` (rows that do
    not fit at once run in chunks).

    Args:
        key, loss_fn, params, data, num_chains, num_draws, num_burnin, thinning, batch_size,
            same_batch, sampler, sampling: as in :func:`fracsgd.llc.estimate`.
        step_sizes: the ε axis, numbers > 0 (any order; the grid keeps it).
        localizations: the γ axis, numbers ≥ 0.
        nbetas: the nβ axis: numbers > 0, ``None`` / ``"n/log n"`` or ``"batch/log batch"``
            (resolved to numbers in :attr:`Calibration.nbetas`).
        mesh: ``None`` or a one-axis ``"batch"`` mesh (the ``settings × chains`` rows are
            sharded over it).
        memory_limit: bytes per device for the chunking (default: what each device has).

    Returns:
        A :class:`Calibration`: ``(S, G, B)`` grids over (step size, localisation, nβ), the
        validity grid, the recommended setting (or None) with its reason, and ``figure()``.

    Raises:
        ValueError: an empty axis, a bad value in an axis or any argument of
            :func:`fracsgd.llc.estimate`, named, before anything compiles.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> import fracsgd as fs
        >>> loss = lambda w, b: 0.5 * jnp.sum(w**2) + 0.0 * jnp.sum(b)
        >>> cal = fs.llc.calibrate(jax.random.key(0), loss, jnp.zeros(2), jnp.zeros((100, 1)),
        ...                        step_sizes=(1e-3, 3e-3), localizations=(0.0, 10.0),
        ...                        nbetas=(100.0,), num_chains=4, num_draws=400, batch_size=1)
        >>> cal.llc_mean.shape
        (2, 2, 1)
    """
    for name, seq in (
        ("step_sizes", step_sizes),
        ("localizations", localizations),
        ("nbetas", nbetas),
    ):
        if (
            isinstance(seq, str | bytes)
            or not isinstance(seq, Sequence | np.ndarray | jax.Array)
            or (isinstance(seq, np.ndarray | jax.Array) and seq.ndim != 1)  # 0-d: no len()
        ):
            raise ValueError(f"{name} must be a sequence, got {seq!r}")
    steps = np.asarray([_check_pos("step_sizes", s) for s in step_sizes], np.float64)
    gammas = np.asarray([_check_pos("localizations", g, allow_zero=True) for g in localizations])
    if steps.size == 0 or gammas.size == 0 or len(nbetas) == 0:
        raise ValueError("step_sizes, localizations and nbetas must be non-empty")
    refuse_traced("fracsgd.llc.calibrate", key=key, params=params, data=data)
    check_key(key)
    _check_flags(same_batch=same_batch)
    mesh = check_mesh(mesh)
    if memory_limit is not None:
        _check_int("memory_limit", memory_limit, 1)
    n = _validate(
        loss_fn,
        params,
        data,
        num_chains=num_chains,
        num_draws=num_draws,
        num_burnin=num_burnin,
        thinning=thinning,
        step_size=steps[0],
        localization=gammas[0],
        batch_size=batch_size,
        sampler=sampler,
        sampling=sampling,
    )
    nbs = np.asarray([resolve_nbeta(b, n, batch_size) for b in nbetas])
    for name, values in (("step_sizes", steps), ("nbetas", nbs)):
        for v in values:
            _check_float32(name, float(v))
    for v in gammas:
        _check_float32("localizations", float(v), allow_zero=True)
    grid64 = np.asarray(list(itertools.product(steps, gammas, nbs)), np.float64)
    grid = grid64.astype(np.float32)  # what the chains run with
    m = grid.shape[0]
    centers = jax.tree.map(lambda a: jnp.broadcast_to(jnp.asarray(a), (m, *jnp.shape(a))), params)
    dead, outs, init_loss = _run(
        key,
        loss_fn,
        centers,
        data,
        None,
        jnp.asarray(grid),
        num_chains=num_chains,
        num_draws=num_draws,
        num_burnin=num_burnin,
        thinning=thinning,
        batch_size=batch_size,
        same_batch=same_batch,
        sampler=sampler,
        mala=False,
        sampling=sampling,
        mesh=mesh,
        memory_limit=memory_limit,
        shared_center=True,
        common_noise=True,
    )
    one = jax.tree.map(lambda a: jnp.asarray(a)[None], params)  # one centre for every setting
    variance = float(
        _gradient_variance(key, loss_fn, one, None, data, batch_size, sampling, mesh)[0]
    )
    rows = [
        # λ̂ = nβ (…) with nβ in float64, as estimate / estimate_many summarise
        _summarise(dead[i], [o[i] for o in outs], init_loss[i], float(grid64[i, 2]), same_batch)
        | {
            "minibatch_noise_ratio": float(
                minibatch_noise_ratio(float(grid64[i, 0]), float(grid64[i, 2]), variance)
            )
        }
        for i in range(m)
    ]
    shape = (len(steps), len(gammas), len(nbs))
    field = lambda k: np.asarray([r[k] for r in rows], np.float64).reshape(shape)
    cal = {k: field(k) for k in ("llc_mean", "llc_std", "rhat", "ess", "rhat_distance")}
    cal["diverged_fraction"] = np.asarray([r["diverged"].mean() for r in rows]).reshape(shape)
    cal["below_init_fraction"] = np.asarray(
        [_mean_over_survivors(r["below_init_fraction"], r["diverged"]) for r in rows]
    ).reshape(shape)
    not_min = np.asarray([r["not_minimum"] for r in rows]).reshape(shape)
    noise = field("minibatch_noise_ratio")
    cal["valid"] = (
        (cal["diverged_fraction"] == 0)
        & ~not_min
        & (cal["rhat"] < 1.1)
        & (cal["ess"] >= MIN_ESS)
        & (noise < MAX_NOISE_RATIO)
    )
    per_step, per_gamma, per_nb = (
        a.ravel() for a in np.meshgrid(steps, gammas, nbs, indexing="ij")
    )  # one value per setting, in the C order of ``rows``
    results = _stack_results(
        rows,
        nbeta=per_nb,
        step_size=per_step,
        localization=per_gamma,
        sampler=sampler,
        sampling=sampling,
        same_batch=bool(same_batch),
        num_draws=int(num_draws),
        num_burnin=int(num_burnin),
        thinning=int(thinning),
    )
    return Calibration(
        step_sizes=steps,
        localizations=gammas,
        nbetas=nbs,
        **cal,
        recommended=_recommend(cal, steps, gammas, nbs),
        results=results,
        minibatch_noise_ratio=noise,
        distance=np.asarray([_rms(r["distance"]) for r in rows]).reshape(shape),
    )


def _mean_over_survivors(values: np.ndarray, diverged: np.ndarray) -> float:
    """Mean of a per-chain reading over the chains that did not diverge (NaN when none did)."""
    good = ~np.asarray(diverged, bool)
    return float(np.mean(np.asarray(values, np.float64)[good])) if good.any() else math.nan


def _rms(values: np.ndarray) -> float:
    """Root-mean-square of the finite entries (NaN when none is)."""
    finite = np.asarray(values, np.float64)
    finite = finite[np.isfinite(finite)]
    return float(np.sqrt(np.mean(finite**2))) if finite.size else float("nan")


class TrajectoryLLC(NamedTuple):
    """λ(w_t) at checkpoints of one training run and its late-time average.

    Attributes:
        steps: ``(K,)`` checkpoint steps.
        llc: ``(K,)`` λ̂ at each checkpoint; ``llc_std`` its std over chains.
        lambda_bar: ``λ̄ = (1/(t_K − t_s)) ∫_{t_s}^{t_K} λ(w_t) dt`` by the trapezoid rule over
            the checkpoints in the window (v1 Corollary 3.2 / v2 Eq. 16); a checkpoint whose
            chains all diverged (NaN λ̂), or that is flagged not a local minimum (no λ to
            estimate, theory.md Appendix B; as ``fracsgd reproduce``), is left out and bridged
            (:func:`time_average`); ``result.diverged`` and ``result.not_minimum`` say which.
        window: ``(t_s, t_K)``: the late window (the last ``late_fraction`` of the run in
            log-time, i.e. ``t ≥ T^{1 − late_fraction}``).
        coefficient_of_variation: std/mean of the finite λ̂ over the window, those of the
            checkpoints left out of λ̄ excepted (near-stability,
            theory.md §5); NaN with fewer than two.
        result: the underlying batched :class:`LLCResult`.
    """

    steps: np.ndarray
    llc: np.ndarray
    llc_std: np.ndarray
    lambda_bar: float
    window: tuple[int, int]
    coefficient_of_variation: float
    result: LLCResult


def _late_start(last: float, late_fraction: float) -> float:
    """Where the late window of a run ending at step ``last`` begins: ``T^{1 − late_fraction}``
    (0 for ``T ≤ 0``), lowered by 1e-12 relative. In floating point the power can land a few
    ulps above a checkpoint that is the boundary exactly (1000^(1 − 1/3) =
    100.00000000000006, 1024^0.8 = 256.00000000000006) and leave it out; 1e-12 is far above
    that rounding and far below the spacing of any two checkpoints."""
    return last ** (1 - late_fraction) * (1 - 1e-12) if last > 0 else 0.0


def time_average(steps: Any, values: Any, start: float) -> float:
    """Trapezoid-rule time average of ``values(t)`` over the points with ``t ≥ start`` and a
    finite value: over ``[t₀, t₁]``, the first and last such points (so over
    ``[start, steps[-1]]`` when ``start`` is a point and the last value is finite; one point:
    its value; none: NaN). ``steps`` must be finite and non-decreasing. Non-finite values — a
    checkpoint whose chains all diverged, or one a caller set to NaN to leave it out — are
    dropped and the trapezoid bridges the gap.

    The ``λ̄ = (1/(t₁ − t₀)) ∫ λ(w_t) dt`` of theory.md §2 (v1 Corollary 3.2 [v2 Eq. 16]) when
    ``values`` are the checkpoints' λ̂ (:func:`trajectory`).

    Args:
        steps: ``(K,)`` finite, non-decreasing times.
        values: ``(K,)`` numbers; non-finite ones are left out.
        start: the window's first time.

    Returns:
        The time average as a float.

    Raises:
        ValueError: for mismatched shapes, unordered or non-finite steps, a bad ``start``, or
            traced input.

    Examples:
        >>> time_average([1, 10, 100], [5.0, 1.0, 3.0], 10)  # (1 + 3)/2 over [10, 100]
        2.0
        >>> time_average([1, 10, 100, 1000], [5.0, 1.0, float("nan"), 3.0], 10)  # bridged
        2.0

    A host computation (NumPy): not under ``jit``/``vmap``.
    """
    refuse_traced("fracsgd.llc.time_average", steps=steps, values=values, start=start)
    t = real_array("steps", steps, finite=True)
    v = real_array("values", values)
    if t.ndim != 1 or v.shape != t.shape:
        raise ValueError(f"steps and values must be 1-D of one length, got {t.shape}, {v.shape}")
    if np.any(np.diff(t) < 0):
        # the trapezoid over unordered steps sums negative intervals: [1, 100, 10] with values
        # [1, 1, 100] read -494
        raise ValueError(
            f"steps must be non-decreasing (checkpoint steps in order), got {steps!r:.80}"
        )
    start = check_number("start", start)
    keep = (t >= start) & np.isfinite(v)
    t, v = t[keep], v[keep]
    if t.size == 0:
        return float("nan")
    if t.size == 1 or t[-1] == t[0]:
        return float(v[-1])
    return float(np.sum((v[1:] + v[:-1]) * np.diff(t)) / 2 / (t[-1] - t[0]))


def trajectory(
    key: PRNGKey,
    loss_fn: Callable,
    checkpoints: PyTree,
    steps: Sequence[int],
    data: PyTree,
    *,
    late_fraction: float = 0.5,
    **kwargs: Any,
) -> TrajectoryLLC:
    """λ(w_t) at every checkpoint (one :func:`estimate_many` call) and λ̄ over the late window.

    Args:
        key: ``jax.random.key``, used as :func:`estimate_many` uses it.
        loss_fn: ``loss_fn(params, batch) -> scalar`` mean loss over the batch.
        checkpoints: parameters with a leading ``(K,)`` axis, e.g. ``TrainResult.checkpoints``.
        steps: the ``K`` checkpoint steps (increasing).
        data: pytree of arrays with leading axis ``n`` (the training set).
        late_fraction: the window is the last ``late_fraction`` of the run in log-time.
        **kwargs: passed to :func:`estimate_many` (``num_chains``, ``step_size``, …).

    Returns:
        A :class:`TrajectoryLLC`: λ̂ per checkpoint, λ̄ over the late window
        (:func:`time_average`), the window and the coefficient of variation there.

    Raises:
        ValueError: for steps that are empty, not increasing, negative or non-finite, a leading
            axis of ``checkpoints`` other than ``len(steps)``, ``late_fraction`` outside
            ``(0, 1]``, or bad :func:`estimate_many` arguments.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> import fracsgd as fs
        >>> data = jnp.zeros((1000, 1))
        >>> loss = lambda w, batch: 0.5 * jnp.sum(w**2) + 0.0 * jnp.sum(batch)
        >>> traj = fs.llc.trajectory(jax.random.key(0), loss, jnp.zeros((4, 3)),
        ...                          [1, 10, 100, 1000], data, num_chains=4, num_draws=200,
        ...                          step_size=1e-3, localization=0.0, nbeta=100.0,
        ...                          batch_size=10)
        >>> traj.llc.shape, traj.window  # window: t >= 1000^(1 - 0.5)
        ((4,), (100, 1000))
        >>> bool(abs(traj.lambda_bar - 1.5) < 0.3)  # λ = d/2 for a regular minimum
        True
    """
    t = real_array("steps", steps)
    if t.ndim != 1 or t.size == 0 or np.any(~np.isfinite(t)) or np.any(np.diff(t) <= 0):
        raise ValueError("steps must be a non-empty increasing sequence of finite checkpoint steps")
    if t[0] < 0:
        raise ValueError(f"steps must be >= 0 (SGD step counts), got {t[0]}")
    k = {int(np.shape(x)[0]) if np.ndim(x) else -1 for x in jax.tree.leaves(checkpoints)}
    if k != {t.size}:
        raise ValueError(
            f"checkpoints need a leading axis of len(steps) = {t.size} on every leaf, got {k}"
        )
    late_fraction = check_number("late_fraction", late_fraction, lo=0.0, hi=1.0, lo_open=True)
    t = np.asarray(steps)  # the caller's dtype (validated above)
    res = estimate_many(key, loss_fn, checkpoints, data, **kwargs)
    # (steps below 1 have T^(1 − f) > T: the window is then the last checkpoint alone)
    first = int(np.flatnonzero(t >= min(_late_start(float(t[-1]), late_fraction), t[-1]))[0])
    start_step = t[first].item()  # the caller's type: int steps stay ints, fractional ones exact
    lam = np.asarray(res.llc_mean, np.float64)
    # a checkpoint flagged not a local minimum has no λ to estimate (theory.md Appendix B): out
    # of λ̄ and the CV, as in fracsgd reproduce (its negative λ̂ used to be averaged in)
    lam_ok = np.where(np.asarray(res.not_minimum, bool), np.nan, lam)
    window = lam_ok[first:]
    window = window[np.isfinite(window)]  # as λ̄: a checkpoint whose chains all diverged is out
    cv = (
        float(np.std(window) / abs(np.mean(window)))
        if window.size > 1 and np.mean(window) != 0
        else float("nan")
    )
    return TrajectoryLLC(
        steps=t,
        llc=lam,
        llc_std=np.asarray(res.llc_std),
        lambda_bar=time_average(t, lam_ok, start_step),
        window=(start_step, t[-1].item()),
        coefficient_of_variation=cv,
        result=res,
    )


def plot_trace(result: LLCResult, ax: Any = None, *, model: int | None = None) -> Any:
    """Loss traces ``L_B(w_t)`` of every chain with the centre's loss, for a visual check of
    mixing and of whether the point is a minimum. Returns the matplotlib figure.

    Args:
        result: an :class:`LLCResult`; only ``loss_trace`` and ``init_loss`` are read.
        ax: a matplotlib ``Axes`` to draw into (its figure is returned); a new figure if None.
        model: which model of an :func:`estimate_many` result (3-D ``loss_trace``) to plot.

    Returns:
        The matplotlib ``Figure``: one line per chain (labelled in the legend for up to 8
        chains) and a dashed horizontal line at ``init_loss``.

    Raises:
        ValueError: if ``result`` holds several models and ``model`` is None.

    Examples:
        Any result with loss traces will do; here a hand-made one with 3 chains of 5 draws
        (an :func:`estimate` call would take longer to compile than this example may run):

        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import numpy as np, matplotlib.pyplot as plt
        >>> from fracsgd.llc import LLCResult
        >>> traces = np.arange(15.0).reshape(3, 5)
        >>> res = LLCResult._make([None] * len(LLCResult._fields))._replace(
        ...     loss_trace=traces, init_loss=1.0)
        >>> fig = plot_trace(res)
        >>> ax = fig.axes[0]
        >>> len(fig.axes), len(ax.lines)  # 3 chains + the dashed line at L_n(w*)
        (1, 4)
        >>> ax.lines[0].get_ydata().tolist(), [float(y) for y in ax.lines[-1].get_ydata()]
        ([0.0, 1.0, 2.0, 3.0, 4.0], [1.0, 1.0])
        >>> plt.close(fig)

        Several models (``estimate_many``) need ``model``:

        >>> many = res._replace(loss_trace=np.stack([traces, 2 * traces]), init_loss=[1.0, 2.0])
        >>> fig = plot_trace(many, model=1)
        >>> lines = fig.axes[0].lines
        >>> lines[0].get_ydata().tolist(), [float(y) for y in lines[-1].get_ydata()]
        ([0.0, 2.0, 4.0, 6.0, 8.0], [2.0, 2.0])
        >>> plt.close(fig)
        >>> plot_trace(many)
        Traceback (most recent call last):
        ...
        ValueError: result holds several models: pass model=index
    """
    import matplotlib.pyplot as plt

    traces = np.asarray(result.loss_trace)
    init = np.asarray(result.init_loss)
    if traces.ndim == 3:
        if model is None:
            raise ValueError("result holds several models: pass model=index")
        traces, init = traces[model], init[model]
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
    else:
        fig = ax.figure
    for c, tr in enumerate(traces):
        ax.plot(tr, lw=0.6, alpha=0.8, label=f"chain {c}" if traces.shape[0] <= 8 else None)
    ax.axhline(float(init), color="k", ls="--", lw=1, label="L_n(w*)")
    ax.set_xlabel("draw")
    ax.set_ylabel("minibatch loss L_B(w_t)")
    ax.set_title("SGLD loss traces")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
