"""Subprocess side of the parallel tests: JAX fixes its device count at start-up, so sharded
runs need a fresh interpreter with ``XLA_FLAGS=--xla_force_host_platform_device_count=D``.

``python _worker.py sharded OUT``: a sweep and an ``estimate_many`` sharded over every device
(and once more chunked by a memory cap), saved to ``OUT`` (npz).
``python _worker.py resume OUT DIR``: a checkpointed sweep that sleeps after each saved chunk
(so the parent can kill it between chunks).
``python _worker.py multihost OUT PORT PID``: one process of a two-process job on localhost.
"""

from __future__ import annotations

import sys
import time

import jax
import numpy as np

jax.config.update("jax_numpy_rank_promotion", "raise")

if sys.argv[1] == "multihost":
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=f"localhost:{sys.argv[3]}",
        num_processes=2,
        process_id=int(sys.argv[4]),
    )

import _cases  # noqa: E402

import fracsgd as fs  # noqa: E402

COLLECTIVES = ("all-reduce", "all-gather", "all-to-all", "collective-permute", "reduce-scatter")


def _flat(prefix: str, sw) -> dict[str, np.ndarray]:
    return {f"{prefix}/{k}": v for k, v in _cases.sweep_arrays(sw).items()}


def main() -> None:
    mode, out = sys.argv[1], sys.argv[2]
    arrays: dict[str, np.ndarray] = {"devices": np.asarray(jax.device_count())}
    if mode in ("sharded", "multihost"):
        mesh = fs.parallel.batch_mesh()
        data = _cases.data()
        grid = _cases.grid()
        sw = fs.train.sweep(jax.random.key(0), data, grid, progress=False, mesh=mesh)
        arrays.update(_flat("sweep", sw))
        arrays["sweep_chunks"] = np.asarray([b.num_chunks for b in sw.buckets])
        if mode == "sharded":
            small = grid._replace(memory_limit=_cases.cap_for(grid, 1))
            sw = fs.train.sweep(jax.random.key(0), data, small, progress=False, mesh=mesh)
            arrays.update(_flat("chunked", sw))
            arrays["chunked_chunks"] = np.asarray([b.num_chunks for b in sw.buckets])
        res = _cases.llc(mesh=mesh)
        arrays.update({f"llc/{k}": v for k, v in _cases.llc_arrays(res).items()})
        cal = _cases.calibration(mesh=mesh)
        arrays.update({f"calibrate/{k}": v for k, v in _cases.calibration_arrays(cal).items()})
        if mode == "sharded":
            text = _cases.sgld_program_text(mesh)
            arrays["sgld_collectives"] = np.asarray(
                [text.count(op) for op in COLLECTIVES], np.int64
            )
    elif mode == "resume":
        from fracsgd.train import _api

        save = _api.save_chunk

        def slow_save(*args, **kw):  # numbers untouched: only a pause after each file
            save(*args, **kw)
            time.sleep(3.0)

        _api.save_chunk = slow_save
        sw = _cases.resumable_sweep(sys.argv[3])
        arrays.update(_flat("sweep", sw))
    if jax.process_index() == 0:
        np.savez(out, **arrays)


if __name__ == "__main__":
    main()
