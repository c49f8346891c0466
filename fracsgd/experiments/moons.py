"""The paper's two-moons study (v2, theory.md §5–§6): many identical small networks trained by
SGD in one vmapped program, their displacement against the Brownian ``t^{1/2}``, the clusters
their solutions fall into, and the comparison of SGD's cluster masses — tempered by
accessibility, ``q̃_c ∝ q_c^{m D_ξ}`` — with the masses of SGLD samples of the Bayesian
posterior, scanned over the coarse-graining length ξ.

Stages (saved as they finish, resumed on a re-run):

1. ``train`` — ``networks`` copies of one MLP, differing only in their seed (initialisation
   and minibatch order), trained by plain SGD (:func:`fracsgd.train.sweep` over seeds).
2. ``llc`` — λ̂ at every network's final point (one :func:`fracsgd.llc.estimate_many` call).
3. ``posterior`` — SGLD samples of the tempered-at-1 Bayesian posterior
   ``p(w | D_m) ∝ exp(−m L_m(w)) ρ(w)`` with a Gaussian prior ``ρ = N(0, σ² I)``: chains
   vmapped from prior draws, full-batch gradients (the data set is small), ``U(w) = m L_m(w) +
   ||w||²/(2σ²)`` through :func:`fracsgd.sampling.localized_gradient` centred at 0.

Clusters are found by k-means on the networks' outputs ``p(y = 1 | x)`` on a fixed probe set
(function space: parameter space has permutation symmetries), posterior samples are assigned to
the nearest SGD centroid, and :func:`fracsgd.diffusion.tempered_posterior_comparison` gives KL /
Wasserstein / Jensen–Shannon between the posterior masses and the tempered SGD masses for each
ξ, with ``D_ξ`` per cluster from the networks' λ̂ and Eq. 17's ``d_s = 2λ̂H``.
"""

from __future__ import annotations

import functools
import math
import shutil
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fracsgd import data as fdata
from fracsgd import diffusion, llc, models, sampling, train
from fracsgd._checks import check_int, check_number
from fracsgd._io import software
from fracsgd.experiments._store import Store, arrays_tree, fingerprint, tree_arrays
from fracsgd.experiments._validate import (
    MAX_COUNT,
    MAX_STEPS,
    MAX_WIDTH,
    Size,
    canonical,
    check_ints,
    float_tuple,
    int_tuple,
    learning_rates_f32,
    sgld_float32,
    xi_power,
)
from fracsgd.llc._calibrate import _rms

#: the ξ at which the paper (v2) reports its two-moons comparison
PAPER_XI = 0.5


class MoonsConfig(NamedTuple):
    """Every setting of the two-moons study.

    Attributes:
        n, noise, data_seed: the data set (``fracsgd.data.load("moons", …)``).
        hidden: hidden widths of the (identical) networks.
        networks: how many SGD networks (the paper: about 500).
        steps, learning_rate, batch_size, record_every: SGD.
        llc_chains, llc_draws, llc_burnin, llc_step_size, llc_localization: λ̂ at the final
            points (``nβ = n / log n``).
        llc_batch_size: the SGLD minibatch (``None``: ``min(4 · batch_size, n)``).
        posterior_chains, posterior_steps, posterior_burnin, posterior_thin,
        posterior_step_size, prior_std: SGLD on the Bayesian posterior (β = 1).
        num_clusters: k of k-means.
        probe_points: the probe set is a ``probe_points × probe_points`` grid over the data.
        xis: the ξ scan.
    """

    n: int = 1000
    noise: float = 0.2
    data_seed: int = 0
    hidden: tuple[int, ...] = (16,)
    networks: int = 512
    steps: int = 50_000
    learning_rate: float = 0.2
    batch_size: int = 32
    record_every: int = 10
    llc_chains: int = 4
    llc_draws: int = 8000  # ≥ several relaxation times 2/(εγ) = 2 000 steps (quick's doc)
    llc_burnin: int = 2000
    llc_step_size: float = 1e-4
    llc_localization: float = 10.0
    llc_batch_size: int | None = None
    posterior_chains: int = 256
    posterior_steps: int = 20_000
    posterior_burnin: int = 10_000
    posterior_thin: int = 1000
    posterior_step_size: float = 1e-4
    prior_std: float = 3.0
    num_clusters: int = 6
    probe_points: int = 12
    xis: tuple[float, ...] = tuple(
        sorted({*np.round(np.geomspace(1e-3, 1e3, 37), 6).tolist(), 0.5})
    )

    @classmethod
    def quick(cls) -> MoonsConfig:
        """About three minutes on a 2-core CPU. 20 000 steps: the networks go through a second
        learning phase (super-diffusive again) around step 10³ before the late subdiffusive
        regime (measured: H ≈ 0.16 over [10⁴, 3·10⁴] at this learning rate).

        The LLC chains run 500 + 2 000 steps: at ε = 1e-4, γ = 10 the directions only γ
        confines take ~2/(εγ) = 2 000 steps to spread. The earlier 50 + 200 read λ̂ 0.46–1.02
        on 8 of these networks where 2 000 + 8 000 read 1.19–2.01 (500 + 2 000: 1.25–2.13),
        with ``rhat_distance`` ≈ 2.
        """
        return cls(
            n=500,
            networks=128,
            steps=20_000,
            llc_draws=2000,
            llc_burnin=500,
            posterior_chains=64,
            posterior_steps=6000,
            posterior_burnin=3000,
            posterior_thin=500,
            num_clusters=4,
        )

    @classmethod
    def full(cls) -> MoonsConfig:
        return cls()


#: settings read only by the analysis after the stored stages: changing them re-analyses the
#: stored stages instead of recomputing them
ANALYSIS_ONLY = ("xis", "num_clusters", "probe_points")


#: settings only the LLC stage reads, and only the posterior stage (with the data and the
#: model): changing them recomputes that stage alone
LLC_ONLY = tuple(k for k in MoonsConfig._fields if k.startswith("llc_"))
POSTERIOR_ONLY = (
    "posterior_chains",
    "posterior_steps",
    "posterior_burnin",
    "posterior_thin",
    "posterior_step_size",
    "prior_std",
)
#: the data and the model: the posterior depends on them but not on the training
DATA_AND_MODEL = ("n", "noise", "data_seed", "hidden")


def _stage_settings(config, stage: str = "train") -> dict[str, Any]:
    """The settings a stored stage depends on (its fingerprint's part of the config):
    ``"train"`` everything but the analysis-, LLC- and posterior-only settings; ``"llc"`` its
    own (it also carries the training stage's fingerprint); ``"posterior"`` its own with the
    data and the model (it does not read the training)."""
    d = config._asdict()
    if stage == "llc":
        # the batch the stage uses: an explicit llc_batch_size equal to the default's
        # min(4 · batch_size, n) is the same stage
        return {**{k: d[k] for k in LLC_ONLY}, "llc_batch_size": llc_batch_size(config)}
    if stage == "posterior":
        return {k: d[k] for k in (*DATA_AND_MODEL, *POSTERIOR_ONLY)}
    skip = (*ANALYSIS_ONLY, *LLC_ONLY, *POSTERIOR_ONLY)
    return {k: v for k, v in d.items() if k not in skip}


#: the integer settings and their ranges: step counts in int32 (the compiled loops' counters),
#: networks, chains and the probe grid's side at most MAX_COUNT (vmapped side by side)
_INT_BOUNDS = {
    "n": (2, MAX_STEPS),  # fracsgd.data.load("moons") needs two points
    "networks": (1, MAX_COUNT),
    "steps": (1, MAX_STEPS),
    "batch_size": (1, MAX_STEPS),
    "record_every": (1, MAX_STEPS),
    "llc_chains": (1, MAX_COUNT),
    "llc_draws": (1, MAX_STEPS),
    "llc_burnin": (0, MAX_STEPS),
    "posterior_chains": (1, MAX_COUNT),
    "posterior_steps": (1, MAX_STEPS),
    "posterior_burnin": (0, MAX_STEPS),
    "posterior_thin": (1, MAX_STEPS),
    "num_clusters": (1, MAX_COUNT),
    "probe_points": (1, MAX_COUNT),
    "data_seed": (0, 2**32 - 1),
}


def validate(config: Any) -> MoonsConfig:
    """Check every field before anything compiles (``ValueError`` naming the field as its
    ``--set`` key, ``moons.FIELD``)."""
    if not isinstance(config, MoonsConfig):
        raise ValueError(f"config must be a MoonsConfig, got {type(config).__name__}")
    check_ints("moons", config, _INT_BOUNDS)
    if config.llc_burnin + config.llc_draws > MAX_STEPS:
        raise ValueError(
            f"moons.llc_burnin + moons.llc_draws must be at most {MAX_STEPS} (the chains count "
            f"their steps in int32), got {config.llc_burnin + config.llc_draws}"
        )
    if config.posterior_burnin >= config.posterior_steps:
        raise ValueError("moons.posterior_burnin must be smaller than moons.posterior_steps")
    if (config.posterior_steps - config.posterior_burnin) // config.posterior_thin < 1:
        raise ValueError(
            "moons.posterior_thin must be at most moons.posterior_steps - "
            f"moons.posterior_burnin ({config.posterior_steps - config.posterior_burnin}) so "
            f"that each chain keeps a sample, got {config.posterior_thin}"
        )
    if config.batch_size > config.n:
        raise ValueError(
            f"moons.batch_size must be at most moons.n = {config.n} (the training set), "
            f"got {config.batch_size}"
        )
    if config.llc_batch_size is not None:
        check_int("moons.llc_batch_size", config.llc_batch_size, 1)
        if config.llc_batch_size > config.n:
            raise ValueError(
                f"moons.llc_batch_size must be at most moons.n = {config.n}, "
                f"got {config.llc_batch_size}"
            )
    if config.steps % config.record_every:
        raise ValueError(
            f"moons.steps ({config.steps}) must be a multiple of moons.record_every "
            f"({config.record_every})"
        )
    if config.num_clusters > config.networks:
        raise ValueError(
            f"moons.num_clusters must be at most moons.networks ({config.networks}), "
            f"got {config.num_clusters}"
        )
    int_tuple("moons.hidden", config.hidden, 1, MAX_WIDTH)
    check_number("moons.noise", config.noise, lo=0.0)
    for name in ("learning_rate", "llc_step_size", "posterior_step_size", "prior_std"):
        check_number(f"moons.{name}", getattr(config, name), lo=0.0, lo_open=True)
    check_number("moons.llc_localization", config.llc_localization, lo=0.0)
    # the training and the chains run in float32: a value that rounds to 0 or overflows
    # there would fail in (or after) the training stage, or stall the posterior chains
    learning_rates_f32("moons.learning_rate", (config.learning_rate,))
    sgld_float32("moons.llc_step_size", config.llc_step_size)
    sgld_float32("moons.llc_localization", config.llc_localization, allow_zero=True)
    sgld_float32("moons.posterior_step_size", config.posterior_step_size)
    float_tuple("moons.xis", config.xis)
    if config.steps // config.record_every < 3:
        raise ValueError(
            "moons.steps // moons.record_every must be at least 3 (R(t) needs 3 points for a "
            f"fit), got {config.steps} // {config.record_every}"
        )
    return canonical(config)


def sizes(config: MoonsConfig) -> list[Size]:
    """Lower bounds of what the stages of a validated ``config`` hold in memory, for
    :func:`fracsgd.experiments._validate.check_sizes` before any stage runs: the recorded
    ``R(t)`` (12 bytes a record: displacement, loss, gradient norm), the LLC chains' five traces
    (20 bytes a draw), the posterior samples, the posterior's full-batch activations (its
    chains are vmapped) and the outputs on the probe grid (float64)."""
    records = config.steps // config.record_every
    keep = (config.posterior_steps - config.posterior_burnin) // config.posterior_thin
    samples = config.posterior_chains * keep
    p = _model(config).num_params()
    return [
        Size(
            "one network's R(t) records",
            12 * (records + 1),
            "device",
            ("moons.steps",),
            ("moons.record_every",),
        ),
        Size(
            "the networks' R(t) records",
            12 * records * config.networks,
            "host",
            ("moons.steps", "moons.networks"),
            ("moons.record_every",),
        ),
        Size("one LLC chain's traces", 20 * config.llc_draws, "device", ("moons.llc_draws",)),
        Size(
            "the LLC chains' traces",
            20 * config.llc_draws * config.llc_chains * config.networks,
            "host",
            ("moons.llc_draws", "moons.llc_chains", "moons.networks"),
        ),
        Size(
            "the posterior samples",
            4 * p * samples,
            "host",
            ("moons.posterior_chains", "moons.posterior_steps"),
            ("moons.posterior_thin",),
        ),
        Size(
            "the posterior chains' full-batch activations",
            8 * config.n * sum(config.hidden) * config.posterior_chains,
            "device",
            ("moons.n", "moons.hidden", "moons.posterior_chains"),
        ),
        Size(
            "the outputs on the probe grid",
            8 * config.probe_points**2 * (config.networks + samples),
            "host",
            ("moons.probe_points", "moons.networks", "moons.posterior_chains"),
        ),
    ]


def expected_seconds(config: MoonsConfig, platform: str) -> float:
    """A rough duration: a FLOP count (6·batch·parameters per network-step for SGD and SGLD) at
    2 GFLOP/s on CPU — these 2-16-2 networks are far too small for matrix kernels: the quick
    setting measured ~1.2–2 GFLOP/s of useful work on 2 cores (train 32 s, λ̂ 10.5 s,
    posterior 58 s on a busy machine) — or 4 TFLOP/s on an accelerator, plus 30 µs per
    sequential step and 5 s of compilation per program."""
    p = _model(config).num_params()
    flops = (
        6.0
        * p
        * (
            config.networks * config.steps * config.batch_size
            + config.networks
            * config.llc_chains
            * (config.llc_draws + config.llc_burnin)
            * llc_batch_size(config)
            + config.posterior_chains * config.posterior_steps * config.n
        )
    )
    sequential = config.steps + config.llc_draws + config.llc_burnin + config.posterior_steps
    rate = 2e9 if platform == "cpu" else 4e12
    return flops / rate + 30e-6 * sequential + 5.0 * 4


def _model(config: MoonsConfig) -> models.Model:
    return models.mlp((2, *config.hidden, 2))


def _probe(dataset: fdata.Dataset, k: int) -> np.ndarray:
    x = np.asarray(dataset.x_train)
    lo, hi = x.min(0), x.max(0)
    g = [np.linspace(lo[d], hi[d], k) for d in range(2)]
    return np.stack(np.meshgrid(*g, indexing="ij"), -1).reshape(-1, 2).astype(np.float32)


def _functions(model: models.Model, params, probe: np.ndarray) -> np.ndarray:
    """``(M, F)`` probabilities of class 1 on the probe set."""
    out = jax.jit(jax.vmap(lambda p: jax.nn.softmax(model.apply(p, probe))[:, 1]))(params)
    return np.asarray(out, np.float64)


def _loss_fn(model: models.Model):
    def loss_fn(p, batch):
        return models.cross_entropy(model.apply(p, batch[0]), batch[1])

    return loss_fn


def _train_stage(key, dataset, config: MoonsConfig, progress: bool, mesh, chunk_dir):
    grid = train.Grid(
        hidden=(config.hidden,),
        seeds=tuple(range(config.networks)),
        learning_rates=(config.learning_rate,),
        batch_sizes=(config.batch_size,),
        steps=config.steps,
        record_every=config.record_every,
        num_checkpoints=4,
    )
    res = train.sweep(key, dataset, grid, progress=progress, mesh=mesh, checkpoint_dir=chunk_dir)
    finals = jax.tree.map(
        lambda *a: np.stack(a), *[res.result(i).final_params for i in range(res.num_runs)]
    )
    return {
        "record_steps": res.record_steps,
        "displacement": res.displacement,
        "diverged": res.diverged,
        "test_accuracy": res.test_accuracy[:, -1],
        **tree_arrays(finals, "final_leaf"),
    }


def _finals(model, tr) -> Any:
    return arrays_tree(model, tr, "final_leaf")


def llc_batch_size(config: MoonsConfig) -> int:
    """The SGLD minibatch of the λ̂ stage: ``llc_batch_size``, or ``min(4 · batch_size, n)``."""
    if config.llc_batch_size is not None:
        return int(config.llc_batch_size)
    return min(4 * config.batch_size, config.n)


def _llc_stage(key, dataset, config: MoonsConfig, tr, mesh) -> dict[str, Any]:
    import warnings

    model = _model(config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", llc.NotAMinimumWarning)
        warnings.simplefilter("ignore", llc.DivergedChainsWarning)  # counted per record
        res = llc.estimate_many(
            key,
            _loss_fn(model),
            _finals(model, tr),
            (dataset.x_train, dataset.y_train),
            num_chains=config.llc_chains,
            num_draws=config.llc_draws,
            num_burnin=config.llc_burnin,
            step_size=config.llc_step_size,
            localization=config.llc_localization,
            batch_size=min(llc_batch_size(config), dataset.num_train),
            mesh=mesh,
        )
    return {
        "llc": np.asarray(res.llc_mean),
        "llc_std": np.asarray(res.llc_std),
        "not_minimum": np.asarray(res.not_minimum),
        "chains_diverged": np.asarray(res.diverged).sum(axis=-1),
        "llc_distance": np.asarray([_rms(d) for d in np.asarray(res.distance)]),
        "rhat": np.asarray(res.rhat, np.float64),
        "rhat_distance": np.asarray(res.rhat_distance, np.float64),
        "nbeta": np.asarray(res.nbeta).reshape(-1)[:1],
    }


def _none_or_float(stage: dict, name: str, i: int) -> float | None:
    """``stage[name][i]`` as a float (NaN stays NaN), or None when the stage lacks it."""
    return float(stage[name][i]) if name in stage else None


def posterior_samples(
    key, model: models.Model, dataset, config: MoonsConfig, progress: bool = False
):
    """SGLD samples of ``p(w | D_m) ∝ exp(−m L_m(w)) N(w; 0, σ²I)``: ``posterior_chains``
    chains from prior draws, full-batch gradients, every ``posterior_thin``-th position after
    ``posterior_burnin`` steps. Returns (params with a leading sample axis, diverged flags per
    sample). Step ``t`` of a chain draws with ``fold_in(k_run, t)``; the steps run in compiled
    blocks of ``posterior_thin`` (the burn-in in blocks of at most that many) driven from the
    host, which shows progress."""
    m = dataset.num_train
    data = (dataset.x_train, dataset.y_train)
    est = sampling.localized_gradient(
        _loss_fn(model),
        jax.tree.map(jnp.zeros_like, model.init(jax.random.key(0))),
        nbeta=float(m),
        localization=1.0 / config.prior_std**2,
    )
    kernel = sampling.build_kernel()
    keep = (config.posterior_steps - config.posterior_burnin) // config.posterior_thin
    burn, thin = config.posterior_burnin, config.posterior_thin

    @jax.jit
    def start(keys):
        def one(k):
            k_init, k_run = jax.random.split(k)
            template = model.init(k_init)
            leaves, treedef = jax.tree.flatten(template)
            ks = jax.random.split(k_init, len(leaves))
            w0 = jax.tree.unflatten(
                treedef,
                [
                    config.prior_std * jax.random.normal(kk, a.shape)
                    for kk, a in zip(ks, list(leaves), strict=True)
                ],
            )
            return sampling.init(w0), k_run

        return jax.vmap(one)(keys)

    @functools.partial(jax.jit, static_argnums=2)
    def advance(states, k_runs, length, t0):
        def one(s, k_run):
            def step(s, t):
                s, _ = kernel(
                    jax.random.fold_in(k_run, t), s, data, est, config.posterior_step_size
                )
                return s, None

            return jax.lax.scan(step, s, t0 + jnp.arange(length))[0]

        return jax.vmap(one)(states, k_runs)

    from fracsgd._progress import Progress

    bar = Progress(
        burn + keep * thin, "fracsgd reproduce moons: posterior", enabled=progress, unit="steps"
    )
    bar.update(0)
    states, k_runs = start(jax.random.split(key, config.posterior_chains))
    t = 0
    while t < burn:
        n = min(thin, burn - t)
        states = jax.block_until_ready(advance(states, k_runs, n, jnp.int32(t)))  # the bar
        t += n  # follows the work, not the asynchronous dispatch
        bar.update(n)
    samples = []
    for _ in range(keep):
        states = advance(states, k_runs, thin, jnp.int32(t))
        t += thin
        samples.append(jax.tree.map(np.asarray, states.position))
        bar.update(thin)
    stacked = jax.tree.map(lambda *a: np.stack(a, axis=1), *samples)  # (C, keep, ...)
    flat = jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:]), stacked)
    ok = np.all(
        np.stack(
            [np.all(np.isfinite(a.reshape(a.shape[0], -1)), 1) for a in jax.tree.leaves(flat)]
        ),
        0,
    )
    return flat, ok


def _posterior_stage(key, dataset, config: MoonsConfig, progress: bool) -> dict[str, Any]:
    model = _model(config)
    samples, ok = posterior_samples(key, model, dataset, config, progress)
    return {"ok": ok, **tree_arrays(samples, "post_leaf")}


class MoonsStudy(NamedTuple):
    """What :func:`run` returns.

    Attributes:
        records: one record per SGD network (seed, H, λ̂, d_s, cluster, test accuracy, …).
        summary: the ensemble: mean-displacement exponents, masses, the ξ scan, the chosen ξ.
        comparison: the :class:`fracsgd.diffusion.TemperedComparison` (None if too few networks
            had a positive ``d_s``).
        record_steps, mean_displacement: ``(T,)`` the ensemble mean ``R(t)``.
        displacement: ``(networks, T)``; ``probe``: the probe inputs; ``sgd_functions``,
        ``posterior_functions``: outputs on the probe set.
    """

    records: list[dict[str, Any]]
    summary: dict[str, Any]
    comparison: Any
    config: MoonsConfig
    record_steps: np.ndarray
    displacement: np.ndarray
    mean_displacement: np.ndarray
    probe: np.ndarray
    sgd_functions: np.ndarray
    posterior_functions: np.ndarray
    dataset: Any
    timings: dict[str, float]


def run(
    seed: int,
    config: MoonsConfig,
    out_dir: str,
    *,
    progress: bool = True,
    overwrite: bool = False,
    mesh: Any = None,
) -> MoonsStudy:
    """Run (or resume) the stages and the analysis of the module docstring.

    Examples:
        >>> import tempfile
        >>> from fracsgd.experiments import moons
        >>> cfg = moons.MoonsConfig(n=128, hidden=(4,), networks=8, steps=40, batch_size=16,
        ...     llc_draws=20, llc_burnin=0, posterior_chains=4, posterior_steps=40,
        ...     posterior_burnin=20, posterior_thin=10, num_clusters=2, probe_points=4)
        >>> study = moons.run(0, cfg, tempfile.mkdtemp(), progress=False)
        >>> len(study.records), study.mean_displacement.shape  # R every record_every = 10 steps
        (8, (4,))
    """
    config = validate(config)
    dataset = fdata.load("moons", n=config.n, noise=config.noise, seed=config.data_seed)
    if config.batch_size > dataset.num_train:
        raise ValueError(f"batch_size must be at most {dataset.num_train}, got {config.batch_size}")
    model = _model(config)
    key = jax.random.key(seed)
    store = Store(out_dir, "moons", overwrite=overwrite)
    chunks = store.dir / "moons-chunks"  # the sweep's finished chunks while it trains
    # the data follow from the config; software(): versions and the code's digest
    base = (int(seed), dataset.source, software())
    fp_train = fingerprint("train", _stage_settings(config), base)
    tr = store.stage(
        "train",
        fp_train,
        store.chunked(
            chunks,
            lambda: _train_stage(
                jax.random.fold_in(key, 0), dataset, config, progress, mesh, chunks
            ),
        ),
    )
    shutil.rmtree(chunks, ignore_errors=True)  # the stage file has it all
    ll = store.stage(
        "llc",
        fingerprint("llc", _stage_settings(config, "llc"), base, fp_train),
        lambda: _llc_stage(jax.random.fold_in(key, 1), dataset, config, tr, mesh),
        note=f"{config.networks} networks × {config.llc_chains} chains × "
        f"{config.llc_burnin + config.llc_draws} steps in one compiled call, no progress bar",
    )
    po = store.stage(
        "posterior",
        fingerprint("posterior", _stage_settings(config, "posterior"), base),
        lambda: _posterior_stage(jax.random.fold_in(key, 2), dataset, config, progress),
    )

    t = np.asarray(tr["record_steps"], np.float64)
    R = np.asarray(tr["displacement"], np.float64)
    diverged = np.asarray(tr["diverged"], bool)
    lam = np.asarray(ll["llc"], np.float64)
    probe = _probe(dataset, config.probe_points)
    f_sgd = _functions(model, _finals(model, tr), probe)
    posterior = arrays_tree(model, po, "post_leaf")
    f_post = _functions(model, posterior, probe)[np.asarray(po["ok"], bool)]

    nbeta = float(np.asarray(ll["nbeta"]).reshape(-1)[0])
    records: list[dict[str, Any]] = []
    for i in range(R.shape[0]):
        rec: dict[str, Any] = {
            "network": i,
            "seed": i,
            "hidden": "-".join(map(str, config.hidden)),
            "num_params": int(model.num_params()),
            "optimizer": "sgd",
            "learning_rate": float(config.learning_rate),
            "batch_size": int(config.batch_size),
            "steps": int(config.steps),
            "diverged": bool(diverged[i]),
            "test_accuracy": float(tr["test_accuracy"][i]),
            "total_displacement": float(R[i, -1]),
            "lambda_final": float(lam[i]),
            "llc_not_minimum": bool(ll["not_minimum"][i]),
            "llc_chains_diverged": int(ll["chains_diverged"][i]),
            # RMS over the chains of LLCResult.distance: the radius λ̂ is local to (None from
            # a stage stored before it existed)
            "llc_distance": _none_or_float(ll, "llc_distance", i),
            # split R-hat of the loss traces and of the squared distances from the centre
            # (LLCResult.rhat, .rhat_distance; None from a stage stored before them)
            "llc_rhat": _none_or_float(ll, "rhat", i),
            "llc_rhat_distance": _none_or_float(ll, "rhat_distance", i),
            "nbeta": nbeta,
        }
        try:
            fit = diffusion.fit_exponent(t, R[i])
            rec.update(
                H=fit.H,
                H_ci=list(fit.ci),
                fit_r2=fit.r2,
                fit_window=list(fit.window),
                crossover=fit.crossover,
                msd_exponent=fit.msd_exponent,
                caputo_order=fit.caputo_order,
                d_w=fit.walk_dimension,
            )
        except ValueError as err:
            rec.update(H=math.nan, fit_error=str(err))
        rec["d_s_eq17_final"] = float(diffusion.paper_spectral_dimension(lam[i], rec["H"]))
        # D_ξ = ξ^(2 − 2λ/d_s) = ξ^(2 − d_w) over the ξ scan (summary["xis"] order)
        d_w = rec.get("d_w", math.nan)
        rec["D_xi_scan"] = [xi_power(x, d_w) if rec["H"] > 0 else math.nan for x in config.xis]
        records.append(rec)

    # the ensemble: mean R(t) over non-diverged networks, against t^{1/2}
    mean_r = np.nanmean(R[~diverged], axis=0) if (~diverged).any() else np.full_like(t, np.nan)
    summary: dict[str, Any] = {
        "networks": int(R.shape[0]),
        "diverged": int(diverged.sum()),
        "nbeta": nbeta,
        "llc_batch_size": llc_batch_size(config),
    }
    # the ensemble's fits; with every network diverged (or too few finite points) they are
    # NaN with the reason, and the rest of the study and the report go on
    early_end = t[min(max(int(np.sum(t <= t[-1] / 10)), 3), t.size) - 1]  # ≥ 3 points
    try:
        early = diffusion.fit_exponent(t, mean_r, window=(t[0], early_end)).H
    except ValueError as err:
        early = math.nan
        summary["mean_displacement_fit_error"] = str(err)
    summary["mean_displacement_H_early"] = float(early)
    try:
        late = diffusion.fit_exponent(t, mean_r)
        _, slope_values = diffusion.local_slopes(t, mean_r)  # (t_grid, slopes)
    except ValueError as err:
        summary["mean_displacement_fit_error"] = str(err)
        summary["mean_displacement_H_late"] = math.nan
        summary["mean_displacement_late_window"] = None
        summary["mean_displacement_crossover"] = None
        summary["max_local_slope"] = math.nan
    else:
        summary["mean_displacement_H_late"] = float(late.H)
        summary["mean_displacement_late_window"] = list(late.window)
        summary["mean_displacement_crossover"] = late.crossover
        summary["max_local_slope"] = (
            float(np.nanmax(slope_values)) if np.isfinite(slope_values).any() else math.nan
        )

    d_s = np.asarray([r["d_s_eq17_final"] for r in records])
    # 2λ̂H > 0 from a negative λ̂ and a negative H is no spectral dimension: λ̂ > 0 as well,
    # and a λ̂ that estimates λ (not flagged as off a local minimum)
    not_min = np.asarray([bool(r["llc_not_minimum"]) for r in records])
    valid = np.isfinite(d_s) & (d_s > 0) & np.isfinite(lam) & (lam > 0) & ~not_min & ~diverged
    summary["networks_with_positive_d_s"] = int(valid.sum())
    summary["posterior_samples"] = int(f_post.shape[0])
    comparison = None
    if valid.sum() >= config.num_clusters and f_post.shape[0] > 0:
        comparison = diffusion.tempered_posterior_comparison(
            jax.random.fold_in(key, 3),
            f_sgd[valid],
            f_post,
            num_clusters=config.num_clusters,
            m=dataset.num_train,
            llc=lam[valid],
            d_s=d_s[valid],
            xis=np.asarray(config.xis),
        )
        labels = np.full(R.shape[0], -1)
        labels[valid] = comparison.clustering.labels
        for i, rec in enumerate(records):
            rec["cluster"] = int(labels[i])
        best = int(np.argmin(comparison.kl))
        summary.update(
            m=comparison.m,
            sgd_masses=comparison.sgd_masses.tolist(),
            posterior_masses=comparison.sgld_masses.tolist(),
            tempered_masses_at_best_xi=comparison.tempered[best].tolist(),
            xis=comparison.xis.tolist(),
            kl=comparison.kl.tolist(),
            js=comparison.js.tolist(),
            wasserstein=comparison.wasserstein.tolist(),
            best_xi=comparison.best_xi,
            kl_at_best_xi=float(comparison.kl[best]),
            js_at_best_xi=float(comparison.js[best]),
            wasserstein_at_best_xi=float(comparison.wasserstein[best]),
            kl_untempered=comparison.kl_untempered,
            js_untempered=comparison.js_untempered,
            wasserstein_untempered=comparison.wasserstein_untempered,
            d_xi_at_best_xi=comparison.d_xi[best].tolist(),
        )
        # the scanned ξ nearest the paper's 0.5, for a like-for-like row beside the paper's
        near = int(np.argmin(np.abs(np.log(comparison.xis / PAPER_XI))))
        summary["at_paper_xi"] = {
            "xi": float(comparison.xis[near]),
            "kl": float(comparison.kl[near]),
            "js": float(comparison.js[near]),
            "wasserstein": float(comparison.wasserstein[near]),
        }
    else:
        summary["comparison_skipped"] = (
            f"{int(valid.sum())} networks with a positive d_s (need >= {config.num_clusters}) "
            f"and {f_post.shape[0]} finite posterior samples"
        )
    return MoonsStudy(
        records=records,
        summary=summary,
        comparison=comparison,
        config=config,
        record_steps=t,
        displacement=R,
        mean_displacement=mean_r,
        probe=probe,
        sgd_functions=f_sgd,
        posterior_functions=f_post,
        dataset=dataset,
        timings=store.timings,
    )
