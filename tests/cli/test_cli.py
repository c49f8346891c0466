"""The ``fracsgd`` command line: a tiny sweep writes its files; argument errors give one line and
exit code 2."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from fracsgd.cli import main
from fracsgd.train._api import default_padding_overhead


def test_sweep_command_writes_results_table_and_figure(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(
        [
            "sweep",
            "--hidden",
            "8",
            "16",
            "--seeds",
            "1",
            "--steps",
            "20",
            "--batch-sizes",
            "64",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert rc == 0
    printed = capsys.readouterr()
    assert "embedded MNIST subset" in printed.err
    assert len([ln for ln in printed.out.splitlines() if ln.strip()]) >= 3  # header + 2 rows
    summary = json.loads((out / "summary.json").read_text())
    assert [r["hidden"] for r in summary["runs"]] == ["8", "16"]
    assert all(np.isfinite(r["final_displacement"]) for r in summary["runs"])
    assert (out / "figures" / "displacement.png").stat().st_size > 1000
    assert (out / "sweep.nc").stat().st_size > 0
    # the grid's None is the backend default, which summary.json states as applied
    assert summary["grid"]["max_padding_overhead"] is None
    # 1.25 on the CPU, 4.0 on accelerators
    assert summary["max_padding_overhead_applied"] == default_padding_overhead()
    assert summary["devices"] == 1


def _sweep_in_fresh_process(out, devices: str, xla_flags: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    env["JAX_PLATFORMS"] = "cpu"
    if xla_flags is not None:
        env["XLA_FLAGS"] = xla_flags
    argv = ["sweep", "--hidden", "8", "--seeds", "2", "--steps", "10", "--batch-sizes", "64"]
    argv += ["--devices", devices, "--out", str(out), "--no-progress"]
    code = f"import sys; from fracsgd.cli import main; sys.exit(main({argv!r}))"
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads((out / "summary.json").read_text())


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two cores")
def test_devices_on_a_cpu_machine_give_one_device_per_core(tmp_path):
    # JAX sees one CPU device; --devices 2 (or all) asks for one per core before JAX starts
    assert _sweep_in_fresh_process(tmp_path / "a", "2", None)["devices"] == 2
    # a device count the user set wins: all = every device JAX sees
    flags = "--xla_force_host_platform_device_count=3"
    assert _sweep_in_fresh_process(tmp_path / "b", "all", flags)["devices"] == 3


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["sweep", "--hidden", "0"], "hidden"),
        (["sweep", "--hidden", "a-b"], "hidden"),
        (["sweep", "--steps", "x"], "--steps"),
        (["sweep", "--learning-rates", "-1", "--quick"], "learning_rates"),
        (["sweep", "--optimizers", "lbfgs", "--quick"], "optimizer"),
        (["sweep", "--seeds", "0", "--quick"], "seeds"),
        (["sweep", "--batch-sizes", "100000", "--quick"], "batch_sizes"),
        (["frobnicate"], "invalid choice"),
        ([], "required"),
    ],
)
def test_argument_errors_give_one_line_and_exit_code_2(argv, needle, capsys):
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse exits itself
        rc = exc.code
    assert rc == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("fracsgd")]
    assert len([ln for ln in lines if "error" in ln]) == 1
    assert needle in err


@pytest.mark.parametrize("command", [["sweep", "--quick"], ["reproduce", "moons", "--quick"]])
@pytest.mark.parametrize("below", [False, True])
def test_out_that_is_a_file_is_refused_before_anything_runs(command, below, tmp_path, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("hi")
    out = blocker / "sub" if below else blocker
    rc = main([*command, "--out", str(out), "--no-progress"])
    assert rc == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("fracsgd: error")]
    assert len(lines) == 1 and "--out" in lines[0], err
    assert "Traceback" not in err and "embedded MNIST" not in err  # nothing was loaded
    assert blocker.read_text() == "hi"


def test_sweep_summary_is_strict_json_when_a_network_diverges(tmp_path, capsys):
    """A diverging network's final displacement is NaN: summary.json writes it as null (it
    wrote NaN, which strict parsers reject); a bad setting fails before --out is created."""
    out = tmp_path / "div"
    argv = ["sweep", "--hidden", "8", "--learning-rates", "0.05", "1e6", "--seeds", "1"]
    rc = main([*argv, "--steps", "20", "--batch-sizes", "64", "--out", str(out), "--no-progress"])
    assert rc == 0

    def strict(name):
        raise ValueError(f"non-standard JSON constant {name}")

    summary = json.loads((out / "summary.json").read_text(), parse_constant=strict)
    finals = [r["final_displacement"] for r in summary["runs"]]
    assert finals[0] is not None and finals[1] is None
    capsys.readouterr()
    bad = tmp_path / "never"
    assert main(["sweep", "--batch-sizes", "100000", "--quick", "--out", str(bad)]) == 2
    assert not bad.exists()
    big = ["--set", "mnist.llc_batch_size=100000"]
    assert main(["reproduce", "mnist", "--quick", *big, "--out", str(bad)]) == 2
    assert "llc_batch_size must be at most" in capsys.readouterr().err
    assert not bad.exists()
