"""Benchmark: LLC estimation with ``fracsgd.llc`` against devinterp 1.x (PyTorch, CPU).

Workload: ReLU MLPs ``784-W-10`` (W = 32, 128, 512) trained briefly on the embedded MNIST subset
(4 000 train images; 2 000 SGD steps, learning rate 0.05, batch 128, seed 0), then the local
learning coefficient λ̂ at the trained weights, with the *same* weights in both libraries:
4 chains × 200 draws (no burn-in, every step a draw), batch 128, SGLD step size ε = 1e-4,
localisation γ = 100, nβ = n / log n with n = 4 000 (≈ 482.3) passed explicitly to both. Both
use the update ``w ← w − (ε/2)(nβ ∇L_B + γ(w − w*)) + sqrt(ε) ξ`` and report
``λ̂ = nβ (mean_t L_B(w_t) − L_n(w*))`` per chain with ``L_n(w*)`` the full-data loss (handed to
devinterp as ``init_loss``, so that the two estimators are the same formula).

Modes:

- ``fracsgd_w{W}``: one call of ``fracsgd.llc.estimate`` (the 4 chains vmapped in one compiled
  program; minibatches by epochs, ``sampling="epoch"``, as devinterp's ``DataLoader``).
- ``devinterp_w{W}``: one call of devinterp's ``estimate_learning_coeff_with_summary`` (chains
  run one after another, ``cores=1``; minibatches from a shuffled ``DataLoader``, batch 128,
  ``drop_last=True``; ``torch.set_num_threads`` = number of cores).
- ``fracsgd_w{W}_percore`` / ``fracsgd_grid_percore``: the same calls with one CPU device per
  core (``jax_num_cpu_devices``, set when the script starts) and the chains (grid: settings ×
  chains) sharded over them, ``mesh=fs.parallel.batch_mesh()``: each core runs its share of the
  chains as its own program (``shard_map``), where one device runs one program whose products
  use the cores through XLA's intra-op threads. The targets are judged on these modes when they
  run (the configuration the README recommends on a multi-core CPU); both are reported.
- ``devinterp_w{W}_processes`` (smallest width only, after the rounds): devinterp's own
  parallel chains, ``cores`` = the CPU count (worker processes), to show whether its
  one-after-another layout is its faster one.
- ``fracsgd_grid`` / ``devinterp_grid``: a 4 × 4 step-size × localisation calibration grid at
  W = 128 (nβ fixed): one call of ``fracsgd.llc.calibrate`` (all 16 settings × 4 chains in one
  compiled program) against devinterp called in a Python loop over the 16 settings.
- ``matmul``: XLA's float32 matrix-multiply throughput on this machine, measured in the same run
  (``jax.jit`` of a 2048 × 2048 @ 2048 × 2048 product, median of 5 calls per round), which the
  useful floating-point rate of SGLD at W = 512 (``4 · batch · parameters`` per chain-step: the
  forward and backward matrix products) is compared with: the fastest round's throughput, so
  that a slow phase of the machine cannot lower the bar (the median round's fraction is in the
  JSON too, ``fraction_of_median_matmul``).
- ``noise_*``: the SGLD noise alone at W = 512 (4 chains × 200 steps, ``w ← w + c·ξ`` in a
  compiled scan, ``jax.random.normal`` from one key per leaf) with the generators jax offers
  (threefry2x32 in its default partitionable layout and in its original one, philox4x32,
  threefry4x32, rbg, unsafe_rbg), to show what share of a step the random numbers take;
  ``noise_update_only`` is the same scan without random numbers. The JSON names the one
  fracsgd's ``_noise_like`` matches (``threefry2x32_fused``: jax's hash written as array code,
  :mod:`fracsgd.sampling._rng`).
- ``floor_{gradient,noise,sgld}_w{W}`` and ``_grid``: lower bounds, the parts of an SGLD step
  alone in a compiled scan vmapped over the chains (4; the grid: 4 chains × 16 settings, one
  noise draw per chain and step shared by its settings, as ``calibrate``'s common random
  numbers share it): the gradient step on a fixed minibatch per network, fracsgd's noise, and
  both (``floor_sgld``: no data gather, no
  localisation, no per-step key, no diagnostics or records). For each target the JSON gives
  the time the target allows (``budget_seconds``) beside the ``floor_sgld`` time, per layout
  (``targets[...]["one_device" | "per_core"]["reachability"]["floor_within_budget"]``; the
  per-core floors are sharded over the per-core devices as the per-core modes are): when the
  floor does not fit, no SGLD step built
  from these products and this generator meets the target on the machine. The probes (floors
  and ``noise_*``) compile with fracsgd's SGLD compiler options (``fracsgd._xla``).
- ``fracsgd_*_threefry2x32_original``: what-if modes, not what fracsgd ships: the same calls
  with ``fracsgd.sampling._sgld._noise_like`` temporarily replaced by ``jax.random.normal`` in
  threefry2x32's original layout (jax's fastest generator here), traced into a program of their
  own (``--no-what-if`` skips them): what fracsgd's fused generator saves over jax's own.

Schedule as in ``train_sweep.py``: every mode is called once cold (JAX: compilation included;
devinterp: a warm-up of the same call), then ``--repeats`` rounds run every mode once each,
back to back, with fresh keys / seeds. ``wall_seconds`` is the median of the warm repeats and
``compile_seconds`` the cold call minus that median. Before each round the script waits (up to
``--max-wait`` seconds) until other processes use less than 0.2 CPUs, and every timed call
records the CPU use of other processes (``other_processes_cpu``). Targets of the issue (2-core
CPU): fracsgd ≥ 10× devinterp at W = 32, ≥ 5× at W = 128, ≥ 5× on the grid, and SGLD's useful
FLOP rate at W = 512 ≥ 60 % of the measured matmul throughput (its fastest round); reported
as measured, true or false. Without devinterp installed its columns are ``{"skipped": ...}``.

Run from the repository root (devinterp is an optional benchmark dependency)::

    pip install devinterp==1.3.2 torch==2.13.0
    python benchmarks/llc_vs_devinterp.py           # ~5 min on 2 cores
    python benchmarks/llc_vs_devinterp.py --quick   # smoke run: 20 draws, W = 32, 128 (~1 min)

Writes ``benchmarks/results/llc_vs_devinterp.json`` (``--quick``: ``_quick.json``) atomically and
prints a table.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import math
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax

# one CPU device per core, for the per-core modes (chains sharded over the cores with a mesh);
# JAX fixes its device count when its backend starts, so this comes before anything runs. The
# one-device modes run on the first device as before (measured unchanged by the second's
# presence).
jax.config.update("jax_num_cpu_devices", os.cpu_count() or 1)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from train_sweep import (  # noqa: E402
    _busy_cpu_seconds,
    _timed,
    machine_info,
    source_info,
    write_json,
)

import fracsgd as fs  # noqa: E402
from fracsgd._xla import jit as _xla_jit  # noqa: E402
from fracsgd.sampling import _rng, _sgld  # noqa: E402

WIDTHS = (32, 128, 512)
NUM_CHAINS = 4
NUM_DRAWS = 200
BATCH_SIZE = 128
STEP_SIZE = 1e-4
LOCALIZATION = 100.0
TRAIN_STEPS = 2000
TRAIN_LR = 0.05
GRID_WIDTH = 128
GRID_STEP_SIZES = (1e-5, 3e-5, 1e-4, 3e-4)
GRID_LOCALIZATIONS = (1.0, 10.0, 100.0, 1000.0)
FLOP_WIDTH = 512
MATMUL_N = 2048
#: the reference product on an accelerator: 2048³ takes ~0.2 ms on an H200 and its rate varied
#: 20–95 TFLOP/s between rounds (fourth session); 8192³ runs well past launch overhead
MATMUL_N_ACCELERATOR = 8192
MATMUL_CALLS = 5
TARGET_SPEEDUP = {"w32": 10.0, "w128": 5.0, "grid": 5.0}
TARGET_FLOP_FRACTION = 0.6
IDLE_THRESHOLD = 0.2
RESULTS = Path(__file__).resolve().parent / "results"

DEVINTERP_MISSING = "devinterp not installed (pip install devinterp==1.3.2 torch==2.13.0)"


def _say(started: float, msg: str) -> None:
    print(f"[{time.perf_counter() - started:7.1f}s] {msg}", file=sys.stderr, flush=True)


def _other_cpu(seconds: float = 1.0) -> float | None:
    """CPUs used by *other* processes over the next ``seconds``."""
    busy0, own0, t0 = _busy_cpu_seconds(), os.times(), time.perf_counter()
    time.sleep(seconds)
    busy1, own1 = _busy_cpu_seconds(), os.times()
    if busy0 is None or busy1 is None:
        return None
    own = (own1.user - own0.user) + (own1.system - own0.system)
    return max(0.0, (busy1 - busy0 - own) / (time.perf_counter() - t0))


def wait_for_idle(max_wait: float, say: Callable[[str], None]) -> dict:
    """Wait until other processes use < ``IDLE_THRESHOLD`` CPUs (at most ``max_wait`` s)."""
    t0 = time.perf_counter()
    other = _other_cpu()
    while other is not None and other >= IDLE_THRESHOLD and time.perf_counter() - t0 < max_wait:
        say(f"other processes use {other:.2f} CPUs; waiting for the machine to be idle")
        time.sleep(4.0)
        other = _other_cpu()
    return {"other_cpu_before": other, "waited_seconds": time.perf_counter() - t0}


def _summary(cold: float, warm: list[float], loads: list[dict], chain_steps: int) -> dict:
    median = statistics.median(warm)
    others = [ld["other"] for ld in loads if ld["other"] is not None]
    return {
        "wall_seconds": median,
        "wall_seconds_repeats": warm,
        "cold_seconds": cold,
        "compile_seconds": cold - median,
        "chain_steps": chain_steps,
        "chain_steps_per_second": chain_steps / median,
        "cpu_utilisation": statistics.median(ld["own"] for ld in loads),
        "other_processes_cpu": max(others) if others else None,
    }


class _Bench:
    """One mode: :meth:`cold` once, then :meth:`repeat` once per round (``_run(r)``)."""

    kind = "jax"

    def __init__(self, chain_steps: int) -> None:
        self.chain_steps = chain_steps
        self.cold_seconds = math.nan
        self.warm: list[float] = []
        self.loads: list[dict] = []
        self.outputs: list[Any] = []

    def _run(self, r: int) -> Any:
        raise NotImplementedError

    def cold(self) -> None:
        _, self.cold_seconds, _ = _timed(lambda: self._run(0))

    def repeat(self, r: int) -> None:
        out, wall, load = _timed(lambda: self._run(r))
        self.warm.append(wall)
        self.loads.append(load)
        self.outputs.append(out)

    def _extra(self) -> dict:
        return {}

    def report(self) -> dict:
        out = _summary(self.cold_seconds, self.warm, self.loads, self.chain_steps)
        if self.kind == "torch":  # no compilation: the cold call is a warm-up
            out["warmup_seconds"] = out.pop("cold_seconds")
            del out["compile_seconds"]
        return {**out, **self._extra()}


# ------------------------------------------------------------------------------ the problems


class Problem:
    """One trained network: the fracsgd loss and parameters, and the same network in PyTorch."""

    def __init__(self, data, width: int, train_steps: int) -> None:
        self.width = width
        self.model = fs.models.mlp((784, width, 10))
        config = fs.train.TrainConfig(
            steps=train_steps,
            batch_size=BATCH_SIZE,
            learning_rate=TRAIN_LR,
            optimizer="sgd",
            num_checkpoints=2,
        )
        res = fs.train.run(jax.random.key(0), self.model, data, config, progress=False)
        self.params = jax.tree.map(jnp.asarray, res.final_params)
        self.num_params = int(sum(np.size(a) for a in jax.tree.leaves(self.params)))
        model = self.model

        def loss_fn(p, batch):
            x, y = batch
            return fs.models.cross_entropy(model.apply(p, x), y)

        self.loss_fn = loss_fn
        # the same loss as another function object: a separate entry of fracsgd's compiled-program
        # cache, so that the what-if noise generator below is traced into its own program
        self.loss_fn_variant = lambda p, batch: loss_fn(p, batch)
        self.data = (data.x_train, data.y_train)
        self.init_loss = float(loss_fn(self.params, self.data))
        self.info = {
            "num_params": self.num_params,
            "train_steps": train_steps,
            "train_loss_full": self.init_loss,
            "train_accuracy": float(res.train_accuracy[-1]),
            "test_accuracy": float(res.test_accuracy[-1]),
        }

    def torch_model(self):
        """The same network as ``torch.nn.Sequential`` (fracsgd ``w`` is (in, out), torch's
        weight (out, in))."""
        import torch

        layers = self.params["layers"]
        net = torch.nn.Sequential(
            torch.nn.Linear(784, self.width), torch.nn.ReLU(), torch.nn.Linear(self.width, 10)
        )
        with torch.no_grad():
            for lin, layer in zip((net[0], net[2]), layers, strict=True):
                lin.weight.copy_(torch.from_numpy(np.asarray(layer["w"]).T.copy()))
                lin.bias.copy_(torch.from_numpy(np.asarray(layer["b"]).copy()))
        return net


def _nbeta(n: int) -> float:
    return n / math.log(n)


# ---------------------------------------------------------------------------------- fracsgd


@contextlib.contextmanager
def _noise_generator(noise_fn: Callable | None):
    """Temporarily replace fracsgd's SGLD noise draw (``None``: leave it as shipped)."""
    saved = _sgld._noise_like
    if noise_fn is not None:
        _sgld._noise_like = noise_fn
    try:
        yield
    finally:
        _sgld._noise_like = saved


def per_core_mesh():
    """The per-core modes' mesh: one CPU device per core (``jax_num_cpu_devices`` above), or
    ``None`` when they cannot run (JAX's default backend is not the CPU, or one core)."""
    cpus = jax.devices("cpu")
    if jax.default_backend() != "cpu" or len(cpus) < 2:
        return None
    return fs.parallel.batch_mesh(cpus)


class _FracsgdCall(_Bench):
    """A fracsgd LLC call of ``settings × NUM_CHAINS`` chains; with ``noise_fn``, the same call
    with that noise generator in place of fracsgd's (what-if); with ``mesh``, the chains sharded
    over its devices (the per-core modes)."""

    settings = 1

    def __init__(
        self,
        problem: Problem,
        nbeta: float,
        num_draws: int,
        noise_fn: Callable | None = None,
        mesh=None,
    ) -> None:
        super().__init__(self.settings * NUM_CHAINS * num_draws)
        self.p, self.nbeta, self.num_draws, self.noise_fn = problem, nbeta, num_draws, noise_fn
        self.loss_fn = problem.loss_fn if noise_fn is None else problem.loss_fn_variant
        self.mesh = mesh


class FracsgdEstimate(_FracsgdCall):
    """``fracsgd.llc.estimate`` at one width (round ``r`` uses ``jax.random.key(r)``)."""

    def _run(self, r: int):
        with warnings.catch_warnings(), _noise_generator(self.noise_fn):
            warnings.simplefilter("ignore")  # NotAMinimumWarning: reported through the result
            return fs.llc.estimate(
                jax.random.key(r),
                self.loss_fn,
                self.p.params,
                self.p.data,
                num_chains=NUM_CHAINS,
                num_draws=self.num_draws,
                num_burnin=0,
                step_size=STEP_SIZE,
                localization=LOCALIZATION,
                nbeta=self.nbeta,
                batch_size=BATCH_SIZE,
                sampling="epoch",
                mesh=self.mesh,
            )

    def _extra(self) -> dict:
        return {"llc": [_llc_fracsgd(res) for res in self.outputs]}


def _llc_fracsgd(res) -> dict:
    return {
        "mean": float(res.llc_mean),
        "std": float(res.llc_std),
        "per_chain": [float(v) for v in np.asarray(res.llc_per_chain)],
        "init_loss": float(res.init_loss),
        "diverged_chains": int(np.sum(res.diverged)),
    }


class FracsgdGrid(_FracsgdCall):
    """``fracsgd.llc.calibrate``: all 16 settings in one compiled call."""

    settings = len(GRID_STEP_SIZES) * len(GRID_LOCALIZATIONS)

    def _run(self, r: int):
        with warnings.catch_warnings(), _noise_generator(self.noise_fn):
            warnings.simplefilter("ignore")
            return fs.llc.calibrate(
                jax.random.key(1000 + r),
                self.loss_fn,
                self.p.params,
                self.p.data,
                step_sizes=GRID_STEP_SIZES,
                localizations=GRID_LOCALIZATIONS,
                nbetas=(self.nbeta,),
                num_chains=NUM_CHAINS,
                num_draws=self.num_draws,
                batch_size=BATCH_SIZE,
                sampling="epoch",
                mesh=self.mesh,
            )

    def _extra(self) -> dict:
        grids = [np.asarray(c.llc_mean)[:, :, 0] for c in self.outputs]
        stds = [np.asarray(c.llc_std)[:, :, 0] for c in self.outputs]
        return {
            "llc_mean_grid_per_round": [g.tolist() for g in grids],
            "llc_std_grid_per_round": [s.tolist() for s in stds],
            "llc_mean_grid": np.mean(grids, axis=0).tolist() if grids else None,
            "recommended_last_round": self.outputs[-1].recommended if self.outputs else None,
        }


# ---------------------------------------------------------------------------------- devinterp


def _devinterp_evaluate(model, data):
    import torch.nn.functional as F

    x, y = data
    return F.cross_entropy(model(x), y)


class DevinterpRunner:
    """devinterp 1.x ``estimate_learning_coeff_with_summary`` on one trained network."""

    def __init__(self, problem: Problem, nbeta: float, num_draws: int, device: str = "cpu") -> None:
        import torch
        from torch.utils.data import TensorDataset

        self.torch = torch
        self.device = device
        self.net = problem.torch_model()
        x = torch.from_numpy(np.array(problem.data[0]))
        y = torch.from_numpy(np.array(problem.data[1], dtype=np.int64))
        self.dataset = TensorDataset(x, y)
        self.nbeta, self.num_draws = nbeta, num_draws
        with torch.no_grad():
            logits_t = self.net(x).numpy()
        logits_j = np.asarray(problem.model.apply(problem.params, problem.data[0]))
        self.max_abs_logit_difference = float(np.max(np.abs(logits_t - logits_j)))
        # ``L_n(w*)`` on the full data (what fracsgd uses; devinterp's default would average
        # ``num_chains`` minibatches instead), computed once, on the device the chains' losses
        # are computed on (devinterp moves ``self.net`` there in place anyway; the dataset stays
        # on the CPU and devinterp moves each minibatch). A CPU value against GPU chain losses
        # would shift every λ̂ by nβ times the difference.
        self.net.to(device)
        with torch.no_grad():
            full = tuple(t.to(device) for t in self.dataset.tensors)
            self._init_loss = float(_devinterp_evaluate(self.net, full))

    def init_loss(self) -> float:
        """``L_n(w*)`` on the full data, on the sampling device."""
        return self._init_loss

    def estimate(self, seed: int, step_size: float, localization: float, cores: int = 1) -> dict:
        from devinterp.slt.sampler import estimate_learning_coeff_with_summary
        from torch.utils.data import DataLoader

        loader = DataLoader(self.dataset, batch_size=BATCH_SIZE, shuffle=True, drop_last=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecation and "set nbeta in callbacks" notes
            try:
                out = estimate_learning_coeff_with_summary(
                    self.net,
                    loader,
                    evaluate=_devinterp_evaluate,
                    optimizer_kwargs={
                        "lr": step_size,
                        "localization": localization,
                        "nbeta": self.nbeta,
                    },
                    num_draws=self.num_draws,
                    num_chains=NUM_CHAINS,
                    num_burnin_steps=0,
                    num_steps_bw_draws=1,
                    init_loss=self.init_loss(),
                    cores=cores,
                    seed=seed,
                    device=self.device,
                    verbose=False,
                )
            except RuntimeError as err:  # devinterp raises on a NaN loss
                return {"mean": math.nan, "std": math.nan, "error": str(err)}
        return {
            "mean": float(out["llc/mean"]),
            "std": float(out["llc/std"]),
            "per_chain": [float(out[f"llc-chain/{i}"]) for i in range(NUM_CHAINS)],
        }


class DevinterpEstimate(_Bench):
    """devinterp at one width: chains one after another (``cores=1``, torch's threads), or with
    ``cores > 1`` in devinterp's worker processes (each chain a process of its pool)."""

    kind = "torch"

    def __init__(self, runner: DevinterpRunner, cores: int = 1) -> None:
        super().__init__(NUM_CHAINS * runner.num_draws)
        self.runner, self.cores = runner, cores

    def _run(self, r: int) -> dict:
        return self.runner.estimate(r, STEP_SIZE, LOCALIZATION, cores=self.cores)

    def _extra(self) -> dict:
        return {
            "llc": self.outputs,
            "max_abs_logit_difference_vs_fracsgd": self.runner.max_abs_logit_difference,
        }


class DevinterpGrid(_Bench):
    """devinterp called in a Python loop over the 16 settings of the grid."""

    kind = "torch"

    def __init__(self, runner: DevinterpRunner) -> None:
        n = len(GRID_STEP_SIZES) * len(GRID_LOCALIZATIONS)
        super().__init__(n * NUM_CHAINS * runner.num_draws)
        self.runner = runner

    def _run(self, r: int) -> list[list[dict]]:
        return [
            [self.runner.estimate(1000 + r, eps, gamma) for gamma in GRID_LOCALIZATIONS]
            for eps in GRID_STEP_SIZES
        ]

    def cold(self) -> None:  # the warm-up is one setting, not the whole loop
        _, self.cold_seconds, _ = _timed(
            lambda: self.runner.estimate(0, GRID_STEP_SIZES[0], GRID_LOCALIZATIONS[0])
        )

    def _extra(self) -> dict:
        grids = [[[c["mean"] for c in row] for row in g] for g in self.outputs]
        stds = [[[c["std"] for c in row] for row in g] for g in self.outputs]
        errors = [c["error"] for g in self.outputs for row in g for c in row if "error" in c]
        return {
            "warmup": "one setting of the grid",
            "llc_mean_grid_per_round": grids,
            "llc_std_grid_per_round": stds,
            "llc_mean_grid": np.mean(grids, axis=0).tolist() if grids else None,
            "errors": errors,
        }


# ------------------------------------------------------------------ matmul and noise probes


class Matmul(_Bench):
    """XLA float32 matmul throughput: median of ``MATMUL_CALLS`` calls per round."""

    def __init__(self) -> None:
        super().__init__(0)
        ka, kb = jax.random.split(jax.random.key(123))
        self.n = MATMUL_N if jax.default_backend() == "cpu" else MATMUL_N_ACCELERATOR
        self.a = jax.random.normal(ka, (self.n, self.n), jnp.float32)
        self.b = jax.random.normal(kb, (self.n, self.n), jnp.float32)
        self.f = jax.jit(jnp.matmul)
        self.calls: list[list[float]] = []

    def _run(self, r: int) -> float:
        times = []
        for _ in range(MATMUL_CALLS):
            t0 = time.perf_counter()
            self.f(self.a, self.b).block_until_ready()
            times.append(time.perf_counter() - t0)
        if r > 0:
            self.calls.append(times)
        return statistics.median(times)

    def gflops(self) -> list[float]:
        flops = 2 * self.n**3
        return [flops / out / 1e9 for out in self.outputs]

    def report(self) -> dict:
        rates = self.gflops()
        others = [ld["other"] for ld in self.loads if ld["other"] is not None]
        return {
            "shape": f"({self.n},{self.n}) @ ({self.n},{self.n}) float32, jax.jit",
            "precision": str(jax.config.jax_default_matmul_precision or "default"),
            "gflops_per_second": statistics.median(rates),
            "gflops_per_second_per_round": rates,
            "call_seconds_per_round": self.calls,
            "other_processes_cpu": max(others) if others else None,
        }


def _normals_fused(key, tree):
    """fracsgd's generator (``fracsgd.sampling._rng``): Threefry-2x32-20 written as fusible
    array code, two words per hash, ``√2·erfinv(u)``."""
    return _sgld._noise_like(key, tree)


def _normals_threefry(key, tree):
    """jax's default generator as of jax 0.5+: partitionable threefry2x32, one 20-round hash
    per 32-bit word (two words XOR-ed)."""
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, len(leaves))
    noise = [jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves, strict=True)]
    return jax.tree.unflatten(treedef, noise)


def _normals_threefry_original(key, tree):
    """threefry2x32 in its original (non-partitionable) layout, one hash per two words (the keys
    are split as by default)."""
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, len(leaves))
    with jax.threefry_partitionable(False):
        noise = [jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves, strict=True)]
    return jax.tree.unflatten(treedef, noise)


def _normals_impl(impl: str) -> Callable:
    """Normals from a key of another jax PRNG implementation, seeded from the threefry key."""
    size = int(np.prod(jax.random.key_data(jax.random.key(0, impl=impl)).shape))

    def noise(key, tree):
        leaves, treedef = jax.tree.flatten(tree)
        keys = jax.random.split(key, len(leaves))
        out = []
        for k, x in zip(keys, leaves, strict=True):
            kk = jax.random.wrap_key_data(jax.random.bits(k, (size,), jnp.uint32), impl=impl)
            out.append(jax.random.normal(kk, x.shape, x.dtype))
        return jax.tree.unflatten(treedef, out)

    return noise


NOISE_VARIANTS: dict[str, tuple[Callable, str]] = {
    "threefry2x32_fused": (_normals_fused, "fracsgd.sampling._rng (jax's hash as array code)"),
    "threefry2x32_partitionable": (_normals_threefry, "jax default (threefry_partitionable=True)"),
    "threefry2x32_original": (_normals_threefry_original, "threefry_partitionable=False"),
    "philox4x32": (_normals_impl("philox4x32"), "impl='philox4x32'"),
    "threefry4x32": (_normals_impl("threefry4x32"), "impl='threefry4x32'"),
    "rbg": (
        _normals_impl("rbg"),
        "impl='rbg' (XLA RngBitGenerator; under vmap its batching rule uses only the first "
        "chain's key, so it is not usable per chain)",
    ),
    "unsafe_rbg": (_normals_impl("unsafe_rbg"), "impl='unsafe_rbg' (same vmap caveat as rbg)"),
}


def _identify_generator() -> str | None:
    """Which variant ``_noise_like`` draws the same numbers as (checked on a small tree)."""
    key, tree = jax.random.key(7), {"a": jnp.zeros((3, 5)), "b": jnp.zeros(4)}
    ref = jax.tree.leaves(_sgld._noise_like(key, tree))
    for name, (fn, _) in NOISE_VARIANTS.items():
        if all(
            np.array_equal(a, b) for a, b in zip(ref, jax.tree.leaves(fn(key, tree)), strict=True)
        ):
            return name
    return None


def _what_if_generator() -> str:
    """A jax generator fracsgd does *not* use: what the what-if modes swap in (jax's own
    ``jax.random.normal`` in the original layout, the fastest of jax's)."""
    if _identify_generator() == "threefry2x32_original":
        return "threefry2x32_partitionable"
    return "threefry2x32_original"


#: the generator the what-if modes ``fracsgd_*_<generator>`` swap in
WHAT_IF_NOISE = _what_if_generator()


def sampler_jit(fun: Callable) -> Any:
    """``jax.jit`` with the compiler options of fracsgd's SGLD programs (``fracsgd._xla``), so
    that the probes below and ``fracsgd.llc`` are compiled alike."""
    return _xla_jit(fun, kind="sampler")


class NoiseOnly(_Bench):
    """``w ← w + 1e-3 ξ`` for 4 chains × ``num_draws`` steps at W = 512, nothing else."""

    def __init__(self, problem: Problem, noise_fn: Callable | None, num_draws: int) -> None:
        super().__init__(NUM_CHAINS * num_draws)
        self.normals = NUM_CHAINS * num_draws * problem.num_params
        self.params = problem.params

        def chain(key, w):
            def step(w, t):
                if noise_fn is None:  # the same update without random numbers
                    return jax.tree.map(lambda a: a * 1.0001, w), None
                z = noise_fn(jax.random.fold_in(key, t), w)
                return jax.tree.map(lambda a, b: a + 1e-3 * b, w, z), None

            return jax.lax.scan(step, w, jnp.arange(num_draws))[0]

        self.f = sampler_jit(jax.vmap(chain, in_axes=(0, None)))

    def _run(self, r: int):
        return self.f(jax.random.split(jax.random.key(r), NUM_CHAINS), self.params)

    def report(self) -> dict:
        out = super().report()
        out["ns_per_normal"] = out["wall_seconds"] / self.normals * 1e9
        out["normals"] = self.normals
        return out


FLOOR_PARTS = ("gradient", "noise", "sgld")
#: suffix of the per-core modes (one CPU device per core, chains sharded with a mesh)
PER_CORE = "_percore"


class FloorStep(_Bench):
    """A lower bound on an SGLD call of ``chains × num_draws`` steps at one width: the parts of a
    step that any SGLD sampler of this network must do, in one compiled scan vmapped over chains,
    with nothing else.

    - ``gradient``: ``w ← w − (ε/2) nβ ∇L_B(w)`` on a *fixed* minibatch per chain (no data
      gather, no localisation, no diagnostics): the forward and backward matrix products plus
      one pass over the parameters;
    - ``noise``: ``w ← w + sqrt(ε) ξ`` with fracsgd's generator (``_rng.normal_like``, the step
      counter as the hash counter; no per-step key derivation): the random numbers plus one pass;
    - ``sgld``: both in one step, fused as XLA chooses: the floor the targets are compared with.

    With ``settings > 1`` (the calibration grid), each of the ``chains`` chains runs
    ``settings`` copies of the network, each with its own fixed minibatch, and *one* noise draw
    per step shared by them, as ``fracsgd.llc.calibrate`` shares chain c's noise across the
    settings (common random numbers): the gradient products scale with settings × chains, the
    noise with chains only. With ``mesh``, the chains are sharded over its devices with
    ``shard_map`` (each device runs this scan on its chains), as the per-core fracsgd modes
    shard theirs.
    """

    def __init__(
        self,
        problem: Problem,
        nbeta: float,
        num_draws: int,
        chains: int,
        part: str,
        mesh=None,
        settings: int = 1,
    ) -> None:
        super().__init__(settings * chains * num_draws)
        x, y = problem.data
        # one fixed minibatch per network: (chains, B, ...), or (chains, settings, B, ...)
        copies = np.arange(chains)[:, None] * settings + np.arange(settings)[None, :]
        rows = (copies[..., None] * BATCH_SIZE + np.arange(BATCH_SIZE)) % x.shape[0]
        rows = rows[:, 0] if settings == 1 else rows
        self.batches = (jnp.asarray(x)[rows], jnp.asarray(y)[rows])
        self.params = problem.params
        self.chains = chains
        grad_fn = jax.grad(problem.loss_fn)
        grad_fn = grad_fn if settings == 1 else jax.vmap(grad_fn)  # over the settings
        words = _rng.key_words(jax.random.key(5))
        drift, noise = part in ("gradient", "sgld"), part in ("noise", "sgld")

        def chain(w, batch, c):
            if settings > 1:
                w = jax.tree.map(lambda a: jnp.broadcast_to(a, (settings, *a.shape)), w)

            def step(w, t):
                if drift:
                    g = grad_fn(w, batch)
                    w = jax.tree.map(lambda a, b: a - (0.5 * STEP_SIZE * nbeta) * b, w, g)
                if noise:  # one draw per chain, shared by its settings
                    z = _rng.normal_like(words, t * chains + c, problem.params)
                    w = jax.tree.map(lambda a, b: a + math.sqrt(STEP_SIZE) * b, w, z)
                return w, None

            return jax.lax.scan(step, w, jnp.arange(num_draws, dtype=jnp.uint32))[0]

        par = fs.parallel
        self.mesh = mesh
        self.f = sampler_jit(
            par.per_shard(
                jax.vmap(chain, in_axes=(None, 0, 0)),
                mesh,
                (par.REPLICATED, par.BATCH, par.BATCH),
                par.BATCH,
            )
        )
        self.batches = par.shard_leading(self.batches, mesh)
        self.params = par.replicate(self.params, mesh)

    def _run(self, r: int):
        ids = jnp.arange(self.chains, dtype=jnp.uint32) + r
        return self.f(self.params, self.batches, fs.parallel.shard_leading(ids, self.mesh))


# ---------------------------------------------------------------------------------- report


def _ratio_per_round(fast: dict, slow: dict) -> list[float]:
    pairs = zip(slow["wall_seconds_repeats"], fast["wall_seconds_repeats"], strict=False)
    return [s / f for s, f in pairs]


def _comparison(fr: dict, dv: dict | None) -> dict:
    if dv is None or "skipped" in dv:
        return {"speedup": None}
    return {
        "speedup": dv["wall_seconds"] / fr["wall_seconds"],
        "speedup_per_round": _ratio_per_round(fr, dv),
        "speedup_including_compile_and_warmup": (dv["wall_seconds"] + dv["warmup_seconds"])
        / fr["cold_seconds"],
    }


def _llc_side_by_side(fr: dict, dv: dict | None) -> dict:
    def agg(runs):
        means = [r["mean"] for r in runs]
        return {
            "mean_over_rounds": float(np.nanmean(means)),
            "std_between_chains_median": float(np.nanmedian([r["std"] for r in runs])),
            "per_round_mean": means,
        }

    out = {"fracsgd": agg(fr["llc"])}
    if dv is not None and "skipped" not in dv:
        out["devinterp"] = agg(dv["llc"])
    return out


def _flop_rate(fr: dict, mm: dict, num_params: int) -> dict:
    """The useful FLOP rate of the fracsgd call ``fr`` against the matmul reference ``mm``. The
    reference is the fastest round's matmul throughput (what this machine showed it can do in
    this run): the median let a slow phase of the machine lower the bar (one run read 204, 234
    and 293 GFLOP/s in its three rounds, and its median made 49 % read 62 %)."""
    useful = 4 * BATCH_SIZE * num_params * fr["chain_steps"]
    rates = [useful / s / 1e9 for s in fr["wall_seconds_repeats"]]
    per_round = mm["gflops_per_second_per_round"]
    best = max(per_round) if per_round else mm["gflops_per_second"]
    rate = useful / fr["wall_seconds"] / 1e9
    return {
        "width": FLOP_WIDTH,
        "num_params": num_params,
        "useful_flops_per_call": useful,
        "definition": "4 * batch * parameters * chain_steps / warm seconds (forward and "
        "backward matmuls); fraction = that (median over rounds) / the fastest round's matmul "
        "throughput of the same run (fraction_of_median_matmul: / the median round's)",
        "useful_gflops_per_second": rate,
        "useful_gflops_per_second_per_round": rates,
        "matmul_gflops_per_second": mm["gflops_per_second"],
        "matmul_gflops_per_second_best": best,
        "fraction_of_matmul": rate / best,
        "fraction_of_median_matmul": rate / mm["gflops_per_second"],
        "fraction_per_round": [r / m for r, m in zip(rates, per_round, strict=False)],
    }


def _floor(modes: dict, key: str, fr: dict | None) -> dict | None:
    """The ``floor_*_{key}`` modes' medians and how far the fracsgd call ``fr`` is above the
    ``sgld`` floor."""
    parts = {part: modes.get(f"floor_{part}_{key}") for part in FLOOR_PARTS}
    if any(v is None for v in parts.values()):
        return None
    out: dict[str, Any] = {f"{part}_seconds": v["wall_seconds"] for part, v in parts.items()}
    out["sgld_seconds_per_round"] = parts["sgld"]["wall_seconds_repeats"]
    if fr is not None:
        out["fracsgd_over_sgld_floor"] = fr["wall_seconds"] / out["sgld_seconds"]
    return out


def _per_core(modes: dict, name: str, dv: dict | None, floor_key: str) -> dict | None:
    """The per-core mode ``name`` against devinterp ``dv``, with its own floor."""
    fr = modes.get(name)
    if fr is None:
        return None
    return {
        **_comparison(fr, dv),
        "llc": _llc_side_by_side(fr, dv)["fracsgd"] if "llc" in fr else None,
        "llc_mean_grid": fr.get("llc_mean_grid"),
        "floor": _floor(modes, floor_key, fr),
    }


def _judge(targets: dict, name: str, per_config: dict, value: str) -> None:
    """Record target ``name`` measured on the per-core layout when it ran, else one device,
    with both layouts under ``targets[name]``."""
    chosen = "per_core" if per_config["per_core"][value] is not None else "one_device"
    targets[f"{name}_measured"] = per_config[chosen][value]
    targets[f"{name}_met"] = per_config[chosen]["met"]
    targets[f"{name}_configuration"] = chosen
    targets[name] = per_config


def _reachability(budget: float | None, floor: dict | None) -> dict:
    """Whether the ``sgld`` floor fits in the time a target allows."""
    if budget is None or floor is None:
        return {"budget_seconds": budget, "floor_seconds": None, "floor_within_budget": None}
    return {
        "budget_seconds": budget,
        "floor_seconds": floor["sgld_seconds"],
        "floor_within_budget": bool(floor["sgld_seconds"] <= budget),
    }


def build_report(args, problems, modes, rounds, started, nbeta, complete) -> dict:
    have_dv = not any("skipped" in m for k, m in modes.items() if k.startswith("devinterp"))
    widths = {}
    for w in args.widths:
        fr, dv = modes.get(f"fracsgd_w{w}"), modes.get(f"devinterp_w{w}")
        if fr is None:
            continue
        widths[str(w)] = {
            **_comparison(fr, dv),
            "llc": _llc_side_by_side(fr, dv),
            "network": problems[w].info,
            "floor": _floor(modes, f"w{w}", fr),
            "per_core": _per_core(modes, f"fracsgd_w{w}{PER_CORE}", dv, f"w{w}{PER_CORE}"),
        }
        alt = modes.get(f"fracsgd_w{w}_{WHAT_IF_NOISE}")
        if alt is not None:
            widths[str(w)]["what_if_generator"] = {
                "generator": WHAT_IF_NOISE,
                **_comparison(alt, dv),
                "fracsgd_seconds_shipped_over_switched": fr["wall_seconds"] / alt["wall_seconds"],
                "llc_fracsgd": _llc_side_by_side(alt, None)["fracsgd"],
            }
    grid = None
    if "fracsgd_grid" in modes:
        fr, dv = modes["fracsgd_grid"], modes.get("devinterp_grid")
        grid = {
            "width": args.grid_width,
            "step_sizes": list(GRID_STEP_SIZES),
            "localizations": list(GRID_LOCALIZATIONS),
            "nbeta": nbeta,
            "llc_mean_fracsgd": fr.get("llc_mean_grid"),
            "llc_mean_devinterp": None if dv is None else dv.get("llc_mean_grid"),
            **_comparison(fr, dv),
            "floor": _floor(modes, "grid", fr),
            "per_core": _per_core(modes, f"fracsgd_grid{PER_CORE}", dv, f"grid{PER_CORE}"),
        }
        alt = modes.get(f"fracsgd_grid_{WHAT_IF_NOISE}")
        if alt is not None:
            grid["what_if_generator"] = {
                "generator": WHAT_IF_NOISE,
                **_comparison(alt, dv),
                "llc_mean_fracsgd": alt.get("llc_mean_grid"),
            }
    flop = None
    if f"fracsgd_w{FLOP_WIDTH}" in modes and "matmul" in modes:
        mm = modes["matmul"]
        flop = _flop_rate(modes[f"fracsgd_w{FLOP_WIDTH}"], mm, problems[FLOP_WIDTH].num_params)
        pc = modes.get(f"fracsgd_w{FLOP_WIDTH}{PER_CORE}")
        flop["per_core"] = (
            None if pc is None else _flop_rate(pc, mm, problems[FLOP_WIDTH].num_params)
        )
        alt = modes.get(f"fracsgd_w{FLOP_WIDTH}_{WHAT_IF_NOISE}")
        if alt is not None:
            what_if = _flop_rate(alt, mm, problems[FLOP_WIDTH].num_params)
            flop["what_if_generator"] = {
                "generator": WHAT_IF_NOISE,
                **{k: what_if[k] for k in ("useful_gflops_per_second", "fraction_of_matmul")},
                "fraction_per_round": what_if["fraction_per_round"],
            }
    noise = None
    if "noise_update_only" in modes:
        fr = modes.get(f"fracsgd_w{FLOP_WIDTH}")
        noise = {
            "width": FLOP_WIDTH,
            "what": "w <- w + 1e-3*xi in a compiled scan, 4 chains x draws steps; "
            "'update_only' is the same scan without random numbers",
            "fracsgd_generator": _identify_generator(),
            "variants": {
                name: {
                    "description": NOISE_VARIANTS[name][1] if name in NOISE_VARIANTS else "",
                    "wall_seconds": modes[f"noise_{name}"]["wall_seconds"],
                    "ns_per_normal": modes[f"noise_{name}"]["ns_per_normal"],
                    "share_of_fracsgd_estimate": None
                    if fr is None
                    else modes[f"noise_{name}"]["wall_seconds"] / fr["wall_seconds"],
                }
                for name in [*NOISE_VARIANTS, "update_only"]
                if f"noise_{name}" in modes
            },
        }
    targets: dict[str, Any] = {
        "stated_for": "2-core CPU",
        "configuration": "met/measured: the per-core configuration (one CPU device per core, "
        "the chains sharded over them with mesh=fs.parallel.batch_mesh(); what the README "
        "recommends on a multi-core CPU) when it ran, else one device; both are under "
        "one_device and per_core",
        "reachability": "budget_seconds: the longest fracsgd call that meets the target in this "
        "run (devinterp's time / the speed-up; at W = 512 the useful FLOPs / (0.6 x the fastest "
        "round's matmul rate)); floor_seconds: the floor_sgld mode of the same configuration "
        "(gradient products and noise alone, see floors); floor_within_budget false means no "
        "SGLD step built from XLA's products and this generator can meet the target on this "
        "machine in that configuration",
    }
    for key, target in TARGET_SPEEDUP.items():
        comp = grid if key == "grid" else widths.get(key[1:])
        dv = modes.get("devinterp_grid" if key == "grid" else f"devinterp_{key}")
        budget = None if dv is None or "skipped" in dv else dv["wall_seconds"] / target
        per_config = {}
        for config, c in (
            ("one_device", comp),
            ("per_core", None if comp is None else comp.get("per_core")),
        ):
            s = None if c is None else c.get("speedup")
            reach = _reachability(budget, None if c is None else c.get("floor"))
            if reach["floor_seconds"] is not None and budget is not None:
                reach["speedup_at_floor"] = dv["wall_seconds"] / reach["floor_seconds"]
            per_config[config] = {
                "speedup": s,
                "met": None if s is None else bool(s >= target),
                "reachability": reach,
            }
        targets[f"speedup_{key}_at_least"] = target
        _judge(targets, f"speedup_{key}", per_config, "speedup")
    targets["flop_fraction_w512_at_least"] = TARGET_FLOP_FRACTION
    if flop is not None:
        useful = flop["useful_flops_per_call"]
        rate = flop["matmul_gflops_per_second_best"] * 1e9
        per_config = {}
        for config, f, fl in (
            ("one_device", flop, widths.get(str(FLOP_WIDTH), {}).get("floor")),
            (
                "per_core",
                flop.get("per_core"),
                (widths.get(str(FLOP_WIDTH), {}).get("per_core") or {}).get("floor"),
            ),
        ):
            reach = _reachability(useful / (TARGET_FLOP_FRACTION * rate), fl)
            if reach["floor_seconds"] is not None:
                reach["fraction_at_floor"] = useful / reach["floor_seconds"] / rate
            frac = None if f is None else f["fraction_of_matmul"]
            per_config[config] = {
                "fraction": frac,
                "met": None if frac is None else bool(frac >= TARGET_FLOP_FRACTION),
                "reachability": reach,
            }
        _judge(targets, "flop_fraction_w512", per_config, "fraction")
    else:
        targets["flop_fraction_w512_met"] = None
    what_if: dict[str, Any] = {"generator": WHAT_IF_NOISE}
    for key, target in TARGET_SPEEDUP.items():
        comp = grid if key == "grid" else widths.get(key[1:])
        s = None if comp is None else comp.get("what_if_generator", {}).get("speedup")
        what_if[f"speedup_{key}"] = s
        what_if[f"speedup_{key}_met"] = None if s is None else bool(s >= target)
    f = None if flop is None else flop.get("what_if_generator")
    what_if["flop_fraction_w512"] = None if f is None else f["fraction_of_matmul"]
    what_if["flop_fraction_w512_met"] = (
        None if f is None else bool(f["fraction_of_matmul"] >= TARGET_FLOP_FRACTION)
    )
    targets["what_if_generator"] = what_if
    notes = [
        "Minibatches: both by epochs. fracsgd with sampling='epoch' (each chain its own keyed "
        "Feistel permutation, a fresh one every 31 steps, the last incomplete batch dropped; "
        "the library default is 'replacement'); devinterp from a shuffled DataLoader (batch "
        "128, drop_last=True, reshuffled every epoch of 31 batches).",
        "init_loss: both use the full-data loss L_n(w*) (passed to devinterp as init_loss, "
        "computed inside its timed call); devinterp's default would average num_chains "
        "minibatches.",
        "devinterp runs its chains one after another (cores=1) on torch device "
        f"{args.devinterp_device!r}; torch uses {args.torch_threads} CPU threads. "
        "devinterp_w*_processes: its own parallel chains "
        "(cores = CPU count, worker processes); not used for the targets when slower.",
        f"Modes ending in {PER_CORE}: fracsgd with one CPU device per core "
        "(jax_num_cpu_devices) and the chains (grid: settings x chains) sharded over them with "
        f"mesh=fs.parallel.batch_mesh(); floor_*{PER_CORE}: the floors sharded the same way. "
        "Other modes run on one device, which uses the cores through XLA's intra-op threads.",
        f"Modes ending in _{WHAT_IF_NOISE} are what-if measurements, not what fracsgd ships: "
        "the same call with fracsgd.sampling._sgld._noise_like temporarily replaced by "
        f"{WHAT_IF_NOISE} normals (targets['what_if_generator']).",
    ]
    for w in args.widths:
        one, procs = modes.get(f"devinterp_w{w}"), modes.get(f"devinterp_w{w}_processes")
        if one and procs and "skipped" not in one and "skipped" not in procs:
            if procs["wall_seconds"] < one["wall_seconds"]:
                notes.append(
                    f"devinterp_w{w}_processes ({procs['wall_seconds']:.2f} s) was faster than "
                    f"devinterp_w{w} ({one['wall_seconds']:.2f} s): the speed-ups above are "
                    "against the slower layout"
                )
    if not have_dv:
        why = next(m["skipped"] for k, m in modes.items() if k.startswith("devinterp"))
        notes.append(f"devinterp columns skipped: {why}")
    if (os.cpu_count() or 0) != 2:
        notes.append(f"the targets are stated for a 2-core CPU; this machine has {os.cpu_count()}")
    for name, m in modes.items():
        other = m.get("other_processes_cpu")
        if other is not None and other > IDLE_THRESHOLD:
            notes.append(
                f"{name}: other processes used up to {other:.2f} CPUs during a timed repeat, "
                "so its timings are perturbed"
            )
    machine = machine_info()
    try:
        machine["versions"]["devinterp"] = importlib.metadata.version("devinterp")
    except importlib.metadata.PackageNotFoundError:
        machine["versions"]["devinterp"] = None
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "benchmark": "llc_vs_devinterp",
        "complete": complete,
        "workload": {
            "architecture": "784-W-10 ReLU MLP, cross-entropy",
            "widths": list(args.widths),
            "training": f"fracsgd.train.run, seed 0, {args.train_steps} SGD steps, lr "
            f"{TRAIN_LR}, batch {BATCH_SIZE} (the same weights are copied into torch)",
            "num_chains": NUM_CHAINS,
            "num_draws": args.num_draws,
            "num_burnin": 0,
            "batch_size": BATCH_SIZE,
            "step_size": STEP_SIZE,
            "localization": LOCALIZATION,
            "nbeta": nbeta,
            "nbeta_rule": "n / log n, n = 4000, passed explicitly to both libraries",
            "chain_steps_per_estimate": NUM_CHAINS * args.num_draws,
            "dataset": "fracsgd.data.load('mnist'): embedded subset, 4000 train images",
        },
        "settings": {
            "repeats": args.repeats,
            "quick": args.quick,
            "torch_threads": args.torch_threads,
            "devinterp_device": args.devinterp_device,
            "schedule": "a cold call of every mode first (JAX: compilation included; devinterp: "
            "the same call as warm-up), then `repeats` rounds, each running every mode once",
            "timing": "wall_seconds = median of warm repeats; compile_seconds = cold - median",
            "idle_wait": f"before each round, wait (<= {args.max_wait} s) until other processes "
            f"use < {IDLE_THRESHOLD} CPUs",
        },
        "machine": machine,
        "source": source_info(),
        "rounds": rounds,
        "load_average_at_end": list(load) if load else None,
        "total_benchmark_seconds": time.perf_counter() - started,
        "widths": widths,
        "calibration_grid": grid,
        "flop_rate": flop,
        "noise": noise,
        "targets": targets,
        "modes": modes,
        "notes": notes,
    }


def print_table(report: dict) -> None:
    modes = report["modes"]
    w = report["workload"]
    print(
        f"\nLLC: {w['num_chains']} chains x {w['num_draws']} draws, batch {w['batch_size']}, "
        f"eps {w['step_size']}, gamma {w['localization']}, nbeta {w['nbeta']:.1f}; median of "
        f"{report['settings']['repeats']} warm repeats"
    )
    header = f"{'mode':<30}{'compile s':>10}{'warm s':>9}{'chain-steps/s':>15}{'llc mean':>10}"
    header += f"{'chain std':>10}{'other CPUs':>12}"
    print(header)
    print("-" * len(header))
    for name, m in modes.items():
        if "skipped" in m:
            print(f"{name:<30}  skipped: {m['skipped']}")
            continue
        if name == "matmul" or "chain_steps" not in m:
            continue
        compile_s = m.get("compile_seconds", m.get("warmup_seconds", math.nan))
        llc = m.get("llc")
        lm = f"{np.nanmean([x['mean'] for x in llc]):.2f}" if llc else "-"
        ls = f"{np.nanmedian([x['std'] for x in llc]):.2f}" if llc else "-"
        other = m.get("other_processes_cpu")
        print(
            f"{name:<30}{compile_s:>10.2f}{m['wall_seconds']:>9.3f}"
            f"{m['chain_steps_per_second']:>15.0f}{lm:>10}{ls:>10}"
            f"{'-' if other is None else f'{other:.2f}':>12}"
        )
    for width, c in report["widths"].items():
        if c["speedup"] is not None:
            pc = c.get("per_core") or {}
            more = "" if pc.get("speedup") is None else f", per core {pc['speedup']:.1f}x"
            print(f"W={width}: fracsgd is {c['speedup']:.1f}x devinterp{more}")
    g = report["calibration_grid"]
    if g and g["speedup"] is not None:
        pc = g.get("per_core") or {}
        more = "" if pc.get("speedup") is None else f", per core {pc['speedup']:.1f}x"
        print(f"grid (W={g['width']}): fracsgd is {g['speedup']:.1f}x devinterp{more}")
    f = report["flop_rate"]
    if f:
        print(
            f"W={f['width']}: useful {f['useful_gflops_per_second']:.1f} GFLOP/s vs matmul "
            f"{f['matmul_gflops_per_second_best']:.1f} GFLOP/s (fastest round) = "
            f"{f['fraction_of_matmul']:.0%}"
        )
        if f.get("per_core"):
            print(
                f"W={f['width']} per core: useful "
                f"{f['per_core']['useful_gflops_per_second']:.1f} GFLOP/s = "
                f"{f['per_core']['fraction_of_matmul']:.0%}"
            )
    if report["noise"]:
        for name, v in report["noise"]["variants"].items():
            share = v["share_of_fracsgd_estimate"]
            print(
                f"noise {name:<28}{v['wall_seconds']:>8.3f} s {v['ns_per_normal']:>6.2f} ns/normal"
                + ("" if share is None else f"  {share:.0%} of the estimate")
            )
    floors = [(f"W={w}", c.get("floor")) for w, c in report["widths"].items()]
    floors += [
        (f"W={w}/core", (c.get("per_core") or {}).get("floor")) for w, c in report["widths"].items()
    ]
    if g:
        floors.append(("grid", g.get("floor")))
        floors.append(("grid/core", (g.get("per_core") or {}).get("floor")))
    for label, fl in floors:
        if fl:
            print(
                f"floor {label:<6} gradient {fl['gradient_seconds']:.3f} s, noise "
                f"{fl['noise_seconds']:.3f} s, sgld {fl['sgld_seconds']:.3f} s; fracsgd is "
                f"{fl.get('fracsgd_over_sgld_floor', math.nan):.2f}x the sgld floor"
            )
    t = report["targets"]
    for key in (*TARGET_SPEEDUP, "w512"):
        name = "flop_fraction_w512" if key == "w512" else f"speedup_{key}"
        if t.get(f"{name}_measured") is not None:
            print(
                f"target {name} >= {t[f'{name}_at_least']}: measured "
                f"{t[f'{name}_measured']:.3g} ({t[f'{name}_configuration']}), "
                f"met: {t[f'{name}_met']}"
            )
    for note in report["notes"]:
        print(f"note: {note}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=None, help="warm repeats per mode (3)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 20 draws, W 32 and 128")
    parser.add_argument("--widths", default=None, help="comma-separated widths (32,128,512)")
    parser.add_argument("--num-draws", type=int, default=None, help=f"draws ({NUM_DRAWS})")
    parser.add_argument("--train-steps", type=int, default=None, help=f"({TRAIN_STEPS})")
    parser.add_argument("--grid-width", type=int, default=GRID_WIDTH)
    parser.add_argument("--no-grid", action="store_true", help="skip the calibration grid")
    parser.add_argument("--no-devinterp", action="store_true", help="skip devinterp")
    parser.add_argument(
        "--no-what-if", action="store_true", help=f"skip the {WHAT_IF_NOISE} what-if modes"
    )
    parser.add_argument(
        "--no-floor", action="store_true", help="skip the floor_* modes (lower bounds)"
    )
    parser.add_argument(
        "--no-per-core",
        action="store_true",
        help=f"skip the *{PER_CORE} modes (one CPU device per core, chains sharded)",
    )
    parser.add_argument(
        "--no-devinterp-processes",
        action="store_true",
        help="skip devinterp with cores = CPU count (chains in worker processes)",
    )
    parser.add_argument("--torch-threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--devinterp-device",
        default="cpu",
        help="torch device devinterp samples on (cpu; cuda on an NVIDIA GPU, with fracsgd on "
        "JAX's default backend)",
    )
    parser.add_argument("--max-wait", type=float, default=300.0, help="idle wait per round (s)")
    parser.add_argument("--out", type=Path, default=None, help="JSON path")
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.num_draws = args.num_draws or (20 if args.quick else NUM_DRAWS)
    args.train_steps = args.train_steps or (200 if args.quick else TRAIN_STEPS)
    default_widths = "32,128" if args.quick else ",".join(map(str, WIDTHS))
    args.widths = tuple(int(w) for w in (args.widths or default_widths).split(","))
    out = args.out or RESULTS / (
        "llc_vs_devinterp_quick.json" if args.quick else "llc_vs_devinterp.json"
    )
    started = time.perf_counter()
    say = lambda msg: _say(started, msg)

    have_dv = importlib.util.find_spec("devinterp") is not None and not args.no_devinterp
    dv_skipped = "--no-devinterp given" if args.no_devinterp else DEVINTERP_MISSING
    if have_dv:
        import torch

        torch.set_num_threads(args.torch_threads)

    data = fs.data.load("mnist")
    n = int(data.x_train.shape[0])
    nbeta = _nbeta(n)
    widths_needed = sorted(set(args.widths) | (set() if args.no_grid else {args.grid_width}))
    problems: dict[int, Problem] = {}
    for w in widths_needed:
        say(f"training 784-{w}-10 for {args.train_steps} steps")
        problems[w] = Problem(data, w, args.train_steps)

    benches: dict[str, _Bench] = {}
    # run after the rounds: devinterp's worker pools linger and would perturb the modes after
    late: dict[str, _Bench] = {}
    modes: dict[str, dict] = {}
    mesh = None if args.no_per_core else per_core_mesh()
    if mesh is None and not args.no_per_core:
        why = f"default backend {jax.default_backend()}, {len(jax.devices('cpu'))} CPU devices"
        modes[f"fracsgd{PER_CORE}"] = {"skipped": f"no per-core mesh ({why})"}
    if FLOP_WIDTH in args.widths:
        benches["matmul"] = Matmul()
    alt_noise = NOISE_VARIANTS[WHAT_IF_NOISE][0]
    for w in args.widths:
        benches[f"fracsgd_w{w}"] = FracsgdEstimate(problems[w], nbeta, args.num_draws)
        if mesh is not None:
            benches[f"fracsgd_w{w}{PER_CORE}"] = FracsgdEstimate(
                problems[w], nbeta, args.num_draws, mesh=mesh
            )
        if not args.no_what_if:
            benches[f"fracsgd_w{w}_{WHAT_IF_NOISE}"] = FracsgdEstimate(
                problems[w], nbeta, args.num_draws, alt_noise
            )
        if have_dv:
            benches[f"devinterp_w{w}"] = DevinterpEstimate(
                DevinterpRunner(problems[w], nbeta, args.num_draws, args.devinterp_device)
            )
            cores = os.cpu_count() or 1
            processes = cores > 1 and args.devinterp_device == "cpu"
            if w == min(args.widths) and processes and not args.no_devinterp_processes:
                late[f"devinterp_w{w}_processes"] = DevinterpEstimate(
                    DevinterpRunner(problems[w], nbeta, args.num_draws), cores=cores
                )
        else:
            modes[f"devinterp_w{w}"] = {"skipped": dv_skipped}
    if not args.no_grid:
        benches["fracsgd_grid"] = FracsgdGrid(problems[args.grid_width], nbeta, args.num_draws)
        if mesh is not None:
            benches[f"fracsgd_grid{PER_CORE}"] = FracsgdGrid(
                problems[args.grid_width], nbeta, args.num_draws, mesh=mesh
            )
        if not args.no_what_if:
            benches[f"fracsgd_grid_{WHAT_IF_NOISE}"] = FracsgdGrid(
                problems[args.grid_width], nbeta, args.num_draws, alt_noise
            )
        if have_dv:
            runner = DevinterpRunner(
                problems[args.grid_width], nbeta, args.num_draws, args.devinterp_device
            )
            benches["devinterp_grid"] = DevinterpGrid(runner)
        else:
            modes["devinterp_grid"] = {"skipped": dv_skipped}
    if not args.no_floor:
        layouts = [("", None)] + ([] if mesh is None else [(PER_CORE, mesh)])
        for suffix, m in layouts:
            for w in args.widths:
                for part in FLOOR_PARTS:
                    benches[f"floor_{part}_w{w}{suffix}"] = FloorStep(
                        problems[w], nbeta, args.num_draws, NUM_CHAINS, part, mesh=m
                    )
            if not args.no_grid:
                settings = len(GRID_STEP_SIZES) * len(GRID_LOCALIZATIONS)
                for part in FLOOR_PARTS:
                    benches[f"floor_{part}_grid{suffix}"] = FloorStep(
                        problems[args.grid_width],
                        nbeta,
                        args.num_draws,
                        NUM_CHAINS,
                        part,
                        mesh=m,
                        settings=settings,
                    )
    if FLOP_WIDTH in args.widths:
        for name, (fn, _) in NOISE_VARIANTS.items():
            benches[f"noise_{name}"] = NoiseOnly(problems[FLOP_WIDTH], fn, args.num_draws)
        benches["noise_update_only"] = NoiseOnly(problems[FLOP_WIDTH], None, args.num_draws)

    rounds: list[dict] = []

    def collect(complete: bool) -> dict:
        reported = {name: b.report() for name, b in {**benches, **late}.items() if b.warm}
        return build_report(args, problems, {**reported, **modes}, rounds, started, nbeta, complete)

    rounds.append({"round": "cold", **wait_for_idle(args.max_wait, say)})
    for name, bench in benches.items():
        say(f"{name}: cold call")
        bench.cold()
    for r in range(1, args.repeats + 1):
        rounds.append({"round": r, **wait_for_idle(args.max_wait, say)})
        for name, bench in benches.items():
            say(f"round {r}/{args.repeats}: {name}")
            bench.repeat(r)
        if r < args.repeats:
            write_json(collect(complete=False), out)
    for name, bench in late.items():
        write_json(collect(complete=False), out)
        say(f"{name}: cold call")
        bench.cold()
        for r in range(1, args.repeats + 1):
            rounds.append({"round": f"{name} {r}", **wait_for_idle(args.max_wait, say)})
            say(f"{name}: repeat {r}/{args.repeats}")
            bench.repeat(r)
    report = collect(complete=True)
    write_json(report, out)
    print_table(report)
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
