"""Benchmark: a vectorised training sweep against the same runs one at a time and against
plain PyTorch.

Workload (the same for every mode): 16 ReLU MLPs ``784-w-10`` (widths 16, 32, 64, 128 × seeds
0-3) trained with plain SGD (learning rate 0.05, batch 128, per-epoch random permutations) for
2 000 steps each on the embedded MNIST subset (4 000 train / 1 000 test images). Every step
records ``R(t) = ||w_t − w_0||``, the minibatch loss and the gradient norm; at 16 log-spaced
checkpoint steps (``fracsgd.train.log_spaced_steps``) the parameters are copied and the full
train and test loss and accuracy are evaluated.

Modes:

- ``sweep``: ``fracsgd.train.sweep`` with the platform's default bucketing rule
  (``max_padding_overhead=None``: 1.25 on CPU, 4.0 on GPU/TPU).
- ``sweep_padding_1.0`` / ``sweep_padding_inf``: the same sweep with one program per width and
  with every width padded into one program, which is what the bucketing rule chooses between.
  A variant whose bucket plan equals the default's runs the same compiled programs, so it is
  not timed twice and is marked ``same_as: "sweep"``.
- ``one_by_one``: ``fracsgd.train.run`` for each of the 16 networks in turn (each width is run
  once first, so that compilation is outside the timed runs).
- ``jax_scan``: a reference floor, not a product: a minimal ``jax.lax.scan`` SGD loop with the
  same work (minibatches, R(t)/loss/gradient norm every step, the 16 evaluations), vmapped over
  the four seeds of one width, without fracsgd's finite checks, width masks, segments or host
  copies of checkpoints.
- ``pytorch``: a plain PyTorch CPU loop, one network at a time, with ``torch.set_num_threads``
  set to the number of cores; skipped with a note when torch is not installed.

Every mode is called once cold (for the JAX modes this includes compilation; for PyTorch it is
a short warm-up); then ``--repeats`` rounds run every mode once each, back to back, with fresh
keys, so that the modes compared are measured close together in time (a shared 2-core machine
drifts by tens of per cent between minutes). The reported wall time is the median of a mode's
warm repeats and ``compile_seconds`` is its cold call minus that median. Results are host NumPy
arrays (``block_until_ready`` is applied all the same). Speed-ups are ratios of warm medians;
the ratios round by round are recorded too. Each timed call also records this process's CPU
use and that of every other process on the machine (``other_processes_cpu``), so that a run
disturbed by other work shows it. The JSON records every repeat, the machine, the library
versions and the fracsgd commit; the targets of the issue (sweep ≥ 3× PyTorch and ≥ 1×
one-by-one, stated for a 2-core CPU) are reported as measured, true or false.

Run from the repository root::

    python benchmarks/train_sweep.py            # 2 000 steps, 3 repeats: ~6 min on 2 cores
    python benchmarks/train_sweep.py --quick    # smoke run: 100 steps, 1 repeat (~2 min)
    python benchmarks/train_sweep.py --modes sweep,one_by_one --steps 500 --out /tmp/x.json

Writes ``benchmarks/results/train_sweep.json`` (``--quick``: ``train_sweep_quick.json``)
atomically and prints a table.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np

import fracsgd as fs
from fracsgd.train._api import default_padding_overhead

WIDTHS = (16, 32, 64, 128)
SEEDS = (0, 1, 2, 3)
BATCH_SIZE = 128
LEARNING_RATE = 0.05
NUM_CHECKPOINTS = 16
TARGET_VS_PYTORCH = 3.0
TARGET_VS_ONE_BY_ONE = 1.0
ALL_MODES = ("sweep", "padding", "one_by_one", "jax_scan", "pytorch")
REPORT_ORDER = (
    "sweep",
    "sweep_padding_1.0",
    "sweep_padding_inf",
    "one_by_one",
    "jax_scan",
    "pytorch",
)
RESULTS = Path(__file__).resolve().parent / "results"


# ---------------------------------------------------------------------------------- timing


def _block(out: Any) -> Any:
    return jax.block_until_ready(out)


def _busy_cpu_seconds() -> float | None:
    """CPU seconds spent by every process on the machine so far (Linux ``/proc/stat``)."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class _Clock:
    """Wall time, this process's CPU time and other processes' CPU time over an interval."""

    def __init__(self) -> None:
        self.proc0, self.busy0, self.t0 = os.times(), _busy_cpu_seconds(), time.perf_counter()

    def stop(self) -> tuple[float, float, float | None]:
        """``(wall seconds, own CPU / wall, other processes' CPU / wall or None)``."""
        wall = time.perf_counter() - self.t0
        proc1, busy1 = os.times(), _busy_cpu_seconds()
        own = (proc1.user - self.proc0.user) + (proc1.system - self.proc0.system)
        other = None
        if busy1 is not None and self.busy0 is not None:
            other = max(0.0, (busy1 - self.busy0 - own) / wall)
        return wall, own / wall, other


def _timed(fn: Callable[[], Any]) -> tuple[Any, float, dict]:
    """``(result, wall seconds, load)`` of ``fn()``: ``load`` holds this process's CPU
    utilisation (CPU seconds per wall second) and that of every other process."""
    clock = _Clock()
    out = _block(fn())
    wall, own, other = clock.stop()
    return out, wall, {"own": own, "other": other}


def _summary(cold: float, warm: list[float], loads: list[dict], network_steps: int) -> dict:
    median = statistics.median(warm)
    others = [ld["other"] for ld in loads if ld["other"] is not None]
    return {
        "wall_seconds": median,
        "wall_seconds_repeats": warm,
        "cold_seconds": cold,
        "compile_seconds": cold - median,
        "network_steps_per_second": network_steps / median,
        "cpu_utilisation": statistics.median(ld["own"] for ld in loads),
        "other_processes_cpu": max(others) if others else None,
    }


class _Bench:
    """One mode: :meth:`cold` once (compilation or warm-up), then :meth:`repeat` once per round.

    Subclasses implement ``_run(r)`` (the whole workload with keys/seeds of round ``r``) and may
    override ``_cold`` and ``_extra``.
    """

    def __init__(self, network_steps: int) -> None:
        self.network_steps = network_steps
        self.cold_seconds = math.nan
        self.warm: list[float] = []
        self.loads: list[dict] = []
        self.last: Any = None

    def _run(self, r: int) -> Any:
        raise NotImplementedError

    def _cold(self) -> float:
        _, wall, _ = _timed(lambda: self._run(0))
        return wall

    def _extra(self) -> dict:
        return {}

    def cold(self) -> None:
        self.cold_seconds = self._cold()

    def repeat(self, r: int) -> None:
        self.last, wall, load = _timed(lambda: self._run(r))
        self.warm.append(wall)
        self.loads.append(load)

    def report(self) -> dict:
        return {
            **_summary(self.cold_seconds, self.warm, self.loads, self.network_steps),
            **self._extra(),
        }


# ---------------------------------------------------------------------------------- fracsgd


def _grid(steps: int, overhead: float | None) -> fs.train.Grid:
    return fs.train.Grid(
        hidden=tuple((w,) for w in WIDTHS),
        seeds=SEEDS,
        learning_rates=(LEARNING_RATE,),
        optimizers=("sgd",),
        batch_sizes=(BATCH_SIZE,),
        steps=steps,
        num_checkpoints=NUM_CHECKPOINTS,
        max_padding_overhead=overhead,
    )


def _plan(overhead: float) -> list[list[int]]:
    buckets = fs.train.bucket_widths([(w,) for w in WIDTHS], 784, 10, overhead)
    return [[h[0] for h in bucket] for bucket in buckets]


class SweepBench(_Bench):
    """``fracsgd.train.sweep`` of the 16 networks (round ``r`` uses ``jax.random.key(r)``)."""

    def __init__(self, data, steps: int, overhead: float | None) -> None:
        super().__init__(len(WIDTHS) * len(SEEDS) * steps)
        self.data, self.overhead, self.grid = data, overhead, _grid(steps, overhead)

    def _run(self, r: int) -> Any:
        return fs.train.sweep(jax.random.key(r), self.data, self.grid, progress=False)

    def _extra(self) -> dict:
        effective = default_padding_overhead() if self.overhead is None else self.overhead
        return {
            "max_padding_overhead": "default"
            if self.overhead is None
            else _jsonable(self.overhead),
            "effective_padding_overhead": _jsonable(effective),
            "num_programs": self.last.num_programs,
            "buckets": _plan(effective),
        }


class OneByOneBench(_Bench):
    """``fracsgd.train.run`` for each network in the sweep's order (seeds × widths), with the
    same keys as :class:`SweepBench`, so the runs are the same runs."""

    def __init__(self, data, steps: int) -> None:
        super().__init__(len(WIDTHS) * len(SEEDS) * steps)
        self.data = data
        self.config = fs.train.TrainConfig(
            steps=steps,
            batch_size=BATCH_SIZE,
            learning_rate=LEARNING_RATE,
            optimizer="sgd",
            num_checkpoints=NUM_CHECKPOINTS,
        )
        self.models = {w: fs.models.mlp((784, w, 10)) for w in WIDTHS}
        self.first_by_width: dict[int, float] = {}
        self.by_width: dict[int, list[float]] = {w: [] for w in WIDTHS}

    def _one(self, key, seed: int, width: int) -> Any:
        key = jax.random.fold_in(key, seed)
        return fs.train.run(key, self.models[width], self.data, self.config, progress=False)

    def _cold(self) -> float:
        for w in WIDTHS:  # one run per width compiles its program
            _, self.first_by_width[w], _ = _timed(lambda w=w: self._one(jax.random.key(0), 0, w))
        return sum(self.first_by_width.values())

    def _run(self, r: int) -> list:
        key, results = jax.random.key(r), []
        for seed in SEEDS:
            for w in WIDTHS:
                res, wall, _ = _timed(lambda seed=seed, w=w: self._one(key, seed, w))
                self.by_width[w].append(wall)
                results.append(res)
        return results

    def report(self) -> dict:
        # the cold job = the warm job with each width's first run in place of a warm one
        typical = {w: statistics.median(v) for w, v in self.by_width.items()}
        compile_s = sum(self.first_by_width[w] - typical[w] for w in WIDTHS)
        cold = statistics.median(self.warm) + compile_s
        return {
            **_summary(cold, self.warm, self.loads, self.network_steps),
            "num_programs": len(WIDTHS),
            "first_run_seconds_by_width": {str(w): self.first_by_width[w] for w in WIDTHS},
            "run_seconds_by_width": {str(w): typical[w] for w in WIDTHS},
        }


# ------------------------------------------------------------------- minimal jax.lax.scan floor


def _scan_program(width: int, steps: int, checkpoint_steps: tuple[int, ...], data) -> Callable:
    """A jitted function ``keys (S,) -> (records (S, T, 3), metrics (S, K, 4))`` training ``S``
    networks ``784-width-10`` with the benchmark's SGD schedule."""
    x, y, x_test, y_test = data.x_train, data.y_train, data.x_test, data.y_test
    n = x.shape[0]
    per_epoch = n // BATCH_SIZE
    n_epochs = -(-steps // per_epoch)
    ck = jnp.asarray(checkpoint_steps, jnp.int32)
    k_ck = len(checkpoint_steps)

    def init(key):
        k1, k2 = jax.random.split(key)
        return {
            "w1": jax.random.normal(k1, (784, width)) / math.sqrt(784),
            "b1": jnp.zeros(width),
            "w2": jax.random.normal(k2, (width, 10)) / math.sqrt(width),
            "b2": jnp.zeros(10),
        }

    def logits(p, xb):
        return jax.nn.relu(xb @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]

    def loss_fn(p, xb, yb):
        logp = jax.nn.log_softmax(logits(p, xb))
        return -jnp.mean(jnp.take_along_axis(logp, yb[:, None], axis=1))

    def metrics(p):
        out = []
        for xs, ys in ((x, y), (x_test, y_test)):
            z = logits(p, xs)
            logp = jax.nn.log_softmax(z)
            out.append(-jnp.mean(jnp.take_along_axis(logp, ys[:, None], axis=1)))
            out.append(jnp.mean(jnp.argmax(z, axis=1) == ys))
        return jnp.stack(out)

    def norm(tree):
        return jnp.sqrt(sum(jnp.sum(jnp.square(a)) for a in jax.tree.leaves(tree)))

    def train(keys):
        params0 = jax.vmap(lambda k: init(jax.random.fold_in(k, 0)))(keys)
        perms = jax.vmap(
            lambda k: jax.vmap(
                lambda e: jax.random.permutation(jax.random.fold_in(jax.random.fold_in(k, 1), e), n)
            )(jnp.arange(n_epochs))
        )(keys)
        grad = jax.vmap(jax.value_and_grad(loss_fn))

        def step(carry, t):
            params, ck_i, table = carry
            start = (t % per_epoch) * BATCH_SIZE
            idx = jax.lax.dynamic_slice_in_dim(perms[:, t // per_epoch], start, BATCH_SIZE, 1)
            loss, g = grad(params, x[idx], y[idx])
            params = jax.tree.map(lambda p, d: p - LEARNING_RATE * d, params, g)
            disp = jax.vmap(lambda p, q: norm(jax.tree.map(jnp.subtract, p, q)))(params, params0)
            is_ck = ck[jnp.minimum(ck_i, k_ck - 1)] == t + 1
            table = jax.lax.cond(
                is_ck,
                lambda tb: tb.at[:, ck_i].set(jax.vmap(metrics)(params)),
                lambda tb: tb,
                table,
            )
            return (params, ck_i + is_ck, table), jnp.stack([disp, loss, jax.vmap(norm)(g)], -1)

        carry = (params0, jnp.int32(0), jnp.zeros((keys.shape[0], k_ck, 4)))
        (_, _, table), records = jax.lax.scan(step, carry, jnp.arange(steps))
        return jnp.swapaxes(records, 0, 1), table

    return jax.jit(train)


class ScanBench(_Bench):
    """The minimal ``jax.lax.scan`` loop of :func:`_scan_program`, one program per width."""

    def __init__(self, data, steps: int) -> None:
        super().__init__(len(WIDTHS) * len(SEEDS) * steps)
        ck = fs.train.log_spaced_steps(steps, NUM_CHECKPOINTS)
        self.programs = {w: _scan_program(w, steps, ck, data) for w in WIDTHS}

    def _run(self, r: int) -> list:
        keys = jnp.stack([jax.random.fold_in(jax.random.key(r), s) for s in SEEDS])
        return [self.programs[w](keys) for w in WIDTHS]

    def _extra(self) -> dict:
        return {"num_programs": len(WIDTHS)}


# ---------------------------------------------------------------------------------- PyTorch


class TorchBench(_Bench):
    """A plain PyTorch CPU loop, one network at a time, doing the same work per step."""

    def __init__(self, data, steps: int, threads: int) -> None:
        import torch

        super().__init__(len(WIDTHS) * len(SEEDS) * steps)
        self.torch, self.steps = torch, steps
        torch.set_num_threads(threads)
        as_t = lambda a: torch.from_numpy(np.array(a))
        self.x, self.x_test = as_t(data.x_train), as_t(data.x_test)
        self.y, self.y_test = as_t(data.y_train).long(), as_t(data.y_test).long()
        self.warmup_steps = min(steps, 50)

    def _evaluate(self, net, xs, ys) -> list[float]:
        z = net(xs)
        loss = self.torch.nn.functional.cross_entropy(z, ys).item()
        return [loss, (z.argmax(1) == ys).float().mean().item()]

    def _train(self, width: int, seed: int, steps: int):
        torch, x, y = self.torch, self.x, self.y
        nn, F = torch.nn, torch.nn.functional
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        net = nn.Sequential(nn.Linear(784, width), nn.ReLU(), nn.Linear(width, 10))
        opt = torch.optim.SGD(net.parameters(), lr=LEARNING_RATE)
        params = list(net.parameters())
        params0 = [p.detach().clone() for p in params]
        ck = set(fs.train.log_spaced_steps(steps, min(NUM_CHECKPOINTS, steps)))
        n = x.shape[0]
        per_epoch = n // BATCH_SIZE
        records = torch.empty(steps, 3)
        checkpoints, metrics = [], []
        for t in range(steps):
            pos = t % per_epoch
            if pos == 0:
                perm = torch.randperm(n, generator=gen)
            idx = perm[pos * BATCH_SIZE : (pos + 1) * BATCH_SIZE]
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                disp = torch.stack(
                    [torch.sum((p - q) ** 2) for p, q in zip(params, params0, strict=True)]
                )
                gsq = torch.stack([torch.sum(p.grad**2) for p in params])
                records[t, 0] = disp.sum().sqrt()
                records[t, 1] = loss.detach()
                records[t, 2] = gsq.sum().sqrt()
                if t + 1 in ck:
                    checkpoints.append([p.detach().clone() for p in params])
                    metrics.append(
                        self._evaluate(net, x, y) + self._evaluate(net, self.x_test, self.y_test)
                    )
        return records.numpy(), np.asarray(metrics), checkpoints

    def _cold(self) -> float:
        _, wall, _ = _timed(lambda: [self._train(w, 0, self.warmup_steps) for w in WIDTHS])
        return wall

    def _run(self, r: int) -> list:
        return [self._train(w, 100 * r + s, self.steps) for s in SEEDS for w in WIDTHS]

    def report(self) -> dict:
        out = super().report()
        del out["compile_seconds"], out["cold_seconds"]
        return {
            **out,
            "device": "cpu",
            "threads": self.torch.get_num_threads(),
            "warmup_seconds": self.cold_seconds,
            "warmup": f"each width once for {self.warmup_steps} steps before timing",
        }


# ---------------------------------------------------------------------------------- report


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def source_info() -> dict:
    """The fracsgd source measured: its git commit and whether its tree had local changes.

    Where the source is a copy without ``.git`` (e.g. a working tree shipped to an accelerator
    machine), the commit is taken from ``$FRACSGD_SOURCE_COMMIT`` when set, and says so."""
    root = Path(fs.__file__).resolve().parent.parent
    git = lambda *a: subprocess.run(
        ["git", "-C", str(root), *a], capture_output=True, text=True, timeout=10, check=True
    ).stdout.strip()
    try:
        changed = git("status", "--porcelain", "--untracked-files=no", "--", "fracsgd")
        return {"commit": git("rev-parse", "HEAD"), "fracsgd_modified": bool(changed)}
    except (OSError, subprocess.SubprocessError):
        given = os.environ.get("FRACSGD_SOURCE_COMMIT")
        if given:
            return {"commit": given, "fracsgd_modified": None, "commit_from": "environment"}
        return {"commit": None, "fracsgd_modified": None}


def machine_info() -> dict:
    versions = {"python": platform.python_version(), "jax": jax.__version__}
    versions["jaxlib"] = jaxlib.__version__
    versions["numpy"] = np.__version__
    versions["fracsgd"] = getattr(fs, "__version__", None)
    if importlib.util.find_spec("torch") is not None:
        import torch

        versions["torch"] = torch.__version__
    else:
        versions["torch"] = None
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or None,
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "jax_backend": jax.default_backend(),
        "jax_devices": [str(d) for d in jax.devices()],
        "jax_device_kind": jax.devices()[0].device_kind,
        "versions": versions,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _ratio(a: dict | None, b: dict | None, key: str = "wall_seconds") -> float | None:
    if not a or not b or key not in a or key not in b:
        return None
    return b[key] / a[key]


def _agreement(sweep_res, obo_results) -> dict:
    """How closely the timed sweep and one-by-one runs (same keys) agree: they are the same runs."""
    d_sweep = np.asarray(sweep_res.displacement)
    d_obo = np.stack([r.displacement for r in obo_results])
    acc_sweep = np.asarray(sweep_res.test_accuracy)[:, -1]
    acc_obo = np.asarray([r.test_accuracy[-1] for r in obo_results])
    rel = np.max(np.abs(d_sweep - d_obo) / np.maximum(np.abs(d_obo), 1e-12))
    return {
        "max_relative_difference_displacement": float(rel),
        "max_abs_difference_final_test_accuracy": float(np.max(np.abs(acc_sweep - acc_obo))),
    }


def _per_round(sweep: dict | None, other: dict) -> list[float] | None:
    """Round-by-round ratios (each round runs every mode once, back to back)."""
    if not sweep or "wall_seconds_repeats" not in other:
        return None
    pairs = zip(other["wall_seconds_repeats"], sweep["wall_seconds_repeats"], strict=False)
    return [o / s for o, s in pairs]


def build_report(args, data, modes: dict, started: float) -> dict:
    sweep = modes.get("sweep")
    torch_mode = modes.get("pytorch")
    obo = modes.get("one_by_one")
    torch_ok = torch_mode is not None and "skipped" not in torch_mode
    vs_torch = _ratio(sweep, torch_mode) if torch_ok else None
    vs_obo = _ratio(sweep, obo)
    vs_torch_cold = None
    if torch_ok and sweep:
        vs_torch_cold = (torch_mode["wall_seconds"] + torch_mode["warmup_seconds"]) / sweep[
            "cold_seconds"
        ]
    notes = []
    if jax.default_backend() != "cpu":
        notes.append(
            f"JAX ran on {jax.default_backend()} ({jax.devices()[0].device_kind}); the PyTorch "
            "column is a CPU loop, so sweep_vs_pytorch compares different hardware. The targets "
            "are stated for a 2-core CPU."
        )
    if torch_mode and "skipped" in torch_mode:
        notes.append(f"pytorch column skipped: {torch_mode['skipped']}")
    if (os.cpu_count() or 0) != 2:
        notes.append(f"the targets are stated for a 2-core CPU; this machine has {os.cpu_count()}")
    for name, m in modes.items():
        other = m.get("other_processes_cpu")
        if other is not None and other > 0.2 and "same_as" not in m:
            notes.append(
                f"{name}: other processes used up to {other:.2f} CPUs during a timed repeat, "
                "so this mode's timings are perturbed"
            )
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "benchmark": "train_sweep",
        "workload": {
            "networks": len(WIDTHS) * len(SEEDS),
            "architecture": "784-w-10 ReLU MLP, cross-entropy",
            "widths": list(WIDTHS),
            "seeds": list(SEEDS),
            "steps": args.steps,
            "batch_size": BATCH_SIZE,
            "learning_rate": LEARNING_RATE,
            "optimizer": "sgd",
            "sampling": "per-epoch random permutation",
            "per_step_records": ["R(t)=||w_t-w_0||", "minibatch loss", "gradient norm"],
            "checkpoint_steps": list(fs.train.log_spaced_steps(args.steps, NUM_CHECKPOINTS)),
            "checkpoint_work": "copy parameters; full train and test loss and accuracy",
            "network_steps": len(WIDTHS) * len(SEEDS) * args.steps,
            "dataset": {
                "name": data.name,
                "source": data.source,
                "num_train": data.num_train,
                "num_test": int(data.x_test.shape[0]),
            },
        },
        "settings": {
            "repeats": args.repeats,
            "quick": args.quick,
            "modes": args.modes,
            "torch_threads": args.torch_threads,
            "schedule": (
                "the cold call of every mode first (JAX: compilation included; PyTorch: a short "
                "warm-up), then `repeats` rounds, each running every mode once, back to back"
            ),
            "timing": "wall_seconds = median of warm repeats; compile_seconds = cold - median",
        },
        "machine": machine_info(),
        "source": source_info(),
        "load_average_at_end": list(load) if load else None,
        "total_benchmark_seconds": time.perf_counter() - started,
        "modes": modes,
        "speedups": {
            "definition": "other mode's warm median / sweep's warm median (> 1: sweep faster)",
            "sweep_vs_pytorch": vs_torch,
            "sweep_vs_one_by_one": vs_obo,
            "sweep_vs_jax_scan": _ratio(sweep, modes.get("jax_scan")),
            "sweep_vs_pytorch_including_compile_and_warmup": vs_torch_cold,
            "sweep_vs_one_by_one_including_compile": _ratio(sweep, obo, "cold_seconds"),
            "per_round": {
                f"sweep_vs_{name}": _per_round(sweep, m)
                for name, m in modes.items()
                if name != "sweep" and "same_as" not in m and _per_round(sweep, m)
            },
        },
        "targets": {
            "stated_for": "2-core CPU",
            "sweep_vs_pytorch_at_least": TARGET_VS_PYTORCH,
            "sweep_vs_pytorch_met": None
            if vs_torch is None
            else bool(vs_torch >= TARGET_VS_PYTORCH),
            "sweep_vs_one_by_one_at_least": TARGET_VS_ONE_BY_ONE,
            "sweep_vs_one_by_one_met": None
            if vs_obo is None
            else bool(vs_obo >= TARGET_VS_ONE_BY_ONE),
        },
        "notes": notes,
    }


def write_json(report: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(report, fh, indent=2)
            fh.write("\n")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def print_table(report: dict) -> None:
    modes = report["modes"]
    sweep = modes.get("sweep", {})
    print(
        f"\n{report['workload']['networks']} networks x {report['workload']['steps']} steps on "
        f"{report['machine']['jax_backend']} ({report['machine']['cpu_count']} CPUs), "
        f"median of {report['settings']['repeats']} warm repeats"
    )
    header = f"{'mode':<20}{'programs':>9}{'compile s':>11}{'warm s':>9}{'net-steps/s':>13}"
    header += f"{'sweep is x faster':>19}{'other CPUs':>12}"
    print(header)
    print("-" * len(header))
    for name, m in modes.items():
        if "skipped" in m:
            print(f"{name:<20}  skipped: {m['skipped']}")
            continue
        wall = m["wall_seconds"]
        compile_s = m.get("compile_seconds", m.get("warmup_seconds"))
        programs = m.get("num_programs", "-")
        ratio = f"{wall / sweep['wall_seconds']:.2f}" if sweep else "-"
        other = m.get("other_processes_cpu")
        other_s = "-" if other is None else f"{other:.2f}"
        print(
            f"{name:<20}{programs!s:>9}{compile_s:>11.2f}{wall:>9.2f}"
            f"{m['network_steps_per_second']:>13.0f}{ratio:>19}{other_s:>12}"
        )
    t = report["targets"]
    print(
        f"targets ({t['stated_for']}): sweep >= {t['sweep_vs_pytorch_at_least']}x pytorch: "
        f"{t['sweep_vs_pytorch_met']}; sweep >= {t['sweep_vs_one_by_one_at_least']}x one-by-one: "
        f"{t['sweep_vs_one_by_one_met']}"
    )
    for note in report["notes"]:
        print(f"note: {note}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=None, help="steps per network (2000)")
    parser.add_argument("--repeats", type=int, default=None, help="warm repeats per mode (3)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 100 steps, 1 repeat")
    parser.add_argument(
        "--modes",
        default=",".join(ALL_MODES),
        help=f"comma-separated subset of {','.join(ALL_MODES)} (default: all)",
    )
    parser.add_argument("--torch-threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=None, help="JSON path")
    args = parser.parse_args(argv)
    args.steps = args.steps or (100 if args.quick else 2000)
    args.repeats = args.repeats or (1 if args.quick else 3)
    wanted = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = set(wanted) - set(ALL_MODES)
    if unknown:
        parser.error(f"unknown modes {sorted(unknown)}; choose from {ALL_MODES}")
    args.modes = wanted
    out = args.out or RESULTS / ("train_sweep_quick.json" if args.quick else "train_sweep.json")

    started = time.perf_counter()
    data = fs.data.load("mnist")
    benches: dict[str, _Bench] = {}
    modes: dict[str, dict] = {}
    if "sweep" in wanted:
        benches["sweep"] = SweepBench(data, args.steps, None)
    same_as_default: list[tuple[str, float]] = []
    if "padding" in wanted:
        for overhead in (1.0, math.inf):
            name = f"sweep_padding_{overhead}"
            if "sweep" in wanted and _plan(overhead) == _plan(default_padding_overhead()):
                same_as_default.append((name, overhead))  # the same compiled programs
            else:
                benches[name] = SweepBench(data, args.steps, overhead)
    if "one_by_one" in wanted:
        benches["one_by_one"] = OneByOneBench(data, args.steps)
    if "jax_scan" in wanted:
        benches["jax_scan"] = ScanBench(data, args.steps)
    if "pytorch" in wanted:
        if importlib.util.find_spec("torch") is None:
            modes["pytorch"] = {"skipped": "torch not installed"}
        else:
            benches["pytorch"] = TorchBench(data, args.steps, args.torch_threads)

    def say(msg: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f}s] {msg}", file=sys.stderr)

    def collect(complete: bool) -> dict:
        for name, bench in benches.items():
            modes[name] = bench.report()
        for name, overhead in same_as_default:
            modes[name] = {
                **modes["sweep"],
                "max_padding_overhead": _jsonable(overhead),
                "effective_padding_overhead": _jsonable(overhead),
                "same_as": "sweep",
            }
        order = [*benches, *(name for name, _ in same_as_default), *modes]
        order = sorted(dict.fromkeys(order), key=lambda m: REPORT_ORDER.index(m))
        modes.update({name: modes.pop(name) for name in order})
        if "sweep" in benches and "one_by_one" in benches:
            # the last round ran both with the same keys: the same 16 runs
            agree = _agreement(benches["sweep"].last, benches["one_by_one"].last)
            modes["one_by_one"]["agreement_with_sweep"] = agree
        return {**build_report(args, data, modes, started), "complete": complete}

    for name, bench in benches.items():
        say(f"{name}: cold call")
        bench.cold()
    for r in range(1, args.repeats + 1):
        for name, bench in benches.items():
            say(f"round {r}/{args.repeats}: {name}")
            bench.repeat(r)
        if r < args.repeats:  # a partial report, so that an interrupted run leaves its numbers
            write_json(collect(complete=False), out)
    report = collect(complete=True)
    write_json(report, out)
    print_table(report)
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
