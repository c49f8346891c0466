"""The paper's MNIST study (theory.md §6): train a grid of ReLU MLPs with SGD (and Adam as a
contrast), estimate the LLC along every trajectory, fit the diffusion exponent, and test the
paper's relations network by network.

Stages (each saved as it finishes and resumed on a re-run, see :mod:`fracsgd.experiments._store`):

1. ``train`` — :func:`fracsgd.train.sweep` over seeds × widths × learning rates × batch sizes,
   once for SGD and once for Adam (Adam's learning rates are their own axis: the SGD values
   would make Adam diverge). Records ``R(t)`` every ``record_every`` steps, gradient norms, and
   parameters and full-data metrics at ``num_checkpoints`` log-spaced steps.
2. ``llc`` — λ̂(w_t) at every checkpoint of every network: one :func:`fracsgd.llc.estimate_many`
   program per depth (narrower networks are zero-padded and width-masked, so they keep their own
   λ), in chunks sized by a memory model.
3. ``branch`` — the λ-free spectral dimension: from each network's final point, ``replicas``
   copies of SGD that differ only in their minibatch order (:func:`fracsgd.train.branch`); the
   fraction of copies within ``ξ_ret`` of the common start decays as ``τ^{−d_s/2}``
   (:func:`fracsgd.diffusion.spectral_dimension`).

Then, per network (:func:`analyse`): the exponent ``H`` of ``R(t)`` on the late window after the
detected crossover (:func:`fracsgd.diffusion.fit_exponent`), ``d_w = 1/H``, the Caputo order
``2H``, ``d_s`` by the paper's Eq. 17 (``2λH``, with the final λ and with λ̄) and by return
statistics, ``D_ξ``, the bound ``d_s ≤ λ̄``, near-stability (coefficient of variation of λ̂ and
the gradient norm over the window), test accuracy and total displacement.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fracsgd import diffusion, llc, models, train
from fracsgd._checks import check_number
from fracsgd._io import array_digest, software
from fracsgd._types import PyTree
from fracsgd.data import Dataset
from fracsgd.experiments._store import Store, arrays_tree, fingerprint, tree_arrays
from fracsgd.experiments._validate import (
    MAX_BYTES,
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
from fracsgd.llc._calibrate import _late_start, _rms
from fracsgd.train._api import _bytes, _nonempty

#: Paper numbers (v2 appendix table, MNIST), theory.md §6: mean ± std.
PAPER_TABLE: dict[str, dict[str, Any]] = {
    "sgd": {"d_s": (7.8, 10.2), "lambda_final": (12.5, 11.8), "test_accuracy": 0.941},
    "adam": {"d_s": (0.41, 0.91), "lambda_final": (3.1, 5.8), "test_accuracy": 0.904},
}


class MnistConfig(NamedTuple):
    """Every setting of the MNIST study. :meth:`quick` is the 2-core-CPU setting;
    :meth:`full` (the default of ``fracsgd reproduce``) is sized for an accelerator.

    Attributes:
        hidden: hidden widths per architecture (depth = tuple length).
        seeds: network seeds.
        sgd_learning_rates, adam_learning_rates: learning-rate axes of the two sweeps
            (an empty tuple skips that optimizer).
        batch_sizes: minibatch sizes.
        steps: SGD steps per network; ``record_every``: ``R(t)`` recording interval;
            ``num_checkpoints``: log-spaced checkpoints (λ̂ is estimated at each).
        batch_norm: BatchNorm after hidden layers (v2).
        llc_chains, llc_draws, llc_burnin, llc_step_size, llc_localization, llc_batch_size:
            SGLD settings (theory.md §2; ``nβ = n / log n``).
        llc_memory: bytes one LLC program may use (chunks of models are sized from it).
        late_fraction: λ̄ averages λ̂ over ``t ≥ T^{1 − late_fraction}``.
        replicas, branch_steps: the λ-free ``d_s``: copies per network and their length
            (their ``R`` is recorded at every step: the return probability falls fast in
            high dimension and needs the time resolution).
        xi: the coarse-graining length ξ of ``D_ξ`` (v2 uses 0.5).
    """

    hidden: tuple[tuple[int, ...], ...] = ((32,), (64,), (128,), (256,), (512,), (128, 128))
    seeds: tuple[int, ...] = (0, 1, 2, 3)
    sgd_learning_rates: tuple[float, ...] = (0.01, 0.05)
    adam_learning_rates: tuple[float, ...] = (0.001,)
    batch_sizes: tuple[int, ...] = (256, 1024)
    steps: int = 20_000
    record_every: int = 10
    num_checkpoints: int = 12
    batch_norm: bool = False
    llc_chains: int = 8
    llc_draws: int = 400
    llc_burnin: int = 100
    llc_step_size: float = 1e-4
    llc_localization: float = 100.0
    llc_batch_size: int = 256
    llc_memory: int = 2 * 2**30
    late_fraction: float = 0.5
    replicas: int = 64
    branch_steps: int = 500
    xi: float = 0.5

    @classmethod
    def quick(cls) -> MnistConfig:
        """Minutes on a 2-core CPU: 3 widths × 2 seeds × (2 SGD learning rates + Adam), 3 000
        steps, 8 checkpoints, 4 chains × (100 + 400) steps, 32 replicas × 100 steps.

        The LLC chains run as long as in the full setting: at ε = 1e-4, γ = 100 they take
        ~2/(εγ) = 200 steps to spread along the directions only γ confines. The earlier
        50 + 150 read λ̂ 38.5 at a 784-16-10 network's final point where 1 000 + 3 000 and
        3 000 + 9 000 read 45.9 and 45.3 (100 + 400: 45.4), with ``rhat_distance`` 1.98.
        """
        return cls(
            hidden=((16,), (32,), (64,)),
            seeds=(0, 1),
            sgd_learning_rates=(0.02, 0.1),
            adam_learning_rates=(0.001,),
            batch_sizes=(256,),
            steps=3000,
            record_every=5,
            num_checkpoints=8,
            llc_chains=4,
            llc_draws=400,
            llc_burnin=100,
            llc_batch_size=128,
            llc_memory=512 * 2**20,
            replicas=32,
            branch_steps=100,
        )

    @classmethod
    def full(cls) -> MnistConfig:
        """The accelerator setting (the class defaults)."""
        return cls()


#: settings read only by the analysis after the stored stages: changing them re-analyses the
#: stored stages instead of recomputing them
ANALYSIS_ONLY = ("xi", "late_fraction")


#: settings only the LLC stage reads, and only the branch (λ-free d_s) stage: changing them
#: recomputes that stage alone, not the training
LLC_ONLY = tuple(k for k in MnistConfig._fields if k.startswith("llc_"))
BRANCH_ONLY = ("replicas", "branch_steps")


def _stage_settings(config, stage: str = "train") -> dict[str, Any]:
    """The settings a stored stage depends on beyond the training (its fingerprint's part of
    the config): ``"train"`` everything but the analysis-, LLC- and branch-only settings;
    ``"llc"`` / ``"branch"`` their own (each also carries the training stage's fingerprint)."""
    d = config._asdict()
    if stage == "llc":
        return {k: d[k] for k in LLC_ONLY}
    if stage == "branch":
        return {k: d[k] for k in BRANCH_ONLY}
    skip = (*ANALYSIS_ONLY, *LLC_ONLY, *BRANCH_ONLY)
    return {k: v for k, v in d.items() if k not in skip}


def check_dataset(config: MnistConfig, dataset: Dataset) -> None:
    """The settings that depend on the data set: every batch size at most its training set."""
    for name, sizes in (
        ("batch_sizes", config.batch_sizes),
        ("llc_batch_size", (config.llc_batch_size,)),
    ):
        for b in sizes:
            if b > dataset.num_train:
                raise ValueError(
                    f"mnist.{name} must be at most the {dataset.num_train} training images, got {b}"
                )


#: the integer settings and their ranges: step counts and batch sizes in int32 (the compiled
#: loops' counters), chains and replicas at most MAX_COUNT (vmapped side by side)
_INT_BOUNDS = {
    "steps": (1, MAX_STEPS),
    "record_every": (1, MAX_STEPS),
    "num_checkpoints": (3, MAX_STEPS),
    "llc_chains": (1, MAX_COUNT),
    "llc_draws": (1, MAX_STEPS),
    "llc_burnin": (0, MAX_STEPS),
    "llc_batch_size": (1, MAX_STEPS),
    "llc_memory": (1, MAX_BYTES),
    "replicas": (4, MAX_COUNT),  # a return probability needs a few walkers
    "branch_steps": (1, MAX_STEPS),
}

#: MNIST's input and output widths (fracsgd.data.load("mnist") refuses other images)
_MNIST_FEATURES, _MNIST_CLASSES = 784, 10


def _mlp(config: MnistConfig, hidden: Sequence[int]) -> models.Model:
    return models.mlp((_MNIST_FEATURES, *hidden, _MNIST_CLASSES), batch_norm=config.batch_norm)


def llc_model_bytes(config: MnistConfig) -> int:
    """The bytes the LLC stage gives one model (a checkpoint of the widest network of a depth:
    the narrower ones are padded to it) when it sizes its chunks of models from ``llc_memory``:
    ``32 · llc_chains · P + 4 · llc_chains · llc_draws``; the largest over the depths."""
    per_depth: dict[int, tuple[int, ...]] = {}
    for h in config.hidden:
        wide = per_depth.get(len(h), h)
        per_depth[len(h)] = tuple(max(a, b) for a, b in zip(wide, h, strict=True))
    return max(
        _llc_bytes_per_model(config, _mlp(config, cap).num_params()) for cap in per_depth.values()
    )


def _llc_bytes_per_model(config: MnistConfig, num_params: int) -> int:
    """The LLC stage's memory model of one model of ``num_params`` parameters: eight float32
    copies of each chain's parameters and its loss trace."""
    return 4 * 8 * config.llc_chains * num_params + 4 * config.llc_chains * config.llc_draws


def validate(config: Any) -> MnistConfig:
    """Check every field before anything compiles (``ValueError`` naming the field as its
    ``--set`` key, ``mnist.FIELD``)."""
    if not isinstance(config, MnistConfig):
        raise ValueError(f"config must be an MnistConfig, got {type(config).__name__}")
    if not isinstance(config.hidden, tuple | list) or not config.hidden:
        raise ValueError(
            f"mnist.hidden must be a non-empty tuple of width tuples, got {config.hidden!r}"
        )
    for h in config.hidden:  # each architecture is a tuple of widths: ((64,), (32, 32))
        if not isinstance(h, tuple | list):
            raise ValueError(
                f"mnist.hidden must be a tuple of width tuples such as ((64,), (32, 32)), got "
                f"{config.hidden!r} (entry {h!r} is not a tuple; write (64,) for one layer)"
            )
        int_tuple("mnist.hidden", h, 1, MAX_WIDTH)
    int_tuple("mnist.seeds", config.seeds, 0, 2**31 - 1)
    sgd = float_tuple("mnist.sgd_learning_rates", config.sgd_learning_rates, allow_empty=True)
    adam = float_tuple("mnist.adam_learning_rates", config.adam_learning_rates, allow_empty=True)
    if not (sgd or adam):
        raise ValueError(
            "mnist.sgd_learning_rates and mnist.adam_learning_rates cannot both be empty"
        )
    int_tuple("mnist.batch_sizes", config.batch_sizes, 1)
    check_ints("mnist", config, _INT_BOUNDS)
    if config.llc_burnin + config.llc_draws > MAX_STEPS:
        raise ValueError(
            f"mnist.llc_burnin + mnist.llc_draws must be at most {MAX_STEPS} (the chains count "
            f"their steps in int32), got {config.llc_burnin + config.llc_draws}"
        )
    if not isinstance(config.batch_norm, bool):
        raise ValueError(f"mnist.batch_norm must be True or False, got {config.batch_norm!r}")
    if config.steps % config.record_every:
        raise ValueError(
            f"mnist.steps ({config.steps}) must be a multiple of mnist.record_every "
            f"({config.record_every})"
        )
    check_number("mnist.llc_step_size", config.llc_step_size, lo=0.0, lo_open=True)
    check_number("mnist.llc_localization", config.llc_localization, lo=0.0)
    check_number("mnist.late_fraction", config.late_fraction, lo=0.0, hi=1.0, lo_open=True)
    check_number("mnist.xi", config.xi, lo=0.0, lo_open=True)
    if config.steps // config.record_every < 3:
        raise ValueError(
            "mnist.steps // mnist.record_every must be at least 3 (R(t) needs 3 points for a "
            f"fit), got {config.steps} // {config.record_every}"
        )
    # the sweeps' own duplicate checks, here, before anything runs, on the canonical values
    # (NumPy and Python integers alike)
    config = canonical(config)
    _nonempty("mnist.hidden", list(config.hidden))
    _nonempty("mnist.seeds", config.seeds)
    _nonempty("mnist.batch_sizes", config.batch_sizes)
    for name in ("sgd_learning_rates", "adam_learning_rates"):
        if getattr(config, name):
            _nonempty(f"mnist.{name}", getattr(config, name))
            learning_rates_f32(f"mnist.{name}", getattr(config, name))
    if config.batch_norm and min(config.batch_sizes) < 2:
        raise ValueError(
            "mnist.batch_sizes must be at least 2 with mnist.batch_norm=True (a batch of one "
            f"has no variance), got {config.batch_sizes!r}"
        )
    sgld_float32("mnist.llc_step_size", config.llc_step_size)
    sgld_float32("mnist.llc_localization", config.llc_localization, allow_zero=True)
    # a budget below one model would be raised to one model per chunk, silently
    need = llc_model_bytes(config)
    if config.llc_memory < need:
        raise ValueError(
            f"mnist.llc_memory must be at least {need} bytes ({_bytes(need)}), what the LLC "
            f"stage needs for one model's chains (32 bytes × mnist.llc_chains × parameters + "
            f"4 bytes × mnist.llc_chains × mnist.llc_draws), got {config.llc_memory}"
        )
    return config


def sizes(config: MnistConfig) -> list[Size]:
    """Lower bounds of what the stages of a validated ``config`` hold in memory, for
    :func:`fracsgd.experiments._validate.check_sizes` before any stage runs: the recorded
    ``R(t)`` (12 bytes a record: displacement, loss, gradient norm), the parameters at the
    checkpoints, the LLC chains' five traces (20 bytes a draw) and the replicas'
    displacements (float64)."""
    per_arch = (
        len(config.seeds)
        * len(config.batch_sizes)
        * (len(config.sgd_learning_rates) + len(config.adam_learning_rates))
    )
    nets = per_arch * len(config.hidden)
    records = config.steps // config.record_every
    params = sum(_mlp(config, h).num_params() for h in config.hidden)
    runs = ("mnist.seeds", "mnist.hidden", "mnist.batch_sizes")
    return [
        Size(
            "one network's R(t) records",
            12 * (records + 1),
            "device",
            ("mnist.steps",),
            ("mnist.record_every",),
        ),
        Size(
            "the networks' R(t) records",
            12 * records * nets,
            "host",
            ("mnist.steps", *runs),
            ("mnist.record_every",),
        ),
        Size(
            "the parameters at the checkpoints",
            4 * min(config.num_checkpoints, config.steps) * params * per_arch,
            "host",
            ("mnist.num_checkpoints", *runs),
        ),
        Size("one LLC chain's traces", 20 * config.llc_draws, "device", ("mnist.llc_draws",)),
        Size(
            "the replicas' displacements",
            8 * config.replicas * config.branch_steps * nets,
            "host",
            ("mnist.replicas", "mnist.branch_steps", *runs),
        ),
    ]


def _grid(config: MnistConfig, optimizer: str, lrs: Sequence[float]) -> train.Grid:
    return train.Grid(
        hidden=config.hidden,
        seeds=config.seeds,
        learning_rates=tuple(lrs),
        optimizers=(optimizer,),
        batch_sizes=config.batch_sizes,
        steps=config.steps,
        record_every=config.record_every,
        num_checkpoints=config.num_checkpoints,
        batch_norm=config.batch_norm,
    )


def _model(dataset: Dataset, hidden: Sequence[int], batch_norm: bool) -> models.Model:
    return models.mlp((dataset.num_features, *hidden, dataset.num_classes), batch_norm=batch_norm)


def expected_seconds(config: MnistConfig, dataset: Dataset, platform: str) -> float:
    """A rough duration from a FLOP count (6·batch·parameters per step for training and for
    SGLD) at an effective rate of 40 GFLOP/s on CPU and 4 TFLOP/s on GPU/TPU (small matmuls
    reach a fraction of peak), plus 5 s of compilation per program."""
    n_opt = len(config.sgd_learning_rates) + len(config.adam_learning_rates)
    flops = 0.0
    programs = 0
    for h in config.hidden:
        p = _model(dataset, h, False).num_params()
        for b in config.batch_sizes:
            nets = len(config.seeds) * n_opt
            flops += 6.0 * b * p * nets * (config.steps + config.replicas * config.branch_steps)
            flops += (
                6.0
                * config.llc_batch_size
                * p
                * nets
                * config.num_checkpoints
                * config.llc_chains
                * (config.llc_draws + config.llc_burnin)
            )
            programs += 3
    rate = 40e9 if platform == "cpu" else 4e12
    return flops / rate + 5.0 * programs


# ----------------------------------------------------------------------------- stage 1: train


def _train_stage(
    key, dataset: Dataset, config: MnistConfig, progress: bool, mesh, chunk_dir
) -> dict[str, Any]:
    sweeps = []
    for opt, lrs in (("sgd", config.sgd_learning_rates), ("adam", config.adam_learning_rates)):
        if lrs:
            sweeps.append(
                train.sweep(
                    key,
                    dataset,
                    _grid(config, opt, lrs),
                    progress=progress,
                    mesh=mesh,
                    checkpoint_dir=None if chunk_dir is None else chunk_dir / opt,
                )
            )
    out: dict[str, Any] = {}
    cols: dict[str, list] = {
        k: []
        for k in (
            "seed",
            "hidden",
            "learning_rate",
            "optimizer",
            "batch_size",
            "num_params",
            "displacement",
            "grad_norm",
            "train_loss",
            "metrics",
            "diverged",
        )
    }
    i = 0
    for res in sweeps:
        for j in range(res.num_runs):
            r = res.result(j)
            cols["seed"].append(int(res.coords["seed"][j]))
            cols["hidden"].append(str(res.coords["hidden"][j]))
            cols["learning_rate"].append(float(res.coords["learning_rate"][j]))
            cols["optimizer"].append(str(res.coords["optimizer"][j]))
            cols["batch_size"].append(int(res.coords["batch_size"][j]))
            cols["num_params"].append(r.num_params)
            cols["displacement"].append(r.displacement)
            cols["grad_norm"].append(r.grad_norm)
            cols["train_loss"].append(r.train_loss)
            cols["metrics"].append(
                np.stack([r.train_loss_full, r.train_accuracy, r.test_loss, r.test_accuracy], -1)
            )
            cols["diverged"].append(r.diverged)
            out.update(tree_arrays(r.checkpoints, f"ck{i}_"))
            i += 1
    for name, v in cols.items():
        out[name] = np.asarray(v)
    out["record_steps"] = np.asarray(sweeps[0].record_steps)
    out["checkpoint_steps"] = np.asarray(sweeps[0].checkpoint_steps)
    out["wall_time"] = np.asarray(sum(s.wall_time for s in sweeps))
    out["num_programs"] = np.asarray(sum(s.num_programs for s in sweeps))
    return out


def _hidden_of(label: str) -> tuple[int, ...]:
    return tuple(int(w) for w in label.split("-"))


def _checkpoints(stage: dict[str, np.ndarray], i: int, model: models.Model) -> PyTree:
    return arrays_tree(model, stage, f"ck{i}_")


# ----------------------------------------------------------------------------- stage 2: LLC


def _llc_stage(
    key, dataset: Dataset, config: MnistConfig, tr: dict[str, np.ndarray], progress, mesh
):
    n_nets = len(tr["seed"])
    k = len(tr["checkpoint_steps"])
    lam = np.full((n_nets, k), np.nan)
    lam_std = np.full((n_nets, k), np.nan)
    not_min = np.zeros((n_nets, k), bool)
    n_div = np.zeros((n_nets, k), np.int64)
    rhat = np.full((n_nets, k), np.nan)
    rhat_distance = np.full((n_nets, k), np.nan)
    distance = np.full((n_nets, k), np.nan)
    data = (dataset.x_train, dataset.y_train)
    depths = sorted({len(_hidden_of(h)) for h in tr["hidden"]})
    from fracsgd._progress import Progress

    bar = Progress(n_nets * k, "fracsgd reproduce mnist: LLC", enabled=progress, unit="models")
    bar.update(0)  # the first line now: a chunk of models can take minutes
    for depth in depths:
        nets = [i for i in range(n_nets) if len(_hidden_of(tr["hidden"][i])) == depth]
        cap = tuple(max(_hidden_of(tr["hidden"][i])[layer] for i in nets) for layer in range(depth))
        wide = _model(dataset, cap, config.batch_norm)
        centres, pmasks = [], []
        for i in nets:
            h = _hidden_of(tr["hidden"][i])
            narrow = _model(dataset, h, config.batch_norm)
            ck = _checkpoints(tr, i, narrow)
            centres.append(jax.vmap(lambda p, w=wide: models.pad_params(p, w))(ck))
            pm = wide.param_mask(wide.width_mask(h))
            pmasks.append(jax.tree.map(lambda a: np.broadcast_to(a, (k, *a.shape)), pm))
        params = jax.tree.map(lambda *a: np.concatenate(a), *centres)  # (nets·K, ...)
        masks = jax.tree.map(lambda *a: np.concatenate(a), *pmasks)
        m_total = len(nets) * k
        per_model = _llc_bytes_per_model(config, wide.num_params())
        chunk = max(1, min(m_total, config.llc_memory // max(per_model, 1)))

        def loss_fn(p, batch, model=wide):
            return models.cross_entropy(model.apply(p, batch[0]), batch[1])

        for c0 in range(0, m_total, chunk):
            sl = np.arange(c0, c0 + chunk) % m_total  # the last chunk is padded: one program
            res = _quiet_estimate_many(
                jax.random.fold_in(jax.random.fold_in(key, depth), c0),
                loss_fn,
                jax.tree.map(lambda a, s=sl: jnp.asarray(a[s]), params),
                data,
                jax.tree.map(lambda a, s=sl: jnp.asarray(a[s]), masks),
                config,
                mesh,
            )
            real = min(chunk, m_total - c0)
            for j in range(real):
                net, ck_i = nets[(c0 + j) // k], (c0 + j) % k
                lam[net, ck_i] = res.llc_mean[j]
                lam_std[net, ck_i] = res.llc_std[j]
                not_min[net, ck_i] = bool(res.not_minimum[j])
                n_div[net, ck_i] = int(np.sum(res.diverged[j]))
                rhat[net, ck_i] = res.rhat[j]
                rhat_distance[net, ck_i] = res.rhat_distance[j]
                distance[net, ck_i] = _rms(res.distance[j])
            bar.update(real)
    return {
        "llc": lam,
        "llc_std": lam_std,
        "not_minimum": not_min,
        "chains_diverged": n_div,
        "rhat": rhat,
        "rhat_distance": rhat_distance,
        "llc_distance": distance,
        "nbeta": np.asarray(llc.default_nbeta(dataset.num_train)),
    }


def _quiet_estimate_many(key, loss_fn, params, data, masks, config: MnistConfig, mesh=None):
    """``estimate_many`` with the not-a-minimum and diverged-chain warnings recorded per model
    instead of raised
    (early checkpoints are not minima by design; the flag is stored and reported)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", llc.NotAMinimumWarning)
        warnings.simplefilter("ignore", llc.DivergedChainsWarning)  # counted per record
        return llc.estimate_many(
            key,
            loss_fn,
            params,
            data,
            mask=masks,
            num_chains=config.llc_chains,
            num_draws=config.llc_draws,
            num_burnin=config.llc_burnin,
            step_size=config.llc_step_size,
            localization=config.llc_localization,
            batch_size=config.llc_batch_size,
            mesh=mesh,
        )


# ----------------------------------------------------------------------------- stage 3: branch


def _branch_stage(key, dataset: Dataset, config: MnistConfig, tr: dict[str, np.ndarray], progress):
    """One :func:`fracsgd.train.branch` program per (depth, batch size, optimizer): narrower
    networks are zero-padded to the group's widest and width-masked (exactly the narrow
    network, :mod:`fracsgd.models`); learning rates are per network (traced)."""
    n_nets = len(tr["seed"])
    disp = np.full((n_nets, config.replicas, config.branch_steps), np.nan)
    groups: dict[tuple, list[int]] = {}
    for i in range(n_nets):
        depth = len(_hidden_of(str(tr["hidden"][i])))
        groups.setdefault((depth, int(tr["batch_size"][i]), str(tr["optimizer"][i])), []).append(i)
    steps = np.arange(1, disp.shape[2] + 1)
    for g, (depth, batch, opt) in enumerate(sorted(groups)):
        nets = groups[(depth, batch, opt)]
        hiddens = [_hidden_of(str(tr["hidden"][i])) for i in nets]
        cap = tuple(max(h[layer] for h in hiddens) for layer in range(depth))
        wide = _model(dataset, cap, config.batch_norm)
        finals = []
        for i, h in zip(nets, hiddens, strict=True):
            final = jax.tree.map(
                lambda a: a[-1], _checkpoints(tr, i, _model(dataset, h, config.batch_norm))
            )
            finals.append(models.pad_params(final, wide))
        start = jax.tree.map(lambda *a: np.stack(a), *finals)
        wmasks = [wide.width_mask(h) for h in hiddens]
        masks = tuple(np.stack(layer) for layer in zip(*wmasks, strict=True))
        cfg = train.TrainConfig(
            steps=config.branch_steps,
            batch_size=batch,
            optimizer=opt,
            record_every=1,
        )
        out = train.branch(
            jax.random.fold_in(key, g),
            wide,
            dataset,
            start,
            cfg,
            replicas=config.replicas,
            mask=masks,
            learning_rates=[float(tr["learning_rate"][i]) for i in nets],
            progress=progress,
        )
        disp[nets] = out.displacement
    return {"displacement": disp, "record_steps": steps}


class ReturnDimension(NamedTuple):
    """The λ-free spectral dimension of one network from its replicas.

    ``d_s`` from ``P(τ) = Pr(||w_{t0+τ} − w_{t0}|| < ξ_ret) ~ τ^{−d_s/2}``; ``xi_ret`` is the
    median replica displacement at ``τ_ξ`` (≈ 1/20 of the branch), so ``P(τ_ξ) ≈ ½``; the fit
    runs from ``τ_ξ`` to the last ``τ`` at which at least ``max(2, replicas/16)`` replicas are
    inside.
    NaN (with ``reason``) when fewer than three recorded times qualify.
    """

    d_s: float
    ci: tuple[float, float]
    xi_ret: float
    window: tuple[float, float]
    reason: str


def return_dimension(displacement: np.ndarray, steps: np.ndarray) -> ReturnDimension:
    """:class:`ReturnDimension` from replica displacements ``(replicas, T)`` at ``steps``."""
    r = np.asarray(displacement, np.float64)
    t = np.asarray(steps, np.float64)
    nan = ReturnDimension(math.nan, (math.nan, math.nan), math.nan, (math.nan, math.nan), "")
    ok = np.all(np.isfinite(r), axis=1)
    if ok.sum() < 4:
        return nan._replace(reason="fewer than 4 finite replicas")
    r = r[ok]
    i_xi = max(0, int(np.argmin(np.abs(t - t[-1] / 20))))
    xi = float(np.median(r[:, i_xi]))
    if not xi > 0:
        return nan._replace(reason="replicas did not move")
    min_inside = max(2, r.shape[0] // 16)
    inside = np.sum(r < xi, axis=0)
    last = np.flatnonzero(inside >= min_inside)
    if last.size == 0 or last[-1] - i_xi < 2:
        return nan._replace(xi_ret=xi, reason="the return probability fell too fast to fit")
    x = np.concatenate([np.zeros((r.shape[0], 1)), r], axis=1)[..., None]
    times = np.concatenate([[0.0], t])
    window = (float(t[i_xi]), float(t[last[-1]]))
    try:
        est = diffusion.spectral_dimension(x, radius=xi * (1 + 1e-9), times=times, window=window)
    except ValueError as err:
        return nan._replace(xi_ret=xi, reason=str(err))
    return ReturnDimension(float(est.d_s), (float(est.ci[0]), float(est.ci[1])), xi, window, "")


# ----------------------------------------------------------------------------- analysis


def _verdict(d_s: float, lam_bar: float) -> bool | None:
    """``d_s ≤ λ̄``, or None when either is not a number or ``d_s ≤ 0`` (no spectral
    dimension: a return probability that does not decay, or Eq. 17 with λ ≤ 0 or H ≤ 0; the
    caller passes NaN for Eq. 17 with both negative, whose product is positive)."""
    if not (math.isfinite(d_s) and math.isfinite(lam_bar)) or d_s <= 0:
        return None
    return bool(d_s <= lam_bar)


#: the shortest fit window (decades of τ) for which a λ-free verdict on the bound can be
#: conclusive (:func:`fracsgd.diffusion.spectral_dimension`: below about half a decade the
#: estimate is unreliable)
RETURN_MIN_DECADES = 0.5


def _decades(window: Any) -> float:
    lo, hi = (float(w) for w in window)
    return math.log10(hi / lo) if lo > 0 and hi > lo else 0.0


def _conclusive(ci: Any, lam_bar: float) -> bool | None:
    """Whether the 95 % CI of ``d_s`` lies within ``(0, ∞)`` and wholly on one side of ``λ̄``
    (None: no CI). A CI reaching 0 or below says nothing about ``d_s`` (an interval
    ``[−19.5, 19.0]`` lies below ``λ̄ = 40`` but is no evidence for the bound)."""
    lo, hi = (float(c) for c in ci)
    if not (math.isfinite(lo) and math.isfinite(hi) and math.isfinite(lam_bar)):
        return None
    return bool(lo > 0 and (hi <= lam_bar or lo > lam_bar))


def analyse(
    tr: dict[str, np.ndarray], ll: dict[str, np.ndarray], br: dict[str, np.ndarray], config
) -> list[dict[str, Any]]:
    """One record per network, every quantity named as in theory.md."""
    records = []
    t_rec = np.asarray(tr["record_steps"], np.float64)
    ck = np.asarray(tr["checkpoint_steps"], np.float64)
    start = _late_start(float(ck[-1]), config.late_fraction)  # as fracsgd.llc.trajectory
    for i in range(len(tr["seed"])):
        rec: dict[str, Any] = {
            "network": i,
            "seed": int(tr["seed"][i]),
            "hidden": str(tr["hidden"][i]),
            "depth": len(_hidden_of(str(tr["hidden"][i]))),
            "num_params": int(tr["num_params"][i]),
            "optimizer": str(tr["optimizer"][i]),
            "learning_rate": float(tr["learning_rate"][i]),
            "batch_size": int(tr["batch_size"][i]),
            "steps": int(config.steps),
            "batch_norm": bool(config.batch_norm),
            "diverged": bool(tr["diverged"][i]),
        }
        m = tr["metrics"][i]
        rec["train_loss"] = float(m[-1, 0])
        rec["train_accuracy"] = float(m[-1, 1])
        rec["test_loss"] = float(m[-1, 2])
        rec["test_accuracy"] = float(m[-1, 3])
        R = np.asarray(tr["displacement"][i], np.float64)
        rec["total_displacement"] = float(R[-1])
        # --- the exponent of R(t), late window after the crossover (theory.md §3)
        try:
            fit = diffusion.fit_exponent(t_rec, R)
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
        H = rec["H"]
        # --- λ along the trajectory
        lam = np.asarray(ll["llc"][i], np.float64)
        rec["checkpoint_steps"] = ck.astype(int).tolist()
        rec["llc"] = lam.tolist()
        rec["llc_std"] = np.asarray(ll["llc_std"][i], np.float64).tolist()
        flagged = np.asarray(ll["not_minimum"][i], bool)
        rec["llc_not_minimum"] = flagged.tolist()
        rec["lambda_final"] = float(lam[-1])
        # λ̄ over the late window from the checkpoints that are local minima: a flagged λ̂
        # (negative, or chains below L_n(w*)) does not estimate λ (theory.md Appendix B)
        lam_ok = np.where(flagged, np.nan, lam)
        late = ck >= start
        used = late & np.isfinite(lam_ok)
        rec["lambda_window"] = [int(ck[used][0]), int(ck[used][-1])] if used.any() else None
        rec["lambda_bar"] = llc.time_average(ck, lam_ok, start)
        rec["lambda_bar_checkpoints"] = int(used.sum())
        rec["lambda_bar_excluded"] = int(np.sum(late & flagged))
        rec["nbeta"] = float(ll["nbeta"])
        # chains that hit NaN/inf, per checkpoint (excluded from λ̂; estimate's warning is
        # silenced in favour of this record)
        rec["llc_chains_diverged"] = np.asarray(ll["chains_diverged"][i]).astype(int).tolist()
        # how far the chains ranged from each checkpoint (LLCResult.distance, RMS over the
        # chains): the radius each λ̂ is local to; None from a stage stored before it existed
        rec["llc_distance"] = (
            np.asarray(ll["llc_distance"][i], np.float64).tolist() if "llc_distance" in ll else None
        )
        # split R-hat per checkpoint of the loss traces and of the chains' squared distances
        # from the checkpoint (LLCResult.rhat, .rhat_distance; the loss traces' minibatch
        # noise can hide unmixed chains from the first); None from a stage stored before them
        for name, field in (("llc_rhat", "rhat"), ("llc_rhat_distance", "rhat_distance")):
            rec[name] = np.asarray(ll[field][i], np.float64).tolist() if field in ll else None
        # --- spectral dimensions
        rec["d_s_eq17_final"] = float(diffusion.paper_spectral_dimension(rec["lambda_final"], H))
        rec["d_s_eq17_bar"] = float(diffusion.paper_spectral_dimension(rec["lambda_bar"], H))
        ret = return_dimension(br["displacement"][i], br["record_steps"])
        rec.update(
            d_s_return=ret.d_s,
            d_s_return_ci=list(ret.ci),
            xi_return=ret.xi_ret,
            d_s_return_window=list(ret.window),
            d_s_return_note=ret.reason,
        )
        # --- D_ξ = ξ^{2 − 2λ/d_s} (Eq. 17's d_s: 2λ/d_s = 1/H = d_w)
        d_s = rec["d_s_eq17_final"]
        rec["xi"] = float(config.xi)
        # 2λ/d_s = 1/H whatever λ is, so D_ξ = ξ^(2 − d_w) needs only H (λ_final ≤ 0 included)
        d_w = rec.get("d_w", math.nan)
        rec["D_xi"] = xi_power(config.xi, d_w) if H > 0 else math.nan
        # --- the bound d_s ≤ λ̄ with both λ's named (theory.md §3, §5); a verdict is
        # conclusive when the d_s's 95 % CI lies in (0, ∞) on one side of λ̄ (Eq. 17's CI is
        # 2·λ·H_ci)
        lam_bar = rec["lambda_bar"]
        ci17 = [2 * rec["lambda_final"] * h for h in rec.get("H_ci", (math.nan, math.nan))]
        rec["d_s_eq17_final_ci"] = sorted(ci17)
        # 2λH is a spectral dimension only with λ > 0 and H > 0 (a negative λ̂ times a negative
        # H is positive and is none), and only from a λ̂ that estimates λ: not one whose
        # checkpoint is flagged as off a local minimum (as the final-λ column and λ̄ leave out)
        physical = rec["lambda_final"] > 0 and H > 0 and not bool(flagged[-1])
        rec["bound_eq17_holds"] = _verdict(d_s if physical else math.nan, lam_bar)
        rec["bound_eq17_conclusive"] = _conclusive(ci17, lam_bar) if physical else None
        rec["bound_return_holds"] = _verdict(ret.d_s, lam_bar)
        # a fit over less than half a decade of τ is no power law (spectral_dimension's own
        # advice): its jackknife interval is not evidence either way
        spans = _decades(ret.window) >= RETURN_MIN_DECADES
        conclusive = _conclusive(ret.ci, lam_bar)
        rec["bound_return_conclusive"] = conclusive and spans if conclusive is not None else None
        # --- near-stability over the fit window of H (theory.md §5), unflagged checkpoints
        fw = rec.get("fit_window")
        if fw is not None:
            # a diverged network's inf values are missing data here (it is flagged elsewhere)
            lam_f = np.where(np.isfinite(lam_ok), lam_ok, np.nan)
            gn_f = np.where(np.isfinite(tr["grad_norm"][i]), tr["grad_norm"][i], np.nan)
            ns = diffusion.near_stability(ck, lam_f, t_rec, gn_f, tuple(fw))
            cv, gn, n_cv = ns.coefficient_of_variation, ns.mean_grad_norm, ns.num_checkpoints
        else:
            cv, gn, n_cv = math.nan, math.nan, 0
        rec["llc_cv_window"] = cv
        rec["llc_cv_checkpoints"] = int(n_cv)
        rec["grad_norm_window"] = gn
        records.append(rec)
    return records


# ----------------------------------------------------------------------------- driver


class MnistStudy(NamedTuple):
    """What :func:`run` returns: the records and the arrays the figures need."""

    records: list[dict[str, Any]]
    config: MnistConfig
    record_steps: np.ndarray
    displacement: np.ndarray
    checkpoint_steps: np.ndarray
    branch_steps: np.ndarray
    branch_displacement: np.ndarray
    dataset_source: str
    num_train: int
    timings: dict[str, float]
    num_programs: int


def run(
    seed: int,
    dataset: Dataset,
    config: MnistConfig,
    out_dir: str,
    *,
    progress: bool = True,
    overwrite: bool = False,
    mesh: Any = None,
) -> MnistStudy:
    """Run (or resume) the three stages and the analysis; see the module docstring.

    ``mesh`` (e.g. :func:`fracsgd.parallel.batch_mesh`) shards the networks and the LLC chains
    over several devices. The training stage also saves every finished chunk of networks in
    ``out_dir/stages/mnist-chunks`` (:func:`fracsgd.train.sweep`'s ``checkpoint_dir``), so a
    killed run resumes inside the stage.

    Examples:
        >>> import tempfile
        >>> import fracsgd as fs
        >>> from fracsgd.experiments import mnist
        >>> data = fs.data.load("moons", n=256, noise=0.1, seed=0)  # any classification set
        >>> cfg = mnist.MnistConfig(hidden=((4,),), seeds=(0,), sgd_learning_rates=(0.1,),
        ...     adam_learning_rates=(), batch_sizes=(32,), steps=40, record_every=1,
        ...     num_checkpoints=3, llc_chains=2, llc_draws=10, llc_burnin=0,
        ...     llc_batch_size=32, replicas=4, branch_steps=20)
        >>> study = mnist.run(0, data, cfg, tempfile.mkdtemp(), progress=False)
        >>> len(study.records), sorted(study.records[0])[:4]
        (1, ['D_xi', 'H', 'H_ci', 'batch_norm'])
    """
    config = validate(config)
    check_dataset(config, dataset)
    key = jax.random.key(seed)
    store = Store(out_dir, "mnist", overwrite=overwrite)
    chunks = store.dir / "mnist-chunks"  # the sweep's finished chunks while it trains
    # the data by content (a path names files whose content may change, and one data set has
    # many spellings of its path)
    data_id = array_digest(dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test)
    base = (int(seed), data_id, software())  # software(): versions and the code's digest
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
        describe=f"seed {seed}, {dataset.source}",
    )
    shutil.rmtree(chunks, ignore_errors=True)  # the stage file has it all
    fp_llc = fingerprint("llc", _stage_settings(config, "llc"), base, fp_train)
    ll = store.stage(
        "llc",
        fp_llc,
        lambda: _llc_stage(jax.random.fold_in(key, 1), dataset, config, tr, progress, mesh),
        describe=f"seed {seed}",
    )
    fp_br = fingerprint("branch", _stage_settings(config, "branch"), base, fp_train)
    br = store.stage(
        "branch",
        fp_br,
        lambda: _branch_stage(jax.random.fold_in(key, 2), dataset, config, tr, progress),
        describe=f"seed {seed}",
    )
    records = analyse(tr, ll, br, config)
    return MnistStudy(
        records=records,
        config=config,
        record_steps=np.asarray(tr["record_steps"]),
        displacement=np.asarray(tr["displacement"]),
        checkpoint_steps=np.asarray(tr["checkpoint_steps"]),
        branch_steps=np.asarray(br["record_steps"]),
        branch_displacement=np.asarray(br["displacement"]),
        dataset_source=dataset.source,
        num_train=dataset.num_train,
        timings=store.timings,
        num_programs=int(tr["num_programs"]),
    )
