"""Benchmark: the pair counts behind ``fracsgd.diffusion.correlation_dimension``.

Compares, in one process on the same points and radii, the kernel that ships
(``fracsgd.diffusion._correlation._block_pair_counts``: each unordered pair visited once from a
contiguous half-circle slice, binned by a binary search into the radii, counts from the
cumulative histogram; O(N² log R / 2)) with the kernel it replaced (kept here as the baseline:
all N² ordered pairs of 256-row blocks, one comparison per pair and radius; O(N² R)). Both must
give the same counts (checked). Points: uniform in the unit square (``--dim``), radii: 40
log-spaced from 0.01 to 0.5, Theiler window 0. Timing: warm (compiled first), median of
``--repeats`` calls with ``block_until_ready``.

Run from the repository root::

    python benchmarks/correlation.py [--sizes 2000,8000] [--repeats 3]

Writes ``benchmarks/results/correlation.json``.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from train_sweep import _timed, machine_info, source_info, write_json

from fracsgd.diffusion import _correlation

_BASELINE_ROWS = 256


@jax.jit
def baseline_block_pair_counts(points, radii, theiler):
    """The kernel before commit 5257254: per block of 256 rows, every j against
    every radius."""
    n = points.shape[0]
    idx = jnp.arange(n)
    blocks = -(-n // _BASELINE_ROWS)
    rows = jnp.arange(blocks * _BASELINE_ROWS).reshape(blocks, _BASELINE_ROWS)

    def row(i):
        here = points[jnp.minimum(i, n - 1)].reshape(1, -1)
        d = jnp.sqrt(jnp.sum(jnp.square(points - here), axis=-1))
        ok = idx > i + theiler
        return jnp.sum((d.reshape(-1, 1) < radii.reshape(1, -1)) & ok.reshape(-1, 1), axis=0)

    return jax.lax.map(lambda b: jnp.sum(jax.vmap(row)(b), axis=0), rows)


def _measure(fn, *args, repeats: int) -> tuple[dict, np.ndarray]:
    """Cold call (compile + run), then ``repeats`` warm calls: their median, the compile time
    (cold − median) and the CPU load around each call; and the counts."""
    out, cold, _ = _timed(lambda: fn(*args))
    warm, loads = [], []
    for _ in range(repeats):
        out, wall, load = _timed(lambda: fn(*args))
        warm.append(wall)
        loads.append(load)
    median = statistics.median(warm)
    others = [ld["other"] for ld in loads if ld["other"] is not None]
    timing = {
        "wall_seconds": median,
        "wall_seconds_repeats": warm,
        "compile_seconds": cold - median,
        "other_processes_cpu": max(others) if others else None,
    }
    return timing, np.asarray(out, np.int64).sum(axis=0)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="2000,8000", help="numbers of points, comma-separated")
    ap.add_argument("--dim", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "correlation.json"))
    args = ap.parse_args(argv)
    radii = jnp.asarray(np.geomspace(0.01, 0.5, 40), jnp.float32)
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        x = np.random.default_rng(0).uniform(size=(n, args.dim))
        pts = jnp.asarray(x, jnp.float32)
        theiler = jnp.int32(0)
        new, new_counts = _measure(
            _correlation._block_pair_counts, pts, radii, theiler, repeats=args.repeats
        )
        old, old_counts = _measure(
            baseline_block_pair_counts, pts, radii, theiler, repeats=args.repeats
        )
        same = bool(np.array_equal(new_counts, old_counts))
        new_s, old_s = new["wall_seconds"], old["wall_seconds"]
        rows.append(
            {
                "points": n,
                "pairs": n * (n - 1) // 2,
                "radii": int(radii.shape[0]),
                "fracsgd": new,
                "baseline": old,
                "speedup": old_s / new_s,
                "same_counts": same,
            }
        )
        print(
            f"N = {n}: fracsgd {new_s:.3f} s, baseline {old_s:.3f} s, "
            f"{old_s / new_s:.1f}x, same counts: {same}"
        )
        if not same:
            raise SystemExit("the kernels disagree: the benchmark result would mean nothing")
    result = {
        "benchmark": "correlation_dimension pair counts",
        "machine": machine_info(),
        "source": source_info(),
        "settings": {"dim": args.dim, "repeats": args.repeats, "timing": "warm, median"},
        "results": rows,
    }
    write_json(result, Path(args.out))
    return result


if __name__ == "__main__":
    main()
