"""Benchmark: accuracy and speed of ``fracsgd.ffpe.mittag_leffler`` against ``pymittagleffler``
(Rust implementation of Garrappa's algorithm; an optional benchmark dependency).

Points (fixed, the same for both libraries): ``α ∈ {0.1, 0.25, 0.5, 0.75, 0.9}``, ``β = 1``,
and 40 values of ``z`` per ``α`` — 30 on ``[−100, 0)`` (log-spaced magnitudes 1e-3 … 100) and
10 on ``(0, z_max]`` with ``z_max^{1/α} = 300`` (finite values of the exponential growth regime).
The accuracy reference is mpmath at 40 digits (the test suite's ``_reference``: the power series
where its cancellation is mild, otherwise the branch-cut integral plus the pole's residue).
Reported: the maximum and median relative error of each library, on the negative axis and on the
positive axis.

Speed: the same 200 points tiled to 100 000 evaluations. fracsgd: one ``jax.jit``-compiled call
(warm: compiled once first; ``block_until_ready``), median of ``repeats`` calls; pymittagleffler:
its vectorised ``mittag_leffler(z, α, β)`` called once per ``α`` (it takes a scalar ``α``), the
same median. Points per second = 100 000 / median seconds. float64 throughout.

Run from the repository root::

    pip install pymittagleffler
    python benchmarks/mittag_leffler.py

Writes ``benchmarks/results/mittag_leffler.json``; ``run()`` returns the same dict (used by
``benchmarks/ffpe.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ALPHAS = (0.1, 0.25, 0.5, 0.75, 0.9)
TILE = 500  # 200 points × 500 = 100 000 evaluations for the timing


def points() -> tuple[np.ndarray, np.ndarray]:
    """The fixed ``(alpha, z)`` points: 40 per alpha."""
    alphas, zs = [], []
    for a in ALPHAS:
        neg = -np.logspace(-3, 2, 30)
        pos = np.linspace(0.05, 300.0**a, 10)
        z = np.concatenate([neg, pos])
        alphas.append(np.full(z.shape, a))
        zs.append(z)
    return np.concatenate(alphas), np.concatenate(zs)


def _references(alpha: np.ndarray, z: np.ndarray) -> np.ndarray:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "ffpe"))
    from test_mittag_leffler import _reference  # the tests' 40-digit reference

    return np.array([float(_reference(float(a), float(x))) for a, x in zip(alpha, z, strict=True)])


def _errors(values: np.ndarray, ref: np.ndarray, z: np.ndarray) -> dict:
    rel = np.abs(values - ref) / np.abs(ref)
    out = {}
    for name, mask in (("negative_axis", z <= 0), ("positive_axis", z > 0)):
        r = rel[mask]
        out[name] = {
            "max_relative_error": float(np.max(r)) if np.all(np.isfinite(r)) else "nonfinite",
            "median_relative_error": float(np.median(r)),
        }
    return out


def _median_seconds(fn, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def run(repeats: int = 7) -> dict:
    """Measure both libraries; returns a JSON-ready dict."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    from fracsgd.ffpe import mittag_leffler

    alpha, z = points()
    ref = _references(alpha, z)
    n_eval = alpha.size * TILE
    result: dict = {
        "points": {"alphas": list(ALPHAS), "per_alpha": 40, "beta": 1.0, "timed": n_eval},
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "jax_devices": [str(d) for d in jax.devices()],
        },
        "versions": {
            "python": platform.python_version(),
            "jax": jax.__version__,
            "numpy": np.__version__,
        },
    }

    f = jax.jit(mittag_leffler)
    ours = np.asarray(f(jnp.asarray(alpha), jnp.asarray(z)))
    a_big, z_big = jnp.asarray(np.tile(alpha, TILE)), jnp.asarray(np.tile(z, TILE))
    t0 = time.perf_counter()
    f(a_big, z_big).block_until_ready()
    compile_s = time.perf_counter() - t0
    med, all_t = _median_seconds(lambda: f(a_big, z_big).block_until_ready(), repeats)
    result["fracsgd"] = {
        "accuracy": _errors(ours, ref, z),
        "compile_plus_first_call_seconds": compile_s,
        "median_seconds": med,
        "seconds": all_t,
        "points_per_second": n_eval / med,
    }

    try:
        from importlib.metadata import version

        import pymittagleffler as pml

        result["versions"]["pymittagleffler"] = version("pymittagleffler")
    except Exception as exc:  # optional dependency
        result["pymittagleffler"] = {"skipped": f"not importable: {exc!r}"}
        return result

    def theirs(zz: np.ndarray, aa: np.ndarray) -> np.ndarray:
        out = np.empty(zz.shape)
        for a in ALPHAS:
            m = aa == a
            out[m] = np.real(pml.mittag_leffler(zz[m], a, 1.0))
        return out

    values = theirs(z, alpha)
    a_np, z_np = np.tile(alpha, TILE), np.tile(z, TILE)
    theirs(z_np, a_np)  # warm-up
    med, all_t = _median_seconds(lambda: theirs(z_np, a_np), repeats)
    result["pymittagleffler"] = {
        "accuracy": _errors(values, ref, z),
        "median_seconds": med,
        "seconds": all_t,
        "points_per_second": n_eval / med,
    }
    return result


def main(argv: list[str] | None = None) -> None:
    default = Path(__file__).resolve().parent / "results" / "mittag_leffler.json"
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=default,
        help="output JSON (default: results/mittag_leffler.json)",
    )
    args = parser.parse_args(argv)
    result = run()
    out = args.out
    out.parent.mkdir(exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(out)
    for lib in ("fracsgd", "pymittagleffler"):
        r = result.get(lib, {})
        if "accuracy" in r:
            acc = r["accuracy"]
            print(
                f"{lib:16s} max rel err: z<=0 {acc['negative_axis']['max_relative_error']}, "
                f"z>0 {acc['positive_axis']['max_relative_error']}; "
                f"{r['points_per_second']:.3g} points/s"
            )
        else:
            print(lib, r)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
