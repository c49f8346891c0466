"""A two-host job on localhost: two processes, each with 2 virtual CPU devices, joined by
``jax.distributed.initialize`` (gloo CPU collectives) into one 4-device mesh; the sharded sweep
and LLC numbers, gathered with ``process_allgather``, equal the single-device ones."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

import _cases  # noqa: E402
from test_sharded import _assert_same, reference  # noqa: E402, F401  (fixture)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_process_job_equals_one_device(reference, tmp_path):  # noqa: F811
    port = _free_port()
    env = dict(
        os.environ,
        JAX_PLATFORMS="cpu",
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
    )
    out = tmp_path / "out.npz"
    procs = []
    for pid in (0, 1):
        args = ["multihost", str(out), str(port), str(pid)]
        log = open(tmp_path / f"log{pid}.txt", "w")
        procs.append(
            (
                subprocess.Popen(
                    [sys.executable, str(HERE / "_worker.py"), *args],
                    cwd=HERE,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                ),
                log,
            )
        )
    codes = []
    for proc, log in procs:
        try:
            codes.append(proc.wait(timeout=300))
        except subprocess.TimeoutExpired:
            proc.kill()
            codes.append(None)
        log.close()
    logs = [(tmp_path / f"log{pid}.txt").read_text()[-2000:] for pid in (0, 1)]
    if codes != [0, 0]:
        pytest.fail(f"exit codes {codes}\n" + "\n---\n".join(logs))
    got = dict(np.load(out))
    assert int(got["devices"]) == 4  # the global mesh spans both processes
    ref_sweep, ref_llc, adam, ref_cal = reference
    _assert_same(got, ref_sweep, "sweep", adam)
    _cases.assert_same_numbers(got, ref_llc, "llc")
    _cases.assert_same_numbers(got, ref_cal, "calibrate")  # the grid's rows over both processes
