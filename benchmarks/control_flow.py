"""Benchmark: the SGLD program's per-step control flow, conditional or straight-line.

On a GPU, XLA's runtime executes each conditional and each iteration of a data-dependent
``while`` loop by copying its predicate to the host and waiting for the device; on the CPU and
TPU the predicate costs nothing of the kind. Two parts of an LLC step are such control flow: the
drift's norm (``grad_noise_ratio``, under ``lax.cond`` at the measured draws only) and the epoch
batches' cycle walk (a ``while`` loop of Feistel steps until every position lies in ``[0, n)``).
On the platforms of ``fracsgd._xla.STRAIGHT_LINE_PLATFORMS`` (``("cuda",)`` as shipped, chosen
by this script's H200 run: ``results/control_flow_gpu.json``) fracsgd replaces both,
through ``jax.lax.platform_dependent``, with straight-line code:

- ``conditional``: the conditional and the loop (the default on the CPU and TPU);
- ``straight_line``: the norms computed at every step and kept at the measured draws, and the
  walk's first ``WALK_UNROLL`` steps unconditional before its loop.

Both give the same numbers up to rounding (the loss traces bitwise on the CPU: checked here and
in ``tests/``; MALA's acceptance with pSGLD differed by 1.4·10⁻⁸). This script
runs ``shipped`` (the platform's configured choice, one of the two), ``conditional`` and
``straight_line`` on whatever backend JAX has, one call of each per round, and reports each
mode's time against the shipped one in the same round: on a GPU it decides whether ``"cuda"``
belongs in ``STRAIGHT_LINE_PLATFORMS``.

Workload: ReLU MLPs ``784-W-10`` (W = 32, 128, 512) at their initialisation on the embedded
MNIST subset (4 000 training images), ``fracsgd.llc.estimate`` with 4 chains × 200 draws,
batch 128, ε = 1e-4, γ = 100, ``nβ = n / log n``, ``sampling="epoch"`` — the shapes of
``llc_vs_devinterp.py``. The centre is not trained: this measures time, not λ̂. Every mode is
called once cold, then ``--repeats`` warm rounds; the time is the median of the warm calls
(results fetched to the host, as ``estimate`` returns them).

Run from the repository root::

    python benchmarks/control_flow.py           # ~2 min on 2 CPU cores, ~1 min on a GPU
    python benchmarks/control_flow.py --quick   # smoke run: W = 32, 20 draws, 1 repeat

Writes ``benchmarks/results/control_flow_<backend>.json`` (``--quick``: ``…_quick.json``) and
prints a table.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from train_sweep import _timed, machine_info, source_info, write_json

import fracsgd as fs
from fracsgd import _xla
from fracsgd.data import _shuffle

RESULTS = Path(__file__).resolve().parent / "results"
WIDTHS = (32, 128, 512)
NUM_CHAINS = 4
NUM_DRAWS = 200
BATCH_SIZE = 128
STEP_SIZE = 1e-4
LOCALIZATION = 100.0
#: every platform jax knows, for the ``straight_line`` mode
ALL_PLATFORMS = ("cpu", "tpu", "cuda", "rocm")
MODES = {"shipped": None, "conditional": (), "straight_line": ALL_PLATFORMS}


@contextlib.contextmanager
def _straight_line(platforms: tuple[str, ...] | None) -> Iterator[None]:
    """Run with ``STRAIGHT_LINE_PLATFORMS = platforms`` (``None``: as shipped). The setting is
    part of the SGLD program's static key, so each mode compiles and caches its own program."""
    saved = _xla.STRAIGHT_LINE_PLATFORMS
    if platforms is not None:
        _xla.STRAIGHT_LINE_PLATFORMS = platforms
    try:
        yield
    finally:
        _xla.STRAIGHT_LINE_PLATFORMS = saved


def _problem(width: int, data) -> tuple[Any, Any]:
    model = fs.models.mlp((784, width, 10))
    params = model.init(jax.random.key(0))

    def loss_fn(p, batch):
        x, y = batch
        return fs.models.cross_entropy(model.apply(p, x), y)

    return loss_fn, params


def _estimate(loss_fn, params, data, num_draws: int, nbeta: float):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an untrained centre: NotAMinimumWarning
        return fs.llc.estimate(
            jax.random.key(1),
            loss_fn,
            params,
            data,
            num_chains=NUM_CHAINS,
            num_draws=num_draws,
            step_size=STEP_SIZE,
            localization=LOCALIZATION,
            nbeta=nbeta,
            batch_size=BATCH_SIZE,
            sampling="epoch",
        )


def run_width(width: int, data, num_draws: int, repeats: int) -> dict:
    """Cold calls of every mode, then ``repeats`` rounds of one warm call per mode."""
    loss_fn, params = _problem(width, data)
    n = int(data[0].shape[0])
    nbeta = n / math.log(n)
    cold: dict[str, float] = {}
    traces: dict[str, np.ndarray] = {}
    for mode, platforms in MODES.items():
        with _straight_line(platforms):
            res, cold[mode], _ = _timed(lambda: _estimate(loss_fn, params, data, num_draws, nbeta))
        traces[mode] = np.asarray(res.loss_trace)
    warm: dict[str, list[float]] = {m: [] for m in MODES}
    for _ in range(repeats):
        for mode, platforms in MODES.items():
            with _straight_line(platforms):
                _, wall, _ = _timed(lambda: _estimate(loss_fn, params, data, num_draws, nbeta))
            warm[mode].append(wall)
    out: dict[str, Any] = {"num_params": int(sum(np.size(a) for a in jax.tree.leaves(params)))}
    for mode in MODES:
        median = statistics.median(warm[mode])
        out[mode] = {
            "wall_seconds": median,
            "wall_seconds_repeats": warm[mode],
            "cold_seconds": cold[mode],
            "compile_seconds": cold[mode] - median,
            "step_microseconds": median / num_draws * 1e6,
            "over_shipped_per_round": [
                a / b for a, b in zip(warm[mode], warm["shipped"], strict=True)
            ],
            "loss_trace_equal_to_shipped": bool(
                np.array_equal(traces[mode], traces["shipped"], equal_nan=True)
            ),
            "loss_trace_max_relative_difference": float(
                np.nanmax(
                    np.abs(traces[mode] - traces["shipped"])
                    / np.maximum(np.abs(traces["shipped"]), 1e-30)
                )
            ),
        }
        out[mode]["over_shipped"] = statistics.median(out[mode]["over_shipped_per_round"])
    return out


def print_table(report: dict) -> None:
    print(f"backend {report['backend']}: time per call (median of warm rounds), × shipped")
    print(f"{'width':>6} " + " ".join(f"{m:>24}" for m in MODES))
    for key, row in report["widths"].items():
        cells = [
            f"{row[m]['wall_seconds']:9.4f} s {row[m]['over_shipped']:6.3f}× "
            f"{'=' if row[m]['loss_trace_equal_to_shipped'] else '≠'}"
            for m in MODES
        ]
        print(f"{key:>6} " + " ".join(f"{c:>24}" for c in cells))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="W = 32, 20 draws, 1 repeat")
    parser.add_argument("--repeats", type=int, default=None, help="warm rounds (5)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be at least 1")
    repeats = args.repeats or (1 if args.quick else 5)
    widths = WIDTHS[:1] if args.quick else WIDTHS
    num_draws = 20 if args.quick else NUM_DRAWS
    dataset = fs.data.load("mnist")
    data = (jnp.asarray(dataset.x_train), jnp.asarray(dataset.y_train))
    backend = jax.default_backend()
    report: dict[str, Any] = {
        "benchmark": "control_flow",
        "backend": backend,
        "workload": {
            "model": "784-W-10 ReLU MLP at initialisation",
            "widths": list(widths),
            "num_chains": NUM_CHAINS,
            "num_draws": num_draws,
            "batch_size": BATCH_SIZE,
            "step_size": STEP_SIZE,
            "localization": LOCALIZATION,
            "sampling": "epoch",
            "train_images": int(data[0].shape[0]),
        },
        "modes": {m: (list(p) if p is not None else "as shipped") for m, p in MODES.items()},
        "shipped_straight_line_platforms": list(_xla.STRAIGHT_LINE_PLATFORMS),
        "walk_unroll": _shuffle.WALK_UNROLL,
        "drift_norm_every": fs.llc.DRIFT_NORM_EVERY,
        "settings": {"repeats": repeats, "quick": args.quick},
        "machine": machine_info(),
        "source": source_info(),
        "widths": {},
    }
    for width in widths:
        print(f"W = {width} …", file=sys.stderr, flush=True)
        report["widths"][f"w{width}"] = run_width(width, data, num_draws, repeats)
    name = f"control_flow_{backend}" + ("_quick" if args.quick else "")
    out = args.out or RESULTS / f"{name}.json"
    write_json(report, out)
    print_table(report)
    print(f"wrote {out}", file=sys.stderr)
    return report


if __name__ == "__main__":
    main()
