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
        (["sweep", "--learning-rates", "-1", "--quick"], "--learning-rates"),
        (["sweep", "--optimizers", "lbfgs", "--quick"], "optimizer"),
        (["sweep", "--seeds", "0", "--quick"], "seeds"),
        (["sweep", "--batch-sizes", "100000", "--quick"], "--batch-sizes"),
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


def _refused(argv, out, capsys) -> str:
    """Runs ``fracsgd ARGV --out OUT``; asserts exit code 2, one line on stderr, nothing loaded
    and no ``--out``; returns the line."""
    try:
        rc = main([*argv, "--out", str(out), "--no-progress"])
    except SystemExit as exc:  # argparse exits itself
        rc = exc.code
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error" in err[0], err  # no traceback, warning or announcement
    assert not out.exists()
    return err[0]


@pytest.mark.parametrize("steps", ["1", "2"])
def test_sweep_refuses_steps_too_few_for_the_fit_before_training(steps, tmp_path, capsys):
    """R(t) is recorded at every step and its fit needs three points: --steps 1 or 2 trained
    for ~15 s and then failed, leaving sweep.nc and summary.json."""
    line = _refused(
        ["sweep", "--hidden", "8", "--seeds", "1", "--steps", steps], tmp_path / "o", capsys
    )
    assert "--steps" in line and "[3, " in line


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["--steps", "99999999999999999999"], "--steps"),  # a traceback in np.geomspace
        (["--steps", "9223372036854775807"], "--steps"),  # a NumPy cast warning first
        (["--seeds", "99999999999999999999"], "--seeds"),
        (["--batch-sizes", "99999999999999999999"], "--batch-sizes"),
        (["--memory-limit", str(10**400)], "--memory-limit"),  # no float holds it
        (["--hidden", "99999999999999999999"], "hidden"),
        (["--seed", "99999999999999999999"], "--seed"),
        # within the bounds, but no host holds 65 536 × 2**31 records of 12 bytes
        (["--seeds", "65536", "--steps", "2147483647"], "--steps or --seeds"),
    ],
)
def test_sweep_refuses_oversized_integers_by_name(argv, option, tmp_path, capsys):
    line = _refused(["sweep", "--hidden", "8", *argv], tmp_path / "o", capsys)
    assert option in line


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["--steps", "-5"], "--steps"),
        (["--learning-rates", "-0.1"], "--learning-rates"),
        (["--learning-rates", "1e-50"], "--learning-rates"),  # 0 in float32
        (["--batch-sizes", "0"], "--batch-sizes"),
        (["--optimizers", "SGD"], "--optimizers"),
        (["--learning-rates", "0.1", "0.1"], "--learning-rates contains duplicates"),
        (["--learning-rates", "0.1", "0.1000000001"], "--learning-rates contains duplicates"),
        (["--hidden", "8", "8"], "--hidden contains duplicates"),
        (["--optimizers", "sgd", "sgd"], "--optimizers contains duplicates"),
        (["--batch-sizes", "64", "64"], "--batch-sizes contains duplicates"),
        (["--batch-sizes", "1", "--batch-norm"], "--batch-sizes must be at least 2"),
        (["--data-dir", "does-not-exist"], "--data-dir"),
        (["--data-dir", ""], "--data-dir"),
    ],
)
def test_sweep_grid_errors_name_the_option_before_the_data_is_loaded(
    argv, option, tmp_path, capsys
):
    """They named the Grid's fields (learning_rates, batch_sizes, …) on a second line, after
    the data set was loaded and announced."""
    line = _refused(["sweep", "--quick", *argv], tmp_path / "o", capsys)
    assert option in line
    for field in ("learning_rates", "batch_sizes", "memory_limit", "data_dir"):
        assert field not in line


def test_reproduce_moons_refuses_a_data_dir_it_would_not_read(tmp_path, capsys):
    """The moons study does not read MNIST: a --data-dir there was checked as a path and
    then silently ignored."""
    line = _refused(
        ["reproduce", "moons", "--quick", "--data-dir", str(tmp_path)], tmp_path / "o", capsys
    )
    assert "--data-dir" in line and "mnist" in line


def test_sweep_memory_limit_below_one_network_is_refused_before_out_exists(tmp_path, capsys):
    out = tmp_path / "o"
    rc = main(["sweep", "--hidden", "8", "--memory-limit", "10", "--out", str(out)])
    assert rc == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if "error" in ln]
    assert len(err) == 1 and "--memory-limit" in err[0] and "memory_limit" not in err[0], err
    assert not out.exists()  # it was created before the memory plan refused the grid


def test_sweep_where_every_network_diverges_says_so_without_warnings(tmp_path, capsys):
    """The Brownian reference took the NaN median of the final displacements: a RuntimeWarning
    leaked from the command (an error here: warnings are errors in the tests)."""
    out = tmp_path / "div"
    argv = ["sweep", "--hidden", "8", "--seeds", "1", "--steps", "20", "--learning-rates", "1e6"]
    assert main([*argv, "--batch-sizes", "64", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr()
    assert "1 of 1 network(s) diverged" in printed.out and "--learning-rates" in printed.out
    assert "Warning" not in printed.err
    assert (out / "figures" / "displacement.png").stat().st_size > 1000
