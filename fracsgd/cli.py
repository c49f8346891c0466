"""The ``fracsgd`` command line.

``fracsgd sweep`` trains a grid of MLPs on MNIST (the embedded subset unless ``--data-dir`` or
``$FRACSGD_DATA`` points to the full IDX files), prints a table, and writes ``DIR/sweep.nc``,
``DIR/summary.json`` and ``DIR/figures/displacement.png``. Argument errors print one line and
exit with code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fracsgd._io import atomic_write_bytes
from fracsgd.experiments._store import StageError
from fracsgd.experiments._validate import MAX_BYTES, MAX_COUNT, MAX_STEPS, Size, check_sizes
from fracsgd.train._config import OPTIMIZERS


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one clear line, exit code 2
        self.exit(2, f"{self.prog}: error: {message}\n")


_MAX_WIDTH = 1 << 20


def _seed(text: str) -> int:
    try:
        v = int(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from err
    if not 0 <= v < 2**32:  # jax.random.key(seed) keeps 32 bits: 2**32 would repeat seed 0
        raise argparse.ArgumentTypeError(f"the seed must be in [0, 2**32), got {text}")
    return v


def _int_in(lo: int, hi: int, why: str = ""):
    """An argparse type: an integer in ``[lo, hi]`` (``why``: the reason for the range)."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from err
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"must be an integer in [{lo}, {hi}]{why}, got {text}")
        return v

    return parse


def _learning_rate(text: str) -> float:
    import numpy as np

    try:
        v = float(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from err
    with np.errstate(over="ignore", under="ignore"):
        v32 = float(np.float32(v))
    if not (v > 0 and 0 < v32 < float("inf")):
        raise argparse.ArgumentTypeError(
            f"must be numbers > 0 that float32 (the training precision) holds, got {text}"
        )
    return v


def _data_dir(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("must be a non-empty path (leave it out for the default)")
    path = os.path.expanduser(text)
    if not os.path.isdir(path):
        what = "is not a directory" if os.path.exists(path) else "does not exist"
        raise argparse.ArgumentTypeError(f"the MNIST directory {text!r} {what}")
    return text


def _distinct(option: str, values: Sequence[Any], key=None, *, why: str = "") -> None:
    """``ValueError`` naming ``option`` when two of ``values`` are equal (by ``key``)."""
    keys = [v if key is None else key(v) for v in values]
    if len(set(keys)) != len(keys):
        shown = " ".join("-".join(map(str, v)) if isinstance(v, tuple) else str(v) for v in values)
        raise ValueError(f"{option} contains duplicates{why}: {shown}")


def _check_out(out: str) -> None:
    """Refuse an ``--out`` that cannot become a directory (a file, or below one) before any
    work, without creating anything yet."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out must be a directory, but {out!r} is a file")
    parent = os.path.dirname(os.path.abspath(out))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ValueError(f"--out {out!r} cannot be created: {parent!r} is a file")


def _prepare_out(out: str) -> None:
    """Create the output directory before any work, or refuse it by name."""
    from fracsgd._io import prepare_directory

    prepare_directory(out, "--out")


def _devices(text: str) -> str:
    if text != "all" and not (text.isdigit() and int(text) >= 1):
        raise argparse.ArgumentTypeError(
            f"--devices takes a positive integer or 'all', got {text!r}"
        )
    return text


def _cpu_devices(spec: str) -> None:
    """Give JAX one CPU device per requested device, at most one per core, before its backend
    starts: on a CPU-only machine ``--devices N`` (``all``: every core) then shards over the
    cores. Nothing changes when JAX already runs (``main`` called in-process), when the user
    set the CPU device count (``XLA_FLAGS`` or ``JAX_NUM_CPU_DEVICES``), or for a request of
    one device or of more devices than cores. Accelerator backends are unaffected (their
    devices are what ``jax.devices()`` lists)."""
    cores = os.cpu_count() or 1
    n = cores if spec == "all" else int(spec)
    if n <= 1 or n > cores:
        return
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return
    import jax

    if getattr(jax.config, "jax_num_cpu_devices", -1) not in (-1, None):  # set by the user
        return
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except (RuntimeError, AttributeError):  # JAX already runs, or has no such option
        pass


def _mesh(spec: str):
    """``None`` for one device, else a batch mesh over the first N (or all) devices."""
    import jax

    import fracsgd as fs

    devices = jax.devices()
    n = len(devices) if spec == "all" else int(spec)
    if n > len(devices):
        cores = os.cpu_count() or 1
        hint = (
            f" (on the CPU the command line makes one device per core, up to {cores} here, "
            "unless JAX already runs or XLA_FLAGS / JAX_NUM_CPU_DEVICES set the count)"
            if jax.default_backend() == "cpu" and cores > len(devices)
            else ""
        )
        raise ValueError(
            f"--devices {spec}: {len(devices)} device(s) visible{hint}; "
            "--devices all takes every one"
        )
    return None if n == 1 else fs.parallel.batch_mesh(devices[:n])


def _widths(text: str) -> tuple[int, ...]:
    try:
        ws = tuple(int(w) for w in text.split("-"))
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"hidden widths look like 64 or 64-32, got {text!r}"
        ) from err
    if any(w <= 0 or w > _MAX_WIDTH for w in ws):
        raise argparse.ArgumentTypeError(
            f"hidden widths must be integers in [1, {_MAX_WIDTH}], got {text!r}"
        )
    return ws


def _add_devices(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--devices",
        type=_devices,
        default="1",
        metavar="{N,all}",
        help="shard the networks (reproduce: and the LLC chains) over the first N devices JAX "
        "sees, or all of them (default 1; results agree with one device to float32 rounding); "
        "on a CPU-only machine, one device per core (at most the number of cores)",
    )


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="fracsgd", description="Fractal dynamics of SGD (JAX).")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    s = sub.add_parser(
        "sweep",
        help="train a grid of MLPs on MNIST and record their weight trajectories",
        description="Train seeds × widths × learning rates × optimizers × batch sizes of ReLU "
        "MLPs on MNIST in one vectorised sweep; write DIR/sweep.nc (xarray), "
        "DIR/summary.json and DIR/figures/displacement.png.",
    )
    s.add_argument(
        "--hidden",
        type=_widths,
        nargs="+",
        default=None,
        help="hidden widths per architecture, e.g. 16 32 64-64 (default 16 32 64 128)",
    )
    s.add_argument(
        "--seeds",
        type=_int_in(1, MAX_COUNT),
        default=None,
        metavar="N",
        help="number of seeds (default 2)",
    )
    s.add_argument(
        "--learning-rates",
        type=_learning_rate,
        nargs="+",
        default=None,
        help="learning rates (default 0.05)",
    )
    s.add_argument(
        "--optimizers",
        nargs="+",
        choices=OPTIMIZERS,
        default=None,
        help="sgd, momentum and/or adam (default sgd)",
    )
    s.add_argument(
        "--batch-sizes",
        type=_int_in(1, MAX_STEPS),
        nargs="+",
        default=None,
        help="default 128",
    )
    s.add_argument(
        "--steps",
        # R(t) is recorded at every step; the figure's fit needs three points
        type=_int_in(3, MAX_STEPS, " (R(t) needs 3 recorded steps for a fit; int32 counters)"),
        default=None,
        metavar="T",
        help="SGD steps, at least 3 (default 2000)",
    )
    s.add_argument("--batch-norm", action="store_true", help="BatchNorm after hidden layers")
    s.add_argument(
        "--quick",
        action="store_true",
        help="a small sweep for a first look (2 widths, 1 seed, 300 steps)",
    )
    s.add_argument(
        "--out",
        default="fracsgd-sweep",
        metavar="DIR",
        help="output directory (default fracsgd-sweep)",
    )
    s.add_argument(
        "--data-dir",
        metavar="DIR",
        type=_data_dir,
        default=None,
        help="directory with the four MNIST IDX files (default: $FRACSGD_DATA, else "
        "the embedded 5 000-image subset)",
    )
    s.add_argument("--seed", type=_seed, default=0, metavar="N", help="master seed (default 0)")
    _add_devices(s)
    s.add_argument(
        "--memory-limit",
        type=_int_in(1, MAX_BYTES),
        default=None,
        metavar="BYTES",
        help="device memory one bucket may use; larger buckets run in chunks",
    )
    s.add_argument("--no-progress", action="store_true", help="no progress bar")

    r = sub.add_parser(
        "reproduce",
        help="reproduce the paper's experiments: figures, report.md and results.json",
        description="Train, estimate the LLC along the trajectories, fit the exponents, check "
        "the lemmas; write DIR/report.md, DIR/figures/*.png, DIR/results.json and "
        "DIR/timings.json (DIR: --out, default fracsgd-reproduce). Stages are saved in "
        "DIR/stages as they finish; re-running the same command resumes, and settings read only "
        "by the analysis (mnist.xi, mnist.late_fraction, moons.xis, moons.num_clusters, "
        "moons.probe_points) re-analyse the stored stages. report.md and results.json describe "
        "the studies of the last command: run 'all' to have both in them.",
    )
    r.add_argument("study", choices=("mnist", "moons", "all"), help="which experiment(s)")
    r.add_argument(
        "--quick",
        action="store_true",
        help="the small setting: minutes on a 2-core CPU (default: sized for an accelerator)",
    )
    r.add_argument(
        "--out",
        default="fracsgd-reproduce",
        metavar="DIR",
        help="output directory (default fracsgd-reproduce)",
    )
    r.add_argument(
        "--data-dir",
        metavar="DIR",
        type=_data_dir,
        default=None,
        help="directory with the four MNIST IDX files (default: $FRACSGD_DATA, else the "
        "embedded 5 000-image subset)",
    )
    r.add_argument("--seed", type=_seed, default=0, metavar="N", help="master seed (default 0)")
    r.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="STUDY.FIELD=VALUE",
        help="override one setting, e.g. --set mnist.steps=5000 --set 'mnist.hidden=((64,),)' "
        "(fields: fracsgd.experiments.mnist.MnistConfig / moons.MoonsConfig)",
    )
    r.add_argument(
        "--overwrite",
        action="store_true",
        help="recompute stages stored in DIR for another configuration instead of stopping",
    )
    _add_devices(r)
    r.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _apply_overrides(configs: dict, overrides: Sequence[str]) -> dict:
    import ast

    out = dict(configs)
    for item in overrides:
        target, sep, text = item.partition("=")
        study, dot, field = target.strip().partition(".")
        if not sep or not dot:
            raise ValueError(f"--set expects STUDY.FIELD=VALUE, got {item!r}")
        if study not in out:
            raise ValueError(f"--set: study must be one of {sorted(out)} here, got {study!r}")
        cfg = out[study]
        if field not in cfg._fields:
            raise ValueError(f"--set: {study} has no setting {field!r}; settings: {cfg._fields}")
        try:
            value = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError) as err:
            raise ValueError(f"--set {target}: cannot read the value {text!r}") from err
        out[study] = cfg._replace(**{field: value})
    return out


@contextlib.contextmanager
def _settings_errors():
    """A configuration's ``ValueError`` (its message starts with the ``--set`` key,
    ``STUDY.FIELD``) as one naming the ``--set`` option."""
    try:
        yield
    except ValueError as err:
        raise ValueError(f"--set {err}") from err


def _memory(mesh) -> dict[str, int | None]:
    """The memory :func:`check_sizes` compares with: the host's available memory and one
    device's (``None`` where unknown)."""
    from fracsgd.parallel import _host_available_bytes, device_memory

    return {"host": _host_available_bytes(), "device": device_memory(mesh)}


def _reproduce(args: argparse.Namespace) -> int:
    import shlex

    import jax

    import fracsgd as fs
    from fracsgd.experiments import mnist, moons, report

    studies = ("mnist", "moons") if args.study == "all" else (args.study,)
    if args.data_dir is not None and "mnist" not in studies:
        raise ValueError(f"--data-dir: only the mnist study reads MNIST, not {args.study!r}")
    configs: dict[str, Any] = {}
    if "mnist" in studies:
        configs["mnist"] = mnist.MnistConfig.quick() if args.quick else mnist.MnistConfig.full()
    if "moons" in studies:
        configs["moons"] = moons.MoonsConfig.quick() if args.quick else moons.MoonsConfig.full()
    configs = _apply_overrides(configs, args.overrides)
    modules = {"mnist": mnist, "moons": moons}
    with _settings_errors():
        checked = {study: modules[study].validate(cfg) for study, cfg in configs.items()}
    _check_out(args.out)
    progress = not args.no_progress
    mesh = _mesh(args.devices)
    with _settings_errors():  # what the stages would hold, before any of them runs
        for study, cfg in checked.items():
            check_sizes(modules[study].sizes(cfg), **_memory(mesh))
    dataset = fs.data.load("mnist", data_dir=args.data_dir) if "mnist" in configs else None
    if dataset is not None:
        with _settings_errors():
            mnist.check_dataset(configs["mnist"], dataset)  # before --out is created
    if not args.quick:
        backend = jax.default_backend()
        secs = 0.0
        if dataset is not None:
            secs += mnist.expected_seconds(configs["mnist"], dataset, backend)
        if "moons" in configs:
            secs += moons.expected_seconds(configs["moons"], backend)
        print(
            f"fracsgd reproduce: the full setting is sized for an accelerator; expect about "
            f"{f'{secs / 60:.0f} min' if secs >= 90 else f'{secs:.0f} s'} on this {backend} "
            "(a rough FLOP-count estimate; --quick is "
            "the 2-core-CPU setting)",
            file=sys.stderr,
        )
    _prepare_out(args.out)
    done: dict[str, Any] = {}
    if "mnist" in configs:
        assert dataset is not None
        done["mnist"] = mnist.run(
            args.seed,
            dataset,
            configs["mnist"],
            args.out,
            progress=progress,
            overwrite=args.overwrite,
            mesh=mesh,
        )
    if "moons" in configs:
        done["moons"] = moons.run(
            args.seed,
            configs["moons"],
            args.out,
            progress=progress,
            overwrite=args.overwrite,
            mesh=mesh,
        )
    command = "fracsgd " + " ".join(shlex.quote(a) for a in args.argv)
    report.write(args.out, command=command, seed=args.seed, **done)
    print(f"wrote {args.out}/report.md, {args.out}/results.json and {args.out}/figures/")
    return 0


def _plot_displacement(result, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    labels = result.coords["hidden"]
    cmap = plt.get_cmap("viridis")
    uniq = list(dict.fromkeys(labels))
    from fracsgd.diffusion import fit_exponent

    slopes: dict[str, list[float]] = {}  # the late (post-crossover) slope H of each run
    for i in range(result.num_runs):
        r = result.displacement[i]
        if np.all(np.isfinite(r)) and np.all(r > 0):
            slopes.setdefault(str(labels[i]), []).append(fit_exponent(result.record_steps, r).H)
    for i in range(result.num_runs):
        color = cmap(uniq.index(labels[i]) / max(len(uniq) - 1, 1))
        r = result.displacement[i]
        ok = np.isfinite(r) & (r > 0)
        hs = slopes.get(str(labels[i]))
        label = None
        if labels[i] not in labels[:i]:
            label = f"hidden {labels[i]}" + (f" (late H = {np.mean(hs):.2f})" if hs else "")
        ax.loglog(result.record_steps[ok], r[ok], color=color, alpha=0.7, lw=1, label=label)
    t = result.record_steps.astype(float)
    finals = result.displacement[:, -1]
    finals = finals[np.isfinite(finals) & (finals > 0)]
    if finals.size:  # no reference where every network diverged (main says so)
        ref = np.median(finals) * np.sqrt(t / t[-1])
        ax.loglog(t, ref, "k--", lw=1, label=r"Brownian $t^{1/2}$")
    ax.set_xlabel("SGD step t")
    ax.set_ylabel(r"displacement $R(t)=\|w_t-w_0\|_2$")
    ax.set_title(f"Weight displacement ({result.dataset_name}); H: late log–log slope")
    ax.legend(fontsize=8)
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())  # no half-written figure on Ctrl-C


#: the sweep's Grid fields and the options that set them, for the messages of the grid checks
_SWEEP_OPTIONS = {
    "hidden": "--hidden",
    "seeds": "--seeds",
    "learning_rates": "--learning-rates",
    "learning_rate": "--learning-rates",
    "optimizers": "--optimizers",
    "optimizer": "--optimizers",
    "batch_sizes": "--batch-sizes",
    "batch_size": "--batch-sizes",
    "steps": "--steps",
    "memory_limit": "--memory-limit",
}


def _as_options(message: str) -> str:
    """``message`` (about a sweep grid built from the options: numbers, widths and optimizer
    names, no free text) with each Grid field written as its option."""
    import re

    fields = "|".join(sorted(_SWEEP_OPTIONS, key=len, reverse=True))
    return re.sub(rf"(?<![\w-])({fields})(?![\w-])", lambda m: _SWEEP_OPTIONS[m[1]], message)


def _sweep_grid(args: argparse.Namespace):
    """The grid of the sweep options (each checked by its parser), or ``ValueError`` naming the
    option for what needs them together: duplicates, BatchNorm's batches."""
    import numpy as np

    import fracsgd as fs

    quick = args.quick
    grid = fs.train.Grid(
        hidden=tuple(args.hidden or ([(16,), (64,)] if quick else [(16,), (32,), (64,), (128,)])),
        seeds=tuple(range(args.seeds if args.seeds is not None else (1 if quick else 2))),
        learning_rates=tuple(args.learning_rates or (0.05,)),
        optimizers=tuple(args.optimizers or ("sgd",)),
        batch_sizes=tuple(args.batch_sizes or (128,)),
        steps=args.steps if args.steps is not None else (300 if quick else 2000),
        batch_norm=args.batch_norm,
        num_checkpoints=8 if quick else 16,
        memory_limit=args.memory_limit,
    )
    _distinct("--hidden", grid.hidden)
    # the networks train in float32: two learning rates equal there are the same networks
    _distinct("--learning-rates", grid.learning_rates, np.float32, why=" in float32")
    _distinct("--optimizers", grid.optimizers)
    _distinct("--batch-sizes", grid.batch_sizes)
    if args.batch_norm and min(grid.batch_sizes) < 2:
        raise ValueError("--batch-sizes must be at least 2 with --batch-norm")
    return grid


def _sweep(args: argparse.Namespace) -> int:
    import jax
    import numpy as np

    import fracsgd as fs
    from fracsgd.train._api import default_padding_overhead

    grid = _sweep_grid(args)
    _check_out(args.out)
    mesh = _mesh(args.devices)
    networks = len(grid.hidden) * len(grid.seeds) * len(grid.learning_rates)
    networks *= len(grid.optimizers) * len(grid.batch_sizes)
    records = Size(  # R(t) at every step: displacement, loss and gradient norm in float32
        "the networks' R(t) records", 12 * grid.steps * networks, "host", ("--steps", "--seeds")
    )
    check_sizes([records], **_memory(mesh))
    dataset = fs.data.load("mnist", data_dir=args.data_dir)
    if max(grid.batch_sizes) > dataset.num_train:
        raise ValueError(
            f"--batch-sizes must be at most the {dataset.num_train} training images, "
            f"got {max(grid.batch_sizes)}"
        )
    try:  # the grid as the sweep checks it, and its memory plan, before --out is created
        fs.train.plan_sweep(dataset, grid, mesh=mesh)
    except ValueError as err:
        raise ValueError(_as_options(str(err))) from err
    _prepare_out(args.out)
    result = fs.train.sweep(
        jax.random.key(args.seed),
        dataset,
        grid,
        progress=not args.no_progress,
        mesh=mesh,
    )
    os.makedirs(os.path.join(args.out, "figures"), exist_ok=True)
    result.save(os.path.join(args.out, "sweep.nc"))
    summary = {
        "dataset": dataset.name,
        "dataset_source": dataset.source,
        "num_programs": result.num_programs,
        "wall_time_seconds": result.wall_time,
        "grid": {k: (list(v) if isinstance(v, tuple) else v) for k, v in grid._asdict().items()},
        # the grid's None means the backend's default, which is what bucketing applied
        "max_padding_overhead_applied": float(
            grid.max_padding_overhead or default_padding_overhead()
        ),
        "devices": 1 if mesh is None else int(mesh.size),
        "runs": result.summary(),
    }
    from fracsgd.experiments.report import write_json

    write_json(Path(args.out, "summary.json"), summary)  # NaN/inf as null: strict JSON
    fig_path = os.path.join(args.out, "figures", "displacement.png")
    _plot_displacement(result, fig_path)
    print(result.format_table())
    print(
        f"\n{result.num_runs} networks in {result.num_programs} compiled program(s), "
        f"{result.wall_time:.1f}s; wrote {args.out}/sweep.nc, summary.json, "
        "figures/displacement.png"
    )
    diverged = int(np.count_nonzero(result.diverged))
    if diverged:  # in words: their NaN R(t) is left out of the figure and its reference
        print(
            f"{diverged} of {result.num_runs} network(s) diverged (a NaN or inf in the loss): "
            "their R(t) is NaN from then on and the figure leaves them out"
            + ("; try smaller --learning-rates" if diverged == result.num_runs else "")
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fracsgd`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    # the command as given (main(argv) in a notebook or test is not sys.argv), for the report
    args.argv = list(sys.argv[1:] if argv is None else argv)
    _cpu_devices(args.devices)
    try:
        if args.command == "sweep":
            return _sweep(args)
        if args.command == "reproduce":
            return _reproduce(args)
    except (ValueError, FileNotFoundError, StageError) as err:
        print(f"fracsgd: error: {err}".splitlines()[0], file=sys.stderr)
        return 2
    except OSError as err:  # a file where a directory must be, no space, no permission, …
        where = err.filename if err.filename is not None else "the output"
        print(f"fracsgd: error: cannot write {where}: {err.strerror or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fracsgd: interrupted; no partial files were written", file=sys.stderr)
        if argv is None:  # the console script: leave now, not through interpreter teardown,
            # which can crash while XLA's threads are still inside an interrupted computation
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(130)
        return 130
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
