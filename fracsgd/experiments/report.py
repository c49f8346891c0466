"""Figures, ``report.md`` and ``results.json`` of ``fracsgd reproduce`` (theory.md §6).

Every file is written atomically (temporary file + :func:`os.replace`), ``results.json`` last;
``report.md`` states the SHA-256 of the ``results.json`` it describes. ``results.json`` holds
one record per trained network under ``studies.<name>.networks`` with every quantity named as in
theory.md (``H``, ``d_w``, ``caputo_order``, ``lambda_final``, ``lambda_bar``,
``d_s_eq17_final``, ``d_s_eq17_bar``, ``d_s_return``, ``D_xi``, …), the configuration, the
decisions of theory.md that are ours, and the versions.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fracsgd.experiments._store import atomic_write_bytes, atomic_write_text
from fracsgd.experiments.mnist import PAPER_TABLE

#: The decisions theory.md marks as ours, stated in every report so a reader can disagree.
DECISIONS = {
    "drift_sign": "The SGD-FFPE is solved as D_t^α p = ∇·(D∇p + γ p∇L) (sign corrected so the "
    "stationary state is the Gibbs state ∝ exp(−γL/D) that the paper derives; theory.md §4).",
    "exponent_names": "H is the slope of log R(t) against log t; the MSD exponent is 2H; the "
    "Caputo order is α = 2H = 2/d_w; d_w = 1/H. The paper's tables call H 'α'.",
    "fit_window": "H is fitted on the late window after the crossover detected where the local "
    "log–log slope of R(t) falls below 1/2 and stays there, kept only when H there is "
    "significantly below 1/2 (95% CI); on the whole series when every local slope is below 1/2; "
    "otherwise on the last decade (or last half in log-time). The window, "
    "r² and a 95% CI (the wider of least squares and Newey–West in log-time) are reported.",
    "which_lambda": "lambda_final is λ̂ at the last checkpoint; lambda_bar is the trapezoid "
    "time-average of λ̂(w_t) over the late window t ≥ T^(1−late_fraction), from the checkpoints "
    "that are local minima: a checkpoint flagged not a minimum has no λ to estimate "
    "(theory.md App. B), so it is left out and counted (lambda_bar_excluded). Eq. 17's d_s is "
    "reported with each (d_s_eq17_final = 2·lambda_final·H, d_s_eq17_bar = 2·lambda_bar·H).",
    "bound": "The bound d_s ≤ λ̄ is tested with d_s_eq17_final and with the λ-free d_s_return. "
    "With d_s_eq17_bar it would reduce to H ≤ 1/2 (theory.md §3), so it is not counted. A "
    "verdict is conclusive (bound_*_conclusive) when the d_s's 95% CI lies within (0, ∞) on "
    "one side of λ̄ (for Eq. 17: 2·lambda_final·H_ci; for d_s_return also only when its fit "
    "window d_s_return_window spans at least half a decade of τ); a d_s ≤ 0 is no spectral "
    "dimension and gets no verdict, nor does Eq. 17's from λ_final ≤ 0 or H ≤ 0 (two negatives "
    "make a positive 2λH) or from a λ_final flagged as off a local minimum (llc_not_minimum); "
    "the SGD/Adam table's Eq. 17 d_s averages leave those out too.",
    "near_stability": "llc_cv_window is the coefficient of variation of λ̂ over the "
    "unflagged checkpoints inside H's fit window (theory.md §5; llc_cv_checkpoints of them), "
    "grad_norm_window the mean minibatch gradient norm there.",
    "lambda_free_d_s": "d_s_return: replicas restarted from the final point with other minibatch "
    "orders; P(τ) = Pr(||w_{t0+τ} − w_{t0}|| < ξ_ret) ~ τ^(−d_s/2), ξ_ret = the median replica "
    "displacement at τ ≈ T_branch/20. The replicas' optimiser state starts fresh "
    "(fracsgd.train.branch): for Adam networks the moment averages restart, so their first "
    "steps are larger than the original run's late steps and their d_s_return describes "
    "restarted Adam.",
    "llc_estimator": "λ̂ = nβ (E[L_B(w)] − L_n(w*)) with SGLD w ← w − (ε/2)(nβ∇L_B + γ(w − w*)) "
    "+ sqrt(ε)ξ, nβ = n / log n (theory.md §2); chains that diverge are excluded and counted; "
    "checkpoints that are not local minima (λ̂ < 0 or most draws below L_n(w*)) are flagged.",
    "D_xi": "D_ξ = ξ^(2 − 2λ/d_s) (v1 Def. 3.1) with λ = lambda_final and d_s = d_s_eq17_final, "
    "i.e. ξ^(2 − d_w) (defined for any λ); ξ = 0.5 as in v2 unless configured. In the two-moons "
    "comparison D_ξ is per cluster, from the means of λ̂ and d_s over its networks (those with "
    "λ̂ > 0, not flagged as off a local minimum, and d_s > 0).",
    "m": "In the almost-Bayesian comparison the tempering exponent is m·D_ξ with m the number of "
    "training samples (the m of L_m); masses are k-means cluster masses in function space "
    "(outputs on a probe grid); posterior = SGLD at β = 1 with a Gaussian prior.",
}


def versions() -> dict[str, str]:
    import jax

    from fracsgd._io import software

    sw = software()
    return {
        "fracsgd": sw["fracsgd"],
        "fracsgd_code": sw["code"],
        "jax": sw["jax"],
        "jaxlib": sw["jaxlib"],
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": jax.default_backend(),
        "devices": ", ".join(sorted({d.device_kind for d in jax.devices()})),
        "machine": platform.machine(),
    }


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, tuple):
        return list(o)
    return str(o)


def _clean(o: Any) -> Any:
    """NaN/inf → None (strict JSON)."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_clean(v) for v in o]
    return o


def json_text(obj: Any) -> str:
    """The text :func:`write_json` writes for ``obj`` (NaN and inf as null, one-space indent)."""
    return json.dumps(_clean(json.loads(json.dumps(obj, default=_json_default))), indent=1) + "\n"


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json_text(obj))


def _save(fig: Any, path: Path) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    except ValueError:
        # a log axis with no finite positive data (every network diverged, or every fit
        # failed) cannot be drawn: draw it linear and say so, rather than lose the report
        for ax in fig.axes:
            xy = [np.asarray(line.get_xydata(), float).reshape(-1, 2) for line in ax.lines]
            xy += [np.asarray(c.get_offsets(), float).reshape(-1, 2) for c in ax.collections]
            pts = np.concatenate(xy) if xy else np.zeros((0, 2))
            pts = pts[np.all(np.isfinite(pts), axis=1)]  # a NaN coordinate: not drawn
            for k, name in enumerate(("x", "y")):
                if getattr(ax, f"get_{name}scale")() == "log" and not np.any(pts[:, k] > 0):
                    getattr(ax, f"set_{name}scale")("linear")
                    ax.text(0.5, 0.5, "no finite data", ha="center", transform=ax.transAxes)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path.name


def _legend(ax: Any, **kw: Any) -> None:
    """A legend when the axes have labelled artists (none when every network diverged)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kw)


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _arr(records: Sequence[dict], key: str) -> np.ndarray:
    return np.asarray(
        [np.nan if r.get(key) is None else r.get(key, np.nan) for r in records], float
    )


def _positive(v: np.ndarray) -> np.ndarray:
    return v[v > 0]


def _final_at_minimum(records: Sequence[dict]) -> np.ndarray:
    """``lambda_final`` per record, NaN where its last checkpoint is flagged as not a local
    minimum (``llc_not_minimum[-1]``)."""
    lam = _arr(records, "lambda_final")
    flagged = [bool((r.get("llc_not_minimum") or [False])[-1]) for r in records]
    return np.where(flagged, np.nan, lam)


def _mean_std(v: np.ndarray) -> tuple[float, float, int]:
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else math.nan, int(v.size)


# ----------------------------------------------------------------------------- MNIST figures


def mnist_figures(study: Any, fig_dir: Path) -> list[str]:
    """The MNIST figures of theory.md §6; returns the file names written. Diverged networks are
    left out of every figure, as out of the summary table (their H, fitted before they
    diverged, and their D_ξ would read as a trained network's)."""
    plt = _plt()
    recs = [r for r in study.records if not r["diverged"]]
    names = []
    t = study.record_steps.astype(float)
    # (1) displacement over time for several model sizes, with the fitted late slope: the SGD
    # networks, or the Adam ones in a study without SGD (mnist.sgd_learning_rates=() left the
    # figure empty)
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    trained = [r["optimizer"] for r in recs if not r["diverged"]]
    which = "sgd" if "sgd" in trained or not trained else trained[0]
    shown = set()
    for r in recs:
        key = (r["hidden"], r["optimizer"])
        if key in shown or r["optimizer"] != which or r["diverged"]:
            continue
        shown.add(key)
        R = study.displacement[r["network"]]
        (line,) = ax.loglog(t, R, lw=1.2, label=f"{r['hidden']} ({r['num_params']} params)")
        if math.isfinite(r.get("H", math.nan)) and "fit_window" in r:
            t0, t1 = r["fit_window"]
            tt = np.geomspace(t0, t1, 20)
            # the least-squares line passes through the window's mean (log t, log R)
            w = (t >= t0) & (t <= t1) & (t > 0)
            c = np.mean(np.log(R[w])) - r["H"] * np.mean(np.log(t[w]))
            ax.loglog(tt, np.exp(c) * tt ** r["H"], "--", color=line.get_color(), lw=2)
            line.set_label(f"{r['hidden']} ({r['num_params']} p.), late H = {r['H']:.2f}")
    ax.set_xlabel("SGD step t")
    ax.set_ylabel("displacement R(t) = ||w_t − w_0||")
    name = {"sgd": "SGD", "adam": "Adam"}.get(which, which)
    ax.set_title(f"Weight displacement ({name}, one seed per width); dashed: late fit")
    _legend(ax, fontsize=7)
    names.append(_save(fig, fig_dir / "mnist_displacement.png"))

    lam_f, lam_b = _arr(recs, "lambda_final"), _arr(recs, "lambda_bar")
    ds17, dsr = _arr(recs, "d_s_eq17_final"), _arr(recs, "d_s_return")
    params = _arr(recs, "num_params")  # empty when every network diverged
    size = 10 + 120 * np.sqrt(params / max(params.max(initial=1.0), 1))
    opt = np.asarray([r["optimizer"] for r in recs])

    def scatter_bound(ax, x, y, xlabel, ylabel, title):
        for o, mk in (("sgd", "o"), ("adam", "^")):
            sel = opt == o
            if sel.any():
                ax.scatter(x[sel], y[sel], s=size[sel], marker=mk, alpha=0.6, label=o)
        fin = np.isfinite(x) & np.isfinite(y)
        if fin.any():
            lo = min(0.0, float(np.nanmin(x[fin])), float(np.nanmin(y[fin])))
            hi = max(float(np.nanmax(x[fin])), float(np.nanmax(y[fin])), 1e-9)
            ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="d_s = λ (bound)")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=9)
        _legend(ax, fontsize=7)

    # (2) final LLC vs d_s, marker size by parameter count, with the bound line
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.4))
    scatter_bound(
        axes[0], lam_f, ds17, "final LLC λ̂(w_T)", "d_s = 2 λ_final H (Eq. 17)", "Eq. 17 d_s"
    )
    scatter_bound(
        axes[1],
        lam_f,
        dsr,
        "final LLC λ̂(w_T)",
        "d_s from return probability (λ-free)",
        "λ-free d_s",
    )
    fig.suptitle("Final LLC vs spectral dimension (marker area ∝ √parameters)")
    names.append(_save(fig, fig_dir / "mnist_llc_vs_ds.png"))
    # (3) λ̄ vs d_s (the corollary)
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.4))
    scatter_bound(axes[0], lam_b, ds17, "time-averaged LLC λ̄", "d_s (Eq. 17, λ_final)", "")
    scatter_bound(axes[1], lam_b, dsr, "time-averaged LLC λ̄", "d_s (λ-free)", "")
    fig.suptitle("Bound d_s ≤ λ̄ (points below the dashed line satisfy it)")
    names.append(_save(fig, fig_dir / "mnist_lambda_bar_vs_ds.png"))
    # (4) histogram of the diffusion exponent
    fig, ax = plt.subplots(figsize=(6, 4))
    H = _arr(recs, "H")
    for o in ("sgd", "adam"):
        v = H[(opt == o) & np.isfinite(H)]
        if v.size:
            ax.hist(v, bins=15, alpha=0.6, label=f"{o} (n={v.size})")
    ax.axvline(0.5, color="k", ls="--", lw=1, label="Brownian H = 1/2")
    ax.set_xlabel("late diffusion exponent H (R ~ t^H)")
    ax.set_ylabel("networks")
    _legend(ax, fontsize=8)
    names.append(_save(fig, fig_dir / "mnist_exponent_hist.png"))
    # (5) total weight change vs LLC
    fig, ax = plt.subplots(figsize=(6, 4))
    for o, mk in (("sgd", "o"), ("adam", "^")):
        sel = opt == o
        if sel.any():
            ax.scatter(
                lam_f[sel],
                _arr(recs, "total_displacement")[sel],
                s=size[sel],
                marker=mk,
                alpha=0.6,
                label=o,
            )
    ax.set_xlabel("final LLC λ̂")
    ax.set_ylabel("total displacement R(T)")
    _legend(ax, fontsize=8)
    names.append(_save(fig, fig_dir / "mnist_displacement_vs_llc.png"))
    # (6) learning rate and batch size against λ and d_s; (7) test accuracy against each
    fig, axes = plt.subplots(2, 2, figsize=(9, 7))
    for j, (field, label) in enumerate(
        (("learning_rate", "learning rate"), ("batch_size", "batch size"))
    ):
        x = _arr(recs, field)
        for i, (y, ylab) in enumerate(((lam_f, "final LLC λ̂"), (ds17, "d_s (Eq. 17)"))):
            ax = axes[i, j]
            for o, mk in (("sgd", "o"), ("adam", "^")):
                sel = opt == o
                if sel.any():
                    ax.scatter(x[sel], y[sel], marker=mk, alpha=0.6, label=o)
            ax.set_xscale("log")
            ax.set_xlabel(label)
            ax.set_ylabel(ylab)
            _legend(ax, fontsize=7)
    names.append(_save(fig, fig_dir / "mnist_hyperparameters.png"))
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 4))
    acc = 100 * _arr(recs, "test_accuracy")
    for ax, (x, xl) in zip(axes, ((lam_f, "final LLC λ̂"), (ds17, "d_s (Eq. 17)")), strict=True):
        for o, mk in (("sgd", "o"), ("adam", "^")):
            sel = opt == o
            if sel.any():
                ax.scatter(x[sel], acc[sel], marker=mk, alpha=0.6, label=o)
        ax.set_xlabel(xl)
        ax.set_ylabel("test accuracy (%)")
        _legend(ax, fontsize=7)
    names.append(_save(fig, fig_dir / "mnist_accuracy.png"))
    # (8) SGD vs Adam
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.8))
    for ax, (v, lab) in zip(
        axes,
        ((ds17, "d_s (Eq. 17)"), (lam_f, "final LLC λ̂"), (acc, "test accuracy (%)")),
        strict=True,
    ):
        data = [v[(opt == o) & np.isfinite(v)] for o in ("sgd", "adam")]
        labels = [o for o, d in zip(("sgd", "adam"), data, strict=True) if d.size]
        data = [d for d in data if d.size]
        if data:
            ax.boxplot(data, tick_labels=labels)
        ax.set_ylabel(lab)
    fig.suptitle("SGD vs Adam")
    names.append(_save(fig, fig_dir / "mnist_sgd_vs_adam.png"))
    return names


def mnist_summary(study: Any) -> dict[str, Any]:
    """The SGD-vs-Adam table (mean ± std) and the bound counts."""
    recs = [r for r in study.records if not r["diverged"]]
    opt = np.asarray([r["optimizer"] for r in recs])
    table = {}
    for o in ("sgd", "adam"):
        sel = [r for r, oo in zip(recs, opt, strict=True) if oo == o]
        if not sel:
            continue
        eq17 = (_final_at_minimum(sel) > 0) & (_arr(sel, "H") > 0)
        table[o] = {
            "networks": len(sel),
            # a d_s ≤ 0 is no spectral dimension (it gets no verdict either): not averaged
            # Eq. 17's 2λH also needs λ_final > 0 (unflagged) and H > 0: two negatives make a
            # positive one, and a flagged λ̂ estimates no λ
            "d_s_eq17_final": _mean_std(_positive(_arr(sel, "d_s_eq17_final")[eq17])),
            "d_s_return": _mean_std(_positive(_arr(sel, "d_s_return"))),
            # a λ̂ flagged as not at a local minimum does not estimate λ (λ̄ leaves those out)
            "lambda_final": _mean_std(_final_at_minimum(sel)),
            "lambda_bar": _mean_std(_arr(sel, "lambda_bar")),
            "H": _mean_std(_arr(sel, "H")),
            "test_accuracy": _mean_std(_arr(sel, "test_accuracy")),
        }
    b17 = [r for r in recs if r.get("bound_eq17_holds") is not None]
    bret = [r for r in recs if r.get("bound_return_holds") is not None]

    def counts(sel: list[dict], which: str) -> list[int]:
        """[holds, of, conclusive and holds, conclusive and violated]"""
        held = [bool(r[f"bound_{which}_holds"]) for r in sel]
        sure = [bool(r.get(f"bound_{which}_conclusive")) for r in sel]
        return [
            int(sum(held)),
            len(sel),
            int(sum(h and c for h, c in zip(held, sure, strict=True))),
            int(sum(c and not h for h, c in zip(held, sure, strict=True))),
        ]

    return {
        "table": table,
        "paper_table": PAPER_TABLE,
        "bound_eq17_holds": counts(b17, "eq17"),
        "bound_return_holds": counts(bret, "return"),
        "diverged": int(sum(r["diverged"] for r in study.records)),
        "networks": len(study.records),
        "not_minimum_final": int(sum(bool(r["llc_not_minimum"][-1]) for r in recs)),
        "lambda_bar_excluded": int(sum(r.get("lambda_bar_excluded", 0) for r in recs)),
        "lambda_bar_networks_excluding": int(
            sum(r.get("lambda_bar_excluded", 0) > 0 for r in recs)
        ),
    }


# ----------------------------------------------------------------------------- moons figures


def moons_figures(study: Any, fig_dir: Path) -> list[str]:
    plt = _plt()
    names = []
    t = study.record_steps
    T = t[-1]
    fig, ax = plt.subplots(figsize=(6, 4.4))
    ok = ~np.asarray([r["diverged"] for r in study.records])
    for R in study.displacement[ok][:40]:
        ax.loglog(t / T, R, color="0.8", lw=0.5)
    m = study.mean_displacement
    ax.loglog(t / T, m, "C0", lw=2, label=f"mean over {int(ok.sum())} networks")
    ref = m[-1] * np.sqrt(t / T)
    ax.loglog(t / T, ref, "k--", lw=1, label="Brownian ∝ t^{1/2}")
    ax.set_xlabel("normalised time t / T")
    ax.set_ylabel("displacement R(t)")
    ax.set_title("Two moons: identical networks, SGD")
    _legend(ax, fontsize=8)
    names.append(_save(fig, fig_dir / "moons_displacement.png"))
    s = study.summary
    if study.comparison is not None:
        c = study.comparison
        k = len(c.sgd_masses)
        best = int(np.argmin(c.kl))
        fig, ax = plt.subplots(figsize=(6.5, 4))
        x = np.arange(k)
        ax.bar(x - 0.27, c.sgd_masses, 0.27, label="SGD")
        ax.bar(x, c.tempered[best], 0.27, label=f"SGD tempered (ξ = {c.best_xi:g})")
        ax.bar(x + 0.27, c.sgld_masses, 0.27, label="SGLD posterior")
        ax.set_xlabel("cluster (function space)")
        ax.set_ylabel("mass")
        ax.set_xticks(x)
        _legend(ax, fontsize=8)
        names.append(_save(fig, fig_dir / "moons_cluster_masses.png"))
        fig, ax = plt.subplots(figsize=(6, 4))
        # distances span orders of magnitude: log–log (zeros are left out of the plot); when
        # none is > 0 (one cluster: every mass is 1) the distance axis stays linear, since
        # matplotlib cannot log-scale it and warns
        # moons.xis may be given in any order: draw the curves in increasing ξ
        order = np.argsort(c.xis, kind="stable")
        dists = np.concatenate([c.kl, c.js, c.wasserstein, [s["kl_untempered"]]])
        ax.set_xscale("log")
        if np.any(np.isfinite(dists) & (dists > 0)):
            ax.set_yscale("log")
        ax.plot(c.xis[order], c.kl[order], "o-", label="KL(posterior ‖ tempered SGD)")
        ax.plot(c.xis[order], c.js[order], "s-", label="Jensen–Shannon")
        ax.plot(c.xis[order], c.wasserstein[order], "^-", label="Wasserstein-1")
        ax.axvline(c.best_xi, color="k", ls="--", lw=1, label=f"chosen ξ = {c.best_xi:g}")
        ax.axhline(s["kl_untempered"], color="C0", ls=":", lw=1, label="KL untempered")
        ax.set_xlabel("coarse-graining length ξ")
        ax.set_ylabel("distance")
        _legend(ax, fontsize=7)
        names.append(_save(fig, fig_dir / "moons_xi_scan.png"))
    return names


# ----------------------------------------------------------------------------- report


def _pm(v: tuple) -> str:
    mean, std, n = v
    if n == 0:
        return "–"
    return f"{mean:.3g} ± {std:.2g}" if math.isfinite(std) else f"{mean:.3g}"


def _f(v: Any, fmt: str = ".3g") -> str:
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)


def _yes_no(v: Any) -> str:
    return "–" if v is None else ("yes" if v else "no")


def _nbeta_of(study: Any) -> str:
    vals = [r["nbeta"] for r in study.records if "nbeta" in r]
    return f"{vals[0]:.2f}" if vals else "n/log n"


def _missing_return_reasons(study: Any) -> list[str]:
    """One line per reason the λ-free d_s is missing, with the networks it applies to."""
    reasons: dict[str, list[int]] = {}
    for r in study.records:
        if r.get("d_s_return_note"):
            reasons.setdefault(r["d_s_return_note"], []).append(r["network"])
    return [f"- λ-free d_s missing for networks {nets}: {why}." for why, nets in reasons.items()]


def mnist_section(study: Any, summary: dict, figures: list[str]) -> str:
    c = study.config
    lines = [
        "## MNIST study",
        "",
        f"Data: {study.dataset_source} ({study.num_train} training images). "
        f"{len(study.records)} networks ({summary['diverged']} diverged) in "
        f"{study.num_programs} compiled training programs; hidden widths "
        f"{', '.join('-'.join(map(str, h)) for h in c.hidden)}; seeds {list(c.seeds)}; SGD "
        f"learning rates {list(c.sgd_learning_rates)}, Adam {list(c.adam_learning_rates)}; "
        f"batch sizes {list(c.batch_sizes)}; {c.steps} steps, R(t) recorded every "
        f"{c.record_every}; BatchNorm {c.batch_norm}.",
        f"LLC: {c.llc_chains} chains × {c.llc_draws} draws (burn-in {c.llc_burnin}), "
        f"ε = {c.llc_step_size:g}, γ = {c.llc_localization:g}, batch {c.llc_batch_size}, "
        f"nβ = n/log n = {_nbeta_of(study)}, at {c.num_checkpoints} log-spaced checkpoints; "
        f"λ̄ over t ≥ T^(1 − {c.late_fraction:g}). λ-free d_s: "
        f"{c.replicas} replicas × {c.branch_steps} steps from each final point. "
        f"D_ξ at ξ = {c.xi:g}.",
        "",
        "### SGD vs Adam (mean ± std over networks) beside the paper (v2 appendix)",
        "",
        "The d_s columns average the networks whose d_s is > 0 (a d_s ≤ 0 is no spectral "
        "dimension; for Eq. 17 also an unflagged λ_final > 0 and H > 0); final λ the networks "
        "whose last "
        "checkpoint is not flagged as off a local minimum, and λ̄ those with a λ̄; each gives its "
        "number when it is not every network.",
        "",
        "| | networks | d_s (Eq. 17, λ_final) | d_s (λ-free) | final λ | λ̄ | H | test acc. |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for o, row in summary["table"].items():
        acc = row["test_accuracy"]

        def ds(v: tuple, networks: int = row["networks"]) -> str:
            """mean ± std over the networks counted, their number when not all."""
            return _pm(v) + (f" ({v[2]} of {networks})" if 0 < v[2] < networks else "")

        lines.append(
            f"| fracsgd {o} | {row['networks']} | {ds(row['d_s_eq17_final'])} | "
            f"{ds(row['d_s_return'])} | {ds(row['lambda_final'])} | {ds(row['lambda_bar'])} | "
            f"{_pm(row['H'])} | {100 * acc[0]:.1f} % |"
        )
    paper: dict[str, Any]
    for o, paper in PAPER_TABLE.items():
        lines.append(
            f"| paper {o} | – | {paper['d_s'][0]} ± {paper['d_s'][1]} | – | "
            f"{paper['lambda_final'][0]} ± {paper['lambda_final'][1]} | – | – | "
            f"{100 * paper['test_accuracy']:.1f} % |"
        )
    h17, n17, s17, v17 = summary["bound_eq17_holds"]
    hr, nr, sr, vr = summary["bound_return_holds"]
    lines += [
        "",
        f"**Bound d_s ≤ λ̄** holds for {h17} of {n17} networks with Eq. 17's d_s "
        f"(2·λ_final·H) and for {hr} of {nr} with the λ-free d_s (networks where it could be "
        "estimated and came out > 0: a d_s ≤ 0 is no spectral dimension and gets no verdict). "
        "With d_s computed from λ̄ itself the bound would be H ≤ 1/2, so that "
        "version is not counted (theory.md §3). Conclusive verdicts (the d_s's 95 % CI within "
        "(0, ∞) on one side of λ̄; for the λ-free d_s, a fit over at least half a decade of τ): "
        f"Eq. 17 {s17} hold, {v17} violated; λ-free {sr} hold, {vr} "
        "violated — the rest are within d_s's error bar (H's CI for Eq. 17, a jackknife over "
        "the replicas for the λ-free d_s; λ̂'s own spread is not included).",
        f"{summary['not_minimum_final']} final checkpoints were flagged as not local minima "
        "(their λ̂ is unreliable; see `llc_not_minimum` in results.json); "
        f"{summary['lambda_bar_excluded']} flagged checkpoints inside the late window "
        f"({summary['lambda_bar_networks_excluding']} networks) were left out of λ̄.",
        *(["", *_missing_return_reasons(study)] if _missing_return_reasons(study) else []),
        "",
        "### Networks",
        "",
        "| # | hidden | opt | lr | batch | H [window] | r² | λ_final | λ̄ | d_s Eq.17 | "
        "d_s λ-free | bound | CV λ | test acc. |",
        "| ---: | --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: "
        "| ---: |",
    ]
    for r in study.records:
        win = r.get("fit_window")
        win_s = f" [{win[0]:.0f}, {win[1]:.0f}]" if win else ""
        lines.append(
            f"| {r['network']} | {r['hidden']} | {r['optimizer']} | {r['learning_rate']:g} | "
            f"{r['batch_size']} | {_f(r.get('H'))}{win_s} | {_f(r.get('fit_r2'), '.3f')} | "
            f"{_f(r['lambda_final'])} | {_f(r['lambda_bar'])} | {_f(r['d_s_eq17_final'])} | "
            f"{_f(r['d_s_return'])} | "
            f"{_yes_no(r['bound_eq17_holds'])} | {_f(r['llc_cv_window'], '.2f')} | "
            f"{100 * r['test_accuracy']:.1f} % |"
        )
    lines += ["", "### Figures", ""]
    lines += [f"![{f}](figures/{f})" for f in figures]
    return "\n".join(lines) + "\n"


def moons_section(study: Any, figures: list[str]) -> str:
    c, s = study.config, study.summary
    lw = s["mean_displacement_late_window"]
    late_window = "–" if lw is None else f"[{lw[0]:.0f}, {lw[1]:.0f}]"
    lines = [
        "## Two-moons study",
        "",
        f"{s['networks']} identical {2}-{'-'.join(map(str, c.hidden))}-2 networks "
        f"({s['diverged']} diverged), SGD with learning rate {c.learning_rate:g}, batch "
        f"{c.batch_size}, {c.steps} steps, on {c.n} points (noise {c.noise:g}).",
        "",
        f"Mean displacement: early slope H = {_f(s['mean_displacement_H_early'])} (first tenth of "
        f"the run), late slope H = {_f(s['mean_displacement_H_late'])} on "
        f"{late_window} (Brownian: 1/2; the paper reports early super- and "
        "late subdiffusion); the largest local slope of the mean R(t) is "
        f"{_f(s['max_local_slope'])}"
        + (
            f" (not fitted: {s['mean_displacement_fit_error']})."
            if s.get("mean_displacement_fit_error")
            else "."
        ),
        "",
        f"λ̂ at each final point: {c.llc_chains} SGLD chains × {c.llc_draws} draws after "
        f"{c.llc_burnin} burn-in steps, step size {c.llc_step_size:g}, localisation "
        f"{c.llc_localization:g}, batch {s['llc_batch_size']}, nβ = n/log n = {s['nbeta']:.2f}. "
        f"Posterior: {c.posterior_chains} SGLD chains at β = 1 (full-batch gradients, Gaussian "
        f"prior σ = {c.prior_std:g}), {c.posterior_steps} steps of size "
        f"{c.posterior_step_size:g}, the first {c.posterior_burnin} discarded, every "
        f"{c.posterior_thin}-th kept.",
        "",
    ]
    if "best_xi" in s:
        paper = s["at_paper_xi"]
        edge = max(c.xis)
        metrics = ("kl", "wasserstein", "js")
        better = [
            m for m in metrics if s[f"{m}_at_best_xi"] < s[f"{m}_untempered"]
        ]  # at the chosen ξ, against the raw SGD masses
        names = {"kl": "KL", "wasserstein": "Wasserstein", "js": "JS"}
        lines += [
            f"Clusters (k = {c.num_clusters}, function space on a {c.probe_points}² probe grid) "
            + (
                f"of the {s['networks_with_positive_d_s']} of {s['networks'] - s['diverged']} "
                "non-diverged networks whose λ̂ (at a local minimum) and Eq. 17 d_s = 2λ̂H are > 0 "
                "(the others have no D_ξ and are left out of the masses too)"
                if "networks_with_positive_d_s" in s
                else "of the networks whose λ̂ and Eq. 17 d_s = 2λ̂H are > 0"
            )
            + "; each cluster's D_ξ is ξ^(2 − 2·mean λ̂/mean d_s) over its networks: "
            f"SGD masses {np.round(s['sgd_masses'], 3).tolist()}, SGLD posterior masses "
            f"{np.round(s['posterior_masses'], 3).tolist()} ({s['posterior_samples']} samples), "
            f"tempered SGD masses at the chosen ξ = {s['best_xi']:g}: "
            f"{np.round(s['tempered_masses_at_best_xi'], 3).tolist()}.",
            "",
            "| | KL | Wasserstein | JS |",
            "| --- | ---: | ---: | ---: |",
            f"| untempered SGD | {s['kl_untempered']:.4f} | {s['wasserstein_untempered']:.4f} | "
            f"{s['js_untempered']:.4f} |",
            f"| tempered, chosen ξ = {s['best_xi']:g} | {s['kl_at_best_xi']:.4f} | "
            f"{s['wasserstein_at_best_xi']:.4f} | {s['js_at_best_xi']:.4f} |",
            f"| tempered, ξ = {paper['xi']:g} (the paper's) | {paper['kl']:.4f} | "
            f"{paper['wasserstein']:.4f} | {paper['js']:.4f} |",
            "| paper (v2), ξ = 0.5 | 0.009 | 0.002 | 0.003 |",
            "",
            f"ξ is chosen as the minimiser of KL over the scan {min(c.xis):g} … {max(c.xis):g} "
            f"({len(c.xis)} values); m = {s['m']} training samples. At the chosen ξ tempering "
            + (
                "brings the SGD masses closer to the posterior than the raw SGD masses by "
                + ", ".join(names[m] for m in better)
                + (
                    f" (not by {', '.join(names[m] for m in metrics if m not in better)})"
                    if len(better) < len(metrics)
                    else ""
                )
                if better
                else "does not bring the SGD masses closer to the posterior than the raw SGD "
                "masses by any of the three measures: with m·D_ξ ≫ 1 the tempered masses "
                "collapse onto the largest clusters"
            )
            + f" (KL {s['kl_at_best_xi']:.4f} vs {s['kl_untempered']:.4f} untempered)."
            + (
                f" The minimiser is the scan's {'largest' if s['best_xi'] == edge else 'smallest'}"
                " ξ: KL may fall further beyond it (no minimum bracketed; widen moons.xis)."
                if len(c.xis) > 1 and s["best_xi"] in (min(c.xis), edge)
                else ""
            ),
        ]
    else:
        lines.append(f"The tempered comparison was skipped: {s['comparison_skipped']}.")
    lines += ["", "### Figures", ""]
    lines += [f"![{f}](figures/{f})" for f in figures]
    return "\n".join(lines) + "\n"


def write(
    out_dir: str | Path,
    *,
    command: str,
    seed: int,
    mnist: Any = None,
    moons: Any = None,
) -> dict[str, Any]:
    """Write ``figures/*.png``, ``timings.json``, ``report.md`` and, last, ``results.json``;
    returns the results dict. ``report.md`` states the SHA-256 of the ``results.json`` it
    describes, so a report and results from different runs (a run killed between writing the
    two) can be told apart: ``sha256sum results.json``."""
    out = Path(out_dir)
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "command": command,
        "seed": seed,
        "versions": versions(),
        "decisions": DECISIONS,
        "studies": {},
    }
    sections = []
    if mnist is not None:
        figs = mnist_figures(mnist, fig_dir)
        summ = mnist_summary(mnist)
        results["studies"]["mnist"] = {
            "config": mnist.config._asdict(),
            "dataset": mnist.dataset_source,
            "summary": summ,
            "figures": figs,
            "networks": mnist.records,
        }
        sections.append(mnist_section(mnist, summ, figs))
    if moons is not None:
        figs = moons_figures(moons, fig_dir)
        results["studies"]["moons"] = {
            "config": moons.config._asdict(),
            "summary": moons.summary,
            "figures": figs,
            "networks": moons.records,
        }
        sections.append(moons_section(moons, figs))
    v = results["versions"]
    head = [
        "# fracsgd reproduce — report",
        "",
        "Hennick & De Baerdemacker, *Almost Bayesian: The Fractal Dynamics of Stochastic "
        "Gradient Descent* (arXiv 2503.22478), reproduced with fracsgd.",
        "",
        f"Command: `{command}` (seed {seed}). fracsgd {v['fracsgd']} (code "
        f"{v['fracsgd_code'][:12]}), jax {v['jax']} on "
        f"{v['platform']} ({v['devices']}), Python {v['python']}.",
        "",
        "## Decisions that are ours (theory.md), so you can disagree",
        "",
    ]
    head += [f"- **{k}**: {text}" for k, text in DECISIONS.items()]
    # wall-clock times go to their own file, so that results.json is a deterministic function of
    # the command and the seed (bitwise identical on re-runs and resumes on the same machine)
    timings = {}
    if mnist is not None:
        timings["mnist"] = mnist.timings
    if moons is not None:
        timings["moons"] = moons.timings
    write_json(out / "timings.json", timings)
    # results.json is written last and report.md names its SHA-256: a run killed between the
    # two leaves a report whose digest does not match the results.json beside it
    text = json_text(results)
    digest = hashlib.sha256(text.encode()).hexdigest()
    at = head.index("## Decisions that are ours (theory.md), so you can disagree")
    head[at:at] = [f"The numbers are in `results.json` (SHA-256 `{digest}`).", ""]
    atomic_write_text(out / "report.md", "\n".join(head) + "\n\n" + "\n".join(sections))
    atomic_write_text(out / "results.json", text)
    _remove_stale_figures(fig_dir, {f for s in results["studies"].values() for f in s["figures"]})
    return results


def _remove_stale_figures(fig_dir: Path, written: set[str]) -> None:
    """Delete the study figures (``mnist_*.png``, ``moons_*.png``: the names this module writes)
    that this report did not write: another study's, run earlier into the same directory, or one
    this study writes only sometimes (the cluster masses when the comparison was skipped), so
    that ``figures/`` shows what ``report.md`` describes. Other files are left alone."""
    for pattern in ("mnist_*.png", "moons_*.png"):
        for path in fig_dir.glob(pattern):
            if path.name not in written:
                path.unlink(missing_ok=True)
