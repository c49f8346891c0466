"""The batched SGLD estimator of the local learning coefficient (Lau et al. 2023; theory.md §2).

One compiled program samples ``models × chains`` at once: a leading *batch* axis carries the
centre ``w*``, its mask and the hyper-parameters (step size ε, localisation γ, ``nβ``), so the
same program serves one model (:func:`estimate`), many models or checkpoints
(:func:`estimate_many`) and a hyper-parameter grid (:func:`calibrate`).

Estimator: sample ``p(w) ∝ exp(−nβ L_n(w) − (γ/2)||w − w*||²)`` with SGLD started at ``w*`` and
report ``λ̂ = nβ (E[L_B(w_t)] − L_n(w*))`` per chain, averaged over chains; with
``same_batch=True`` (Lau et al. Algorithm 1) each draw contributes ``nβ (L_B(w_t) − L_B(w*))``
on the *same* minibatch ``B``, so minibatch noise cancels. Minibatches are drawn inside the
compiled loop: uniformly with replacement (default), or with ``sampling="epoch"`` by epochs,
each chain walking through its own random permutation of the data (a keyed Feistel permutation,
:func:`fracsgd.data.epoch_batch`; a fresh one every ``n // B`` steps) as devinterp's shuffled
``DataLoader`` does. Step ``t`` of a chain hashes the counter ``(t, ·)`` under the chain key's words
(:mod:`fracsgd.sampling._rng`) for its noise and minibatch, so no keys are split per step.
``L_n(w*)``
(``init_loss``) is the full-data loss: the mean of ``loss_fn`` over equal chunks of the data.
"""

from __future__ import annotations

import functools
import math
import warnings
import weakref
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from fracsgd import _xla
from fracsgd._checks import check_key, refuse_traced
from fracsgd._types import Array, PRNGKey, PyTree
from fracsgd._xla import jit
from fracsgd.data._shuffle import ROUNDS, batch_of_epoch
from fracsgd.parallel import (
    AXIS,
    BATCH,
    REPLICATED,
    check_mesh,
    chunk_plan,
    device_memory,
    map_elements,
    num_shards,
    pad_leading,
    per_shard,
    replicate,
    shard_leading,
    to_host,
)
from fracsgd.sampling import (
    build_kernel,
    build_psgld_kernel,
    effective_sample_size,
    localize,
    localized_gradient,
    psgld_init,
    psgld_preconditioner,
    split_rhat,
    tree_sq_norm,
)
from fracsgd.sampling import init as sgld_init
from fracsgd.sampling._gradients import check_binary_mask, check_like
from fracsgd.sampling._rng import fold, key_words, threefry2x32
from fracsgd.sampling._sgld import _masked, _num_active

SAMPLERS = ("sgld", "psgld")
SAMPLINGS = ("epoch", "replacement")
NBETA_RULES = ("n/log n", "batch/log batch")


class NotAMinimumWarning(UserWarning):
    """The sampled point is not a local minimum: most draws have a lower loss than it, so λ̂ is
    unreliable (theory.md Appendix B)."""


class DivergedChainsWarning(UserWarning):
    """Some or all SGLD chains hit NaN/inf and were excluded from ``llc_mean`` / ``llc_std``
    (flagged in ``diverged``). A chain diverges when the step size is too large for the
    curvature it meets (``ε (nβ a + γ) ≳ 2`` for curvature ``a``): the surviving chains may sit
    near that edge too, so λ̂ from them is suspect; reduce ``step_size`` or run
    :func:`fracsgd.llc.calibrate`."""


class LLCResult(NamedTuple):
    """An LLC estimate with its traces and diagnostics.

    Per-chain fields have shape ``(chains,)`` (``(models, chains)`` from :func:`estimate_many`).

    Attributes:
        llc_mean: mean of ``llc_per_chain`` over chains that did not diverge (NaN if all did).
        llc_std: standard deviation over those chains (``ddof=1``; NaN with fewer than two).
        llc_per_chain: ``nβ (mean_t L_B(w_t) − L_n(w*))`` (or the same-batch variant).
        loss_trace: ``(chains, draws)`` minibatch losses ``L_B(w_t)`` at the recorded draws:
            draw ``j`` is the loss at the position *before* step ``burnin + (j + 1)·thinning − 1``
            (the loss the step's gradient comes with, as devinterp records it), so without
            burn-in and thinning the first draw is at ``w*`` itself. In the chains' dtype
            (float32; float64 with ``jax_enable_x64`` and float64 parameters).
        init_loss: ``L_n(w*)``, full data.
        nbeta: the ``nβ`` used.
        diverged: ``(chains,)`` a NaN/inf appeared in the minibatch loss (a non-finite
            gradient or an overflowing position shows there at the next step, through the
            position it produced) or in the drift at a step whose norm is measured
            (``grad_noise_ratio``); the chain stopped moving and is excluded.
        rhat: split R-hat of the loss traces over the non-diverged chains.
        ess: effective sample size of the loss traces.
        below_init_fraction: ``(chains,)`` how often the chain sits below the centre. With
            ``same_batch=True``: the fraction of draws with ``L_B(w_t) < L_B(w*)`` on the same
            minibatch. Otherwise: the fraction of the chain's means over consecutive blocks of
            ``⌈√draws⌉`` draws that lie below ``init_loss`` (single minibatch losses are skewed,
            so at an exact minimum over half of them may lie below ``L_n(w*)``; block means are
            not). NaN for a diverged chain.
        not_minimum: the centre looks like no local minimum (λ̂ < 0, or
            ``below_init_fraction`` above 1/2 on average over the chains).
        grad_noise_ratio: ``(chains,)`` mean of ``||(ε/2)∇U|| / sqrt(ε d)`` over the measured
            draws: the drift's norm over the noise's root-mean-square norm (``d`` active
            parameters; :class:`fracsgd.sampling.SGLDInfo`) at the step of draw ``j``, measured
            at the last draw of every :data:`DRIFT_NORM_EVERY` consecutive draws
            (``j = 7, 15, …``) and at the last draw; NaN for a diverged chain.
        mala_acceptance: ``(chains,)`` mean MALA acceptance probability of the chain's proposals
            on their minibatch (computed with ``mala=True``; NaN otherwise). pSGLD: the proposal
            ``N(w − (ε/2) G∇U, εG)`` with the step's preconditioner, which is fixed during the
            draws, so there it is MALA's exact acceptance for that ``G`` (masks are 0/1: the
            masked coordinates neither move nor enter the ratio). A diverged chain keeps the mean
            over its draws before it diverged (NaN if none), unlike the fields above.
        step_size, localization: ε and γ.
        sampler: ``"sgld"`` or ``"psgld"``.
        sampling: how minibatches were drawn (``"epoch"`` or ``"replacement"``).
        same_batch: which estimator variant ran.
        num_draws, num_burnin, thinning: the schedule.
        minibatch_noise_ratio: ``(ε/4) nβ² tr Cov(∇L_B(w*))/d`` (:func:`minibatch_noise_ratio`),
            the minibatch noise in a step over the injected noise, from ``NOISE_BATCHES``
            batches at the centre (epoch batches: times ``(n − B)/(n − 1)``). Near 0.1 and
            above the chain runs hotter than its target and λ̂ reads high by about that
            factor.
        distance: ``(chains,)`` root-mean-square distance ``||w − w*||`` of the chain from the
            centre (active parameters) at the draws ``grad_noise_ratio`` is measured at: the
            radius the estimate is local to. A direction only the localization confines spreads
            as ``N(0, 1/γ)`` in the tempered posterior, so ``k`` flat directions alone give
            about ``sqrt(k/γ)``; a distance comparable to the way to other critical points
            (or to ``||w*||``) means λ̂ reflects them too (``aoyagi_lambda``'s docs). NaN for a
            diverged chain.
        rhat_distance: split R-hat of the squared distances ``||w − w*||²`` at those draws,
            over the non-diverged chains (NaN with fewer than 4 measured draws). ``rhat`` and
            ``ess`` read the minibatch loss traces, whose minibatch noise can swamp a chain's
            slow drift: chains that have barely left the centre then read R-hat ≈ 1 and an ESS
            near the number of draws. The distances carry no minibatch noise, and their R-hat
            flags the slow directions (a noisy 7-d regression, B = 100, ε = 1e-7, 4 × 2 000
            draws: ``rhat`` 1.0004, ESS 7 705 of 8 000, λ̂ 1.46 against 3.7; ``rhat_distance``
            2.69; with B = 1 000 at ε = 1e-4, 1 000 burn-in and 4 000 draws, 1.03). It flags
            every slow direction, including the flat ones of a singular model that only the
            localization confines and that do not change the loss: on the deep linear network
            of ``notebooks/01`` (λ = 29) at γ = 1 it reads 1.9 while λ̂ reads 27.8–31.4 for ε
            from 1e-5 to 1e-4. A high value with λ̂ stable across step sizes and a modest
            ``distance`` points at flat directions; with λ̂ drifting, at unmixed curved ones.
    """

    llc_mean: Any
    llc_std: Any
    llc_per_chain: np.ndarray
    loss_trace: np.ndarray
    init_loss: Any
    nbeta: Any
    diverged: np.ndarray
    rhat: Any
    ess: Any
    below_init_fraction: np.ndarray
    not_minimum: Any
    grad_noise_ratio: np.ndarray
    mala_acceptance: np.ndarray
    step_size: Any
    localization: Any
    sampler: str
    sampling: str
    same_batch: bool
    num_draws: int
    num_burnin: int
    thinning: int
    minibatch_noise_ratio: Any = None
    distance: Any = None
    rhat_distance: Any = None


class _Static(NamedTuple):
    loss_fn: Callable
    num_chains: int
    num_burnin: int
    num_draws: int
    thinning: int
    batch_size: int
    same_batch: bool
    sampler: str
    mala: bool
    masked: bool
    sampling: str = "replacement"
    drift_norm_every: int = 1
    per_setting_batch: bool = False
    straight_line: tuple[str, ...] = ()


def default_nbeta(n: int) -> float:
    """Watanabe's ``nβ* = n / log n`` (the default).

    Source: the inverse temperature ``β* = 1/log n`` of WBIC (S. Watanabe, "A Widely
    Applicable Bayesian Information Criterion", JMLR 14 (2013) 867–897), which the LLC
    estimator of Lau et al. (arXiv:2308.12108, 2023; AISTATS 2025) adopts; times ``n`` it is the
    ``nβ`` that multiplies the mean loss ``L_n`` in the tempered posterior (theory.md §2, the
    ``nβ`` decision). ``n`` is the number of training samples, not the batch size
    (:func:`batch_nbeta`).

    Args:
        n: the number of training samples, an integer ``≥ 2`` (``log 1 = 0``).

    Returns:
        ``n / log n`` as a float (natural logarithm).

    Raises:
        ValueError: if ``n`` is not an integer ``≥ 2`` (a bool is refused).

    Examples:
        >>> import math
        >>> default_nbeta(10_000) == 10_000 / math.log(10_000)
        True
        >>> round(default_nbeta(10_000), 2)
        1085.74
    """
    n = _check_int("n", n, 2)
    return n / math.log(n)


def batch_nbeta(batch_size: int) -> float:
    """devinterp 1.x's implicit ``B / log B`` (offered by name, never a hidden default).

    :func:`default_nbeta`'s formula with the batch size ``B`` in place of the number of samples
    ``n`` (theory.md §2: devinterp 1.x uses it silently). It is much smaller than ``n / log n``
    when ``B ≪ n``, i.e. a hotter posterior.

    Args:
        batch_size: ``B``, an integer ``≥ 2``.

    Returns:
        ``B / log B`` as a float.

    Raises:
        ValueError: if ``batch_size`` is not an integer ``≥ 2``.

    Examples:
        >>> import math
        >>> batch_nbeta(128) == 128 / math.log(128)
        True
        >>> round(batch_nbeta(128), 2), round(default_nbeta(10_000), 2)  # B = 128 of n = 10 000
        (26.38, 1085.74)
    """
    batch_size = _check_int("batch_size", batch_size, 2)
    return batch_size / math.log(batch_size)


def _num_samples(data: PyTree) -> int:
    leaves = jax.tree.leaves(data)
    if not leaves:
        raise ValueError("data must be a pytree of arrays with a leading sample axis")
    ns = {int(np.shape(x)[0]) if np.ndim(x) else -1 for x in leaves}
    if len(ns) != 1 or -1 in ns:
        raise ValueError(f"every leaf of data needs the same leading (sample) axis, got {ns}")
    return ns.pop()


#: most data rows the full-data loss ``L_n(w*)`` evaluates at once
FULL_LOSS_ROWS = 8192


def _row_chunks(n: int) -> list[int]:
    """Divisors of ``n`` up to :data:`FULL_LOSS_ROWS`, largest first: the row counts the
    full-data loss may evaluate at once (equal chunks, so the mean of chunk means is the mean)."""
    return [d for d in range(min(n, FULL_LOSS_ROWS), 0, -1) if n % d == 0]


def _full_loss(loss_fn: Callable, params: PyTree, data: PyTree, n: int, chunk: int) -> Array:
    chunks = jax.tree.map(lambda a: a.reshape(n // chunk, chunk, *a.shape[1:]), data)
    return jnp.mean(jax.lax.map(lambda b: loss_fn(params, b), chunks))


def _chain(
    static: _Static,
    key: PRNGKey,
    center: PyTree,
    mask: PyTree | None,
    hyper: Array,
    data: PyTree,
    n: int,
):
    step_size, localization, nbeta = hyper[0], hyper[1], hyper[2]
    est = localized_gradient(static.loss_fn, center, nbeta=nbeta, localization=localization)
    state: Any
    if static.sampler == "sgld":
        kernel = build_kernel(mask)
        state = sgld_init(center)
    else:
        kernel = build_psgld_kernel(mask)
        state = psgld_init(center)

    def potential(w, loss):
        return nbeta * loss + 0.5 * localization * tree_sq_norm(
            jax.tree.map(jnp.subtract, w, center)
        )

    words = key_words(key)
    per_epoch = n // static.batch_size

    psgld = static.sampler == "psgld"

    def step_kernel(k_noise, state, batch, grad, loss, adapt):
        # the kernel with the step's gradient of the loss already taken: ∇U assembled as
        # localized_gradient does (fracsgd.sampling.localize)
        def cached(w, _batch):
            return localize(grad, w, center, nbeta=nbeta, localization=localization), loss

        if psgld:
            return kernel(k_noise, state, batch, cached, step_size, adapt=adapt)
        return kernel(k_noise, state, batch, cached, step_size)

    def measured_norms(measure, k_noise, state, grad, loss, like):
        # the drift's norm, the noise's and the distance from the centre at a measured step
        # (DRIFT_NORM_EVERY), NaN at others
        def measured(ops):
            k, st, g, lo = ops
            _, info = step_kernel(k, st, None, g, lo, False)
            offset = _masked(jax.tree.map(jnp.subtract, st.position, center), mask)
            distance = jnp.sqrt(tree_sq_norm(offset)).astype(info.drift_norm.dtype)
            return info.drift_norm, info.noise_norm, distance

        ops = (k_noise, state, grad, loss)

        def skipped(ops):  # NaNs of the step's own norms' dtypes (float64 with x64 and float64)
            return jax.tree.map(lambda a: jnp.full(a.shape, jnp.nan, a.dtype), like)

        def gated(measure, ops):
            # under lax.cond, so that only measured steps run the pass over the parameters the
            # norm takes; the branch's operands (the loss gradient, the position) are in memory
            # anyway, and its noise and update are dead
            return jax.lax.cond(measure, measured, skipped, ops)

        def selected(measure, ops):
            # _xla.STRAIGHT_LINE_PLATFORMS: the norms at every step, kept at the measured ones
            # (no conditional, which a GPU runs through the host)
            return jax.tree.map(
                lambda a, nan: jnp.where(measure, a, nan), measured(ops), skipped(ops)
            )

        straight = dict.fromkeys(static.straight_line, selected)
        return jax.lax.platform_dependent(measure, ops, default=gated, **straight)

    def one_step(carry, t, adapt=False, measure=None):
        # pSGLD adapts its preconditioner during burn-in and samples with it frozen (a constant
        # G leaves exp(−U) stationary; an adapting one biases λ̂, fracsgd.sampling._sgld).
        # measure: a traced bool, whether this step's drift norm is computed (None: never)
        state, dead = carry
        k_noise = jax.random.wrap_key_data(fold(words, t, 1), impl="threefry2x32")
        if static.sampling == "epoch":
            # the epoch's ROUNDS Feistel round keys: hashes of counters (e, 2…) under the
            # chain's words (tags 0 and 1 are the batch and noise keys)
            e = (t // per_epoch).astype(jnp.uint32)
            y0, y1 = threefry2x32(words[0], words[1], e, jnp.arange(2, 2 + ROUNDS // 2))
            idx = batch_of_epoch(jnp.concatenate([y0, y1]), t % per_epoch, n, static.batch_size)
        else:
            k_batch = jax.random.wrap_key_data(fold(words, t, 0), impl="threefry2x32")
            # int32 whatever jax_enable_x64 says: randint draws its bits by dtype, so the
            # default int64 under x64 gave a float32 problem other minibatches than without x64
            idx = jax.random.randint(k_batch, (static.batch_size,), 0, n, dtype=jnp.int32)
        batch = jax.tree.map(lambda a: a[idx], data)
        if static.per_setting_batch:
            # common random numbers (_common_program): the minibatch depends on the chain's key
            # alone, so under the settings' vmap it is one array for all settings, and XLA would
            # contract every setting's weights against it in one wider product, whose rounding
            # depends on how many settings share a device and whose operands it transposes at
            # every step. Adding 0·ε (a per-setting zero; ε is finite) gives the floating leaves
            # a settings axis: each setting's products are its own, as in _program (measured
            # 12 % faster on the 4 × 4 grid of 784-128-10 MLPs, one CPU device per core)
            batch = jax.tree.map(
                lambda a: (
                    a + jnp.zeros((), a.dtype) * step_size.astype(a.dtype)
                    if jnp.issubdtype(a.dtype, jnp.floating)
                    else a
                ),
                batch,
            )
        loss, grad = jax.value_and_grad(static.loss_fn)(state.position, batch)
        loss = jnp.asarray(loss)  # a loss_fn may return a Python float (a constant)
        new_state, info = step_kernel(k_noise, state, batch, grad, loss, adapt)
        loss_star = static.loss_fn(center, batch) if static.same_batch else jnp.nan
        if static.mala:
            w, w_new = state.position, new_state.position
            # ∇U at the old position is the step's own
            g_old = localize(grad, w, center, nbeta=nbeta, localization=localization)
            g_new, loss_new = est(w_new, batch)
            # proposal N(w − (ε/2) G ∇U(w), ε G) with G = 1 (SGLD) or the step's pSGLD
            # preconditioner (constant while sampling, so the proxy is exact MALA there);
            # log q(w|w') − log q(w'|w) = (fwd − bwd) / (2ε), the norms weighted by 1/G
            pre = (
                psgld_preconditioner(new_state)
                if psgld
                else jax.tree.map(lambda a: jnp.ones((), a.dtype), w)
            )

            def gap(a, b, g):  # Σ (a − b + (ε/2) G g)² / G over active entries
                return tree_sq_norm(
                    _masked(
                        jax.tree.map(
                            lambda a, b, g, p: (a - b + 0.5 * step_size * p * g) / jnp.sqrt(p),
                            a,
                            b,
                            g,
                            pre,
                        ),
                        mask,
                    )
                )

            fwd = gap(w_new, w, g_old)
            bwd = gap(w, w_new, g_new)
            log_alpha = (
                potential(w, info.loss) - potential(w_new, loss_new) + (fwd - bwd) / (2 * step_size)
            )
            accept = jnp.exp(jnp.minimum(0.0, log_alpha))
        else:
            accept = jnp.nan
        # a non-finite gradient gives a non-finite position, which shows in the next step's
        # loss (and at a measured step already in the drift's norm)
        finite = jnp.isfinite(info.loss)
        ratio = distance = jnp.asarray(jnp.nan, info.loss.dtype)
        if measure is not None:
            like = (info.drift_norm, info.noise_norm, info.drift_norm)
            drift_norm, noise_norm, distance = measured_norms(
                measure, k_noise, state, grad, loss, like
            )
            finite = finite & (jnp.isfinite(drift_norm) | ~measure)
            ratio = drift_norm / noise_norm
        dead_now = dead | ~finite
        state = jax.tree.map(lambda a, b: jnp.where(dead_now, a, b), state, new_state)
        nan = jnp.float32(jnp.nan)
        out = (
            jnp.where(dead, nan, info.loss),
            jnp.where(dead, nan, loss_star),
            jnp.where(dead, nan, ratio),
            jnp.where(dead, nan, accept),
            jnp.where(dead, nan, distance),
        )
        return (state, dead_now), out

    carry = (state, jnp.zeros((), bool))
    t0 = 0
    if static.num_burnin:
        carry, _ = jax.lax.scan(
            lambda c, t: one_step(c, t, adapt=True), carry, jnp.arange(static.num_burnin)
        )
        t0 = static.num_burnin

    def one_draw(carry, j):
        # the draw is the last of its `thinning` steps; the drift's norm is measured at the last
        # draw of every DRIFT_NORM_EVERY and at the very last draw
        k = static.drift_norm_every
        draw_measured = ((j + 1) % k == 0) | (j == static.num_draws - 1)
        steps = t0 + j * static.thinning + jnp.arange(static.thinning)
        last = jnp.arange(static.thinning) == static.thinning - 1
        carry, outs = jax.lax.scan(
            lambda c, tm: one_step(c, tm[0], measure=tm[1] & draw_measured), carry, (steps, last)
        )
        return carry, jax.tree.map(lambda o: o[-1], outs)

    carry, outs = jax.lax.scan(one_draw, carry, jnp.arange(static.num_draws))
    _, dead = carry
    return dead, outs


def _program(
    static: _Static, keys: Array, centers: PyTree, masks: PyTree | None, hyper: Array, data: PyTree
):
    """One row per chain: ``keys (R,)``, ``centers (R, ...)``, ``masks (R, ...)`` or None,
    ``hyper (R, 3)`` → ``dead (R,)`` and traces ``(R, draws)``. Rows are independent, so the
    row axis may be chunked and sharded freely."""
    n = _num_samples(data)
    return jax.vmap(
        lambda k, c, m, hp: _chain(static, k, c, m, hp, data, n),
        in_axes=(0, 0, 0 if static.masked else None, 0),
    )(keys, centers, masks, hyper)


def _sharded_program(
    static: _Static,
    keys: Array,
    centers: PyTree,
    masks: PyTree | None,
    hyper: Array,
    data: PyTree,
    mesh: Mesh | None = None,
):
    """:func:`_program` on each device's rows (``shard_map``): every device runs the program
    one device would run on its shard. Partitioning the ``jit`` from its input shardings
    instead made XLA synchronise the devices inside every step: the epoch batches' cycle walk
    (:func:`fracsgd.data.permute_index`) is a ``while`` loop whose condition it reduced over
    all devices' chains (an ``all-reduce`` per iteration)."""
    return per_shard(
        lambda k, c, m, hp, d: _program(static, k, c, m, hp, d),
        mesh,
        (BATCH, BATCH, BATCH, BATCH, REPLICATED),
        BATCH,
    )(keys, centers, masks, hyper, data)


def _common_program(
    static: _Static, keys: Array, centers: PyTree, masks: PyTree | None, hyper: Array, data: PyTree
):
    """Common random numbers: ``keys (C,)`` shared by every setting, ``centers (S, ...)``,
    ``masks (S, ...)`` or None, ``hyper (S, 3)`` → ``dead (S, C)`` and traces ``(S, C, draws)``.

    The settings are the inner ``vmap``, under which a chain's key is not batched: its noise
    draws and minibatch indices (everything that depends on the key alone) are computed once
    per chain and broadcast over the settings; the minibatch itself is given a settings axis
    (``_Static.per_setting_batch``, see :func:`_chain`) so that each setting's products are its
    own. Row ``(s, c)`` is the chain :func:`_program` would run with key ``keys[c]``."""
    n = _num_samples(data)

    def settings(k):
        return jax.vmap(
            lambda c, m, hp: _chain(static, k, c, m, hp, data, n),
            in_axes=(0, 0 if static.masked else None, 0),
        )(centers, masks, hyper)

    return jax.vmap(settings, out_axes=1)(keys)


def _sharded_common_program(
    static: _Static,
    keys: Array,
    centers: PyTree,
    masks: PyTree | None,
    hyper: Array,
    data: PyTree,
    mesh: Mesh | None = None,
):
    """:func:`_common_program` on each device's settings (``shard_map``), the chain keys and
    the data replicated."""
    return per_shard(
        lambda k, c, m, hp, d: _common_program(static, k, c, m, hp, d),
        mesh,
        (REPLICATED, BATCH, BATCH, BATCH, REPLICATED),
        BATCH,
    )(keys, centers, masks, hyper, data)


def _init_program(
    loss_fn: Callable, centers: PyTree, data: PyTree, mesh=None, rows: int | None = None
) -> Array:
    """``L_n(w*)`` of every centre ``(M, ...)``, ``rows`` data rows at a time (a divisor of
    ``n``; default the largest in :func:`_row_chunks`), one centre at a time on CPU (see
    :func:`fracsgd.parallel.map_elements`)."""
    n = _num_samples(data)
    chunk = _row_chunks(n)[0] if rows is None else rows
    return map_elements(lambda c, d: _full_loss(loss_fn, c, d, n, chunk), centers, data, mesh)


#: the drift's norm (``grad_noise_ratio``) is measured at every this-many-th draw: a pass over
#: the parameters that cost 5–9 % of an SGLD step when made at every step (784-W-10 MLPs,
#: W = 32…512, one CPU core per device)
DRIFT_NORM_EVERY = 8

#: minibatches drawn at each centre to estimate the minibatch-gradient variance
NOISE_BATCHES = 16


def _gradient_variance_program(
    loss_fn: Callable,
    batch_size: int,
    centers: PyTree,
    masks: PyTree | None,
    keys: Array,
    data: PyTree,
    mesh: Mesh | None = None,
    split: bool = False,
) -> Array:
    """``tr Cov(∇L_B(w*)) / d`` per centre ``(M,)``: the mean per-coordinate variance of the
    minibatch gradient over ``NOISE_BATCHES`` batches of ``batch_size`` rows drawn with
    replacement under the centre's key (``d`` active parameters), one centre at a time.
    Accumulated as differences from the first batch's gradient, so a large mean gradient does
    not cancel the variance.

    With ``mesh``: ``split=False`` shards the centres over the devices (each centre's batches on
    one device, so its value is the one a single device computes); ``split=True`` gives every
    device every centre and a share of each centre's batches (batch ``1 + d + s·S`` on device
    ``d`` of ``S``; each also evaluates the first batch), whose sums it adds over the devices
    (``psum``): for fewer centres than devices, equal to one device's value to float32
    rounding."""
    n = _num_samples(data)
    k = NOISE_BATCHES
    shards = num_shards(mesh) if split else 1
    per = -(-(k - 1) // shards)  # differences per device

    def one(center, mask, key, data):
        idx = jax.random.randint(key, (k, batch_size), 0, n, dtype=jnp.int32)  # as _chain's

        def grad(i):
            batch = jax.tree.map(lambda a: a[i], data)
            return _masked(jax.grad(loss_fn)(center, batch), mask)

        g0 = grad(idx[0])
        d = jax.lax.axis_index(AXIS) if split else 0
        slots = 1 + d + shards * jnp.arange(per)

        def body(acc, slot):
            valid = slot < k
            dg = jax.tree.map(
                lambda a, b: jnp.where(valid, a - b, 0), grad(idx[jnp.minimum(slot, k - 1)]), g0
            )
            s1, s2 = acc
            return (
                jax.tree.map(jnp.add, s1, dg),
                jax.tree.map(lambda a, b: a + b * b, s2, dg),
            ), None

        zeros = jax.tree.map(jnp.zeros_like, center)
        (s1, s2), _ = jax.lax.scan(body, (zeros, zeros), slots)
        if split:
            s1, s2 = jax.lax.psum((s1, s2), AXIS)
        total = sum(
            jnp.sum((b - a * a / k) / (k - 1))
            for a, b in zip(jax.tree.leaves(s1), jax.tree.leaves(s2), strict=True)
        )
        return total / _num_active(mask, center)

    def local(c, m, ks, dd):
        return jax.lax.map(lambda a: one(*a, dd), (c, m, ks))

    spec = REPLICATED if split else BATCH
    return per_shard(local, mesh, (spec, spec, spec, REPLICATED), spec)(centers, masks, keys, data)


# fracsgd's "sampler" compiler options (fracsgd/_xla.py): YNNPACK fusions off, 512-bit vectors
# for the noise and update loops
_compiled_init = jit(_init_program, kind="sampler", static_argnums=(0, 3, 4))
_compiled = jit(_sharded_program, kind="sampler", static_argnums=0, static_argnames="mesh")
_compiled_common = jit(
    _sharded_common_program, kind="sampler", static_argnums=0, static_argnames="mesh"
)
_compiled_gradient_variance = jit(
    _gradient_variance_program,
    kind="sampler",
    static_argnums=(0, 1),
    static_argnames=("mesh", "split"),
)


def _gradient_variance(
    key: PRNGKey, loss_fn: Callable, centers: PyTree, masks: PyTree | None, data: PyTree,
    batch_size: int, sampling: str, mesh: Mesh | None = None, common_noise: bool = False,
) -> np.ndarray:  # fmt: skip
    """:func:`_gradient_variance_program` on the host, with the finite-population factor
    ``(n − B)/(n − 1)`` for epoch batches (drawn without replacement). Centre ``i`` draws its
    batches under ``split(fold_in(key, ·), M)[i]`` whatever the device count (``common_noise``:
    every centre under ``split(fold_in(key, ·), 1)[0]``, the key :func:`estimate` gives its one
    centre, as the chains of ``estimate_many(…, common_random_numbers=True)`` share model 0's
    keys); with ``mesh`` the centres are sharded over the devices, or, when there are fewer
    centres than devices, each centre's batches."""
    n = _num_samples(data)
    m = int(jax.tree.leaves(centers)[0].shape[0])
    keys = jax.random.split(jax.random.fold_in(key, 0x6E6F6973), 1 if common_noise else m)
    if common_noise:
        keys = keys[np.zeros(m, np.int32)]
    shards = num_shards(mesh)
    args = (centers, masks, keys)
    if shards == 1:
        mesh = None
    split = mesh is not None and m < shards
    if mesh is not None:
        if split:
            args = replicate(args, mesh)
        else:
            args = shard_leading(pad_leading(args, -(-m // shards) * shards), mesh)
    v = to_host(
        _compiled_gradient_variance(
            loss_fn, int(batch_size), *args, replicate(data, mesh), mesh=mesh, split=split
        )
    )
    v = np.asarray(v, np.float64)[:m]
    if sampling == "epoch":
        v = v * ((n - batch_size) / (n - 1) if n > 1 else 0.0)
    return v


def minibatch_noise_ratio(step_size: Any, nbeta: Any, gradient_variance: Any) -> Any:
    """``(ε/4) nβ² · tr Cov(∇L_B)/d``: the variance of the minibatch noise in an SGLD step,
    ``(ε/2) nβ (∇L_B − ∇L_n)``, over the injected noise's ``ε`` per coordinate.

    Derivation: the step (theory.md §2) moves by ``(ε/2) nβ ∇L_B``, whose deviation from the
    full-batch drift has per-coordinate variance ``(ε/2)² nβ² · tr Cov(∇L_B)/d``; the injected
    ``sqrt(ε) ξ`` has variance ``ε``; the ratio is the formula. It is the per-coordinate
    (trace) version of the "sampling threshold" of Welling & Teh ("Bayesian Learning via
    Stochastic Gradient Langevin Dynamics", ICML 2011), which compares the same two variances
    with the number of data points in place of ``nβ`` and the largest eigenvalue of the
    (preconditioned) gradient covariance in place of its mean ``tr/d``.

    Well below 1 the chain samples the tempered posterior it targets; near 0.1 and above it
    samples a hotter one, and λ̂ reads high by about that factor (for a locally quadratic loss
    λ̂ ≈ λ (1 + ratio)): use a larger batch or a smaller ``ε nβ²``. ``same_batch=True`` does
    not help: it removes the minibatch noise of the *estimator*, not of the chain.

    Args:
        step_size: ``ε > 0`` (numbers or arrays, broadcast together; traced values pass
            unchecked).
        nbeta: ``nβ > 0``.
        gradient_variance: ``tr Cov(∇L_B)/d ≥ 0``, the mean per-coordinate variance of the
            minibatch gradient (NaN passes: a diverged chain's reads NaN).

    Returns:
        ``step_size · nbeta² · gradient_variance / 4``, with NumPy/jax broadcasting.

    Raises:
        ValueError: if a concrete argument is not real, or ``step_size`` or ``nbeta`` is
            ``≤ 0`` or ``gradient_variance < 0``.

    Examples:
        >>> round(minibatch_noise_ratio(1e-3, 100.0, 0.05), 4)  # d = 3, σ² = 1, B = 20
        0.125

        The same ratio from its definition, the two per-coordinate variances:

        >>> eps, nbeta, var = 1e-3, 100.0, 0.05
        >>> round((eps / 2) ** 2 * nbeta**2 * var / eps, 4)
        0.125
    """
    for name, v, zero in (
        ("step_size", step_size, False),
        ("nbeta", nbeta, False),
        ("gradient_variance", gradient_variance, True),
    ):
        if isinstance(v, jax.core.Tracer):
            continue
        if isinstance(v, str | bytes) or np.asarray(v).dtype.kind not in "iuf":
            raise ValueError(f"{name} must hold real numbers, got {v!r:.60}")
        a = np.asarray(v, np.float64)  # NaN passes: a diverged chain's variance reads NaN
        if np.any(a < 0) or (not zero and np.any(a == 0)):
            raise ValueError(f"{name} must be {'>= 0' if zero else '> 0'}, got {v!r:.60}")
    return step_size * nbeta * nbeta * gradient_variance / 4


def _check_int(name: str, value: Any, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {value!r}")
    return int(value)


def _check_pos(name: str, value: Any, *, allow_zero: bool = False) -> float:
    if isinstance(value, str | bytes):  # float("1e-3") would accept it
        raise ValueError(f"{name} must be a number, got the string {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a number, got {value!r}") from err
    ok = (v >= 0) if allow_zero else (v > 0)
    if isinstance(value, bool) or not math.isfinite(v) or not ok:
        rng = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {rng}, got {value!r}")
    return v


def _check_float32(name: str, value: float, *, allow_zero: bool = False) -> None:
    """The chains run in float32: a positive setting must not round to 0 or overflow there
    (``allow_zero``: an exact 0 is allowed too)."""
    f32 = np.finfo(np.float32)  # normal numbers: accelerators flush subnormals to zero
    if allow_zero and float(value) == 0.0:
        return
    if not float(f32.tiny) <= abs(float(value)) <= float(f32.max):
        zero = "0 or " if allow_zero else ""
        raise ValueError(
            f"{name} must be {zero}a normal float32 number (about 1.2e-38 to 3.4e38), got {value!r}"
        )


def _check_flags(**flags: Any) -> None:
    for name, flag in flags.items():
        if not isinstance(flag, bool | np.bool_):
            raise ValueError(f"{name} must be True or False, got {flag!r}")


def resolve_nbeta(nbeta: Any, n: int, batch_size: int) -> float:
    """``nbeta`` as a number: ``None`` or ``"n/log n"`` → ``n/log n``; ``"batch/log batch"`` →
    ``B/log B`` (devinterp 1.x); a positive number is used as given. Host-side, as the
    estimators that call it (a traced ``nbeta`` is refused by name).

    Args:
        nbeta: ``None``, a rule of :data:`NBETA_RULES`, or a finite number ``> 0``.
        n: the number of training samples (used by ``"n/log n"``).
        batch_size: ``B`` (used by ``"batch/log batch"``).

    Returns:
        ``nβ`` as a float: :func:`default_nbeta` ``(n)``, :func:`batch_nbeta` ``(B)`` or
        ``float(nbeta)``.

    Raises:
        ValueError: for an unknown rule, a non-scalar, non-positive or non-finite number, a
            traced argument, or a rule whose ``n`` (or ``B``) is below 2.

    Examples:
        >>> resolve_nbeta(None, 10_000, 128) == default_nbeta(10_000)
        True
        >>> resolve_nbeta("batch/log batch", 10_000, 128) == batch_nbeta(128)
        True
        >>> resolve_nbeta(50, 10_000, 128)
        50.0
        >>> resolve_nbeta("n", 10_000, 128)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: unknown nbeta rule 'n'; allowed: a number > 0, None, 'n/log n', ...
    """
    refuse_traced("fracsgd.llc.resolve_nbeta", nbeta=nbeta, n=n, batch_size=batch_size)
    if not (nbeta is None or isinstance(nbeta, str) or np.ndim(nbeta) == 0):
        raise ValueError(f"nbeta must be a number > 0, None or a rule name, got {nbeta!r:.60}")
    if nbeta is None or nbeta == "n/log n":
        if n < 2:
            raise ValueError("the default nbeta = n/log n needs at least 2 samples")
        return default_nbeta(n)
    if nbeta == "batch/log batch":
        if batch_size < 2:
            raise ValueError("nbeta='batch/log batch' needs batch_size >= 2")
        return batch_nbeta(batch_size)
    if isinstance(nbeta, str):
        raise ValueError(
            f"unknown nbeta rule {nbeta!r}; allowed: a number > 0, None, "
            + ", ".join(map(repr, NBETA_RULES))
        )
    return _check_pos("nbeta", nbeta)


def _check_float_leaves(params: PyTree) -> list:
    """The leaves of ``params``, which must be floating-point arrays (``ValueError`` naming
    ``params`` otherwise)."""
    leaves = jax.tree.leaves(params)
    if not leaves:
        raise ValueError("params must be a pytree with at least one array")
    for leaf in leaves:
        dtype = getattr(leaf, "dtype", None)
        if dtype is None:
            try:
                dtype = np.asarray(leaf).dtype
            except (TypeError, ValueError) as err:
                raise ValueError(f"params must hold floating-point arrays: {err}") from err
        if not jnp.issubdtype(dtype, jnp.floating):
            raise ValueError(f"params must hold floating-point arrays, got a leaf {leaf!r:.60}")
        if jnp.finfo(dtype).bits < 32:
            raise ValueError(
                f"params must be float32 or float64, got {np.dtype(dtype).name}: the chains' noise "
                "sqrt(ε)·ξ and drift (ε/2)·nβ∇L are below half-precision resolution at the step "
                "sizes SGLD needs (cast with jax.tree.map(lambda a: a.astype(jnp.float32), params))"
            )
    return leaves


def _validate(
    loss_fn,
    params,
    data,
    *,
    num_chains,
    num_draws,
    num_burnin,
    thinning,
    step_size,
    localization,
    batch_size,
    sampler,
    sampling="replacement",
    n_models_axis=False,
):
    if not callable(loss_fn):
        raise ValueError("loss_fn must be callable as loss_fn(params, batch) -> scalar")
    leaves = _check_float_leaves(params)
    if n_models_axis:
        sizes = {int(np.shape(x)[0]) if np.ndim(x) else 0 for x in leaves}
        if len(sizes) != 1 or 0 in sizes:
            raise ValueError(
                f"params leaves need one common leading model axis of size >= 1, got {sizes}"
            )
    n = _num_samples(data)
    _check_int("num_chains", num_chains, 1)
    _check_int("num_draws", num_draws, 1)
    _check_int("num_burnin", num_burnin, 0)
    _check_int("thinning", thinning, 1)
    _check_pos("step_size", step_size)
    _check_pos("localization", localization, allow_zero=True)
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int | np.integer)
        or not (1 <= batch_size <= n)
    ):
        raise ValueError(f"batch_size must be an integer in [1, n = {n}], got {batch_size!r}")
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; allowed: {', '.join(map(repr, SAMPLERS))}")
    if sampler == "psgld" and num_burnin < 1:
        raise ValueError(
            "num_burnin must be >= 1 with sampler='psgld': its preconditioner adapts during "
            f"burn-in and is frozen for the draws, got num_burnin={num_burnin}"
        )
    if sampling not in SAMPLINGS:
        allowed = ", ".join(map(repr, SAMPLINGS))
        raise ValueError(f"unknown sampling {sampling!r}; allowed: {allowed}")
    one = _abstract(params, drop_leading=n_models_axis)
    batch = _abstract(data, rows=batch_size)
    try:
        out = _loss_info(loss_fn, one, batch)[0]
    except Exception as err:  # a loss_fn that cannot even be traced on (params, batch)
        raise ValueError(f"loss_fn(params, batch) failed on a batch of the data: {err}") from err
    if not (isinstance(out, jax.ShapeDtypeStruct) and out.shape == ()):  # (x,) is no scalar
        got = f"shape {out.shape}" if hasattr(out, "shape") else f"a {type(out).__name__}"
        raise ValueError(f"loss_fn must return a scalar mean loss, got {got}")
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise ValueError(f"loss_fn must return a floating-point scalar, got dtype {out.dtype}")
    return n


def _block_means_below(loss: np.ndarray, init_loss: float) -> np.ndarray:
    """``(chains,)`` fraction of a chain's block means that lie below ``L_n(w*)``: the draws
    ``(chains, D)`` are cut into ``⌊D/b⌋`` consecutive blocks of ``b = ⌈√D⌉`` (a remainder is
    dropped). Single minibatch losses ``L_B(w_t)`` are skewed — the median of a mean of squared
    errors lies below its mean — so at an exact minimum more than half of them can fall below
    the full-data ``L_n(w*)`` although their mean lies above it; a mean of ``b`` of them has its
    skewness cut by ``√b``."""
    d = loss.shape[-1]
    b = math.isqrt(d - 1) + 1  # ⌈√d⌉ for d ≥ 1
    k = d // b
    means = loss[..., : k * b].reshape(*loss.shape[:-1], k, b).mean(axis=-1)
    return np.mean(means < init_loss, axis=-1)


def _summarise(dead, outs, init_loss, nbeta, same_batch):
    """Host-side estimates from stacked traces of one model."""
    trace_dtype = np.asarray(outs[0]).dtype  # the chains' (float64 with x64 and float64 params)
    loss, loss_star, ratio, accept, distance = (np.asarray(o, np.float64) for o in outs)
    dead = np.asarray(dead, bool)
    init_loss = float(init_loss)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows of diverged chains
        if same_batch:
            per_chain = nbeta * np.nanmean(loss - loss_star, axis=-1)
            below = np.mean(loss < loss_star, axis=-1)
        else:
            per_chain = nbeta * (np.nanmean(loss, axis=-1) - init_loss)
            below = _block_means_below(loss, init_loss)
        per_chain = np.where(dead, np.nan, per_chain)
        # a diverged chain's NaN tail never lies below the centre: its fraction would read low,
        # as at a healthy minimum
        below = np.where(dead, np.nan, below)
        good = ~dead
        mean = float(np.mean(per_chain[good])) if good.any() else float("nan")
        std = float(np.std(per_chain[good], ddof=1)) if good.sum() > 1 else float("nan")
        traces = loss[good]
        if traces.shape[0] >= 1 and traces.shape[1] >= 4:
            rhat = float(split_rhat(traces)) if traces.shape[0] >= 1 else float("nan")
            ess = float(effective_sample_size(traces))
        else:
            rhat = ess = float("nan")
        rhat_distance = _distance_rhat(distance[good])
        ratio_mean = np.where(dead, np.nan, np.nanmean(ratio, axis=-1))
        distance_rms = np.where(dead, np.nan, np.sqrt(np.nanmean(distance**2, axis=-1)))
        accept_mean = (
            np.nanmean(accept, axis=-1)
            if np.isfinite(accept).any()
            else np.full(accept.shape[0], np.nan)
        )
    not_min = bool(good.any() and (mean < 0 or np.mean(below[good]) > 0.5))
    return dict(
        llc_mean=mean,
        llc_std=std,
        llc_per_chain=per_chain,
        loss_trace=loss.astype(trace_dtype),
        init_loss=init_loss,
        diverged=dead,
        rhat=rhat,
        ess=ess,
        below_init_fraction=below,
        not_minimum=not_min,
        grad_noise_ratio=ratio_mean,
        mala_acceptance=accept_mean,
        distance=distance_rms,
        rhat_distance=rhat_distance,
    )


def _distance_rhat(distance: np.ndarray) -> float:
    """Split R-hat of the squared distances ``||w − w*||²`` at the measured draws (columns
    where every chain has a value; NaN with fewer than 4 of them or no chain)."""
    if distance.shape[0] == 0:
        return float("nan")
    cols = np.all(np.isfinite(distance), axis=0)
    if cols.sum() < 4:
        return float("nan")
    return float(split_rhat(distance[:, cols] ** 2))


def _tree_bytes(tree: PyTree) -> int:
    return sum(
        int(np.prod(np.shape(a))) * np.dtype(a.dtype).itemsize for a in jax.tree.leaves(tree)
    )


def _abstract(tree: PyTree, *, drop_leading: bool = False, rows: int | None = None) -> PyTree:
    """``ShapeDtypeStruct`` leaves: without the leading axis, or with it cut to ``rows``."""

    def leaf(a):
        shape = tuple(np.shape(a))
        shape = shape[1:] if drop_leading else shape if rows is None else (rows, *shape[1:])
        return jax.ShapeDtypeStruct(shape, jax.dtypes.canonicalize_dtype(jnp.result_type(a)))

    return jax.tree.map(leaf, tree)


# loss_fn -> {argument shapes: (output avals, activation bytes)}; weak keys, so a cached entry
# never keeps a user's loss function (and what it closes over) alive
_LOSS_INFO: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _loss_info(loss_fn: Callable, params: PyTree, batch: PyTree) -> tuple[Any, int]:
    """The output (a pytree of ``ShapeDtypeStruct``) of ``loss_fn(params, batch)`` on abstract
    arguments and the bytes of all its
    intermediate values (its jaxpr's equations' outputs: an upper bound of what one evaluation
    holds before XLA fuses and frees). Traced once per loss function and argument shapes, so
    repeated calls do not re-trace the user's loss for validation and the memory model."""
    args = (params, batch)
    sig = (
        jax.tree.structure(args),
        tuple((tuple(a.shape), str(a.dtype)) for a in jax.tree.leaves(args)),
    )
    try:
        per_fn = _LOSS_INFO.setdefault(loss_fn, {})
    except TypeError:  # not weakly referenceable: no cache
        per_fn = {}
    if sig not in per_fn:
        closed, out_shape = jax.make_jaxpr(loss_fn, return_shape=True)(params, batch)
        act = sum(
            int(np.prod(v.aval.shape)) * np.dtype(v.aval.dtype).itemsize
            for eqn in closed.jaxpr.eqns
            for v in eqn.outvars
            if hasattr(v.aval, "shape") and hasattr(v.aval, "dtype")
        )
        per_fn[sig] = (out_shape, act)
    return per_fn[sig]


def _activation_bytes(loss_fn: Callable, params: PyTree, batch: PyTree) -> int:
    """Bytes of every intermediate value of ``loss_fn(params, batch)`` (:func:`_loss_info`)."""
    return _loss_info(loss_fn, _abstract(params), _abstract(batch))[1]


def chain_bytes(
    loss_fn: Callable,
    params: PyTree,
    data: PyTree,
    *,
    batch_size: int,
    num_draws: int,
    sampler: str = "sgld",
    mala: bool = False,
) -> tuple[int, int]:
    """The LLC memory model: ``(per_chain, fixed)`` bytes on one device.

    A chain (one row of the ``models × chains`` axis) holds its centre, position, gradient,
    proposal and noise (``5·P`` numbers of ``params``' bytes ``P``; pSGLD adds its square average
    and preconditioner, MALA another gradient and two differences: ``+2·P`` each), its five
    recorded traces (``20·num_draws``), the gathered minibatch (``batch_size`` rows of ``data``)
    and ``3·A`` for the loss: ``A`` = bytes of all intermediates of ``loss_fn`` on one minibatch
    (from its jaxpr; forward values kept for the backward pass, their cotangents, and the
    same-batch/MALA evaluation). ``fixed`` is the data set, replicated on every device.

    Args:
        loss_fn: ``loss_fn(params, batch) -> scalar``, traced abstractly (nothing runs).
        params: one centre (no model axis), a pytree of arrays.
        data: the training set, a pytree of arrays with leading axis ``n``.
        batch_size: rows per minibatch.
        num_draws: recorded draws per chain.
        sampler: ``"sgld"`` or ``"psgld"``.
        mala: whether MALA acceptance is computed.

    Returns:
        ``(per_chain, fixed)`` in bytes, Python ints.

    Examples:
        >>> import jax.numpy as jnp
        >>> loss = lambda w, b: jnp.mean((b @ w) ** 2)
        >>> per, fixed = chain_bytes(loss, jnp.zeros(4), jnp.zeros((100, 4)), batch_size=10,
        ...                          num_draws=50)
        >>> fixed, per > 5 * 16 + 20 * 50 + 10 * 16
        (1600, True)
    """
    p = _tree_bytes(params)
    n = _num_samples(data)
    row = _tree_bytes(data) // max(n, 1)
    act = _activation_bytes(loss_fn, params, _abstract(data, rows=batch_size))
    copies = 5 + 2 * (sampler == "psgld") + 2 * bool(mala)
    per_chain = copies * p + 20 * num_draws + batch_size * row + 3 * act
    return int(per_chain), int(_tree_bytes(data))


@functools.partial(jax.jit, static_argnums=2)
def _chain_keys(key: PRNGKey, models: Array, num_chains: int) -> Array:
    """Row ``i·C + c``: ``jax.random.split(fold_in(key, i), C)[c]`` (one compiled call)."""
    keys = jax.vmap(lambda i: jax.random.split(jax.random.fold_in(key, i), num_chains))(models)
    return keys.reshape(-1)


@jax.jit
def _take(tree: PyTree, idx: Array) -> PyTree:
    return jax.tree.map(lambda a: jnp.asarray(a)[idx], tree)


def _refuse_one_model_mask(masks: PyTree, centers: PyTree) -> None:
    """estimate_many's ``mask`` shaped like one model (no leading model axis): say how to give
    it one, instead of check_like's bare "(32,) vs (3, 32)"."""
    if str(jax.tree.structure(masks)) != str(jax.tree.structure(centers)):
        return
    pairs = list(zip(jax.tree.leaves(masks), jax.tree.leaves(centers), strict=True))
    if pairs and all(jnp.shape(m) == jnp.shape(c)[1:] for m, c in pairs):
        num_models = jnp.shape(pairs[0][1])[0]
        raise ValueError(
            "mask is shaped like one model, but estimate_many needs one mask per centre, with "
            f"params' leading model axis ({num_models}): repeat it, e.g. jax.tree.map(lambda m: "
            f"jnp.broadcast_to(m, ({num_models},) + m.shape), mask)"
        )


def _refuse_empty_masks(mask: PyTree, *, per_model: bool) -> None:
    """ValueError when a (concrete) mask holds no 1: nothing would be sampled, and λ̂ read 0
    with NaN diagnostics. ``per_model``: the leaves have a leading model axis, checked per
    model."""
    leaves = jax.tree.leaves(mask)
    if not leaves or any(isinstance(a, jax.core.Tracer) for a in leaves):
        return  # traced: the drivers refuse it by name
    leaves = [np.asarray(a) for a in leaves]
    if per_model:
        active = sum(np.count_nonzero(a.reshape(a.shape[0], -1), axis=1) for a in leaves)
        empty = np.flatnonzero(np.asarray(active) == 0)
        if empty.size:
            raise ValueError(
                f"mask holds no 1 for model(s) {empty[:5].tolist()}: nothing would be sampled"
            )
    elif sum(np.count_nonzero(a) for a in leaves) == 0:
        raise ValueError("mask holds no 1: nothing would be sampled")


@jax.jit
def _take_rows(keys, centers, masks, hyper, rows, models):
    """One chunk's program arguments (one compiled call, not one dispatch per leaf)."""
    return keys[rows], _take(centers, models), _take(masks, models), hyper[models]


def _run(
    key,
    loss_fn,
    centers,
    data,
    masks,
    hyper,
    *,
    num_chains,
    num_draws,
    num_burnin,
    thinning,
    batch_size,
    same_batch,
    sampler,
    mala,
    sampling="replacement",
    mesh=None,
    memory_limit=None,
    shared_center=False,
    common_noise=False,
):
    """Sample every centre's chains: rows ``models × chains`` in equal chunks that fit the
    memory model (:func:`chain_bytes`, :func:`fracsgd.parallel.chunk_plan`), each sharded over
    ``mesh``; then ``L_n(w*)`` per centre. Returns host ``dead (M, C)``, traces ``(M, C, D)``
    and ``init_loss (M,)``; chain ``c`` of model ``i`` uses
    ``jax.random.split(fold_in(key, i), C)[c]`` whatever the chunking or device count.
    ``shared_center``: every row of ``centers`` is the same point (a calibration grid), whose
    full-data loss is computed once. ``common_noise``: common random numbers, chain ``c`` of
    every model uses model 0's key ``jax.random.split(fold_in(key, 0), C)[c]``
    (:func:`_common_program`; chunked and sharded by whole models)."""
    static = _Static(
        loss_fn,
        int(num_chains),
        int(num_burnin),
        int(num_draws),
        int(thinning),
        int(batch_size),
        bool(same_batch),
        sampler,
        bool(mala),
        masks is not None,
        sampling,
        DRIFT_NORM_EVERY,
        bool(common_noise),
        tuple(_xla.STRAIGHT_LINE_PLATFORMS),
    )
    m = int(hyper.shape[0])
    c = static.num_chains
    shards = num_shards(mesh)
    one = _abstract(centers, drop_leading=True)
    per_chain, fixed = chain_bytes(
        loss_fn, one, data, batch_size=batch_size, num_draws=num_draws, sampler=sampler, mala=mala
    )
    cap = memory_limit if memory_limit is not None else device_memory(mesh)
    data_on = replicate(data, mesh)
    hyper = jnp.asarray(hyper)
    parts = []
    if common_noise:
        chunk, _ = chunk_plan(m, c * per_chain, fixed, cap, shards, what="setting's chains")
        # at least two settings per device where they fit: a device holding one compiles the
        # program without the settings axis, and XLA's reductions (the minibatch loss) then round
        # differently (measured: 1 of 60 loss values, 2.5e-8 relative), so the numbers would
        # depend on the device count and the chunking
        if chunk < 2 * shards and (cap is None or fixed + 2 * c * per_chain <= cap):
            chunk = 2 * shards
        keys = replicate(_chain_keys(key, jnp.arange(1), c), mesh)
        for start in range(0, m, chunk):
            idx = np.arange(start, min(start + chunk, m))
            args = (_take(centers, idx), _take(masks, idx), hyper[idx])
            ce, ma, hp = shard_leading(pad_leading(args, chunk), mesh)
            dead, outs = to_host(_compiled_common(static, keys, ce, ma, hp, data_on, mesh=mesh))
            real = len(idx)
            parts.append(jax.tree.map(lambda a, real=real: a[:real], (dead, outs)))
        dead, outs = jax.tree.map(lambda *a: np.concatenate(a), *parts)
    else:
        chunk, _ = chunk_plan(m * c, per_chain, fixed, cap, shards, what="SGLD chain")
        keys = _chain_keys(key, jnp.arange(m), c)
        for start in range(0, m * c, chunk):
            rows = np.arange(start, min(start + chunk, m * c))
            args = _take_rows(keys, centers, masks, hyper, rows, rows // c)
            k, ce, ma, hp = shard_leading(pad_leading(args, chunk), mesh)
            dead, outs = to_host(_compiled(static, k, ce, ma, hp, data_on, mesh=mesh))
            real = len(rows)
            parts.append(jax.tree.map(lambda a, real=real: a[:real], (dead, outs)))
        dead, outs = jax.tree.map(
            lambda *a: np.concatenate(a).reshape(m, c, *a[0].shape[1:]), *parts
        )

    # the full-data loss at each centre: one model's activations over a chunk of data rows, the
    # largest chunk (a divisor of n, at most FULL_LOSS_ROWS) whose evaluation fits the device
    n = _num_samples(data)
    if shared_center:
        centers, m = jax.tree.map(lambda a: a[:1], centers), 1
    for rows_per_eval in _row_chunks(n):
        act = _activation_bytes(loss_fn, one, _abstract(data, rows=rows_per_eval))
        per_model = _tree_bytes(one) + 3 * act
        if cap is None or fixed + per_model <= cap:  # None: the device's memory is unknown
            break
    # fewer centres than devices: one device evaluates them with all its threads (sharded, the
    # padding copies would evaluate the same centre on every device, each with fewer threads)
    init_mesh = mesh if m >= shards else None
    init_data = data_on if init_mesh is not None else data
    chunk, _ = chunk_plan(
        m, per_model, fixed, cap, num_shards(init_mesh), what="model's full-data loss"
    )
    losses = []
    for start in range(0, m, chunk):
        idx = np.arange(start, min(start + chunk, m))
        ce = centers if len(idx) == m == chunk else _take(centers, idx)
        ce = shard_leading(pad_leading(ce, chunk), init_mesh)
        losses.append(
            to_host(_compiled_init(loss_fn, ce, init_data, init_mesh, rows_per_eval))[: len(idx)]
        )
    init_loss = np.concatenate(losses)
    if shared_center:
        init_loss = np.repeat(init_loss, int(hyper.shape[0]))
    return dead, outs, init_loss


def _estimate_rows(
    key,
    loss_fn,
    centers,
    data,
    masks,
    *,
    num_chains,
    num_draws,
    num_burnin,
    thinning,
    step_size,
    localization,
    nbeta,
    batch_size,
    same_batch,
    sampler,
    mala,
    sampling="replacement",
    mesh=None,
    memory_limit=None,
    common_noise=False,
):
    """Validate, sample every centre (leading model axis) in one program, and summarise each:
    ``(rows, meta)`` with one summary dict per centre and the shared settings."""
    refuse_traced(
        "fracsgd.llc.estimate (and estimate_many, trajectory)",
        key=key,
        params=centers,
        data=data,
        step_size=step_size,
        localization=localization,
        nbeta=nbeta,
    )
    check_key(key)
    n = _validate(
        loss_fn,
        centers,
        data,
        num_chains=num_chains,
        num_draws=num_draws,
        num_burnin=num_burnin,
        thinning=thinning,
        step_size=step_size,
        localization=localization,
        batch_size=batch_size,
        sampler=sampler,
        sampling=sampling,
        n_models_axis=True,
    )
    mesh = check_mesh(mesh)
    if memory_limit is not None:
        _check_int("memory_limit", memory_limit, 1)
    _check_flags(same_batch=same_batch, mala=mala, common_random_numbers=common_noise)
    if masks is not None:
        # the leading model axis too: an index into a shorter mask axis would clamp silently
        _refuse_one_model_mask(masks, centers)
        check_like("mask", masks, "params", centers, floating=False)
        check_binary_mask("mask", masks)
        _refuse_empty_masks(masks, per_model=True)
    nb = resolve_nbeta(nbeta, n, batch_size)
    sizes = {int(np.shape(x)[0]) for x in jax.tree.leaves(centers)}
    if len(sizes) != 1:
        raise ValueError(f"params leaves need one common leading model axis, got sizes {sizes}")
    num_models = sizes.pop()
    _check_float32("step_size", step_size)
    _check_float32("localization", localization, allow_zero=True)
    _check_float32("nbeta", nb)
    hyper = jnp.tile(jnp.asarray([[step_size, localization, nb]], jnp.float32), (num_models, 1))
    dead, outs, init_loss = _run(
        key,
        loss_fn,
        centers,
        data,
        masks,
        hyper,
        num_chains=num_chains,
        num_draws=num_draws,
        num_burnin=num_burnin,
        thinning=thinning,
        batch_size=batch_size,
        same_batch=same_batch,
        sampler=sampler,
        mala=mala,
        sampling=sampling,
        mesh=mesh,
        memory_limit=memory_limit,
        common_noise=common_noise,
    )
    variance = _gradient_variance(
        key, loss_fn, centers, masks, data, batch_size, sampling, mesh, common_noise
    )
    rows = [
        _summarise(dead[i], [o[i] for o in outs], init_loss[i], nb, same_batch)
        | {"minibatch_noise_ratio": float(minibatch_noise_ratio(step_size, nb, variance[i]))}
        for i in range(num_models)
    ]
    meta = dict(
        nbeta=nb,
        step_size=float(step_size),
        localization=float(localization),
        sampler=sampler,
        sampling=sampling,
        same_batch=bool(same_batch),
        num_draws=int(num_draws),
        num_burnin=int(num_burnin),
        thinning=int(thinning),
    )
    return rows, meta


def estimate(
    key: PRNGKey,
    loss_fn: Callable[[PyTree, Any], Array],
    params: PyTree,
    data: PyTree,
    *,
    num_chains: int,
    num_draws: int,
    num_burnin: int = 0,
    thinning: int = 1,
    step_size: float,
    localization: float,
    nbeta: Any = None,
    batch_size: int,
    same_batch: bool = False,
    sampler: str = "sgld",
    sampling: str = "replacement",
    mask: PyTree | None = None,
    mala: bool = False,
    mesh: Mesh | None = None,
    memory_limit: int | None = None,
) -> LLCResult:
    """Estimate the local learning coefficient λ(w*) at ``params`` with batched SGLD chains.

    Args:
        key: ``jax.random.key``.
        loss_fn: ``loss_fn(params, batch) -> scalar`` mean loss (negative log-likelihood) over
            the batch.
        params: the centre ``w*`` (any pytree).
        data: pytree of arrays with leading axis ``n`` (the training set).
        num_chains: chains, vmapped.
        num_draws: recorded draws per chain (after burn-in, every ``thinning``-th step).
        num_burnin: steps discarded first.
        thinning: steps per recorded draw.
        step_size: ε of the SGLD update (theory.md §2 convention, as devinterp).
        localization: γ ≥ 0.
        nbeta: ``nβ``: a number, ``None`` / ``"n/log n"`` (default ``n/log n``), or
            ``"batch/log batch"`` (devinterp 1.x's rule, by name only).
        batch_size: minibatch size ``1 ≤ B ≤ n``.
        same_batch: the variance-reduced estimator of Lau et al. Algorithm 1.
        sampler: ``"sgld"`` or ``"psgld"`` (RMSprop-preconditioned; its preconditioner adapts
            during the burn-in, which must be at least one step, and is frozen for the draws:
            :mod:`fracsgd.sampling`).
        sampling: minibatches ``"replacement"`` (default: independent uniform draws every
            step) or ``"epoch"`` (each chain walks through its own random permutation of the
            data, a fresh one every ``n // B`` steps, the last incomplete batch dropped — as
            devinterp's shuffled ``DataLoader``). Epoch batches are disjoint from the batches
            just before them in the epoch, which the chain has moved towards, so the loss of
            the current batch at the chain's position reads high, with either estimator
            (``same_batch`` True or False alike), when the chain's memory (about
            ``2/(ε(nβ a + γ))`` steps for curvature ``a``) is not short against an epoch
            (``n // B`` steps). Measured on ``½ mean_i |w − x_i|²`` (d = 3, n = 400, B = 20,
            nβ = 100, ε = 1e-3, γ = 0: memory ≈ one epoch; 16 chains × 4000 draws): 1.82
            with epochs against 1.70 with replacement (``same_batch=True``), and a review
            measured +25 % at similar settings; on ``½|w − x̄_B|²`` with ``n/B`` = 40 it
            was 2.15–2.23 against 2.10–2.18. With-replacement batches are independent of the
            chain's past, hence the default.
        mask: optional 0/1 pytree like ``params``; masked entries get no drift and no noise.
        mala: also compute the MALA acceptance proxy (one more gradient per step).
        mesh: ``None`` (default device) or a one-axis ``"batch"`` mesh
            (:func:`fracsgd.parallel.batch_mesh`): the chains are sharded over its devices,
            each running the one-device program on its chains (``shard_map``). On a multi-core
            CPU, one JAX device per core (``jax.config.update("jax_num_cpu_devices", n)``
            before anything runs) and this mesh use the cores better than one device's
            intra-op threads (README, "The local learning coefficient").
        memory_limit: bytes per device (default: what each device has available); chains that
            do not fit at once run in chunks (see :func:`estimate_many`).

    Returns:
        An :class:`LLCResult`. Diverged chains are flagged and excluded, never raised; if every
        chain diverges, ``llc_mean`` is NaN and ``diverged`` is all true. A
        :class:`DivergedChainsWarning` says how many chains diverged, and a
        :class:`NotAMinimumWarning` is issued when the centre is not a local minimum.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> import fracsgd as fs
        >>> data = jnp.zeros((1000, 1))  # the loss below ignores the data
        >>> loss = lambda w, batch: 0.5 * jnp.sum(w**2) + 0.0 * jnp.sum(batch)
        >>> res = fs.llc.estimate(jax.random.key(0), loss, jnp.zeros(4), data, num_chains=8,
        ...                       num_draws=500, num_burnin=100, step_size=1e-3,
        ...                       localization=0.0, nbeta=100.0, batch_size=10)
        >>> bool(abs(res.llc_mean - 2.0) < 0.2)  # regular model: λ = d/2
        True
    """
    _check_float_leaves(params)
    centers = jax.tree.map(lambda a: jnp.asarray(a)[None], params)
    if mask is not None:
        check_like("mask", mask, "params", params, floating=False)
        check_binary_mask("mask", mask)
        _refuse_empty_masks(mask, per_model=False)
    masks = None if mask is None else jax.tree.map(lambda a: jnp.asarray(a)[None], mask)
    rows, meta = _estimate_rows(
        key,
        loss_fn,
        centers,
        data,
        masks,
        num_chains=num_chains,
        num_draws=num_draws,
        num_burnin=num_burnin,
        thinning=thinning,
        step_size=step_size,
        localization=localization,
        nbeta=nbeta,
        batch_size=batch_size,
        same_batch=same_batch,
        sampler=sampler,
        mala=mala,
        sampling=sampling,
        mesh=mesh,
        memory_limit=memory_limit,
    )
    s = rows[0]
    if s["not_minimum"]:
        warnings.warn(
            f"λ̂ = {s['llc_mean']:.3g}: the centre is not a local minimum "
            f"(below its loss {100 * np.nanmean(s['below_init_fraction'][~s['diverged']]):.0f}% "
            "of the time, by below_init_fraction); the "
            "estimate is unreliable (train further, or check nbeta)",
            NotAMinimumWarning,
            stacklevel=2,
        )
    dead = np.asarray(s["diverged"], bool)
    if dead.any():
        warnings.warn(
            _diverged_message(int(dead.sum()), dead.size, meta["step_size"], None),
            DivergedChainsWarning,
            stacklevel=2,
        )
    return LLCResult(**s, **meta)


def _diverged_message(dead: int, chains: int, step_size: float, models: str | None) -> str:
    where = f" ({models})" if models else ""
    if dead == chains:
        what = f"all {chains} chains diverged{where}: llc_mean is NaN"
    else:
        what = f"{dead} of {chains} chains diverged{where} and are excluded from llc_mean/llc_std"
    return (
        f"{what}; step_size={step_size:g} is too large for this loss (reduce it, or run "
        "fracsgd.llc.calibrate)"
    )


def _stack_results(results: Sequence[dict], **extra) -> LLCResult:
    keys = results[0].keys()
    stacked: dict[str, Any] = {k: np.asarray([r[k] for r in results]) for k in keys}
    return LLCResult(**stacked, **extra)


def estimate_many(
    key: PRNGKey,
    loss_fn: Callable[[PyTree, Any], Array],
    params: PyTree,
    data: PyTree,
    *,
    num_chains: int,
    num_draws: int,
    num_burnin: int = 0,
    thinning: int = 1,
    step_size: float,
    localization: float,
    nbeta: Any = None,
    batch_size: int,
    same_batch: bool = False,
    sampler: str = "sgld",
    sampling: str = "replacement",
    mask: PyTree | None = None,
    mala: bool = False,
    mesh: Mesh | None = None,
    memory_limit: int | None = None,
    common_random_numbers: bool = False,
) -> LLCResult:
    """:func:`estimate` for many centres in one compiled program.

    ``params`` (and ``mask``, if given) carry a leading model axis ``M`` — seeds × widths ×
    checkpoints of a sweep, width-masked networks included. Every per-model field of the result
    gains a leading ``M`` axis (``llc_mean`` is ``(M,)``, ``loss_trace`` ``(M, chains,
    draws)``); the settings shared by all models (``nbeta``, ``step_size``, ``localization``)
    stay scalars.
    Warnings for non-minima, and for diverged chains, are each collected into one. Takes the
    arguments of :func:`estimate`.

    Rows, chunks and devices: the ``models × chains`` chains are one flat axis of independent
    rows; chain ``c`` of model ``i`` draws from ``jax.random.split(fold_in(key, i), C)[c]``. When
    the rows do not fit the memory model of :func:`chain_bytes` on a device (``memory_limit``
    bytes, default what the device has available), they run in equal chunks
    (:func:`fracsgd.parallel.chunk_plan`, the last padded) through one compiled program; with
    ``mesh`` each chunk is sharded over the mesh's devices. ``L_n(w*)`` is computed per model
    afterwards, chunked by the same rule. Results do not depend on the chunking or the device
    count beyond float32 rounding (bitwise in the cases ``tests/parallel`` checks, not guaranteed:
    see :mod:`fracsgd.parallel`). ``L_n(w*)`` reads the data in equal chunks of rows (the
    largest divisor of ``n`` up to :data:`FULL_LOSS_ROWS` whose activations fit). Only a single
    chain that does not fit, or one model's loss on a single data row, is an error.

    ``common_random_numbers=True``: every model's chain ``c`` draws from model 0's key
    ``jax.random.split(fold_in(key, 0), C)[c]``, the key :func:`estimate` gives its chain ``c``,
    so model ``i``'s result is ``estimate(key, …, params[i])`` (to float32 rounding; the
    batches behind ``minibatch_noise_ratio`` are ``estimate``'s too) and models
    differ only through their centres (and masks): differences such as λ(w_t) − λ(w_s) along a
    trajectory carry no independent chain noise, and each chain's noise and minibatch indices
    are drawn once for all models (as :func:`fracsgd.llc.calibrate` does for its settings).
    The models are then chunked and sharded whole, at least two per device where they fit.

    Args:
        key, loss_fn, data, num_chains, num_draws, num_burnin, thinning, step_size,
            localization, nbeta, batch_size, same_batch, sampler, sampling, mala: as in
            :func:`estimate`.
        params: the centres, every leaf with a leading model axis ``M``.
        mask: ``None``, or a 0/1 pytree like ``params``, leading axis ``M`` included (one
            mask per centre; a mask like one model is refused: repeat it along ``M``).
        mesh: ``None`` (the default device) or a one-axis ``"batch"`` mesh the rows are
            sharded over (:mod:`fracsgd.parallel`).
        memory_limit: bytes per device for the chunking (default: what each device has).
        common_random_numbers: every model's chains on model 0's keys (above).

    Returns:
        An :class:`LLCResult` whose per-model fields have a leading ``M`` axis.

    Raises:
        ValueError: a bad argument, named, before anything compiles (as :func:`estimate`);
            params whose leaves disagree on ``M``; a single chain that does not fit.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> import fracsgd as fs
        >>> data = jnp.zeros((1000, 1))
        >>> loss = lambda w, batch: 0.5 * jnp.sum(w**2) + 0.0 * jnp.sum(batch)
        >>> res = fs.llc.estimate_many(jax.random.key(0), loss, jnp.zeros((3, 4)), data,
        ...                            num_chains=4, num_draws=200, step_size=1e-3,
        ...                            localization=0.0, nbeta=100.0, batch_size=10)
        >>> res.llc_mean.shape, res.loss_trace.shape
        ((3,), (3, 4, 200))
    """
    results, meta = _estimate_rows(
        key,
        loss_fn,
        params,
        data,
        mask,
        num_chains=num_chains,
        num_draws=num_draws,
        num_burnin=num_burnin,
        thinning=thinning,
        step_size=step_size,
        localization=localization,
        nbeta=nbeta,
        batch_size=batch_size,
        same_batch=same_batch,
        sampler=sampler,
        mala=mala,
        sampling=sampling,
        mesh=mesh,
        memory_limit=memory_limit,
        common_noise=common_random_numbers,
    )
    num_models = len(results)
    bad = [i for i, r in enumerate(results) if r["not_minimum"]]
    if bad:
        warnings.warn(
            f"{len(bad)} of {num_models} centres are not local minima (models {bad}); "
            "their estimates are unreliable",
            NotAMinimumWarning,
            stacklevel=2,
        )
    dead = [int(np.sum(r["diverged"])) for r in results]
    if any(dead):
        hit = [str(i) for i, k in enumerate(dead) if k]
        shown = ", ".join(hit[:10]) + (f", … ({len(hit)} models)" if len(hit) > 10 else "")
        warnings.warn(
            _diverged_message(
                sum(dead), num_models * num_chains, meta["step_size"], f"in models {shown}"
            ),
            DivergedChainsWarning,
            stacklevel=2,
        )
    return _stack_results(results, **meta)
