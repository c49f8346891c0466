"""``run`` (one network) and ``sweep`` (a grid of networks in as few compiled programs as
possible)."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from fracsgd._checks import refuse_traced
from fracsgd._io import (
    array_digest,
    fingerprint,
    prepare_directory,
    remove_stale_temporaries,
    software,
)
from fracsgd._progress import Progress
from fracsgd._types import PRNGKey
from fracsgd.data import Dataset
from fracsgd.models import Model, deep_linear, mlp
from fracsgd.parallel import (
    check_mesh,
    chunk_plan,
    device_memory,
    num_shards,
    pad_leading,
    replicate,
    shard_leading,
    to_host,
)
from fracsgd.train import _engine as E
from fracsgd.train._config import (
    OPTIMIZERS,
    SAMPLINGS,
    TrainConfig,
    check_choice,
    check_float,
    check_positive_int,
    config_from_grid,
    log_spaced_steps,
    validate_config,
)
from fracsgd.train._results import (
    BucketInfo,
    SweepResult,
    TrainResult,
    chunk_path,
    load_chunks,
    merge_chunks,
    save_chunk,
)

MODEL_KINDS = ("mlp", "deep_linear")
_TARGET_CHUNKS = 20


def _check_key(key: Any, where: str = "fracsgd.train") -> PRNGKey:
    refuse_traced(where, key=key)
    if not (isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)):
        raise ValueError(
            f"key must be a typed key from jax.random.key(seed), got {type(key).__name__}"
        )
    if key.shape != ():
        raise ValueError(f"key must be a single key (shape ()), got shape {key.shape}")
    return key


def _check_dataset(dataset: Any) -> Dataset:
    refuse_traced("fracsgd.train", dataset=dataset)
    if not isinstance(dataset, Dataset):
        raise ValueError(f"dataset must be a fracsgd.data.Dataset, got {type(dataset).__name__}")
    dataset.validate()
    return dataset


def segment_ends(steps: int, checkpoint_steps: Sequence[int], pieces: int = _TARGET_CHUNKS):
    """Where the host stops the compiled loop: every checkpoint step and about ``pieces`` evenly
    spaced steps (for the progress bar), sorted, ending at ``steps``."""
    even = np.linspace(0, steps, pieces + 1)[1:].round().astype(int)
    return sorted({int(s) for s in (*checkpoint_steps, *even) if 0 < s <= steps})


def _data(dataset: Dataset) -> E.Data:
    return E.Data(dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test)


def _data_bytes(dataset: Dataset) -> int:
    return sum(int(a.size) * a.dtype.itemsize for a in _data(dataset))


def _bytes(n: float) -> str:
    """``n`` bytes in the largest unit that keeps it ≥ 1 (``0.00 GiB`` said nothing)."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} bytes"


def _check_memory(needed: int, limit: int | None, what: str) -> None:
    cap = limit if limit is not None else E.available_bytes()
    if cap is not None and needed > cap:
        raise ValueError(
            f"{what} needs about {_bytes(needed)} of device memory but {_bytes(cap)} are "
            "available (memory_limit); use fewer networks, smaller "
            "widths or batches, fewer records (a larger record_every), or split the grid"
        )


def _train_bucket(
    static: E.Static,
    init_keys,
    masks,
    data_keys,
    hyper: E.Hyper,
    data: E.Data,
    progress: Progress,
    params0: Any = None,
    *,
    num_real: int | None = None,
    mesh: Mesh | None = None,
) -> dict[str, Any]:
    """Train one chunk of a bucket (inputs with a leading network axis, already padded and
    placed on the devices) and return host arrays for its first ``num_real`` networks."""
    if params0 is None:
        carry, consts = E.init_program(static, init_keys, masks, data_keys, hyper, data, mesh=mesh)
    else:
        carry, consts = E.start_program(static, params0, masks, data_keys, hyper)
    n_nets = data_keys.shape[0] if num_real is None else num_real
    ck_steps = set(static.checkpoint_steps)
    checkpoints, metrics = [], []
    done = 0
    for end in segment_ends(static.steps, static.checkpoint_steps):
        carry = E.segment_program(static, carry, consts, data, jnp.int32(end), mesh=mesh)
        if end in ck_steps:
            metrics.append(to_host(E.eval_program(static, carry.params, consts.masks, data, mesh)))
            checkpoints.append(to_host(carry.params))  # host memory, not the device
        else:
            jax.block_until_ready(carry.step)
        progress.update((end - done) * n_nets)
        done = end
    n_records = static.steps // static.record_every
    records = to_host(carry.records)[:, :n_records]
    params0, diverged_step = to_host((consts.params0, carry.diverged_step))
    stacked = jax.tree.map(lambda *a: np.stack(a, axis=1), *checkpoints)  # (N, K, ...)
    out = {
        "displacement": records[..., 0],
        "train_loss": records[..., 1],
        "grad_norm": records[..., 2],
        "checkpoints": stacked,
        "metrics": np.stack(metrics, axis=1),  # (N, K, 4)
        "init_params": params0,
        "diverged_step": diverged_step,
    }
    return jax.tree.map(lambda a: a[:n_nets], out)


def _hyper(configs: Sequence[TrainConfig], optimizers: tuple[str, ...]) -> E.Hyper:
    f = lambda name: jnp.asarray([float(getattr(c, name)) for c in configs], jnp.float32)
    return E.Hyper(
        learning_rate=f("learning_rate"),
        momentum=f("momentum"),
        b1=f("b1"),
        b2=f("b2"),
        eps=f("eps"),
        opt_code=jnp.asarray([optimizers.index(c.optimizer) for c in configs], jnp.int32),
    )


def _task(model: Model, dataset: Dataset) -> str:
    if model.widths[0] != dataset.num_features:
        raise ValueError(
            f"model input width {model.widths[0]} does not match the data's "
            f"{dataset.num_features} features"
        )
    if model.widths[-1] != dataset.num_outputs:
        raise ValueError(
            f"model output width {model.widths[-1]} does not match the data's "
            f"{dataset.num_outputs} outputs"
        )
    return dataset.task


def run(
    key: PRNGKey,
    model: Model,
    dataset: Dataset,
    config: TrainConfig,
    *,
    progress: bool = True,
    memory_limit: int | None = None,
) -> TrainResult:
    """Train one network with minibatch SGD (or momentum / Adam) and record its trajectory.

    The loss is the mean cross-entropy for classification data and ``½‖y − f(x)‖²`` averaged over
    samples for regression data. ``key`` is split into an initialisation key
    (``fold_in(key, 0)``) and a minibatch-order key (``fold_in(key, 1)``); an element of
    :func:`sweep` with seed ``s`` equals ``run(jax.random.fold_in(key, s), …)``.

    Args:
        key: ``jax.random.key``.
        model: a :class:`fracsgd.models.Model` whose input/output widths match ``dataset``.
        dataset: a :class:`fracsgd.data.Dataset` (arrays on the device).
        config: a :class:`TrainConfig`.
        progress: show a progress bar on stderr.
        memory_limit: refuse to start when the memory model (see :mod:`fracsgd.train._engine`)
            exceeds this many bytes; default: what the device has available.

    Returns:
        A :class:`TrainResult`: ``R(t)`` at every ``record_every``-th step, the minibatch loss
        and gradient norm there, parameters and full train/test metrics at log-spaced checkpoints,
        and divergence flags.

    Examples:
        >>> import jax
        >>> import fracsgd as fs
        >>> data = fs.data.load("moons", n=256, noise=0.1, seed=0)
        >>> cfg = fs.train.TrainConfig(steps=100, batch_size=32, learning_rate=0.1,
        ...                            num_checkpoints=4)
        >>> res = fs.train.run(jax.random.key(0), fs.models.mlp((2, 16, 2)), data, cfg,
        ...                    progress=False)
        >>> res.displacement.shape, res.checkpoint_steps.tolist()
        ((100,), [1, 5, 22, 100])
        >>> bool(res.diverged)
        False
    """
    key = _check_key(key, "fracsgd.train.run")
    dataset = _check_dataset(dataset)
    if not isinstance(model, Model):
        raise ValueError(f"model must be a fracsgd.models.Model, got {type(model).__name__}")
    config = validate_config(config, dataset.num_train)
    if model.batch_norm and config.batch_size < 2:
        raise ValueError("batch_size must be >= 2 with BatchNorm (a batch of one has no variance)")
    task = _task(model, dataset)
    static = E.Static(
        model=model,
        task=task,
        steps=config.steps,
        batch_size=config.batch_size,
        record_every=config.record_every,
        checkpoint_steps=log_spaced_steps(config.steps, config.num_checkpoints),
        sampling=config.sampling,
        optimizers=(config.optimizer,),
        masked=False,
    )
    needed = E.estimate_bytes(
        static, 1, dataset.num_train, dataset.num_features, _data_bytes(dataset)
    )
    if memory_limit is not None:
        check_positive_int("memory_limit", memory_limit)
    _check_memory(needed, memory_limit, "this run")
    bar = Progress(config.steps, "fracsgd.train.run", enabled=progress)
    out = _train_bucket(
        static,
        jax.random.fold_in(key, 0)[None],
        None,
        jax.random.fold_in(key, 1)[None],
        _hyper([config], static.optimizers),
        _data(dataset),
        bar,
    )
    return TrainResult.from_bucket(out, 0, static, config)


class Grid(NamedTuple):
    """A training sweep: the Cartesian product of the sequence fields, shared settings for the
    rest.

    Attributes:
        hidden: hidden-layer widths per architecture, e.g. ``((16,), (64,), (64, 64))``; ints
            are single hidden layers. Input and output widths come from the data set.
        seeds: integer seeds; network seed ``s`` uses ``jax.random.fold_in(key, s)``.
        learning_rates: ``γ`` values (> 0).
        optimizers: names from ``"sgd"``, ``"momentum"``, ``"adam"``.
        batch_sizes: minibatch sizes.
        steps, momentum, b1, b2, eps, sampling, record_every, num_checkpoints: as in
            :class:`TrainConfig`, shared by every network.
        model: ``"mlp"`` (ReLU) or ``"deep_linear"``.
        batch_norm: BatchNorm after hidden layers (``"mlp"`` only).
        max_padding_overhead: bucketing rule. Architectures of equal depth share one compiled
            program (padded to the widest, width-masked) while the padded cost
            ``len(bucket) · P_max`` stays within this factor of the unpadded ``Σ P`` (``P`` =
            parameter count); 1.0 gives one program per architecture, ``inf`` one per depth.
            ``None`` picks by platform: 1.25 on CPU, where padded FLOPs cost their full price
            (measured in ``benchmarks/train_sweep.py``), 4.0 on GPU/TPU, where small networks
            are bound by kernel launches and padding is nearly free.
        memory_limit: bytes one device may use for a bucket (default: what each device has
            available). A bucket that does not fit is split into chunks that do
            (:func:`sweep`); only a single network that does not fit is an error.

    Examples:
        Two widths × three seeds × two learning rates: 12 networks, in one program when the
        narrow network may be padded to the wide one:

        >>> import fracsgd as fs
        >>> data = fs.data.load("moons", n=256, noise=0.1, seed=0)
        >>> grid = fs.train.Grid(hidden=(8, 16), seeds=(0, 1, 2), learning_rates=(0.01, 0.1),
        ...                      batch_sizes=(32,), steps=50, max_padding_overhead=2.0)
        >>> [len(b.runs) for b in fs.train.plan_sweep(data, grid)]
        [12]
        >>> one_per_width = grid._replace(max_padding_overhead=1.0)
        >>> [len(b.runs) for b in fs.train.plan_sweep(data, one_per_width)]
        [6, 6]
    """

    hidden: Sequence[Sequence[int] | int] = ((64,),)
    seeds: Sequence[int] = (0,)
    learning_rates: Sequence[float] = (0.01,)
    optimizers: Sequence[str] = ("sgd",)
    batch_sizes: Sequence[int] = (128,)
    steps: int = 1000
    momentum: float = 0.9
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    sampling: str = "epoch"
    record_every: int = 1
    num_checkpoints: int = 16
    model: str = "mlp"
    batch_norm: bool = False
    max_padding_overhead: float | None = None
    memory_limit: int | None = None


def _nonempty(name: str, seq: Any) -> tuple:
    if isinstance(seq, np.ndarray | jax.Array) and np.ndim(seq) == 1:
        seq = np.asarray(seq).tolist()  # a 1-D array of values is a sequence of them
    if isinstance(seq, str | bytes) or not isinstance(seq, Sequence):
        raise ValueError(f"{name} must be a non-empty sequence, got {seq!r}")
    if len(seq) == 0:
        raise ValueError(f"{name} must be a non-empty sequence, got an empty one")

    def canonical(v: Any) -> str:  # NumPy and Python numbers with equal values are equal
        if isinstance(v, np.generic):
            v = v.item()
        return repr(v)

    if len(set(map(canonical, seq))) != len(seq):
        raise ValueError(f"{name} contains duplicates: {seq!r}")
    return tuple(seq)


def _validate_grid(grid: Any, dataset: Dataset) -> tuple[Grid, list[tuple[int, ...]]]:
    if not isinstance(grid, Grid):
        raise ValueError(f"grid must be a fracsgd.train.Grid, got {type(grid).__name__}")
    hidden = []
    hidden_in = _nonempty("hidden", grid.hidden)

    def scalar(v: Any) -> Any:  # a 0-d integer array is its int (as mlp and width_mask take)
        if isinstance(v, np.ndarray | jax.Array) and v.ndim == 0 and v.dtype.kind in "iu":
            return np.asarray(v)[()]
        return v

    for h in hidden_in:
        h = scalar(h)
        hs = (h,) if isinstance(h, int | np.integer) else h
        try:
            hs = tuple(scalar(w) for w in hs)
        except TypeError as err:
            msg = f"hidden entries must be ints or sequences of ints, got {h!r}"
            raise ValueError(msg) from err
        for w in hs:
            if isinstance(w, bool) or not isinstance(w, int | np.integer) or not 0 < w < 2**31:
                raise ValueError(f"hidden widths must be integers in [1, 2**31), got {h!r}")
        hidden.append(tuple(int(w) for w in hs))
    if len(set(hidden)) != len(hidden):
        raise ValueError(f"hidden contains duplicates: {grid.hidden!r}")
    seeds = _nonempty("seeds", grid.seeds)
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int | np.integer) or not 0 <= s < 2**31:
            raise ValueError(f"seeds must be integers in [0, 2**31), got {s!r}")
    learning_rates = _nonempty("learning_rates", grid.learning_rates)
    for lr in learning_rates:
        check_float("learning_rates", lr, lo=0.0)
    optimizers = _nonempty("optimizers", grid.optimizers)
    for o in optimizers:
        check_choice("optimizer", o, OPTIMIZERS)
    batch_sizes = _nonempty("batch_sizes", grid.batch_sizes)
    for b in batch_sizes:
        check_positive_int("batch_sizes", b, upper=dataset.num_train)
    check_choice("model", grid.model, MODEL_KINDS)
    check_choice("sampling", grid.sampling, SAMPLINGS)
    if not isinstance(grid.batch_norm, bool | np.bool_):
        raise ValueError(f"batch_norm must be True or False, got {grid.batch_norm!r}")
    if grid.batch_norm and grid.model != "mlp":
        raise ValueError("batch_norm=True is only available for model='mlp'")
    if grid.batch_norm and min(batch_sizes) < 2:
        raise ValueError("batch_sizes must be >= 2 with BatchNorm (a batch of one has no variance)")
    overhead = grid.max_padding_overhead
    if overhead is None:
        overhead = default_padding_overhead()
    if (
        isinstance(overhead, bool | np.bool_)
        or not isinstance(overhead, int | float | np.integer | np.floating)
        or not overhead >= 1
    ):
        raise ValueError(
            f"max_padding_overhead must be a number >= 1 (inf allowed), got {overhead!r}"
        )
    overhead = float(overhead)
    # learning rates train in float32: two that are equal there are the same networks
    as_f32 = [float(np.float32(v)) for v in learning_rates]
    if len(set(as_f32)) != len(as_f32):
        raise ValueError(
            f"learning_rates contains values equal in float32 (the training precision): "
            f"{tuple(learning_rates)!r}"
        )
    if grid.memory_limit is not None:
        check_positive_int("memory_limit", grid.memory_limit)
    checked = validate_config(
        config_from_grid(grid, grid.batch_sizes[0], grid.learning_rates[0], grid.optimizers[0]),
        dataset.num_train,
    )
    # canonical values (tuples of Python scalars): the same grid written with lists, arrays or
    # NumPy scalars is the same grid (for the resume fingerprint and in the result)
    canonical = grid._replace(
        hidden=tuple(
            int(h) if isinstance(h, int | np.integer) else hs
            for h, hs in zip(hidden_in, hidden, strict=True)
        ),
        seeds=tuple(int(v) for v in seeds),
        learning_rates=tuple(float(v) for v in learning_rates),
        optimizers=tuple(str(v) for v in optimizers),
        batch_sizes=tuple(int(v) for v in batch_sizes),
        max_padding_overhead=overhead,
        num_checkpoints=checked.num_checkpoints,  # clamped to steps
        # the shared scalars as Python values too (NumPy scalars repr differently)
        steps=int(checked.steps),
        record_every=int(checked.record_every),
        momentum=float(grid.momentum),
        b1=float(grid.b1),
        b2=float(grid.b2),
        eps=float(grid.eps),
        batch_norm=bool(grid.batch_norm),
        memory_limit=None if grid.memory_limit is None else int(grid.memory_limit),
    )
    return canonical, hidden


def default_padding_overhead() -> float:
    """The bucketing tolerance used when ``Grid.max_padding_overhead`` is None."""
    return 1.25 if jax.default_backend() == "cpu" else 4.0


def _architecture_cost(widths: tuple[int, ...]) -> int:
    return sum(a * b + b for a, b in itertools.pairwise(widths))


def bucket_widths(
    hidden: Sequence[tuple[int, ...]], n_in: int, n_out: int, max_padding_overhead: float
) -> list[list[tuple[int, ...]]]:
    """Group architectures into buckets that share a compiled program.

    Architectures of different depth never share. Within a depth, architectures are taken from
    the most to the least expensive; each joins the current bucket (allocated at the elementwise
    maximum widths) while ``len(bucket) · P(max widths) ≤ max_padding_overhead · Σ P(members)``.

    Args:
        hidden: hidden widths of every architecture, a tuple per architecture.
        n_in: input width.
        n_out: output width.
        max_padding_overhead: the factor above (1.0: one bucket per architecture).

    Returns:
        The buckets, each a list of architectures, shallowest depth first and, within a depth,
        most expensive first.

    Examples:
        >>> bucket_widths([(16,), (32,), (64,), (128,)], 784, 10, 2.0)
        [[(128,), (64,), (32,)], [(16,)]]
    """
    buckets: list[list[tuple[int, ...]]] = []
    by_depth: dict[int, list[tuple[int, ...]]] = {}
    for h in hidden:
        by_depth.setdefault(len(h), []).append(h)
    for depth in sorted(by_depth):
        archs = sorted(
            by_depth[depth], key=lambda h: _architecture_cost((n_in, *h, n_out)), reverse=True
        )
        current: list[tuple[int, ...]] = []
        for h in archs:
            trial = [*current, h]
            cap = tuple(max(c) for c in zip(*trial, strict=True)) if depth else ()
            padded = len(trial) * _architecture_cost((n_in, *cap, n_out))
            actual = sum(_architecture_cost((n_in, *m, n_out)) for m in trial)
            if current and padded > max_padding_overhead * actual:
                buckets.append(current)
                current = [h]
            else:
                current = trial
        buckets.append(current)
    return buckets


def sweep(
    key: PRNGKey,
    dataset: Dataset,
    grid: Grid,
    *,
    progress: bool = True,
    mesh: Mesh | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
) -> SweepResult:
    """Train every network of ``grid`` (seeds × hidden widths × learning rates × optimizers ×
    batch sizes), vmapped, in as few compiled programs as possible.

    Shape-changing axes are bucketed: one program per (depth, batch size, width bucket) — see
    :func:`bucket_widths`; learning rates, momentum, Adam's constants and seeds are traced data,
    so a second sweep with new values and as many networks per bucket reuses the compiled
    programs. The set of optimizers in a bucket is static (it decides which optimizer states
    are allocated); each network's choice among them is data. Narrower networks in a bucket are
    width-masked and compute exactly the narrow network (:mod:`fracsgd.models`). A network whose
    loss or parameters become NaN/inf is frozen at its last finite state and flagged
    (``diverged``, ``diverged_step``); the others are untouched.

    Memory and chunks: a bucket of ``N`` networks needs ``N · per_network + data`` bytes on a
    device by the memory model of :func:`fracsgd.train.estimate_bytes`. When that exceeds the
    cap (``Grid.memory_limit`` bytes per device, default what each device has available), the
    bucket's networks are split into equal chunks that fit (:func:`fracsgd.parallel.chunk_plan`;
    the last chunk is padded by repeating its last network) and run one after another through
    the same compiled program. Each network's computation is independent of the others, so
    chunked, sharded and single-program runs agree to float32 rounding; they are often bitwise
    identical on CPU but not always: XLA may vectorise transcendental functions (exp, log, pow)
    across the networks of a program differently for another number of networks, which changes
    the last bit (measured: relative 1e-7 per step). Only a single network that does not fit is
    an error.

    Devices: with ``mesh`` (:func:`fracsgd.parallel.batch_mesh`) each chunk's networks axis is
    sharded over the mesh's devices (chunks are padded to a multiple of the device count) and the
    data set is replicated; keys are derived per network as without a mesh, so results do not
    depend on the device count. Multi-host runs: see :mod:`fracsgd.parallel`.

    Resuming: with ``checkpoint_dir`` every finished chunk is saved there atomically
    (``sweep-b<bucket>-<hash>.npz``, written by process 0). A re-run with the same arguments
    loads the finished networks and trains only the rest (``result.num_resumed`` counts the
    loaded ones); the result equals an uninterrupted run. Each file carries a fingerprint of the
    grid (all fields but ``memory_limit``), the key, the data set's arrays, the bucket plan, the
    platform, and the software (the fracsgd, jax and jaxlib versions and a SHA-256 of
    fracsgd's source files, :func:`fracsgd._io.code_digest`: chunks left by other code are not
    resumed, even under the same version number); a file with another fingerprint, or one that
    cannot be read, raises :class:`fracsgd.train.CheckpointError` (a ``ValueError``) — never
    reused silently. Chunk size and device count may differ between the runs. A process killed
    while writing a chunk can leave a hidden ``.sweep-….npz.~HOST~PID~.….tmp`` file beside
    them (the write is a temporary file, ``fsync`` and rename): it is never read, and the next
    sweep into that directory deletes it once that process no longer runs
    (:func:`fracsgd._io.remove_stale_temporaries`).

    Args:
        key: ``jax.random.key``; the network with seed ``s`` is trained exactly as
            ``run(jax.random.fold_in(key, s), …)``.
        dataset: a :class:`fracsgd.data.Dataset`.
        grid: a :class:`Grid`.
        progress: progress bar on stderr (advances between compiled chunks).
        mesh: ``None`` (default device) or a one-axis ``"batch"`` mesh to shard networks over.
        checkpoint_dir: directory for resumable chunk files (``None``: nothing is saved).

    Returns:
        A :class:`SweepResult` with one entry per network (``result.coords`` labels them),
        ``result.num_programs``, the number of compiled bucket programs, and per bucket its
        chunking (``result.buckets[b].num_chunks``, ``chunk_size``, ``num_devices``).

    Raises:
        ValueError: for bad grid values (naming the field), a bad ``mesh``, or a single network
            that would not fit in memory, before anything is compiled.
        CheckpointError: a corrupt or mismatched file in ``checkpoint_dir``.

    Examples:
        >>> import jax, numpy as np
        >>> import fracsgd as fs
        >>> data = fs.data.load("moons", n=256, noise=0.1, seed=0)
        >>> grid = fs.train.Grid(hidden=(8, 16), seeds=(0, 1), learning_rates=(0.05, 0.1),
        ...                      batch_sizes=(32,), steps=50, num_checkpoints=3,
        ...                      max_padding_overhead=2.0)
        >>> res = fs.train.sweep(jax.random.key(0), data, grid, progress=False)
        >>> res.num_runs, res.num_programs, res.displacement.shape
        (8, 1, (8, 50))

        A memory cap splits the bucket into chunks; the numbers do not change:

        >>> per_net = fs.train.estimate_bytes(res.buckets[0].static, 1, 256, 2, 0)
        >>> room_for_3 = res.buckets[0].estimated_bytes - 5 * per_net  # 8 networks + data
        >>> small = grid._replace(memory_limit=room_for_3)
        >>> chunked = fs.train.sweep(jax.random.key(0), data, small, progress=False)
        >>> chunked.buckets[0].num_chunks
        3
        >>> bool(np.allclose(chunked.displacement, res.displacement, rtol=1e-5))
        True
    """
    key = _check_key(key, "fracsgd.train.sweep")
    dataset = _check_dataset(dataset)
    grid, hidden = _validate_grid(grid, dataset)
    mesh = check_mesh(mesh)
    if checkpoint_dir is not None and not isinstance(checkpoint_dir, str | os.PathLike):
        raise ValueError(f"checkpoint_dir must be a path or None, got {checkpoint_dir!r}")
    runs, plan = _plan(dataset, grid, hidden, mesh)
    stored: dict[int, list[tuple[list[int], dict[str, Any]]]] = {}
    fp = describe = ""
    if checkpoint_dir is not None:
        _prepare_checkpoint_dir(checkpoint_dir, create=jax.process_index() == 0)
        fp, describe = _sweep_fingerprint(key, dataset, grid, plan)
        stored = load_chunks(checkpoint_dir, fp, [(st, idx) for st, idx, _ in plan])
    writer = checkpoint_dir is not None and jax.process_index() == 0

    bar = Progress(
        len(runs) * grid.steps, "fracsgd.train.sweep", enabled=progress, unit="network-steps"
    )
    data = replicate(_data(dataset), mesh)
    outputs: list[dict[str, Any]] = []
    resumed = 0
    t0 = time.perf_counter()
    for b, (static, idx, info) in enumerate(plan):
        parts = stored.get(b, [])
        done = {r for rs, _ in parts for r in rs}
        todo = [i for i in idx if i not in done]
        resumed += len(idx) - len(todo)
        bar.update((len(idx) - len(todo)) * grid.steps)
        inputs = _bucket_inputs(key, grid, static, runs, todo) if todo else None
        for c in range(0, len(todo), info.chunk_size):
            part = np.arange(c, min(c + info.chunk_size, len(todo)))
            chunk_inputs = jax.tree.map(lambda a, part=part: a[part], inputs)
            init_keys, masks, data_keys, hyper = shard_leading(
                pad_leading(chunk_inputs, info.chunk_size), mesh
            )
            out = _train_bucket(
                static,
                init_keys,
                masks,
                data_keys,
                hyper,
                data,
                bar,
                num_real=len(part),
                mesh=mesh,
            )
            chunk_runs = [todo[int(j)] for j in part]
            if writer:
                assert checkpoint_dir is not None
                path = chunk_path(checkpoint_dir, b, chunk_runs)
                save_chunk(path, out, chunk_runs, fp, describe)
            parts.append((chunk_runs, out))
        outputs.append(merge_chunks(parts, idx))
    wall = time.perf_counter() - t0
    return SweepResult.assemble(
        grid,
        runs,
        [info for _, _, info in plan],
        outputs,
        wall_time=wall,
        dataset_name=dataset.name,
        dataset_source=dataset.source,
        resumed=resumed,
    )


def _prepare_checkpoint_dir(path: str | os.PathLike, *, create: bool) -> None:
    """Refuse a ``checkpoint_dir`` that cannot hold chunk files before anything is trained (a
    file there, or a path through a file, used to fail only when the first finished chunk was
    saved); the process that writes creates it."""
    where = os.fspath(path)
    if create:
        prepare_directory(where, "checkpoint_dir")
        remove_stale_temporaries(where)  # chunks a killed writer left half-written
    elif os.path.exists(where) and not os.path.isdir(where):
        raise ValueError(f"checkpoint_dir must be a directory, but {where!r} is a file")


def _plan(dataset: Dataset, grid: Grid, hidden: list[tuple[int, ...]], mesh: Mesh | None):
    """The flat run list and, per bucket, ``(static, run indices, BucketInfo)``."""
    shards = num_shards(mesh)
    n_in, n_out = dataset.num_features, dataset.num_outputs
    ctor = (lambda ws: mlp(ws, batch_norm=grid.batch_norm)) if grid.model == "mlp" else deep_linear
    width_buckets = bucket_widths(
        hidden, n_in, n_out, float(grid.max_padding_overhead or default_padding_overhead())
    )

    # the flat run list, in grid order: seeds × hidden × learning_rates × optimizers × batch sizes
    runs = list(
        itertools.product(
            grid.seeds, hidden, grid.learning_rates, grid.optimizers, grid.batch_sizes
        )
    )
    data_bytes = _data_bytes(dataset)
    cap = grid.memory_limit if grid.memory_limit is not None else device_memory(mesh)
    plan = []
    for batch in grid.batch_sizes:
        for members in width_buckets:
            idx = [i for i, r in enumerate(runs) if r[4] == batch and r[1] in members]
            cap_widths = tuple(max(c) for c in zip(*members, strict=True)) if members[0] else ()
            model = ctor((n_in, *cap_widths, n_out))
            opts = tuple(o for o in OPTIMIZERS if any(runs[i][3] == o for i in idx))
            masked = len(members) > 1
            static = E.Static(
                model=model,
                task=_task(model, dataset),
                steps=grid.steps,
                batch_size=int(batch),
                record_every=grid.record_every,
                checkpoint_steps=log_spaced_steps(grid.steps, grid.num_checkpoints),
                sampling=grid.sampling,
                optimizers=opts,
                masked=masked,
            )
            per_net = E.estimate_bytes(static, 1, dataset.num_train, n_in, 0)
            chunk, n_chunks = chunk_plan(
                len(idx),
                per_net,
                data_bytes,
                cap,
                shards,
                what=f"network at widths {model.widths}",
            )
            needed = E.estimate_bytes(static, chunk // shards, dataset.num_train, n_in, data_bytes)
            plan.append(
                (static, idx, BucketInfo(static, tuple(idx), needed, chunk, n_chunks, shards))
            )

    return runs, plan


def plan_sweep(dataset: Dataset, grid: Grid, *, mesh: Mesh | None = None) -> tuple[BucketInfo, ...]:
    """How :func:`sweep` would run ``grid``, without running it: one :class:`BucketInfo` per
    compiled program with its runs, chunk size, number of chunks, devices and the estimated
    bytes of one chunk on one device.

    Args:
        dataset: a :class:`fracsgd.data.Dataset`.
        grid: a :class:`Grid`.
        mesh: ``None`` (default device) or a one-axis ``"batch"`` mesh, as for :func:`sweep`.

    Returns:
        A tuple of :class:`BucketInfo`, one per compiled program, in the order :func:`sweep`
        runs them.

    Raises:
        ValueError: bad grid values (naming the field), a bad ``mesh``, or a single network
            that would not fit in memory.

    Examples:
        >>> import fracsgd as fs
        >>> data = fs.data.load("moons", n=256, noise=0.1, seed=0)
        >>> grid = fs.train.Grid(hidden=(8, 16), seeds=(0, 1), batch_sizes=(32,), steps=50,
        ...                      max_padding_overhead=2.0)
        >>> [(len(b.runs), b.chunk_size, b.num_chunks) for b in fs.train.plan_sweep(data, grid)]
        [(4, 4, 1)]
    """
    dataset = _check_dataset(dataset)
    grid, hidden = _validate_grid(grid, dataset)
    _, plan = _plan(dataset, grid, hidden, check_mesh(mesh))
    return tuple(info for _, _, info in plan)


def _bucket_inputs(key: PRNGKey, grid: Grid, static: E.Static, runs: list, idx: list[int]):
    """Per-network inputs of the runs ``idx`` of a bucket, each with a leading network axis:
    ``(init_keys, masks, data_keys, hyper)``. Keys depend only on each run's seed."""
    model = static.model
    masks = None
    if static.masked:
        ms = [model.width_mask(runs[i][1]) for i in idx]
        masks = tuple(jnp.stack(layer) for layer in zip(*ms, strict=True))
    init_keys = jnp.stack([jax.random.fold_in(jax.random.fold_in(key, runs[i][0]), 0) for i in idx])
    data_keys = jnp.stack([jax.random.fold_in(jax.random.fold_in(key, runs[i][0]), 1) for i in idx])
    configs = [config_from_grid(grid, runs[i][4], runs[i][2], runs[i][3]) for i in idx]
    return init_keys, masks, data_keys, _hyper(configs, static.optimizers)


def _sweep_fingerprint(key: PRNGKey, dataset: Dataset, grid: Grid, plan) -> tuple[str, str]:
    """Fingerprint of everything a sweep's numbers depend on (not the chunking or devices)."""
    buckets = [
        dict(
            kind=st.model.kind,
            widths=st.model.widths,
            batch_norm=st.model.batch_norm,
            batch_size=st.batch_size,
            checkpoint_steps=st.checkpoint_steps,
            optimizers=st.optimizers,
            masked=st.masked,
            runs=idx,
        )
        for st, idx, _ in plan
    ]
    parts = dict(
        grid=repr(grid._replace(memory_limit=None)),
        key=np.asarray(jax.random.key_data(key)).tolist(),
        key_impl=str(jax.random.key_impl(key)),
        data=[dataset.name, dataset.source, array_digest(*_data(dataset))],
        buckets=buckets,
        platform=jax.default_backend(),
        software=software(),
    )
    sw = parts["software"]
    describe = (
        f"sweep of {sum(len(b['runs']) for b in buckets)} networks on {dataset.name}, "
        f"fracsgd {sw['fracsgd']} (code {sw['code'][:12]}), jax {sw['jax']}, "
        f"{jax.default_backend()}"
    )
    return fingerprint(parts), describe


class BranchResult(NamedTuple):
    """Replicas of SGD restarted from common points (see :func:`branch`).

    Attributes:
        record_steps: ``(T,)`` steps ``τ`` after the restart at which ``R`` was recorded.
        displacement: ``(M, replicas, T)`` ``||w_{t0+τ} − w_{t0}||`` over active parameters.
        train_loss: ``(M, replicas, T)`` minibatch loss averaged over each recording interval.
        diverged: ``(M, replicas)`` the replica hit NaN/inf (frozen there; ``R`` is NaN after).
    """

    record_steps: np.ndarray
    displacement: np.ndarray
    train_loss: np.ndarray
    diverged: np.ndarray


def branch(
    key: PRNGKey,
    model: Model,
    dataset: Dataset,
    params: Any,
    config: TrainConfig,
    *,
    replicas: int,
    mask: Any = None,
    learning_rates: Sequence[float] | None = None,
    memory_limit: int | None = None,
    progress: bool = True,
) -> BranchResult:
    """Restart SGD from each of ``M`` points ``w_{t0}`` as ``replicas`` independent copies that
    differ only in their minibatch order, and record each copy's displacement from the common
    start — the walkers of the return-probability estimate of the spectral dimension
    (:func:`fracsgd.diffusion.spectral_dimension`, theory.md §3).

    All ``M × replicas`` networks run vmapped in one compiled program. The optimiser state starts
    fresh at the restart (for momentum and Adam this is a restart of their averages, which the
    caller should keep in mind when comparing with the original run).

    Args:
        key: ``jax.random.key``; replica ``r`` of point ``m`` draws its minibatches from
            ``fold_in(fold_in(key, m), r)``.
        model: the network the parameters belong to.
        dataset: a :class:`fracsgd.data.Dataset`.
        params: parameters with a leading ``(M,)`` axis (e.g. final checkpoints of a sweep).
        config: a :class:`TrainConfig` (steps, batch size, learning rate, optimizer, recording);
            ``num_checkpoints`` is ignored.
        replicas: copies per point (> 0).
        mask: optional width mask with a leading ``(M,)`` axis, for padded parameters.
        learning_rates: optional per-point learning rates ``(M,)`` replacing
            ``config.learning_rate`` (traced: no recompilation).
        memory_limit: bytes the replicas may use on the device (default: what it has
            available). Points whose replicas do not fit together run in chunks of points
            through the same compiled program (the last chunk padded); only one point whose
            replicas alone do not fit is an error.
        progress: progress bar on stderr.

    Examples:
        >>> import jax
        >>> import fracsgd as fs
        >>> data = fs.data.load("moons", n=256, noise=0.1, seed=0)
        >>> model = fs.models.mlp((2, 8, 2))
        >>> w = jax.vmap(model.init)(jax.random.split(jax.random.key(0), 3))
        >>> cfg = fs.train.TrainConfig(steps=20, batch_size=32, learning_rate=0.1)
        >>> out = fs.train.branch(jax.random.key(1), model, data, w, cfg, replicas=4,
        ...                       progress=False)
        >>> out.displacement.shape
        (3, 4, 20)
    """
    key = _check_key(key, "fracsgd.train.branch")
    dataset = _check_dataset(dataset)
    if not isinstance(model, Model):
        raise ValueError(f"model must be a fracsgd.models.Model, got {type(model).__name__}")
    replicas = check_positive_int("replicas", replicas)
    if isinstance(config, TrainConfig):
        config = config._replace(num_checkpoints=1)  # branches keep no checkpoints
    config = validate_config(config, dataset.num_train)
    if model.batch_norm and config.batch_size < 2:
        raise ValueError("batch_size must be >= 2 with BatchNorm (a batch of one has no variance)")
    expected = jax.eval_shape(model.init, jax.random.key(0))
    leaves = jax.tree.leaves(params)
    same = str(jax.tree.structure(params)) == str(jax.tree.structure(expected))
    if not same or not leaves:
        raise ValueError("params must have the structure of model.init(key) with a leading axis")
    m = int(np.shape(leaves[0])[0]) if np.ndim(leaves[0]) else 0
    for leaf, ref in zip(leaves, jax.tree.leaves(expected), strict=True):
        if tuple(np.shape(leaf)) != (m, *ref.shape) or m == 0:
            raise ValueError(
                f"params leaves must have shape (M, *shape) with M > 0 as in model.init; "
                f"got {tuple(np.shape(leaf))} for a leaf of shape {ref.shape}"
            )
    if learning_rates is None:
        configs = [config] * m
    else:
        if isinstance(learning_rates, jax.Array) and learning_rates.ndim == 1:
            learning_rates = np.asarray(learning_rates).tolist()
        if isinstance(learning_rates, str | bytes) or not isinstance(
            learning_rates, Sequence | np.ndarray
        ):
            raise ValueError(
                "learning_rates must be a sequence with one value per point, "
                f"got {learning_rates!r}"
            )
        lrs = list(learning_rates)
        if len(lrs) != m:
            raise ValueError(f"learning_rates must have one value per point ({m}), got {len(lrs)}")
        configs = [
            config._replace(learning_rate=check_float("learning_rates", v, lo=0.0, lo_open=True))
            for v in lrs
        ]
    if mask is not None:
        template = model.width_mask(model.hidden)
        ok = isinstance(mask, tuple | list) and len(mask) == len(template)
        if ok:
            ok = all(np.shape(v) == (m, *np.shape(t)) for v, t in zip(mask, template, strict=True))
        if not ok:
            shapes = [(m, *np.shape(t)) for t in template]
            raise ValueError(
                f"mask must be a width mask with a leading (M,) axis: one array per hidden layer "
                f"of shapes {shapes}, got {mask!r:.80}"
            )
        mask = tuple(jnp.repeat(jnp.asarray(v, bool), replicas, axis=0) for v in mask)
    static = E.Static(
        model=model,
        task=_task(model, dataset),
        steps=config.steps,
        batch_size=config.batch_size,
        record_every=config.record_every,
        checkpoint_steps=(config.steps,),
        sampling=config.sampling,
        optimizers=(config.optimizer,),
        masked=mask is not None,
    )
    if memory_limit is not None:
        check_positive_int("memory_limit", memory_limit)
    n_train, n_feat, data_bytes = dataset.num_train, dataset.num_features, _data_bytes(dataset)
    one = E.estimate_bytes(static, replicas, n_train, n_feat, data_bytes)
    per_point = E.estimate_bytes(static, 2 * replicas, n_train, n_feat, data_bytes) - one
    cap = memory_limit if memory_limit is not None else E.available_bytes()
    k = m if cap is None else min(m, max(0, (cap - (one - per_point)) // max(per_point, 1)))
    if k < 1:
        _check_memory(one, cap, f"the {replicas} replicas of one point")
        k = 1
    lr_all = [c for c in configs for _ in range(replicas)]
    bar = Progress(
        m * replicas * config.steps, "fracsgd.train.branch", enabled=progress, unit="network-steps"
    )
    outs = []
    for c0 in range(0, m, k):
        # the last chunk repeats its final point so every chunk has k points (one program)
        pts = [min(i, m - 1) for i in range(c0, c0 + k)]
        rows = np.asarray([i * replicas + r for i in pts for r in range(replicas)])
        idx = np.asarray(pts)
        params0 = jax.tree.map(
            lambda a, p=idx: jnp.repeat(jnp.asarray(a)[p], replicas, axis=0), params
        )
        data_keys = jnp.stack(
            [
                jax.random.fold_in(jax.random.fold_in(key, i), r)
                for i in pts
                for r in range(replicas)
            ]
        )
        out = _train_bucket(
            static,
            None,
            None if mask is None else tuple(v[rows] for v in mask),
            data_keys,
            _hyper([lr_all[j] for j in rows], static.optimizers),
            _data(dataset),
            bar,
            params0=params0,
        )
        real = (min(c0 + k, m) - c0) * replicas
        outs.append({f: out[f][:real] for f in ("displacement", "train_loss", "diverged_step")})
    out = {f: np.concatenate([o[f] for o in outs]) for f in outs[0]}
    shape = (m, replicas, -1)
    return BranchResult(
        record_steps=np.arange(1, out["displacement"].shape[1] + 1) * config.record_every,
        displacement=out["displacement"].reshape(shape),
        train_loss=out["train_loss"].reshape(shape),
        diverged=(out["diverged_step"] >= 0).reshape(m, replicas),
    )
