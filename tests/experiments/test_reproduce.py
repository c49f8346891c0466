"""The reproduce pipeline on tiny grids: results.json consistency, resume, refusal to reuse
another configuration's stages, atomic writes, and CLI argument errors."""

import json
import math
import os
from pathlib import Path

import jax
import numpy as np
import pytest

import fracsgd as fs
from fracsgd.cli import main
from fracsgd.experiments import StageError, Store, fingerprint, moons
from fracsgd.experiments._store import atomic_write_bytes

TINY_MNIST = [
    "--set",
    "mnist.hidden=((8,), (12,))",  # one padded bucket: fewer programs to compile
    "--set",
    "mnist.seeds=(0,)",
    "--set",
    "mnist.sgd_learning_rates=(0.1,)",
    "--set",
    "mnist.adam_learning_rates=(0.002,)",
    "--set",
    "mnist.batch_sizes=(128,)",
    "--set",
    "mnist.steps=200",
    "--set",
    "mnist.record_every=2",
    "--set",
    "mnist.num_checkpoints=4",
    "--set",
    "mnist.llc_chains=2",
    "--set",
    "mnist.llc_draws=20",
    "--set",
    "mnist.llc_burnin=0",
    "--set",
    "mnist.replicas=8",
    "--set",
    "mnist.branch_steps=20",
]

REQUIRED = {
    "network",
    "seed",
    "hidden",
    "num_params",
    "optimizer",
    "learning_rate",
    "batch_size",
    "test_accuracy",
    "total_displacement",
    "H",
    "d_w",
    "caputo_order",
    "fit_window",
    "llc",
    "checkpoint_steps",
    "lambda_final",
    "lambda_bar",
    "lambda_window",
    "d_s_eq17_final",
    "d_s_eq17_bar",
    "d_s_return",
    "D_xi",
    "xi",
    "bound_eq17_holds",
    "llc_cv_window",
    "grad_norm_window",
    "llc_chains_diverged",
    "llc_distance",
    "llc_rhat",
    "llc_rhat_distance",
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce")
    argv = ["reproduce", "mnist", "--quick", "--out", str(out), "--no-progress", *TINY_MNIST]
    assert main(argv) == 0
    return out, argv


def _copy_of(tiny_run, tmp_path):
    """A copy of the tiny run's directory and the argv that writes into it."""
    import shutil

    out, argv = tiny_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    return out, copy, [a if a != str(out) else str(copy) for a in argv]


def test_results_json_is_consistent_with_its_own_numbers(tiny_run):
    out, _ = tiny_run
    res = json.loads((out / "results.json").read_text())
    assert res["versions"]["fracsgd"] == fs.__version__
    assert set(res["decisions"]) >= {"drift_sign", "which_lambda", "fit_window", "m"}
    study = res["studies"]["mnist"]
    nets = study["networks"]
    # 2 widths × 1 seed × (1 SGD + 1 Adam learning rate) × 1 batch size
    assert len(nets) == 4
    assert {n["optimizer"] for n in nets} == {"sgd", "adam"}
    for n in nets:
        assert REQUIRED <= set(n), REQUIRED - set(n)
        # one RMS chain distance per checkpoint, positive wherever λ̂ is
        assert len(n["llc_distance"]) == len(n["checkpoint_steps"])
        for lam, dist in zip(n["llc"], n["llc_distance"], strict=True):
            assert (lam is None) or (dist is not None and dist > 0)
        # R-hats per checkpoint; 20 draws measure the distance at 3 draws: too few for one
        assert len(n["llc_rhat"]) == len(n["llc_rhat_distance"]) == len(n["checkpoint_steps"])
        assert all(r is None or r > 0 for r in n["llc_rhat"])
        assert all(r is None for r in n["llc_rhat_distance"])
        H, lam_f, lam_b = n["H"], n["lambda_final"], n["lambda_bar"]
        # Eq. 17 with each λ, recomputed from the stored numbers
        assert n["d_s_eq17_final"] == pytest.approx(2 * lam_f * H, rel=1e-12)
        if lam_b is None:  # no unflagged checkpoint in the late window
            assert n["d_s_eq17_bar"] is None and n["bound_eq17_holds"] is None
        else:
            assert n["d_s_eq17_bar"] == pytest.approx(2 * lam_b * H, rel=1e-12)
        assert n["d_w"] == pytest.approx(1 / H, rel=1e-12)
        assert n["caputo_order"] == pytest.approx(2 * H, rel=1e-12)
        # λ̄: trapezoid time average of the stored λ̂(w_t) over the late window, from the
        # checkpoints not flagged as non-minima (theory.md App. B)
        t = np.asarray(n["checkpoint_steps"], float)
        flagged = np.asarray(n["llc_not_minimum"], bool)
        lam_ok = np.where(flagged, np.nan, np.asarray(n["llc"], float))
        start = t[-1] ** (1 - study["config"]["late_fraction"])
        late = t >= start
        assert n["lambda_bar_excluded"] == int(np.sum(late & flagged))
        assert n["lambda_bar_checkpoints"] == int(np.sum(late & ~flagged))
        if n["lambda_bar_checkpoints"]:
            assert n["lambda_bar"] == pytest.approx(
                fs.llc.time_average(t, lam_ok, start), rel=1e-12
            )
            used = t[late & ~flagged]
            assert n["lambda_window"] == [used[0], used[-1]]
        else:
            assert lam_b is None and n["lambda_window"] is None
        assert n["lambda_final"] == n["llc"][-1]
        # the bound, recomputed: no verdict for d_s ≤ 0 (no spectral dimension); conclusive
        # when the CI lies in (0, ∞) on one side of λ̄
        if lam_b is not None:
            d17 = n["d_s_eq17_final"]
            assert n["bound_eq17_holds"] == ((d17 <= lam_b) if d17 > 0 else None)
            lo, hi = sorted(2 * lam_f * h for h in n["H_ci"])
            assert n["d_s_eq17_final_ci"] == pytest.approx([lo, hi], rel=1e-12)
            assert n["bound_eq17_conclusive"] == (lo > 0 and (hi <= lam_b or lo > lam_b))
            d_ret = n["d_s_return"]
            if d_ret is not None:
                assert n["bound_return_holds"] == ((d_ret <= lam_b) if d_ret > 0 else None)
                r_lo, r_hi = n["d_s_return_ci"]
                w0, w1 = n["d_s_return_window"]
                if r_lo is None or r_hi is None:
                    assert n["bound_return_conclusive"] is None
                else:  # and a fit window of at least half a decade
                    assert n["bound_return_conclusive"] == (
                        r_lo > 0 and (r_hi <= lam_b or r_lo > lam_b) and w1 >= 10**0.5 * w0
                    )
        # near-stability over H's fit window, unflagged checkpoints
        lo_w, hi_w = n["fit_window"]
        inside = (t >= lo_w) & (t <= hi_w) & np.isfinite(lam_ok)
        assert n["llc_cv_checkpoints"] == int(inside.sum())
        if inside.sum() > 1:
            v = lam_ok[inside]
            assert n["llc_cv_window"] == pytest.approx(np.std(v) / abs(np.mean(v)), rel=1e-9)
        # D_ξ = ξ^(2 − 2λ/d_s) with Eq. 17's d_s is ξ^(2 − 1/H)
        if n["D_xi"] is not None:
            assert n["D_xi"] == pytest.approx(n["xi"] ** (2 - 1 / H), rel=1e-9)
        assert 0.0 <= n["test_accuracy"] <= 1.0
    summary = study["summary"]
    judged = [n for n in nets if n["bound_eq17_holds"] is not None]
    holds = [n["bound_eq17_holds"] for n in judged]
    sure = [n["bound_eq17_conclusive"] for n in judged]
    assert summary["bound_eq17_holds"] == [
        sum(holds),
        len(holds),
        sum(h and c for h, c in zip(holds, sure, strict=True)),
        sum(c and not h for h, c in zip(holds, sure, strict=True)),
    ]
    sgd = [n["d_s_eq17_final"] for n in nets if n["optimizer"] == "sgd"]
    assert summary["table"]["sgd"]["d_s_eq17_final"][0] == pytest.approx(np.mean(sgd))


def test_every_figure_is_a_nonempty_png_and_the_report_names_the_decisions(tiny_run):
    out, _ = tiny_run
    res = json.loads((out / "results.json").read_text())
    figs = res["studies"]["mnist"]["figures"]
    assert len(figs) == 8
    for name in figs:
        data = (out / "figures" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
    report = (out / "report.md").read_text()
    for key in res["decisions"]:
        assert f"**{key}**" in report
    assert "paper sgd" in report and "Bound d_s ≤ λ̄" in report
    assert not [p for p in out.rglob("*.tmp")]  # no temporary files left behind


def test_report_names_the_digest_of_the_results_it_describes(tiny_run):
    """results.json is written after report.md, and the report quotes its SHA-256: a report
    left beside another run's results (a kill between the two writes) is detectable."""
    import hashlib
    import re

    out, _ = tiny_run
    quoted = re.findall(r"SHA-256 `([0-9a-f]{64})`", (out / "report.md").read_text())
    assert quoted == [hashlib.sha256((out / "results.json").read_bytes()).hexdigest()]


def test_rerun_resumes_and_reproduces_results_bitwise(tiny_run, capsys):
    out, argv = tiny_run
    before = (out / "results.json").read_text()
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert err.count("resumed") == 3  # train, llc, branch
    assert (out / "results.json").read_text() == before  # bitwise: timings live elsewhere
    assert set(json.loads((out / "timings.json").read_text())["mnist"]) == {
        "train",
        "llc",
        "branch",
    }


def test_other_configuration_in_the_same_directory_is_refused(tiny_run, capsys):
    _, argv = tiny_run
    argv2 = [*argv, "--seed", "1"]
    assert main(argv2) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(err) == 1 and "another configuration" in err[0] and "--overwrite" in err[0]


def test_corrupt_stage_is_reported_not_reused(tmp_path):
    store = Store(tmp_path, "mnist", verbose=False)
    fp = fingerprint("x", 1)
    store.save("train", fp, {"a": np.arange(3)})
    assert store.load("train", fp)["a"].tolist() == [0, 1, 2]
    path = store.path("train")
    path.write_bytes(path.read_bytes()[:40])  # truncated
    with pytest.raises(StageError, match="corrupt or truncated"):
        store.load("train", fp)
    # --overwrite recomputes instead
    again = Store(tmp_path, "mnist", overwrite=True, verbose=False)
    assert again.stage("train", fp, lambda: {"a": np.ones(2)})["a"].tolist() == [1.0, 1.0]


def test_interrupted_stage_leaves_no_file(tmp_path):
    store = Store(tmp_path, "moons", verbose=False)

    def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.stage("train", "fp", interrupted)
    assert not store.path("train").exists()


@pytest.mark.skipif(os.name != "posix", reason="stale temporaries are found with kill(pid, 0)")
def test_a_killed_writers_temporary_file_is_removed_when_the_store_reopens(tmp_path):
    """SIGKILL between a temporary file's write and its rename leaves the hidden file; the next
    Store on that directory deletes it, and keeps those of live processes, other hosts and
    untagged names."""
    import signal
    import subprocess
    import sys
    import time

    from fracsgd._io import _host, remove_stale_temporaries

    stages = tmp_path / "stages"
    code = (
        "import os, sys, time\n"
        "from fracsgd._io import atomic_write_bytes\n"
        "os.replace = lambda a, b: time.sleep(600)\n"  # hang between fsync and rename
        f"atomic_write_bytes({str(stages / 'mnist-train.npz')!r}, b'x' * 1000)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 120
        while not (stages.is_dir() and [p for p in stages.iterdir() if p.suffix == ".tmp"]):
            assert child.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    (left,) = [p.name for p in stages.iterdir()]
    assert left.startswith(f".mnist-train.npz.~{_host()}~{child.pid}~.") and left.endswith(".tmp")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        keep = [
            f".a.json.~{_host()}~{sleeper.pid}~.abc_12.tmp",  # a live writer
            f".a.json.~{_host()}~{os.getpid()}~.abc_12.tmp",  # this process
            f".a.json.~other-host~{child.pid}~.abc_12.tmp",  # another host (shared disk)
            ".a.json.abc_12.tmp",  # an older fracsgd's name: not ours to judge
            "notes.tmp",
        ]
        for name in keep:
            (stages / name).write_bytes(b"")
        Store(tmp_path, "mnist", verbose=False)
        assert sorted(p.name for p in stages.iterdir()) == sorted(keep)
        assert remove_stale_temporaries(stages) == []
    finally:
        sleeper.kill()
        sleeper.wait()
    assert remove_stale_temporaries(stages) == [keep[0]]  # its writer is gone now
    assert remove_stale_temporaries(tmp_path / "absent") == []


def test_atomic_write_keeps_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    path.write_text("old")

    def boom(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(path, b"new")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["reproduce", "cifar"], "invalid choice"),
        (["reproduce", "mnist", "--set", "mnist.steps"], "STUDY.FIELD=VALUE"),
        (["reproduce", "mnist", "--set", "mnist.colour=1"], "no setting 'colour'"),
        (["reproduce", "mnist", "--set", "moons.n=10"], "study must be one of"),
        (["reproduce", "mnist", "--set", "mnist.steps=0"], "steps"),
        (["reproduce", "mnist", "--set", "mnist.llc_step_size=-1"], "llc_step_size"),
        (["reproduce", "moons", "--set", "moons.num_clusters=0"], "num_clusters"),
        (["reproduce", "moons", "--set", "moons.posterior_thin=100000"], "posterior_thin"),
        (["reproduce", "all", "--set", "moons.batch_size=100000"], "--set moons.batch_size"),
        (["reproduce", "moons", "--set", "moons.llc_batch_size=0"], "llc_batch_size"),
        (["reproduce", "mnist", "--seed", "x"], "invalid int value"),
        (["reproduce", "mnist", "--seed", str(2**32)], "[0, 2**32)"),  # would repeat seed 0
        (["reproduce", "mnist", "--devices", "0"], "--devices takes a positive integer"),
        (["reproduce", "moons", "--devices", "4096"], "device(s) visible"),
        (["sweep", "--memory-limit", "-5"], "--memory-limit: must be an integer in [1, "),
    ],
)
def test_cli_argument_errors_are_one_line_and_exit_2(argv, needle, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        code = main([*argv, "--out", str(tmp_path / "o")])
        raise SystemExit(code)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "o" / "stages").exists()  # nothing ran


def test_moons_study_summary_is_consistent(tmp_path):
    cfg = moons.MoonsConfig(
        n=200,
        hidden=(6,),
        networks=24,
        steps=200,
        batch_size=20,
        llc_draws=40,
        llc_burnin=0,
        posterior_chains=8,
        posterior_steps=200,
        posterior_burnin=100,
        posterior_thin=50,
        num_clusters=3,
        probe_points=6,
    )
    study = moons.run(0, cfg, str(tmp_path), progress=False)
    s = study.summary
    assert len(study.records) == 24
    assert study.mean_displacement.shape == study.record_steps.shape
    assert s["posterior_samples"] == 8 * 2  # (200 − 100) / 50 samples per chain
    if "best_xi" in s:
        assert math.isclose(sum(s["sgd_masses"]), 1.0) and math.isclose(
            sum(s["posterior_masses"]), 1.0
        )
        assert s["kl_at_best_xi"] == min(s["kl"])
        assert s["best_xi"] == s["xis"][int(np.argmin(s["kl"]))]
        # the tempering exponent is m·D_ξ,c with m the number of training samples
        assert s["m"] == 200
        # the row beside the paper's: the scanned ξ nearest 0.5 (in log)
        near = int(np.argmin(np.abs(np.log(np.asarray(s["xis"]) / 0.5))))
        assert s["at_paper_xi"]["xi"] == s["xis"][near] == 0.5  # 0.5 is in the default scan
        assert s["at_paper_xi"]["kl"] == s["kl"][near]
    # the largest local slope of the mean R(t) is a slope, recomputed
    _, slopes = fs.diffusion.local_slopes(study.record_steps, study.mean_displacement)
    assert s["max_local_slope"] == pytest.approx(float(np.nanmax(slopes)), rel=1e-12)
    assert s["nbeta"] == pytest.approx(200 / math.log(200), rel=1e-6)
    assert s["llc_batch_size"] == 80  # min(4 · batch_size, n)
    for r in study.records:
        assert r["d_s_eq17_final"] == pytest.approx(2 * r["lambda_final"] * r["H"], rel=1e-12)
        assert r["nbeta"] == s["nbeta"]
        assert 0 <= r["llc_chains_diverged"] <= cfg.llc_chains
        assert r["llc_distance"] is None or r["llc_distance"] > 0
        assert r["llc_rhat"] is None or r["llc_rhat"] > 0
        assert r["llc_rhat_distance"] is None or r["llc_rhat_distance"] > 0
        if "fit_error" not in r:
            assert r["msd_exponent"] == pytest.approx(2 * r["H"], rel=1e-12)
            assert r["caputo_order"] == pytest.approx(2 * r["H"], rel=1e-12)
            assert 0 <= r["fit_r2"] <= 1
            if r["H"] > 0:
                want = [x ** (2 - 1 / r["H"]) for x in cfg.xis]
                np.testing.assert_allclose(r["D_xi_scan"], want, rtol=1e-9)
    # the report writer handles the moons study alone, and removes the figures of a study
    # written earlier into the same directory (not other files)
    (tmp_path / "figures").mkdir(exist_ok=True)
    (tmp_path / "figures" / "mnist_displacement.png").write_bytes(b"stale")
    (tmp_path / "figures" / "moons_cluster_masses.png").write_bytes(b"stale")
    (tmp_path / "figures" / "mine.png").write_bytes(b"user")
    fs.experiments.report.write(tmp_path, command="test", seed=0, moons=study)
    assert not (tmp_path / "figures" / "mnist_displacement.png").exists()
    assert (tmp_path / "figures" / "mine.png").read_bytes() == b"user"
    written = sorted(p.name for p in (tmp_path / "figures").glob("moons_*.png"))
    res = json.loads(Path(tmp_path, "results.json").read_text())
    assert len(res["studies"]["moons"]["networks"]) == 24
    assert written == sorted(res["studies"]["moons"]["figures"])
    for name in res["studies"]["moons"]["figures"]:
        assert Path(tmp_path, "figures", name).stat().st_size > 2000


def test_overwrite_clears_chunks_left_by_another_configuration(tmp_path):
    """An interrupted sweep of another configuration leaves chunk files that the new sweep
    refuses (CheckpointError); --overwrite deletes them and trains afresh, without it the
    refusal is a StageError that names --overwrite."""
    from fracsgd._io import CheckpointError

    chunks = tmp_path / "stages" / "moons-chunks"
    calls = []

    def sweep():
        calls.append(sorted(p.name for p in chunks.iterdir()) if chunks.exists() else [])
        if chunks.exists():
            raise CheckpointError(f"{chunks}/sweep-b000.npz was written for another configuration")
        return {"x": np.arange(3)}

    for overwrite in (False, True):
        chunks.mkdir(parents=True, exist_ok=True)
        (chunks / "sweep-b000.npz").write_bytes(b"stale")
        store = Store(tmp_path, "moons", overwrite=overwrite, verbose=False)
        run = store.chunked(chunks, sweep)
        if not overwrite:
            with pytest.raises(StageError, match="--overwrite"):
                run()
        else:
            assert run()["x"].tolist() == [0, 1, 2]
            assert not chunks.exists()
    assert calls == [["sweep-b000.npz"], ["sweep-b000.npz"], []]


def test_analysis_only_settings_reanalyse_the_stored_stages(tiny_run, tmp_path, capsys):
    """ξ and late_fraction are read only by the analysis: changing them resumes every stored
    stage (no retraining) and changes only what depends on them."""
    out, copy, argv = _copy_of(tiny_run, tmp_path)
    capsys.readouterr()
    assert main([*argv, "--set", "mnist.xi=1.0"]) == 0
    err = capsys.readouterr().err
    assert "computing" not in err and err.count("resumed from") == 3, err
    before = json.loads((out / "results.json").read_text())["studies"]["mnist"]["networks"]
    after = json.loads((copy / "results.json").read_text())["studies"]["mnist"]["networks"]
    for a, b in zip(before, after, strict=True):
        assert b["xi"] == 1.0 and a["H"] == b["H"] and a["llc"] == b["llc"]
        if b["D_xi"] is not None:
            assert b["D_xi"] == 1.0  # 1^(2 − d_w)


def test_an_llc_stage_stored_before_llc_distance_is_resumed_with_none(tiny_run, tmp_path, capsys):
    """llc_distance came after the LLC stage's format: a stage stored without it is resumed
    (same fingerprint) and the records say None rather than failing or recomputing."""
    from fracsgd._io import load_arrays, save_arrays

    _, copy, argv = _copy_of(tiny_run, tmp_path)
    stage = copy / "stages" / "mnist-llc.npz"
    arrays, meta = load_arrays(stage)
    del arrays["llc_distance"]
    save_arrays(stage, arrays, meta)
    capsys.readouterr()
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "computing" not in err, err
    nets = json.loads((copy / "results.json").read_text())["studies"]["mnist"]["networks"]
    assert all(n["llc_distance"] is None for n in nets)


def test_stages_that_other_code_computed_are_refused(tiny_run, tmp_path, capsys, monkeypatch):
    """Stages stored by other fracsgd code under the same version number (a fixed bug, moved
    noise bits) are not resumed: the run stops naming the code; --overwrite recomputes them."""

    import fracsgd._io

    out, copy, argv = _copy_of(tiny_run, tmp_path)
    monkeypatch.setattr(fracsgd._io, "code_digest", lambda: "f" * 64)
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "fracsgd code" in err and "this code ffffffffffff" in err, err
    versions = json.loads((out / "results.json").read_text())["versions"]
    assert f"code {versions['fracsgd_code'][:12]}" in err  # the stored stage's code
    assert main([*argv, "--overwrite"]) == 0
    err = capsys.readouterr().err
    assert "resumed" not in err and err.count("computing") >= 3, err
    assert json.loads((copy / "results.json").read_text())["versions"]["fracsgd_code"] == "f" * 64


def test_d_xi_overflows_to_inf_not_an_exception():
    """ξ^(2 − d_w) for ξ < 1 and H near 0 exceeds float64: Python's ** raised OverflowError
    after every stage had run; it is inf (null in results.json)."""
    from fracsgd.experiments._validate import xi_power as _xi_power

    assert _xi_power(0.5, 1 / 0.0009) == math.inf
    assert _xi_power(0.5, 2.0) == 1.0
    assert math.isnan(_xi_power(0.5, math.nan))


def test_a_stage_setting_recomputes_that_stage_alone(tiny_run, tmp_path, capsys):
    """An LLC or branch setting changes only its own stage's fingerprint: with --overwrite the
    training is resumed (it used to be recomputed), and the other stage too."""
    out, copy, argv = _copy_of(tiny_run, tmp_path)
    capsys.readouterr()
    assert main([*argv, "--set", "mnist.llc_draws=12"]) == 2  # without --overwrite: refused
    assert "stage 'llc' of another configuration" in capsys.readouterr().err
    assert main([*argv, "--set", "mnist.llc_draws=12", "--overwrite"]) == 0
    err = capsys.readouterr().err
    assert "'train': resumed" in err and "'branch': resumed" in err, err
    assert "'llc': resumed" not in err
    res = json.loads((copy / "results.json").read_text())["studies"]["mnist"]
    before = json.loads((out / "results.json").read_text())["studies"]["mnist"]
    assert res["config"]["llc_draws"] == 12
    for a, b in zip(before["networks"], res["networks"], strict=True):
        assert a["H"] == b["H"] and a["d_s_return"] == b["d_s_return"]


def test_stages_are_keyed_by_the_data_content_not_its_path(tmp_path):
    """The same path with other contents must not resume (it did: the fingerprint held the
    path); the same contents resume whatever the dataset's source says."""
    from fracsgd.experiments import mnist as M

    data = fs.data.load("moons", n=64, seed=0)
    cfg = M.MnistConfig.quick()._replace(
        hidden=((4,),),
        seeds=(0,),
        sgd_learning_rates=(0.1,),
        adam_learning_rates=(),
        batch_sizes=(16,),
        steps=20,
        record_every=2,
        num_checkpoints=3,
        llc_chains=2,
        llc_draws=10,
        llc_burnin=0,
        llc_batch_size=16,
        replicas=4,
        branch_steps=10,
    )
    M.run(0, data, cfg, str(tmp_path), progress=False)
    renamed = data._replace(source="elsewhere/same-bytes")
    M.run(0, renamed, cfg, str(tmp_path), progress=False)  # resumes: same content
    other = data._replace(x_train=data.x_train + 1.0)
    with pytest.raises(fs.experiments.StageError, match="another configuration"):
        M.run(0, other, cfg, str(tmp_path), progress=False)


def test_the_report_records_the_command_given_to_main(tiny_run):
    """main(argv) called in-process (tests, notebooks) records argv, not the interpreter's
    sys.argv (it recorded pytest's arguments)."""
    import shlex

    out, argv = tiny_run
    res = json.loads((out / "results.json").read_text())
    assert res["command"] == "fracsgd " + " ".join(shlex.quote(a) for a in argv)


def test_a_setting_written_as_an_int_is_the_same_setting(tiny_run, tmp_path, capsys):
    """llc_localization=100 is the default 100.0: the stages resume (it was refused as
    another configuration: the fingerprint hashed the int)."""
    _, _, argv = _copy_of(tiny_run, tmp_path)
    capsys.readouterr()
    assert main([*argv, "--set", "mnist.llc_localization=100"]) == 0
    assert capsys.readouterr().err.count("resumed") == 3


def test_a_file_where_a_directory_goes_is_one_line_and_exit_2(tiny_run, tmp_path, capsys):
    import shutil

    _, copy, argv = _copy_of(tiny_run, tmp_path)
    shutil.rmtree(copy / "figures")
    (copy / "figures").write_text("not a directory")
    capsys.readouterr()
    assert main(argv) == 2  # a FileExistsError traceback and exit 1 before
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(err) == 1 and "cannot write" in err[0] and "figures" in err[0], err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["reproduce", "mnist", "--set", "mnist.seeds=(0, 0)"], "seeds contains duplicates"),
        (["reproduce", "moons", "--set", "moons.xis=(0.5, 0.5)"], "xis contains duplicates"),
        (["reproduce", "mnist", "--set", "mnist.hidden=((8,), (8,))"], "hidden contains dup"),
        (
            ["reproduce", "mnist", "--set", "mnist.steps=4", "--set", "mnist.record_every=2"],
            "mnist.steps // mnist.record_every must be at least 3",
        ),
        (
            ["reproduce", "moons", "--set", "moons.steps=2", "--set", "moons.record_every=1"],
            "moons.steps // moons.record_every must be at least 3",
        ),
    ],
)
def test_settings_the_sweep_would_refuse_are_refused_before_anything_runs(
    argv, needle, tmp_path, capsys
):
    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "o").exists()  # --out was not even created


@pytest.mark.parametrize(
    ("settings", "needle"),
    [
        # each trained (or failed after "stage 'train': computing", leaving --out) and was
        # refused by the sweep, the chains or never, without the --set key
        (["mnist.batch_norm=True", "mnist.batch_sizes=(1,)"], "--set mnist.batch_sizes must"),
        (["mnist.sgd_learning_rates=(0.1, 0.1000000001)"], "--set mnist.sgd_learning_rates"),
        (["mnist.adam_learning_rates=(1e-50,)"], "--set mnist.adam_learning_rates must"),
        (["mnist.sgd_learning_rates=(1e50,)"], "--set mnist.sgd_learning_rates must"),
        (["mnist.llc_step_size=1e-50"], "--set mnist.llc_step_size must"),
        (["mnist.llc_localization=1e50"], "--set mnist.llc_localization must"),
        (["moons.learning_rate=1e-50"], "--set moons.learning_rate must"),
        (["moons.llc_step_size=1e-50"], "--set moons.llc_step_size must"),
        (["moons.llc_localization=1e50"], "--set moons.llc_localization must"),
        # float32 rounds it to 0: the posterior chains stood still at their prior draws
        (["moons.posterior_step_size=1e-50"], "--set moons.posterior_step_size must"),
    ],
)
def test_settings_the_training_or_the_chains_refuse_in_float32_are_refused_first(
    settings, needle, tmp_path, capsys
):
    """BatchNorm with a batch of one and the float32 limits of learning rates and SGLD
    settings are checked with the other settings, before anything loads or trains."""
    study = settings[0].split(".")[0]
    tiny = TINY_MNIST if study == "mnist" else []
    argv = ["reproduce", study, "--quick", "--out", str(tmp_path / "o"), "--no-progress", *tiny]
    assert main([*argv, *(a for kv in settings for a in ("--set", kv))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err  # one line: nothing loaded, no stage
    assert not (tmp_path / "o").exists()


BIG = "99999999999999999999"


@pytest.mark.parametrize(
    ("settings", "needle"),
    [
        # an OverflowError traceback once the training stage had started
        (["moons.networks=" + BIG], "--set moons.networks must be an integer in [1, 65536]"),
        # the training stage ran, then the LLC stage asked for "a larger memory_limit"
        (["moons.llc_draws=" + BIG], "--set moons.llc_draws must be an integer in [1, "),
        # failed after "stage 'train': computing", leaving the output folders
        (["moons.steps=10000000000000"], "--set moons.steps must be an integer in [1, "),
        (["moons.llc_burnin=2000000000", "moons.llc_draws=2000000000"], "moons.llc_burnin + "),
        (["moons.probe_points=" + BIG], "--set moons.probe_points must be an integer"),
        (["moons.data_seed=" + BIG], "--set moons.data_seed must be an integer"),
        (["moons.n=1"], "--set moons.n must be an integer in [2, "),  # the data set's minimum
        # within the bounds, but past any machine's memory (terabytes and more: no flaky
        # threshold), while one chain (20 MB) or one network (120 MB) fits any device
        (
            ["moons.networks=65536", "moons.llc_chains=65536", "moons.llc_draws=1000000"],
            "the LLC chains' traces need at least",
        ),
        (
            ["moons.networks=65536", "moons.steps=10000000", "moons.record_every=1"],
            "the networks' R(t) records need at least",
        ),
        # one chain that no device holds (43 GB each on a machine with less, else the host's
        # 128 × 4 chains of them)
        (["moons.llc_draws=2147480000", "moons.llc_burnin=0"], "chain"),
        (["mnist.steps=10000000000000"], "--set mnist.steps must be an integer in [1, "),
        (["mnist.llc_chains=" + BIG], "--set mnist.llc_chains must be an integer"),
        (["mnist.llc_memory=" + BIG], "--set mnist.llc_memory must be an integer"),
        (["mnist.batch_sizes=(" + BIG + ",)"], "--set mnist.batch_sizes must be an integer"),
        (
            ["mnist.replicas=65536", "mnist.branch_steps=2147483647"],
            "the replicas' displacements need at least",
        ),
    ],
)
def test_oversized_settings_are_refused_by_key_before_any_stage(settings, needle, tmp_path, capsys):
    """Every integer setting has an upper bound, and what the stages would hold is estimated
    before any of them runs; the message names the --set key (never memory_limit, which
    reproduce has no option for)."""
    study = settings[0].split(".")[0]
    argv = ["reproduce", study, "--quick", "--out", str(tmp_path / "o"), "--no-progress"]
    assert main([*argv, *(a for kv in settings for a in ("--set", kv))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err  # one line: no stage started, nothing loaded
    assert "memory_limit" not in err[0] and "--set " + study + "." in err[0]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("budget", ["1", "100000"])
def test_an_llc_memory_below_one_model_is_refused(budget, tmp_path, capsys):
    """``mnist.llc_memory=1`` was accepted and ignored: the LLC stage raised its chunk to one
    model."""
    argv = ["reproduce", "mnist", "--quick", "--set", f"mnist.llc_memory={budget}"]
    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--set mnist.llc_memory must be at least" in err[0], err
    assert not (tmp_path / "o").exists()


def test_llc_memory_of_exactly_one_model_is_accepted():
    """The bound is the LLC stage's bytes for one model of the widest network of a depth."""
    from fracsgd.experiments import mnist

    cfg = mnist.MnistConfig.quick()._replace(hidden=((16,), (64,), (8, 8)), llc_chains=3)
    # the widest depth-1 model: 784-64-10, 50 890 parameters (the depth-2 one is smaller)
    need = 32 * 3 * 50_890 + 4 * 3 * cfg.llc_draws
    assert mnist.llc_model_bytes(cfg) == need
    assert mnist.validate(cfg._replace(llc_memory=need)).llc_memory == need
    with pytest.raises(ValueError, match=r"mnist\.llc_memory must be at least"):
        mnist.validate(cfg._replace(llc_memory=need - 1))


def test_check_sizes_names_what_shrinks_the_part_that_does_not_fit():
    from fracsgd.experiments._validate import Size, check_sizes

    parts = [
        Size("a", 100, "device", ("s.x",)),
        Size("bs", 1000, "host", ("s.y", "s.z", "s.w"), ("s.v",)),
    ]
    check_sizes(parts, host=1000, device=100)  # at the limit: fits
    check_sizes(parts, host=None, device=None)  # unknown memory: not checked
    with pytest.raises(ValueError, match=r"^s.x: a need at least 100 bytes of device memory"):
        check_sizes(parts, host=1000, device=99)
    with pytest.raises(
        ValueError, match=r"^s.y, s.z, s.w or s.v: .*reduce s.y, s.z or s.w or raise s.v$"
    ):
        check_sizes(parts, host=999, device=100)


@pytest.mark.slow
def test_every_network_diverged_still_writes_the_report(tmp_path, capsys):
    """All MNIST networks and all moons networks diverge: the run is flagged per network and
    the report, results and figures are written (the moons ensemble fit and a log-scaled
    figure with no finite point each sank the whole run)."""
    tiny_moons = [
        *("--set", "moons.n=128", "--set", "moons.hidden=(4,)", "--set", "moons.networks=8"),
        *("--set", "moons.steps=200", "--set", "moons.batch_size=16"),
        *("--set", "moons.llc_draws=20", "--set", "moons.llc_burnin=0"),
        *("--set", "moons.posterior_chains=4", "--set", "moons.posterior_steps=40"),
        *("--set", "moons.posterior_burnin=20", "--set", "moons.posterior_thin=10"),
        *("--set", "moons.num_clusters=2", "--set", "moons.probe_points=4"),
        *("--set", "moons.learning_rate=1e5"),
    ]
    diverge = [
        *("--set", "mnist.sgd_learning_rates=(1e30,)"),
        *("--set", "mnist.adam_learning_rates=(1e30,)"),
    ]
    out = tmp_path / "o"
    argv = ["reproduce", "all", "--quick", "--out", str(out), "--no-progress"]
    assert main([*argv, *TINY_MNIST, *diverge, *tiny_moons]) == 0, capsys.readouterr().err
    res = json.loads((out / "results.json").read_text())["studies"]
    assert all(r["diverged"] for r in res["moons"]["networks"])
    summary = res["moons"]["summary"]
    assert summary["mean_displacement_H_late"] is None and summary["mean_displacement_fit_error"]
    assert all(r["d_s_eq17_final"] is None for r in res["mnist"]["networks"])
    report = (out / "report.md").read_text()
    assert "Two-moons study" in report and "not fitted" in report
    for study in ("mnist", "moons"):
        for name in res[study]["figures"]:
            assert (out / "figures" / name).stat().st_size > 2000


def test_configs_are_canonical_numpy_scalars_included():
    """NumPy scalars, ints for floats and lists for tuples give the validated configuration of
    the Python values, so the resume fingerprints agree; duplicates are found among them."""
    from fracsgd.experiments import mnist

    cfg = moons.MoonsConfig.quick()
    a = moons.validate(cfg._replace(llc_batch_size=32, learning_rate=0.25))
    b = moons.validate(cfg._replace(llc_batch_size=np.int64(32), learning_rate=np.float32(0.25)))
    assert a == b and type(b.llc_batch_size) is int and type(b.learning_rate) is float
    base = mnist.MnistConfig.quick()
    c = mnist.validate(base._replace(hidden=[[16], (np.int64(32),)], llc_localization=100))
    assert c.hidden == ((16,), (32,)) and c.llc_localization == 100.0
    with pytest.raises(ValueError, match="hidden contains duplicates"):
        mnist.validate(base._replace(hidden=((64,), (np.int64(64),))))


def test_the_posterior_stage_shows_progress(capsys):
    """The moons posterior runs in host-driven blocks of posterior_thin steps (it was one
    compiled call with no progress), keeping every posterior_thin-th position."""
    cfg = moons.MoonsConfig(
        n=64,
        hidden=(4,),
        posterior_chains=3,
        posterior_steps=40,
        posterior_burnin=25,
        posterior_thin=5,
    )
    ds = fs.data.load("moons", n=cfg.n, noise=cfg.noise, seed=cfg.data_seed)
    capsys.readouterr()
    samples, ok = moons.posterior_samples(
        jax.random.key(0), moons._model(cfg), ds, cfg, progress=True
    )
    assert ok.shape == (3 * 3,) and ok.all()  # (40 − 25) / 5 = 3 samples per chain
    assert all(a.shape[0] == 9 for a in jax.tree.leaves(samples))
    err = capsys.readouterr().err
    assert "posterior:   0%" in err and "100% (40/40 steps" in err


def test_an_explicit_default_llc_batch_size_is_the_same_llc_stage():
    """llc_batch_size = None means min(4 · batch_size, n): giving that value explicitly used to
    recompute the stored LLC stage; another value still does."""
    cfg = moons.validate(moons.MoonsConfig.quick())
    default = moons.llc_batch_size(cfg)
    same = moons.validate(cfg._replace(llc_batch_size=default))
    other = moons.validate(cfg._replace(llc_batch_size=default // 2))
    stage = moons._stage_settings
    assert stage(cfg, "llc") == stage(same, "llc") != stage(other, "llc")


def test_a_file_where_the_stages_folder_goes_is_refused_before_computing(tmp_path):
    """DIR/stages being a file failed only when the first stage was saved, after it had
    computed: the store checks its folder when it is opened."""
    from fracsgd.experiments._store import Store

    (tmp_path / "stages").write_text("not a folder")
    with pytest.raises(ValueError, match="stages folder must be a directory"):
        Store(tmp_path, "mnist")
    fresh = Store(tmp_path / "new", "mnist")
    assert fresh.dir.is_dir()


def test_an_integer_setting_of_another_type_is_told_its_range(tmp_path, capsys):
    """moons.networks=1.5 said 'integer >= 1' although the range is [1, 65536]."""
    argv = ["reproduce", "moons", "--set", "moons.networks=1.5", "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "moons.networks must be an integer in [1, 65536]" in err[0], err
