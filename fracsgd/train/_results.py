"""Results of training: :class:`TrainResult` (one network) and :class:`SweepResult` (a grid),
with atomic saving to self-describing netCDF files."""

from __future__ import annotations

import dataclasses
import datetime
import os
import re
import tempfile
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from fracsgd._io import CheckpointError, default_file_mode, load_arrays, save_arrays
from fracsgd._types import PyTree
from fracsgd.models import Model, deep_linear, mlp, unpad_params
from fracsgd.train._config import TrainConfig, config_from_grid

METRIC_NAMES = ("train_loss_full", "train_accuracy", "test_loss", "test_accuracy")


class BucketInfo(NamedTuple):
    """One compiled program of a sweep: its static settings and the runs it trained.

    Attributes:
        static: the shape-fixing settings of the program (widths, batch size, …).
        runs: indices of the runs in the bucket, in grid order.
        estimated_bytes: device memory of one chunk on one device by the memory model
            (:func:`fracsgd.train.estimate_bytes`).
        chunk_size: networks per chunk (a multiple of the device count; the last chunk is
            padded to it), so every chunk runs the same compiled program.
        num_chunks: chunks the bucket was split into (1 when it fits at once).
        num_devices: devices the networks axis was sharded over.

    Examples:
        >>> import fracsgd as fs
        >>> data = fs.data.load("moons", n=256, noise=0.1, seed=0)
        >>> grid = fs.train.Grid(hidden=(8, 16), seeds=(0, 1), batch_sizes=(32,), steps=50,
        ...                      max_padding_overhead=2.0)
        >>> (info,) = fs.train.plan_sweep(data, grid)
        >>> info.runs, info.static.model.widths, info.static.masked  # (2, 8, 2) masked in
        ((0, 1, 2, 3), (2, 16, 2), True)
    """

    static: Any
    runs: tuple[int, ...]
    estimated_bytes: int
    chunk_size: int = 0
    num_chunks: int = 1
    num_devices: int = 1


def _slice(tree: PyTree, i: int) -> PyTree:
    return jax.tree.map(lambda a: a[i], tree)


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """The recorded trajectory of one network.

    Attributes:
        config: the :class:`TrainConfig` used.
        model: the network (at its true widths; parameters below are unpadded).
        record_steps: ``(R,)`` steps ``k, 2k, …, T`` at which the series below were recorded.
        displacement: ``(R,)`` ``R(t) = ||w_t − w_0||_2`` over active trainable parameters
            (BatchNorm statistics excluded); NaN after divergence.
        train_loss: ``(R,)`` minibatch loss averaged over each recording interval. Step
            ``t``'s loss is ``L_{B_t}(w_{t−1})``, the loss its gradient came with (before the
            update), while ``displacement`` at ``t`` is measured after it, at ``w_t``. So the
            diverging step's own loss is finite when only its update overflowed: an interval
            reads NaN from the first one holding a step after ``diverged_step``; the interval
            holding the diverging step itself reads that step's loss when it was the
            non-finite value (``inf`` when the loss overflowed, NaN otherwise).
        grad_norm: ``(R,)`` minibatch gradient norm at the recorded step (at ``w_{t−1}``, like
            the loss); NaN from ``diverged_step`` on, that step included.
        checkpoint_steps: ``(K,)`` log-spaced checkpoint steps (the last is ``T``).
        checkpoints: parameter pytree with a leading ``(K,)`` axis.
        train_loss_full, train_accuracy, test_loss, test_accuracy: ``(K,)`` full-data metrics at
            the checkpoints (accuracies are NaN for regression).
        init_params: parameters at ``t = 0``.
        diverged: whether the loss, gradient or parameters became NaN/inf (or ``R²`` overflowed
            float32); the network was frozen at its last finite state (its checkpoint
            metrics after that are the frozen state's).
        diverged_step: the (0-based) step that produced the first non-finite value, or -1.
    """

    config: TrainConfig
    model: Model
    record_steps: np.ndarray
    displacement: np.ndarray
    train_loss: np.ndarray
    grad_norm: np.ndarray
    checkpoint_steps: np.ndarray
    checkpoints: PyTree
    train_loss_full: np.ndarray
    train_accuracy: np.ndarray
    test_loss: np.ndarray
    test_accuracy: np.ndarray
    init_params: PyTree
    diverged: bool
    diverged_step: int

    @property
    def final_params(self) -> PyTree:
        """Parameters after the last step (the last checkpoint)."""
        return _slice(self.checkpoints, -1)

    @property
    def num_params(self) -> int:
        """Trainable parameters of the network."""
        return int(self.model.num_params())

    @classmethod
    def from_bucket(
        cls,
        out: dict[str, Any],
        i: int,
        static: Any,
        config: TrainConfig,
        hidden: Sequence[int] | None = None,
    ) -> TrainResult:
        model = static.model
        ckpts = _slice(out["checkpoints"], i)
        init = _slice(out["init_params"], i)
        if hidden is not None and tuple(hidden) != model.hidden:
            ckpts = unpad_params(model, ckpts, hidden)
            init = unpad_params(model, init, hidden)
            model = _narrow_model(model, hidden)
        n_rec = out["displacement"].shape[1]
        metrics = out["metrics"][i]
        return cls(
            config=config,
            model=model,
            record_steps=np.arange(1, n_rec + 1) * static.record_every,
            displacement=out["displacement"][i],
            train_loss=out["train_loss"][i],
            grad_norm=out["grad_norm"][i],
            checkpoint_steps=np.asarray(static.checkpoint_steps),
            checkpoints=ckpts,
            train_loss_full=metrics[:, 0],
            train_accuracy=metrics[:, 1],
            test_loss=metrics[:, 2],
            test_accuracy=metrics[:, 3],
            init_params=init,
            diverged=bool(out["diverged_step"][i] >= 0),
            diverged_step=int(out["diverged_step"][i]),
        )


def _narrow_model(model: Model, hidden: Sequence[int]) -> Model:
    ws = (model.widths[0], *hidden, model.widths[-1])
    return mlp(ws, batch_norm=model.batch_norm) if model.kind == "mlp" else deep_linear(ws)


def _label(hidden: tuple[int, ...]) -> str:
    return "-".join(map(str, hidden)) if hidden else "none"


@dataclasses.dataclass(frozen=True)
class SweepResult:
    """Trajectories of every network of a :class:`~fracsgd.train.Grid`, labelled by grid
    coordinates.

    Runs are indexed ``0 … N−1`` in grid order (seeds × hidden × learning rates × optimizers ×
    batch sizes); ``coords`` holds each run's coordinates. Array fields have a leading run axis
    and otherwise mean what they mean in :class:`TrainResult`. Parameters are kept per compiled
    bucket (padded); :meth:`result` returns one run with unpadded parameters.
    """

    grid: Any
    coords: dict[str, np.ndarray]
    record_steps: np.ndarray
    displacement: np.ndarray
    train_loss: np.ndarray
    grad_norm: np.ndarray
    checkpoint_steps: np.ndarray
    train_loss_full: np.ndarray
    train_accuracy: np.ndarray
    test_loss: np.ndarray
    test_accuracy: np.ndarray
    diverged: np.ndarray
    diverged_step: np.ndarray
    buckets: tuple[BucketInfo, ...]
    wall_time: float
    dataset_name: str
    dataset_source: str
    _outputs: tuple[dict[str, Any], ...] = dataclasses.field(repr=False)
    _runs: tuple[tuple, ...] = dataclasses.field(repr=False)
    num_resumed: int = 0

    @property
    def num_runs(self) -> int:
        return int(self.displacement.shape[0])

    @property
    def num_programs(self) -> int:
        """Compiled bucket programs used by the sweep."""
        return len(self.buckets)

    @property
    def config(self) -> Any:
        """The sweep's configuration: its :class:`~fracsgd.train.Grid` (``grid``)."""
        return self.grid

    @property
    def checkpoints(self) -> list[PyTree]:
        """Per run ``i``, its parameter checkpoints at ``checkpoint_steps`` (a pytree with a
        leading ``(K,)`` axis at the run's true widths: ``result(i).checkpoints``). A list:
        runs of different architectures have differently shaped parameters."""
        return [self.result(i).checkpoints for i in range(self.num_runs)]

    @property
    def final_params(self) -> list[PyTree]:
        """Per run ``i``, its parameters at ``T`` (``result(i).final_params``)."""
        return [self.result(i).final_params for i in range(self.num_runs)]

    @property
    def init_params(self) -> list[PyTree]:
        """Per run ``i``, its parameters at ``t = 0`` (``result(i).init_params``)."""
        return [self.result(i).init_params for i in range(self.num_runs)]

    @classmethod
    def assemble(
        cls, grid, runs, infos, outputs, *, wall_time, dataset_name, dataset_source, resumed=0
    ):
        n = len(runs)
        first = outputs[0]
        n_rec = first["displacement"].shape[1]
        k = first["metrics"].shape[1]
        disp = np.full((n, n_rec), np.nan, np.float32)
        loss = np.full((n, n_rec), np.nan, np.float32)
        gnorm = np.full((n, n_rec), np.nan, np.float32)
        metrics = np.full((n, k, 4), np.nan, np.float32)
        dstep = np.full((n,), -1, np.int32)
        bucket = np.zeros((n,), np.int32)
        nparams = np.zeros((n,), np.int64)
        for b, (info, out) in enumerate(zip(infos, outputs, strict=True)):
            idx = np.asarray(info.runs)
            disp[idx], loss[idx], gnorm[idx] = (
                out["displacement"],
                out["train_loss"],
                out["grad_norm"],
            )
            metrics[idx] = out["metrics"]
            dstep[idx] = out["diverged_step"]
            bucket[idx] = b
            for i in idx:
                nparams[i] = _narrow_model(info.static.model, runs[i][1]).num_params()
        coords = {
            "seed": np.asarray([r[0] for r in runs], np.int64),
            "hidden": np.asarray([_label(r[1]) for r in runs]),
            "depth": np.asarray([len(r[1]) for r in runs], np.int64),
            "learning_rate": np.asarray([r[2] for r in runs], np.float64),
            "optimizer": np.asarray([r[3] for r in runs]),
            "batch_size": np.asarray([r[4] for r in runs], np.int64),
            "num_params": nparams,
            "bucket": bucket,
        }
        return cls(
            grid=grid,
            coords=coords,
            record_steps=np.arange(1, n_rec + 1) * grid.record_every,
            displacement=disp,
            train_loss=loss,
            grad_norm=gnorm,
            checkpoint_steps=np.asarray(infos[0].static.checkpoint_steps),
            train_loss_full=metrics[..., 0],
            train_accuracy=metrics[..., 1],
            test_loss=metrics[..., 2],
            test_accuracy=metrics[..., 3],
            diverged=dstep >= 0,
            diverged_step=dstep,
            buckets=tuple(infos),
            wall_time=float(wall_time),
            dataset_name=dataset_name,
            dataset_source=dataset_source,
            _outputs=tuple(outputs),
            _runs=tuple(runs),
            num_resumed=int(resumed),
        )

    def _locate(self, i: int) -> tuple[int, int]:
        if isinstance(i, bool | np.bool_) or not isinstance(i, int | np.integer):
            raise ValueError(f"run index must be an integer, got {i!r}")
        if not 0 <= i < self.num_runs:
            raise ValueError(f"run index must be in [0, {self.num_runs}), got {i}")
        b = int(self.coords["bucket"][i])
        return b, self.buckets[b].runs.index(i)

    def result(self, i: int) -> TrainResult:
        """Run ``i`` as a :class:`TrainResult` with unpadded parameters and its own model."""
        b, j = self._locate(i)
        _, hidden, lr, opt, batch = self._runs[i]
        config = config_from_grid(self.grid, batch, lr, opt)
        return TrainResult.from_bucket(self._outputs[b], j, self.buckets[b].static, config, hidden)

    def select(self, **coords: Any) -> np.ndarray:
        """Indices of the runs whose coordinates equal the given values, e.g.
        ``select(optimizer="adam", hidden="64")``.

        ``hidden`` also takes the widths (``64`` or ``(64, 32)`` for the label ``"64-32"``);
        learning rates match when equal in float32, the precision the networks train in. A value
        of the wrong kind for its coordinate (a number for ``optimizer``) is a ``ValueError``."""
        keep = np.ones(self.num_runs, bool)
        for name, value in coords.items():
            if name not in self.coords:
                raise ValueError(f"unknown coordinate {name!r}; allowed: {sorted(self.coords)}")
            have = self.coords[name]
            if isinstance(value, bool | np.bool_):
                raise ValueError(f"{name} values are not booleans, got {value!r}")
            if isinstance(value, np.ndarray) and value.ndim <= 1:
                value = value.tolist() if value.ndim else value.item()
            if name == "hidden" and isinstance(value, int | np.integer | tuple | list):
                widths = np.atleast_1d(np.asarray(value, dtype=object))
                if any(
                    isinstance(w, bool | np.bool_)
                    or not isinstance(w, int | np.integer | float | np.floating)
                    or w != int(w)
                    for w in widths
                ):
                    raise ValueError(f"hidden widths are integers, got {value!r}")
                value = _label(tuple(int(w) for w in widths))
            if have.dtype.kind in "US":
                if not isinstance(value, str):
                    raise ValueError(f"{name} labels are strings, got {value!r}")
                keep &= have == value
            elif isinstance(value, bool) or not isinstance(value, int | float | np.number):
                raise ValueError(f"{name} values are numbers, got {value!r}")
            elif have.dtype.kind == "f":
                keep &= have.astype(np.float32) == np.float32(value)
            else:
                keep &= have == value
        return np.flatnonzero(keep)

    def summary(self) -> list[dict[str, Any]]:
        """One record per run: coordinates, final displacement and losses, divergence."""
        rows = []
        for i in range(self.num_runs):
            row = {k: v[i].item() for k, v in self.coords.items()}
            row.update(
                final_displacement=float(self.displacement[i, -1]),
                final_train_loss=float(self.train_loss_full[i, -1]),
                final_test_loss=float(self.test_loss[i, -1]),
                final_test_accuracy=float(self.test_accuracy[i, -1]),
                diverged=bool(self.diverged[i]),
                diverged_step=int(self.diverged_step[i]),
            )
            rows.append(row)
        return rows

    def format_table(self) -> str:
        """A plain-text table of :meth:`summary`."""
        cols = [
            "seed",
            "hidden",
            "learning_rate",
            "optimizer",
            "batch_size",
            "num_params",
            "final_displacement",
            "final_train_loss",
            "final_test_accuracy",
            "diverged",
        ]
        rows = self.summary()
        cells = [[_fmt(r[c]) for c in cols] for r in rows]
        width = [max(len(c), *(len(r[j]) for r in cells)) for j, c in enumerate(cols)]
        lines = ["  ".join(c.rjust(w) for c, w in zip(cols, width, strict=True))]
        lines += ["  ".join(v.rjust(w) for v, w in zip(r, width, strict=True)) for r in cells]
        return "\n".join(lines)

    def save(self, path: str | os.PathLike, *, checkpoints: bool = True) -> None:
        """Write the sweep atomically to a netCDF-3 file (open it with
        ``xarray.open_dataset(path)``). The grid labels (``seed``, ``hidden``, ``learning_rate``,
        ``optimizer``, …) are coordinates along ``run``: ``ds.set_xindex("optimizer").sel(
        optimizer="sgd")`` selects by label. For pandas, pick the variables of one shape:
        ``ds[["displacement", "train_loss"]].to_dataframe()`` (one row per run and record, the
        labels as columns); ``ds.to_dataframe()`` of the whole file would form every
        run × record × checkpoint × param combination.

        Dimensions ``run``, ``record``, ``checkpoint`` and, with ``checkpoints=True``, ``param``:
        each run's parameters flattened with ``jax.flatten_util.ravel_pytree`` at its true widths,
        NaN-padded to the longest run, with ``trainable`` (run × param, 1 for a trainable entry,
        0 for BatchNorm running statistics and padding: ``R(t)`` is over the 1 entries). The
        file is written to a temporary name in the same directory and moved into place, so an
        interrupted save never leaves a partial file.
        """
        from scipy.io import netcdf_file

        path = os.fspath(path)
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".nc", dir=directory)
        os.close(fd)
        try:
            os.chmod(tmp, default_file_mode())
            f = netcdf_file(tmp, "w", version=2)
            try:
                self._write_netcdf(f, checkpoints)
            finally:
                f.close()
            with open(tmp, "rb+") as done:  # on disk before the rename, as atomic_write_bytes
                os.fsync(done.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def _write_netcdf(self, f, checkpoints: bool) -> None:
        import fracsgd

        n, r = self.displacement.shape
        k = len(self.checkpoint_steps)
        f.createDimension("run", n)
        f.createDimension("record", r)
        f.createDimension("checkpoint", k)

        # CF "coordinates": the per-run grid labels become coordinates of every per-run
        # variable in xarray (ds.displacement.seed, ds.set_xindex("optimizer").sel(...))
        labels = " ".join(self.coords)

        def var(name, data, dims, dtype, **attrs):
            v = f.createVariable(name, dtype, dims)
            v[:] = data
            per_run = ("run" in dims and len(dims) > 1) or name in ("diverged", "diverged_step")
            if per_run and name not in self.coords:  # the labels themselves are coordinates
                v.coordinates = labels
            for a, val in attrs.items():
                setattr(v, a, val)

        def text(name, values, dim, **attrs):
            strs = [str(s).encode() for s in values]
            m = max(1, *(len(s) for s in strs))
            f.createDimension(f"{name}_strlen", m)
            arr = np.zeros((len(strs), m), "S1")
            for i, s in enumerate(strs):
                arr[i, : len(s)] = np.frombuffer(s, "S1")
            var(name, arr, (dim, f"{name}_strlen"), "c", _Encoding="utf-8", **attrs)

        var("run", np.arange(n, dtype=np.int32), ("run",), "i")
        var(
            "record",
            self.record_steps.astype(np.int32),
            ("record",),
            "i",
            long_name="SGD step of the record",
        )
        var(
            "checkpoint",
            self.checkpoint_steps.astype(np.int32),
            ("checkpoint",),
            "i",
            long_name="SGD step of the checkpoint (log-spaced)",
        )
        for name, values in self.coords.items():
            if values.dtype.kind in "US":
                text(name, values, "run")
            elif values.dtype.kind == "f":
                var(name, values, ("run",), "d")
            else:
                var(name, values.astype(np.int32), ("run",), "i")
        var(
            "displacement",
            self.displacement,
            ("run", "record"),
            "f",
            long_name="R(t) = ||w_t - w_0||_2 over active trainable parameters",
        )
        var(
            "train_loss",
            self.train_loss,
            ("run", "record"),
            "f",
            long_name="minibatch loss averaged over the recording interval",
        )
        var(
            "grad_norm",
            self.grad_norm,
            ("run", "record"),
            "f",
            long_name="minibatch gradient norm at the recorded step",
        )
        for name in METRIC_NAMES:
            var(name, getattr(self, name), ("run", "checkpoint"), "f")
        var("diverged", self.diverged.astype(np.int8), ("run",), "b")
        f.variables["diverged"].dtype = "bool"  # xarray decodes it to booleans
        var("diverged_step", self.diverged_step, ("run",), "i")
        if checkpoints:
            flats = []
            inits = []
            trainable = []
            for i in range(n):
                res = self.result(i)
                flats.append(
                    np.stack([ravel_pytree(_slice(res.checkpoints, j))[0] for j in range(k)])
                )
                inits.append(np.asarray(ravel_pytree(res.init_params)[0]))
                trainable.append(np.asarray(ravel_pytree(res.model.param_mask())[0]))
            p = max(a.shape[1] for a in flats)
            f.createDimension("param", p)
            ck = np.full((n, k, p), np.nan, np.float32)
            ini = np.full((n, p), np.nan, np.float32)
            tmask = np.zeros((n, p), np.int8)
            for i, (a, b, m) in enumerate(zip(flats, inits, trainable, strict=True)):
                ck[i, :, : a.shape[1]] = a
                ini[i, : b.shape[0]] = b
                tmask[i, : m.shape[0]] = m
            # BatchNorm running statistics are in the pytree but not trainable: R(t) and
            # num_params use only the entries marked 1 here
            var(
                "trainable",
                tmask,
                ("run", "param"),
                "b",
                long_name="1 for a trainable parameter (R(t) is over these), 0 for BatchNorm "
                "running statistics and padding",
            )
            var(
                "checkpoint_params",
                ck,
                ("run", "checkpoint", "param"),
                "f",
                long_name="parameters flattened by jax.flatten_util.ravel_pytree, NaN-padded",
            )
            var("init_params", ini, ("run", "param"), "f")
        f.title = "fracsgd training sweep"
        f.fracsgd_version = fracsgd.__version__
        f.jax_version = jax.__version__
        # netCDF-3 text attributes are bytes; scipy encodes str as ASCII, so non-ASCII names
        # and paths (a data directory "données/") go in as UTF-8 bytes
        f.dataset = _nc_text(self.dataset_name)
        f.dataset_source = _nc_text(self.dataset_source)
        f.grid = _nc_text(repr(self.grid))
        f.num_programs = len(self.buckets)
        f.wall_time_seconds = np.float64(self.wall_time)  # a Python float is written float32
        f.created = datetime.datetime.now(datetime.timezone.utc).isoformat()


def load_params(path: str | os.PathLike, run: int, model: Model) -> tuple[PyTree, PyTree]:
    """One network's parameters from a file :meth:`SweepResult.save` wrote, as pytrees.

    The file stores each run's parameters flattened with ``jax.flatten_util.ravel_pytree`` at
    the run's true widths and NaN-padded to the longest run; this reads row ``run`` back into
    ``model``'s structure. ``model`` is the run's own (narrow) network, e.g.
    ``fs.models.mlp((784, *hidden, 10), batch_norm=...)`` for a run whose ``hidden``
    coordinate is ``"16-32"``; :func:`fracsgd.models.pad_params` then pads it to a wider
    network for a batched LLC call (:func:`fracsgd.llc.estimate_many`). Values are the file's
    float32.

    Args:
        path: a netCDF file written by :meth:`SweepResult.save` (with ``checkpoints=True``).
        run: the run index, in ``[0, number of runs)`` (the file's ``run`` dimension).
        model: the run's network (a :class:`fracsgd.models.Model` of its true widths).

    Returns:
        ``(checkpoints, init_params)``: the parameters at the file's checkpoint steps (every
        leaf with a leading axis of the checkpoints) and at initialisation.

    Raises:
        ValueError: a run index out of range, a file without parameters, or a ``model``
            whose parameter count is not the run's (the message says the run's count and its
            ``hidden`` label).

    Examples:
        >>> import os, tempfile, jax, numpy as np
        >>> import fracsgd as fs
        >>> data = fs.data.load("moons", n=64)
        >>> grid = fs.train.Grid(hidden=(3, 5), seeds=(0,), learning_rates=(0.1,),
        ...                      optimizers=("sgd",), batch_sizes=(16,), steps=20,
        ...                      num_checkpoints=3)
        >>> sw = fs.train.sweep(jax.random.key(0), data, grid, progress=False)
        >>> path = os.path.join(tempfile.mkdtemp(), "sweep.nc")
        >>> sw.save(path)
        >>> ck, init = fs.train.load_params(path, 1, fs.models.mlp((2, 5, 2)))
        >>> ck["layers"][0]["w"].shape
        (3, 2, 5)
        >>> bool(np.array_equal(ck["layers"][0]["w"], sw.checkpoints[1]["layers"][0]["w"]))
        True
    """
    from scipy.io import netcdf_file

    if not isinstance(model, Model):
        raise ValueError(f"model must be a fracsgd.models.Model, got {type(model).__name__}")
    with netcdf_file(os.fspath(path), "r", mmap=False) as f:
        n = f.dimensions["run"]
        if isinstance(run, bool) or not isinstance(run, int | np.integer) or not 0 <= run < n:
            raise ValueError(f"run must be an integer in [0, {n}), got {run!r}")
        if "checkpoint_params" not in f.variables:
            raise ValueError(
                f"{os.fspath(path)!r} holds no parameters (saved with checkpoints=False)"
            )
        ck = np.array(f.variables["checkpoint_params"][run], np.float32)
        init = np.array(f.variables["init_params"][run], np.float32)
        hidden = (
            f.variables["hidden"][run].tobytes().rstrip(b"\0").decode()
            if "hidden" in f.variables
            else "?"
        )
    stored = int(np.sum(~np.isnan(init)))
    template = model.init(jax.random.key(0))
    flat, unravel = ravel_pytree(template)
    if flat.size != stored:
        raise ValueError(
            f"model has {flat.size} parameters but run {run} (hidden {hidden}) stores {stored}: "
            "pass that run's own network (its true widths, and batch_norm as in the grid)"
        )
    # one row per checkpoint; NumPy arrays in the model's dtypes
    rows = jax.vmap(unravel)(jnp.asarray(ck[:, :stored]))
    checkpoints = jax.tree.map(lambda a, t: np.asarray(a, t.dtype), rows, template)
    init_tree = jax.tree.map(
        lambda a, t: np.asarray(a, t.dtype), unravel(jnp.asarray(init[:stored])), template
    )
    return checkpoints, init_tree


def _nc_text(text: str) -> str | bytes:
    """A netCDF text attribute: ``text`` itself when ASCII, else its UTF-8 bytes."""
    return text if text.isascii() else text.encode("utf-8")


_CHUNK_FILE = re.compile(r"^sweep-b(\d{3,})-[0-9a-f]{16}\.npz$")
_SERIES = ("displacement", "train_loss", "grad_norm", "metrics", "diverged_step")


def chunk_path(directory: str | os.PathLike, bucket: int, runs: Sequence[int]) -> str:
    """File of the chunk of bucket ``bucket`` that trained ``runs``."""
    from fracsgd._io import fingerprint

    name = f"sweep-b{bucket:03d}-{fingerprint(list(map(int, runs)))[:16]}.npz"
    return os.path.join(os.fspath(directory), name)


def save_chunk(path: str, out: dict[str, Any], runs: Sequence[int], fp: str, describe: str):
    """Save one finished chunk (host arrays with a leading network axis) atomically."""
    arrays: dict[str, Any] = {"runs": np.asarray(runs, np.int64)}
    arrays.update({k: out[k] for k in _SERIES})
    for j, leaf in enumerate(jax.tree.leaves(out["checkpoints"])):
        arrays[f"checkpoints/{j}"] = leaf
    for j, leaf in enumerate(jax.tree.leaves(out["init_params"])):
        arrays[f"init_params/{j}"] = leaf
    save_arrays(path, arrays, {"fingerprint": fp, "describe": describe})


def load_chunks(
    directory: str | os.PathLike, fp: str, buckets: Sequence[tuple[Any, Sequence[int]]]
) -> dict[int, list[tuple[list[int], dict[str, Any]]]]:
    """Every chunk file in ``directory``, checked against the sweep fingerprint ``fp`` and the
    bucket plan ``[(static, runs), …]``: ``{bucket: [(runs, outputs), …]}``.

    Raises:
        CheckpointError: a file is unreadable, has another fingerprint, or does not match the
            bucket it names (runs, shapes).
    """
    found: dict[int, list[tuple[list[int], dict[str, Any]]]] = {}
    if not os.path.isdir(directory):
        return found
    for name in sorted(os.listdir(directory)):
        m = _CHUNK_FILE.match(name)
        if not m:
            continue
        path = os.path.join(os.fspath(directory), name)
        arrays, _ = load_arrays(path, fp)
        b = int(m.group(1))
        try:
            static, bucket_runs = buckets[b]
            runs = [int(r) for r in arrays.pop("runs")]
            r = len(runs)
            if not runs or not set(runs) <= set(bucket_runs) or len(set(runs)) != r:
                raise ValueError(f"runs {runs} are not runs of bucket {b}")
            ref = jax.eval_shape(static.model.init, jax.random.key(0))
            treedef = jax.tree.structure(ref)
            k = len(static.checkpoint_steps)
            out = {key: arrays[key] for key in _SERIES}
            for key, lead in (("checkpoints", (r, k)), ("init_params", (r,))):
                leaves = []
                for j, leaf in enumerate(jax.tree.leaves(ref)):
                    a = arrays[f"{key}/{j}"]
                    if a.shape != (*lead, *leaf.shape) or a.dtype != leaf.dtype:
                        raise ValueError(f"{key} leaf {j} has shape {a.shape}")
                    leaves.append(a)
                out[key] = jax.tree.unflatten(treedef, leaves)
            n_rec = static.steps // static.record_every
            expect = {
                "displacement": (r, n_rec),
                "train_loss": (r, n_rec),
                "grad_norm": (r, n_rec),
                "metrics": (r, k, 4),
                "diverged_step": (r,),
            }
            for key, shape in expect.items():
                if out[key].shape != shape:
                    raise ValueError(f"{key} has shape {out[key].shape}, expected {shape}")
        except (IndexError, KeyError, ValueError) as err:
            raise CheckpointError(
                f"{path} does not match this sweep's bucket plan ({err}); delete it to recompute"
            ) from err
        found.setdefault(b, []).append((runs, out))
    return found


def merge_chunks(
    parts: Sequence[tuple[Sequence[int], dict[str, Any]]], runs: Sequence[int]
) -> dict[str, Any]:
    """One bucket's outputs for ``runs`` (in that order) from chunks ``[(runs, outputs), …]``
    (a run present in several chunks is taken from the first)."""
    if len(parts) == 1 and [int(r) for r in parts[0][0]] == [int(r) for r in runs]:
        return parts[0][1]
    where: dict[int, tuple[int, int]] = {}
    for p, (rs, _) in enumerate(parts):
        for j, r in enumerate(rs):
            where.setdefault(int(r), (p, j))
    pick = [where[int(r)] for r in runs]
    return jax.tree.map(
        lambda *leaves: np.stack([leaves[p][j] for p, j in pick]),
        *[out for _, out in parts],
    )


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
