"""The benchmark scripts parse their command line: ``--help`` prints usage and runs nothing."""

import pathlib
import subprocess
import sys

import pytest

BENCHMARKS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize("script", sorted(p.name for p in BENCHMARKS.glob("*.py")))
def test_help_prints_usage_and_writes_nothing(script):
    results = BENCHMARKS / "results"
    before = {p.name: p.stat().st_mtime_ns for p in results.iterdir()}
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--help"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "usage:" in proc.stdout
    # mittag_leffler.py once ignored its arguments and overwrote its committed JSON
    assert {p.name: p.stat().st_mtime_ns for p in results.iterdir()} == before
