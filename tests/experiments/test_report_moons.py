"""The two-moons report section and ξ-scan figure with a ξ scan given out of order
(fracsgd.experiments.report.moons_section, moons_figures): ``moons.xis`` is any tuple of
positive numbers, and ``--set moons.xis=(0.1, 0.5, 2.0, 0.25)`` is kept in the user's order."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from fracsgd.experiments import moons, report

XIS = (0.1, 0.5, 2.0, 0.25)  # not sorted: the scan spans 0.1 … 2
KL = np.array([348.1, 171.8, 113.8, 207.3])


def _study():
    config = moons.MoonsConfig.quick()._replace(xis=XIS, num_clusters=3)
    best = int(np.argmin(KL))
    summary = {
        "networks": 4,
        "diverged": 0,
        "nbeta": 37.75,
        "llc_batch_size": 64,
        "mean_displacement_H_early": 0.36,
        "mean_displacement_H_late": 0.37,
        "mean_displacement_late_window": [2.0, 600.0],
        "max_local_slope": 0.46,
        "posterior_samples": 48,
        "m": 200,
        "sgd_masses": [0.25, 0.25, 0.5],
        "posterior_masses": [0.3, 0.3, 0.4],
        "tempered_masses_at_best_xi": [0.0, 0.0, 1.0],
        "best_xi": XIS[best],
        "kl_at_best_xi": float(KL[best]),
        "js_at_best_xi": 0.3,
        "wasserstein_at_best_xi": 0.36,
        "kl_untempered": 0.18,
        "js_untempered": 0.04,
        "wasserstein_untempered": 0.13,
        "at_paper_xi": {"xi": 0.5, "kl": 171.8, "js": 0.3, "wasserstein": 0.36},
    }
    comparison = SimpleNamespace(
        xis=np.asarray(XIS),
        kl=KL,
        js=np.array([0.4, 0.3, 0.3, 0.35]),
        wasserstein=np.array([0.5, 0.36, 0.36, 0.4]),
        best_xi=XIS[best],
        sgd_masses=np.array(summary["sgd_masses"]),
        sgld_masses=np.array(summary["posterior_masses"]),
        tempered=np.tile([0.0, 0.0, 1.0], (len(XIS), 1)),
    )
    t = np.arange(2.0, 602.0, 2.0)
    return SimpleNamespace(
        config=config,
        summary=summary,
        comparison=comparison,
        records=[{"diverged": False}] * 4,
        record_steps=t,
        displacement=np.tile(np.sqrt(t), (4, 1)),
        mean_displacement=np.sqrt(t),
    )


def test_the_report_states_the_range_of_an_unsorted_xi_scan():
    """The text named the first and last entries ("the scan 0.1 … 0.25") for a scan that
    reaches ξ = 2, which it chose."""
    text = report.moons_section(_study(), [])
    assert "over the scan 0.1 … 2 (4 values)" in text, text


def test_the_report_says_when_the_chosen_xi_is_at_the_edge_of_the_scan():
    """KL falling to the scan's last ξ brackets no minimum: the chosen ξ is an edge, and the
    report said nothing about it (a review run chose ξ = 1000, the largest scanned)."""
    study = _study()  # KL is smallest at ξ = 2, the largest of the scan
    assert "The minimiser is the scan's largest ξ" in report.moons_section(study, [])
    inside = study.config._replace(xis=(*XIS, 4.0))  # 2 is now inside the scan
    text = report.moons_section(SimpleNamespace(**{**vars(study), "config": inside}), [])
    assert "The minimiser is the scan's" not in text


def test_the_xi_scan_figure_draws_its_curves_in_increasing_xi(tmp_path, monkeypatch):
    """The curves of KL, JS and Wasserstein against ξ were drawn in the order of moons.xis,
    so an unsorted scan zig-zagged back along the log axis."""
    figures = {}

    def keep(fig, path: Path) -> str:
        figures[path.name] = [line.get_xdata() for line in fig.axes[0].lines]
        return path.name

    monkeypatch.setattr(report, "_save", keep)
    report.moons_figures(_study(), tmp_path)
    curves = [np.asarray(x, float) for x in figures["moons_xi_scan.png"]]
    scans = [x for x in curves if x.size == len(XIS)]
    assert len(scans) == 3
    for x in scans:
        assert np.all(np.diff(x) > 0), x


def test_one_cluster_gives_zero_distances_and_still_a_report(tmp_path, capsys):
    """With ``num_clusters=1`` every mass is 1, so KL, JS and Wasserstein are 0 at every ξ:
    the log-scaled ξ-scan figure had no positive value and matplotlib warned (an error under
    the suite's warnings-as-errors; a user saw two UserWarnings)."""
    from fracsgd.cli import main

    tiny = {
        "n": 128,
        "hidden": "(4,)",
        "networks": 4,
        "steps": 40,
        "batch_size": 16,
        "llc_draws": 20,
        "llc_burnin": 0,
        "posterior_chains": 2,
        "posterior_steps": 40,
        "posterior_burnin": 20,
        "posterior_thin": 10,
        "num_clusters": 1,
        "probe_points": 4,
        "xis": "(0.1, 1.0)",
    }
    argv = ["reproduce", "moons", "--quick", "--no-progress", "--out", str(tmp_path / "o")]
    argv += [a for k, v in tiny.items() for a in ("--set", f"moons.{k}={v}")]
    assert main(argv) == 0, capsys.readouterr().err
    res = json.loads((tmp_path / "o" / "results.json").read_text())["studies"]["moons"]
    if "kl" not in res["summary"]:  # too few networks with a positive d_s: nothing to draw
        pytest.skip(res["summary"]["comparison_skipped"])
    assert res["summary"]["kl"] == [0.0, 0.0] and res["summary"]["wasserstein"] == [0.0, 0.0]
    assert (tmp_path / "o" / "figures" / "moons_xi_scan.png").stat().st_size > 2000
