"""Benchmark: the fractional Fokker–Planck solver's fast (sum-of-exponentials) history against
the direct O(N²) history, the throughput of a vmapped batch of problems, and the Mittag-Leffler
function (``benchmarks/mittag_leffler.py``'s ``run()``, when that script exists).

Workload: ``D_t^α p = ∂_w(D ∂_w p + γ p ∂_w L)`` with the double well ``L = (w² − 1)²`` on
``[−2.5, 2.5]`` (200 cells, zero-flux walls), ``α = 0.5``, ``D = 0.3``, ``γ = 1``, a Gaussian
started in the right well, implicit L1 on a uniform mesh to ``T = 10``, float64, the final state
saved (``save_at=[T]``).

Modes:

- ``direct`` / ``fast`` at ``N = 10⁴`` steps: ``history=Direct()`` and
  ``history=SOE(tol=1e-10)``. Accuracy: the L1 distance between the two final densities (the
  SOE's doing) against the discretisation error of the ``N = 10⁴`` run (its distance to the
  fast ``N = 10⁵`` run), so "equal accuracy" is a measured statement.
- ``fast`` at ``N = 10⁵``; ``direct`` at ``10⁵`` is not run by default (``O(N²)`` work: about
  100× the ``10⁴`` run), its time is extrapolated quadratically from the ``10⁴`` run and marked
  ``estimated``; ``--direct-1e5`` runs it.
- ``batch``: 64 problems (``α`` in [0.3, 0.9] × ``D`` in [0.1, 0.8], 8 × 8) with the fast
  history, ``N = 2000`` steps, in one ``jax.jit(jax.vmap(...))`` call, against the same 64
  solves one after another (each compiled once beforehand: the compiled march is reused for
  new parameter values).

Every mode is called once cold (compilation included), then ``--repeats`` warm calls; the
reported time is the median of the warm calls and ``compile_seconds`` the cold call minus that
median. Results are blocked on (``block_until_ready``). The JSON records every repeat, the
machine, the library versions and the fracsgd commit.

Run from the repository root::

    python benchmarks/ffpe.py            # ~3 min on 2 cores
    python benchmarks/ffpe.py --quick    # smoke run: N = 10³ and 10⁴, 1 repeat

Writes ``benchmarks/results/ffpe.json`` (``--quick``: ``ffpe_quick.json``) and prints a table.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from train_sweep import _timed, machine_info, source_info, write_json  # noqa: E402

import fracsgd as fs  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
GRID = fs.ffpe.Grid1D(-2.5, 2.5, 200)
T_FINAL = 10.0
SOE_TOL = 1e-10
TARGET_SPEEDUP_1E4 = 20.0


def _double_well(w):
    return (w[0] ** 2 - 1.0) ** 2


def _p0() -> jax.Array:
    x = GRID.centers[:, 0]
    p = np.exp(-((x - 1.0) ** 2) / (2 * 0.2**2))
    return jnp.asarray(p / (p.sum() * GRID.h))


def _problem(alpha: Any = 0.5, diffusion: Any = 0.3) -> fs.ffpe.Problem:
    return fs.ffpe.Problem(alpha=alpha, diffusion=diffusion, gamma=1.0, potential=_double_well)


def _solve(num_steps: int, history: Any, problem: fs.ffpe.Problem | None = None) -> Any:
    return fs.ffpe.solve(
        problem or _problem(),
        GRID,
        _p0(),
        t_final=T_FINAL,
        num_steps=num_steps,
        save_at=[T_FINAL],
        history=history,
    )


def _measure(fn: Callable[[], Any], repeats: int) -> tuple[Any, dict]:
    out, cold, _ = _timed(fn)
    warm, loads = [], []
    for _ in range(repeats):
        out, wall, load = _timed(fn)
        warm.append(wall)
        loads.append(load)
    median = statistics.median(warm)
    others = [ld["other"] for ld in loads if ld["other"] is not None]
    return out, {
        "wall_seconds": median,
        "wall_seconds_repeats": warm,
        "cold_seconds": cold,
        "compile_seconds": cold - median,
        "cpu_utilisation": statistics.median(ld["own"] for ld in loads),
        "other_processes_cpu": max(others) if others else None,
    }


def _l1_distance(a: Any, b: Any) -> float:
    return float(jnp.sum(jnp.abs(a.p[-1] - b.p[-1])) * GRID.h)


def history_modes(steps: tuple[int, int], repeats: int, direct_large: bool) -> dict:
    n_small, n_large = steps
    soe = fs.ffpe.SOE(SOE_TOL)
    out: dict = {}
    direct_small, out["direct_small"] = _measure(lambda: _solve(n_small, fs.ffpe.Direct()), repeats)
    fast_small, out["fast_small"] = _measure(lambda: _solve(n_small, soe), repeats)
    fast_large, out["fast_large"] = _measure(lambda: _solve(n_large, soe), repeats)
    ratio = (n_large / n_small) ** 2
    if direct_large:
        _, out["direct_large"] = _measure(lambda: _solve(n_large, fs.ffpe.Direct()), 1)
        out["direct_large"]["estimated"] = False
    else:
        out["direct_large"] = {
            "wall_seconds": out["direct_small"]["wall_seconds"] * ratio,
            "estimated": True,
            "note": (
                f"not run: O(N²) work, extrapolated as (N/{n_small})² × the N = {n_small} time; "
                f"memory would be N × cells × 8 B = {n_large * GRID.cells * 8 / 1e6:.0f} MB "
                "for the history (run with --direct-1e5)"
            ),
        }
    for tag, n in (("small", n_small), ("large", n_large)):
        out[f"direct_{tag}"]["num_steps"] = n
        out[f"fast_{tag}"]["num_steps"] = n
        out[f"fast_{tag}"]["soe_terms"] = soe.num_terms(T_FINAL / n, T_FINAL)
        out[f"speedup_{tag}"] = (
            out[f"direct_{tag}"]["wall_seconds"] / out[f"fast_{tag}"]["wall_seconds"]
        )
    out["speedup_large_is_estimated"] = out["direct_large"]["estimated"]
    out["accuracy"] = {
        "l1_fast_vs_direct_at_small": _l1_distance(fast_small, direct_small),
        "l1_discretisation_error_at_small": _l1_distance(fast_small, fast_large),
        "mass_error_fast_large": float(abs(fast_large.mass[-1] - 1)),
        "note": (
            "L1 distances of the final densities; the discretisation error of the small-N run "
            "is its distance to the large-N fast run"
        ),
    }
    out["target"] = f"speed-up >= {TARGET_SPEEDUP_1E4} at N = 10⁴ with equal accuracy"
    # judged only where the small run is N = 10⁴ (not in --quick); "equal accuracy": the SOE's
    # change is below a thousandth of the discretisation error
    out["meets_target"] = (
        bool(
            out["speedup_small"] >= TARGET_SPEEDUP_1E4
            and out["accuracy"]["l1_fast_vs_direct_at_small"]
            < 1e-3 * out["accuracy"]["l1_discretisation_error_at_small"]
        )
        if n_small == 10_000
        else None
    )
    return out


def batch_mode(num_steps: int, repeats: int) -> dict:
    alphas, ds = np.meshgrid(np.linspace(0.3, 0.9, 8), np.linspace(0.1, 0.8, 8), indexing="ij")
    alphas, ds = jnp.asarray(alphas.ravel()), jnp.asarray(ds.ravel())
    soe = fs.ffpe.SOE(SOE_TOL)
    p0 = _p0()

    def one(a, d):
        sol = fs.ffpe.solve(
            _problem(a, d), GRID, p0, t_final=T_FINAL, num_steps=num_steps, save_at=[T_FINAL],
            history=soe,
        )  # fmt: skip
        return sol.p[-1], sol.result

    batched = jax.jit(jax.vmap(one))
    (p_b, res_b), vmapped = _measure(lambda: batched(alphas, ds), repeats)
    loop = lambda: [one(float(a), float(d)) for a, d in zip(alphas, ds, strict=True)]
    looped, sequential = _measure(loop, max(1, repeats // 2))
    agree = max(float(jnp.max(jnp.abs(p_b[i] - looped[i][0]))) for i in range(len(looped)))
    n = int(alphas.shape[0])
    return {
        "problems": n,
        "num_steps": num_steps,
        "vmapped": {**vmapped, "problems_per_second": n / vmapped["wall_seconds"]},
        "one_by_one": {**sequential, "problems_per_second": n / sequential["wall_seconds"]},
        "speedup": sequential["wall_seconds"] / vmapped["wall_seconds"],
        "all_success": bool(jnp.all(res_b == fs.ffpe.SUCCESS)),
        "max_abs_difference_vmapped_vs_one_by_one": agree,
    }


def mittag_leffler_mode(quick: bool) -> dict:
    path = Path(__file__).resolve().parent / "mittag_leffler.py"
    if not path.exists():
        return {"status": "not available", "note": f"{path.name} does not exist"}
    spec = importlib.util.spec_from_file_location("bench_mittag_leffler", path)
    if spec is None or spec.loader is None:
        return {"status": "not available", "note": f"{path.name} cannot be imported"}
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "run"):
        return {"status": "not available", "note": f"{path.name} has no run()"}
    try:
        result = module.run(quick=quick)
    except TypeError:
        result = module.run()
    return {"status": "ok", "result": result}


def print_table(report: dict) -> None:
    h = report["history"]
    backend = report["machine"]["jax_backend"]
    print(f"\nFFPE, {GRID.cells} cells, T = {T_FINAL}, float64 on {backend}")
    print(f"{'mode':<14}{'N':>8}{'compile s':>11}{'warm s':>10}{'speed-up':>10}")
    for tag in ("small", "large"):
        for kind in ("direct", "fast"):
            m = h[f"{kind}_{tag}"]
            comp = m.get("compile_seconds")
            comp_s = f"{comp:>11.2f}" if comp is not None else f"{'-':>11}"
            est = " (est.)" if m.get("estimated") else ""
            sp = f"{h[f'speedup_{tag}']:>10.1f}" if kind == "fast" else f"{'':>10}"
            print(f"{kind:<14}{h[f'fast_{tag}']['num_steps']:>8}{comp_s}"
                  f"{m['wall_seconds']:>10.3f}{sp}{est}")  # fmt: skip
    acc = h["accuracy"]
    print(
        f"L1 |fast − direct| = {acc['l1_fast_vs_direct_at_small']:.2e}; discretisation error "
        f"{acc['l1_discretisation_error_at_small']:.2e}; target met: {h['meets_target']}"
    )
    b = report["batch"]
    print(
        f"batch of {b['problems']} (α, D), N = {b['num_steps']}: vmapped "
        f"{b['vmapped']['problems_per_second']:.1f}/s, one by one "
        f"{b['one_by_one']['problems_per_second']:.1f}/s ({b['speedup']:.1f}×)"
    )
    print(f"mittag_leffler: {report['mittag_leffler']['status']}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 10³/10⁴, 1 repeat")
    parser.add_argument("--repeats", type=int, default=None, help="warm repeats (3)")
    parser.add_argument("--direct-1e5", action="store_true", help="also run direct at 10⁵")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    steps = (1_000, 10_000) if args.quick else (10_000, 100_000)
    report = {
        "benchmark": "ffpe",
        "workload": {
            "equation": "D_t^α p = ∂_w(D ∂_w p + γ p ∂_w L), L = (w² − 1)², zero-flux walls",
            "cells": GRID.cells,
            "domain": [GRID.lo, GRID.hi],
            "alpha": 0.5,
            "diffusion": 0.3,
            "gamma": 1.0,
            "t_final": T_FINAL,
            "mesh": "uniform",
            "stepper": "L1",
            "soe_tol": SOE_TOL,
            "dtype": "float64",
        },
        "settings": {"repeats": repeats, "quick": args.quick},
        "machine": machine_info(),
        "source": source_info(),
    }
    report["history"] = history_modes(steps, repeats, args.direct_1e5)
    report["batch"] = batch_mode(200 if args.quick else 2000, repeats)
    report["mittag_leffler"] = mittag_leffler_mode(args.quick)
    out = args.out or RESULTS / ("ffpe_quick.json" if args.quick else "ffpe.json")
    write_json(report, out)
    print_table(report)
    print(f"wrote {out}", file=sys.stderr)
    return report


if __name__ == "__main__":
    main()
