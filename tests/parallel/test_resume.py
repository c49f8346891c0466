"""Chunked and resumed sweeps equal uninterrupted ones, bitwise; bad checkpoints are refused."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

import fracsgd as fs

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

import _cases  # noqa: E402


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The resumable sweep run in one go (12 networks, 4 chunks of 3, no interruption)."""
    sw = _cases.resumable_sweep(tmp_path_factory.mktemp("whole"))
    assert [(b.chunk_size, b.num_chunks) for b in sw.buckets] == [(3, 4)]
    return _cases.sweep_arrays(sw)


def _assert_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_chunked_sweep_is_bitwise_the_unchunked_one(uninterrupted):
    """Adam, SGD, width masks and two buckets (20 + 10 networks), in chunks of 1 network and in
    one program."""
    g = _cases.grid()
    whole = fs.train.sweep(jax.random.key(0), _cases.data(), g, progress=False)
    small = fs.train.sweep(
        jax.random.key(0),
        _cases.data(),
        g._replace(memory_limit=_cases.cap_for(g, 1)),
        progress=False,
    )
    assert [b.num_chunks for b in small.buckets] == [20, 10]
    assert [b.num_chunks for b in whole.buckets] == [1, 1]
    _assert_identical(_cases.sweep_arrays(whole), _cases.sweep_arrays(small))


def test_sigkill_then_resume_gives_the_uninterrupted_result(uninterrupted, tmp_path):
    ckpt = tmp_path / "ckpt"
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    err = tmp_path / "stderr.txt"
    with open(err, "w") as err_file:
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "_worker.py"), "resume", tmp_path / "never.npz", ckpt],
            cwd=HERE,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err_file,
        )
    try:
        deadline = time.monotonic() + 240
        while not (ckpt.is_dir() and any(p.suffix == ".npz" for p in ckpt.iterdir())):
            assert proc.poll() is None, err.read_text()[-3000:]
            assert time.monotonic() < deadline, "no chunk file appeared"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)  # the worker sleeps 3 s after each file: mid-sweep
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    files = [p for p in ckpt.iterdir() if p.suffix == ".npz"]
    assert 1 <= len(files) < 4  # killed after the first chunk, before the last
    resumed = _cases.resumable_sweep(ckpt)
    assert resumed.num_resumed == 3 * len(files)
    _assert_identical(_cases.sweep_arrays(resumed), uninterrupted)
    again = _cases.resumable_sweep(ckpt)  # everything on disk now: nothing is recomputed
    assert again.num_resumed == 12
    _assert_identical(_cases.sweep_arrays(again), uninterrupted)


def test_mismatched_or_corrupt_checkpoints_are_refused(tmp_path):
    g = _cases.grid(hidden=(4,), optimizers=("sgd",), seeds=(0, 1), steps=8)
    data = _cases.data()
    fs.train.sweep(jax.random.key(0), data, g, progress=False, checkpoint_dir=tmp_path)
    (path,) = tmp_path.glob("sweep-*.npz")
    # another key, another configuration, other data: refused, never reused
    with pytest.raises(fs.train.CheckpointError, match="another configuration"):
        fs.train.sweep(jax.random.key(1), data, g, progress=False, checkpoint_dir=tmp_path)
    with pytest.raises(fs.train.CheckpointError, match="another configuration"):
        fs.train.sweep(
            jax.random.key(0),
            data,
            g._replace(learning_rates=(0.1,)),
            progress=False,
            checkpoint_dir=tmp_path,
        )
    other = fs.data.load("moons", n=96, noise=0.2, seed=1)
    with pytest.raises(ValueError, match="another configuration"):  # CheckpointError is one
        fs.train.sweep(jax.random.key(0), other, g, progress=False, checkpoint_dir=tmp_path)
    # the memory cap only changes the chunking: the checkpoint is reused
    again = fs.train.sweep(
        jax.random.key(0),
        data,
        g._replace(memory_limit=10**9),
        progress=False,
        checkpoint_dir=tmp_path,
    )
    assert again.num_resumed == 2
    # chunks that other code computed (same version number, other source): refused
    import fracsgd._io

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fracsgd._io, "code_digest", lambda: "0" * 64)
        with pytest.raises(fs.train.CheckpointError, match="another configuration"):
            fs.train.sweep(jax.random.key(0), data, g, progress=False, checkpoint_dir=tmp_path)
    # a truncated file
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(fs.train.CheckpointError, match="corrupt"):
        fs.train.sweep(jax.random.key(0), data, g, progress=False, checkpoint_dir=tmp_path)


def test_single_network_that_does_not_fit_is_an_error():
    g = _cases.grid(memory_limit=1000)
    with pytest.raises(ValueError, match=r"one network .* memory"):
        fs.train.sweep(jax.random.key(0), _cases.data(), g, progress=False)


def test_estimate_many_chunked_is_bitwise_the_unchunked_one():
    whole = _cases.llc_arrays(_cases.llc())
    one = jax.tree.map(lambda a: a[0], _cases.llc_params())
    per, fixed = fs.llc.chain_bytes(
        _cases._loss, one, _cases.llc_data(), batch_size=16, num_draws=20
    )
    # room for 2 chains (and the full-data loss of one model): 8 chunks of the 15 chain rows
    cap = fixed + max(2 * per, _cases.full_loss_bytes())
    small = _cases.llc_arrays(_cases.llc(memory_limit=cap))
    _assert_identical(whole, small)
    with pytest.raises(ValueError, match="one SGLD chain"):
        _cases.llc(memory_limit=fixed + per // 2)


def test_calibration_chunked_is_bitwise_the_unchunked_one(monkeypatch):
    """The settings × chains of a calibration grid (common random numbers) run in chunks of
    whole settings: two settings per chunk give the unchunked numbers bitwise; one setting per
    chunk compiles without the settings axis and agrees to float32 rounding."""
    from fracsgd.llc import _estimate

    calls = []
    program = _estimate._compiled_common

    def counted(static, keys, centers, *args, **kw):
        calls.append(int(jax.tree.leaves(centers)[0].shape[0]))
        return program(static, keys, centers, *args, **kw)

    monkeypatch.setattr(_estimate, "_compiled_common", counted)
    whole = _cases.calibration_arrays(_cases.calibration())
    assert calls == [4]
    one = jax.tree.map(lambda a: a[0], _cases.llc_params())
    per, fixed = fs.llc.chain_bytes(
        _cases._loss, one, _cases.llc_data(), batch_size=16, num_draws=20
    )
    # 3 chains per setting: room for 2 settings (2 chunks of the 4), then for 1 (4 chunks)
    two = fixed + max(6 * per, _cases.full_loss_bytes())
    _assert_identical(whole, _cases.calibration_arrays(_cases.calibration(memory_limit=two)))
    assert calls == [4, 2, 2]
    single = _cases.calibration_arrays(
        _cases.calibration(memory_limit=fixed + max(3 * per, _cases.full_loss_bytes()))
    )
    assert calls == [4, 2, 2, 1, 1, 1, 1]
    for k in whole:
        np.testing.assert_allclose(single[k], whole[k], rtol=1e-6, err_msg=k)
