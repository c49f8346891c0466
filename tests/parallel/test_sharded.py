"""Sharding over virtual CPU devices gives the single-device numbers, bitwise.

Every network of a sweep and every chain of an LLC call is computed independently of the others,
with keys derived per network/chain, so neither the device count nor the chunking may change a
single bit (CPU; see :func:`fracsgd.parallel.map_elements` for the one place where that needs
care). JAX fixes its device count at start-up, so the sharded runs happen in subprocesses with
``--xla_force_host_platform_device_count``; the reference is computed here, on one device.
"""

import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh

import fracsgd as fs

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

import _cases  # noqa: E402


def _child(args, devices: int, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    return subprocess.run(
        [sys.executable, str(HERE / "_worker.py"), *map(str, args)],
        env=env,
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def reference():
    """Single-device sweep and LLC numbers (computed in this process, one device)."""
    sw = fs.train.sweep(jax.random.key(0), _cases.data(), _cases.grid(), progress=False)
    assert [b.num_chunks for b in sw.buckets] == [1, 1]
    adam = set(sw.select(optimizer="adam").tolist())
    llc = _cases.llc_arrays(_cases.llc())
    return _cases.sweep_arrays(sw), llc, adam, _cases.calibration_arrays(_cases.calibration())


def _assert_same(got: dict, ref: dict, prefix: str, adam: set[int]) -> None:
    """Bitwise, except Adam networks sharded over several devices: XLA CPU compiles Adam's
    update (optax ``scale_by_adam``) differently in a multi-device program, which changes the
    last bit of some steps (measured: relative 2e-7 on R(t) after 24 steps; single-device
    chunking is bitwise for Adam too, see test_resume.py). 1e-5 allows ~1 float32 ulp per step
    with growth over the 24 steps, far below any physical effect."""
    for name, want in ref.items():
        have = got[f"{prefix}/{name}"]
        msg = f"{prefix}/{name}"
        if name.startswith("params/"):
            rows = [int(name.split("/")[1])]
            sgd = rows[0] not in adam
            if sgd:
                np.testing.assert_array_equal(have, want, err_msg=msg)
            else:
                np.testing.assert_allclose(have, want, rtol=1e-5, atol=1e-6, err_msg=msg)
            continue
        sgd_rows = np.asarray([i not in adam for i in range(want.shape[0])])
        np.testing.assert_array_equal(have[sgd_rows], want[sgd_rows], err_msg=msg)
        np.testing.assert_allclose(
            have[~sgd_rows], want[~sgd_rows], rtol=1e-5, atol=1e-6, err_msg=msg
        )


@pytest.mark.parametrize("devices", [4, 8])
def test_sharded_sweep_and_llc_equal_one_device(reference, tmp_path, devices):
    out = tmp_path / "out.npz"
    proc = _child(["sharded", out], devices)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = dict(np.load(out))
    assert int(got["devices"]) == devices
    ref_sweep, ref_llc, adam, ref_cal = reference
    _assert_same(got, ref_sweep, "sweep", adam)  # sharded, padded to a multiple of the devices
    _assert_same(got, ref_sweep, "chunked", adam)  # sharded and chunked (one network per device)
    assert (got["chunked_chunks"] > 1).all()
    # 15 chain rows over 4 or 8 devices, and 12 rows with epoch batches: bitwise (the gradient
    # variance behind the noise ratio, 3 centres or 1 over 4 or 8 devices: to rounding)
    _cases.assert_same_numbers(got, ref_llc, "llc")
    _cases.assert_same_numbers(got, ref_cal, "calibrate")
    # each device runs the one-device program on its rows (shard_map): no collective inside the
    # steps (partitioning the jit instead reduced the epoch cycle walk's loop condition over all
    # devices at every iteration of every step)
    assert got["sgld_collectives"].tolist() == [0] * 5


def test_mesh_argument_is_checked():
    data = _cases.data()
    with pytest.raises(ValueError, match="mesh"):
        fs.train.sweep(jax.random.key(0), data, _cases.grid(), progress=False, mesh="cpu")
    with pytest.raises(ValueError, match="mesh"):
        _cases.llc(mesh=jax.devices())
    with pytest.raises(ValueError, match="mesh"):
        _cases.calibration(mesh="cpu")
    with pytest.raises(ValueError, match="memory_limit"):
        _cases.calibration(memory_limit=0)
    with pytest.raises(ValueError, match="devices"):
        fs.parallel.batch_mesh([])
    # one device, not a sequence of them: a TypeError from list() before
    with pytest.raises(ValueError, match=r"devices must be .* got .*Device.*\[device\]"):
        fs.parallel.batch_mesh(jax.devices()[0])
    with pytest.raises(ValueError, match=r"devices must be .* got str"):
        fs.parallel.batch_mesh("cpu")
    with pytest.raises(ValueError, match=r"devices must be .* got set"):  # no order
        fs.parallel.batch_mesh(set(jax.devices()))
    assert fs.parallel.batch_mesh(d for d in jax.devices()).size == jax.device_count()


def test_the_parallel_helpers_check_their_mesh():
    """The public helpers refuse a mesh the sweeps and LLC calls refuse, by name: another axis
    name failed deep inside shard_map or placed nothing, a 2-D mesh counted all its devices as
    shards, a string raised AttributeError, and a repeated device made two shards share it."""
    d = jax.devices()[0]
    bad_meshes = [
        Mesh(np.asarray([d]), ("x",)),
        Mesh(np.asarray([[d]]), ("batch", "y")),
        "cpu",
        Mesh(np.asarray([d, d]), ("batch",)),
    ]
    for bad in bad_meshes:
        with pytest.raises(ValueError, match=r"^mesh must"):
            fs.parallel.num_shards(bad)
        with pytest.raises(ValueError, match=r"^mesh must"):
            fs.parallel.shard_leading(np.ones(2), bad)
        with pytest.raises(ValueError, match=r"^mesh must"):
            fs.parallel.replicate(np.ones(2), bad)
        with pytest.raises(ValueError, match=r"^mesh must"):
            fs.parallel.map_elements(lambda e, s: e * s, jnp.ones(2), 2.0, bad)
        with pytest.raises(ValueError, match=r"^mesh must"):
            _cases.llc(mesh=bad)
    good = fs.parallel.batch_mesh()
    out = jax.jit(lambda b: fs.parallel.map_elements(lambda e, s: e * s, b, 2.0, good))
    np.testing.assert_array_equal(out(jnp.arange(2.0)), [0.0, 2.0])


def test_chunk_plan_rule():
    # 4 elements fit per device: 10 elements on 2 devices need 2 chunks of 6 (the last padded)
    assert fs.parallel.chunk_plan(10, 100, 50, 450, 2) == (6, 2)
    # everything fits: one chunk, padded to a multiple of the device count
    assert fs.parallel.chunk_plan(10, 100, 50, 10**6, 4) == (12, 1)
    assert fs.parallel.chunk_plan(7, 100, 50, None, 1) == (7, 1)
    # exactly one per device
    assert fs.parallel.chunk_plan(5, 100, 50, 150, 1) == (1, 5)
    with pytest.raises(ValueError, match="memory"):
        fs.parallel.chunk_plan(5, 100, 50, 149, 1)
    for n, d in [(1, 1), (13, 4), (64, 8), (100, 3)]:
        for k in (1, 2, 5):
            size, chunks = fs.parallel.chunk_plan(n, 100, 50, 50 + 100 * k, d)
            assert size % d == 0 and size // d <= k and size * chunks >= n
            assert size * (chunks - 1) < n  # no chunk is pure padding


def test_pad_and_gather_round_trip():
    x = np.arange(10.0).reshape(5, 2)
    padded = fs.parallel.pad_leading(x, 8)
    np.testing.assert_array_equal(padded[5:], np.repeat(x[-1:], 3, axis=0))
    mesh = fs.parallel.batch_mesh()
    keys = jax.random.split(jax.random.key(0), 8)
    placed = fs.parallel.shard_leading({"x": padded, "k": keys}, mesh)
    assert placed["k"].sharding.spec == fs.parallel.BATCH
    np.testing.assert_array_equal(fs.parallel.to_host(placed["x"])[:5], x)
    np.testing.assert_array_equal(jax.random.key_data(placed["k"]), jax.random.key_data(keys))


def test_map_elements_refuses_a_batch_that_does_not_divide_the_devices():
    """With a mesh of 2 devices a leading axis of 3 is refused by name (it failed inside
    shard_map with JAX's own error); 4 elements map, and without a mesh 3 do."""
    code = (
        "import jax, jax.numpy as jnp, fracsgd as fs\n"
        "mesh = fs.parallel.batch_mesh()\n"
        "assert mesh.size == 2\n"
        "f = lambda e, s: e * s\n"
        "print(fs.parallel.map_elements(f, jnp.arange(4.0), 2.0, mesh).tolist())\n"
        "print(fs.parallel.map_elements(f, jnp.arange(3.0), 2.0).tolist())\n"
        "try:\n"
        "    fs.parallel.map_elements(f, jnp.arange(3.0), 2.0, mesh)\n"
        "except ValueError as err:\n"
        "    print('refused:', err)\n"
    )
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    env["JAX_PLATFORMS"] = "cpu"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "[0.0, 2.0, 4.0, 6.0]" and lines[1] == "[0.0, 2.0, 4.0]"
    assert lines[2].startswith("refused: batched's leading axis (3) must be a multiple of")
