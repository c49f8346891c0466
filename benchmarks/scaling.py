"""Throughput against the number of devices: a training sweep (network-steps/s) and a batched
LLC call (chain-steps/s) sharded over 1, 2, 4 and 8 virtual CPU devices, and over the real
accelerator when one is visible.

Each device count runs in its own subprocess (JAX fixes the device count at start-up with
``XLA_FLAGS=--xla_force_host_platform_device_count=D``). Per configuration: one warm-up call
(compilation and first run, reported as ``first_call_s``), then ``--repeats`` timed calls whose
median gives the throughput. Virtual CPU devices share the machine's cores, so on a small CPU no
speed-up is expected: the numbers show the overhead of sharding, not its benefit.

    python benchmarks/scaling.py [--quick] [--repeats 3] [--out benchmarks/results/scaling.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path


def _worker(quick: bool, repeats: int, use_mesh: bool) -> dict:
    import jax
    import jax.numpy as jnp

    import fracsgd as fs

    mesh = fs.parallel.batch_mesh() if use_mesh else None
    data = fs.data.load("moons", n=512, noise=0.2, seed=0)
    steps = 100 if quick else 400
    grid = fs.train.Grid(
        hidden=(16,),
        seeds=tuple(range(16 if quick else 64)),
        learning_rates=(0.05,),
        batch_sizes=(32,),
        steps=steps,
        num_checkpoints=4,
    )

    def sweep():
        return fs.train.sweep(jax.random.key(0), data, grid, progress=False, mesh=mesh)

    x = jax.random.normal(jax.random.key(1), (1024, 8))
    y = x @ jnp.arange(8.0)

    def loss(w, batch):
        xb, yb = batch
        return jnp.mean(jnp.square(jnp.tanh(xb @ w["a"]) @ w["b"] - yb))

    models, chains, draws = (4, 8, 100) if quick else (8, 16, 400)
    params = {
        "a": 0.3 * jax.random.normal(jax.random.key(2), (models, 8, 16)),
        "b": 0.3 * jax.random.normal(jax.random.key(3), (models, 16)),
    }

    def llc():
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fs.llc.estimate_many(
                jax.random.key(0),
                loss,
                params,
                (x, y),
                num_chains=chains,
                num_draws=draws,
                step_size=1e-5,
                localization=10.0,
                nbeta=100.0,
                batch_size=64,
                mesh=mesh,
            )

    out = {}
    for name, fn, work in (
        ("sweep", sweep, len(grid.seeds) * steps),
        ("llc", llc, models * chains * draws),
    ):
        t0 = time.perf_counter()
        fn()
        first = time.perf_counter() - t0
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        out[name] = {
            "work": work,
            "unit": "network-steps" if name == "sweep" else "chain-steps",
            "first_call_s": first,
            "median_s": med,
            "throughput_per_s": work / med,
            "times_s": times,
        }
    out["devices"] = jax.device_count()
    out["platform"] = jax.default_backend()
    out["device_kind"] = jax.devices()[0].device_kind
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--devices", default="1,2,4,8")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "scaling.json"))
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--no-mesh", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(_worker(args.quick, args.repeats, not args.no_mesh)))
        return

    import jax

    import fracsgd

    runs = []
    base = [sys.executable, __file__, "--worker", "--repeats", str(args.repeats)]
    base += ["--quick"] if args.quick else []
    for d in map(int, args.devices.split(",")):
        env = dict(os.environ, JAX_PLATFORMS="cpu")
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={d}"
        proc = subprocess.run(base, env=env, capture_output=True, text=True, check=True)
        runs.append({"kind": f"cpu x{d} (virtual)", **json.loads(proc.stdout.splitlines()[-1])})
        print(
            runs[-1]["kind"], {k: round(runs[-1][k]["throughput_per_s"]) for k in ("sweep", "llc")}
        )
    if jax.default_backend() != "cpu":  # a real accelerator: one device, no virtual split
        proc = subprocess.run(base, capture_output=True, text=True, check=True)
        runs.append({"kind": "accelerator", **json.loads(proc.stdout.splitlines()[-1])})
        print(
            runs[-1]["kind"], {k: round(runs[-1][k]["throughput_per_s"]) for k in ("sweep", "llc")}
        )
    result = {
        "benchmark": "scaling",
        "quick": args.quick,
        "repeats": args.repeats,
        "runs": runs,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
        },
        "versions": {"fracsgd": fracsgd.__version__, "jax": jax.__version__},
        "notes": (
            "Virtual CPU devices (--xla_force_host_platform_device_count) share this machine's "
            f"{os.cpu_count()} cores, so no speed-up is expected on CPU: the numbers measure "
            "the overhead of sharding (padding, shard_map, per-device evaluation). Real speed-ups "
            "need several real devices (GPUs) or hosts. Throughput = work / median wall time "
            "of the timed repeats; first_call_s includes compilation."
        ),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
