"""Resumable stages: each stage of an experiment saves its arrays atomically as it finishes,
with a fingerprint of everything its numbers depend on; re-running the same command loads them
instead of recomputing.

A stage file is ``DIR/stages/<study>-<stage>.npz``, written to a temporary file in the same
directory and moved into place with :func:`os.replace` (atomic on POSIX and Windows), so Ctrl-C
or SIGKILL leaves either the old file, the new one, or none — never half of one. The fingerprint
is the SHA-256 of the stage name, the study configuration, the master seed, the data set's
identity, the software (:func:`fracsgd._io.software`: the fracsgd, jax and jaxlib versions and
the SHA-256 of fracsgd's source files, so a stage computed by other code — a fixed bug, a
changed formula — is not resumed even when the version number did not change) and the
fingerprints of the stages it reads. On load:

* no file → compute;
* a file whose fingerprint matches → reuse (reported on stderr as ``resumed``);
* a file that cannot be read (truncated, not a zip, missing fields) → :class:`StageError`;
* a readable file with another fingerprint (other configuration, seed, data or code) →
  :class:`StageError`, unless the store was opened with ``overwrite=True``.

Nothing is ever silently reused or silently replaced. Opening a store deletes the hidden
temporary files a killed run (SIGKILL) of this host left in ``DIR``, ``DIR/stages`` and
``DIR/figures`` (:func:`fracsgd._io.remove_stale_temporaries`: only those of processes that no
longer run).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from fracsgd import _io
from fracsgd._io import (
    CheckpointError,
    atomic_write_bytes,
    atomic_write_text,
    fingerprint,
    load_arrays,
    prepare_directory,
    remove_stale_temporaries,
    save_arrays,
)

__all__ = ["StageError", "Store", "atomic_write_bytes", "atomic_write_text", "fingerprint"]


def tree_arrays(tree: Any, prefix: str) -> dict[str, np.ndarray]:
    """A parameter pytree as stage arrays ``{prefix}0, {prefix}1, …`` (its leaves in order)."""
    return {f"{prefix}{k}": np.asarray(x) for k, x in enumerate(jax.tree.leaves(tree))}


def arrays_tree(model: Any, arrays: Mapping[str, np.ndarray], prefix: str) -> Any:
    """The inverse of :func:`tree_arrays` for parameters of ``model`` (any leading axes)."""
    template = jax.eval_shape(model.init, jax.random.key(0))
    n = len(jax.tree.leaves(template))
    return jax.tree.unflatten(
        jax.tree.structure(template), [arrays[f"{prefix}{k}"] for k in range(n)]
    )


class StageError(CheckpointError):
    """A stored stage is corrupt or belongs to another configuration (a ``ValueError``)."""


class Store:
    """The stage files of one study under ``root/stages``.

    Args:
        root: the output directory.
        study: ``"mnist"`` or ``"moons"`` (file-name prefix).
        overwrite: replace stages stored for another configuration instead of refusing.
        verbose: report resumed and recomputed stages on stderr.
    """

    def __init__(
        self, root: str | os.PathLike, study: str, *, overwrite: bool = False, verbose: bool = True
    ):
        self.dir = Path(root) / "stages"
        # a file (or no permission) there is found now, not after the first stage has computed
        prepare_directory(self.dir, "the output directory's stages folder")
        for where in (Path(root), self.dir, Path(root) / "figures"):
            remove_stale_temporaries(where)  # a killed run's, never a live one's
        self.study = study
        self.overwrite = overwrite
        self.verbose = verbose
        self.timings: dict[str, float] = {}  # seconds per stage (loading or computing)

    def path(self, stage: str) -> Path:
        return self.dir / f"{self.study}-{stage}.npz"

    def _say(self, msg: str) -> None:
        if self.verbose:
            sys.stderr.write(f"fracsgd reproduce {self.study}: {msg}\n")
            sys.stderr.flush()

    def load(self, stage: str, fp: str) -> dict[str, np.ndarray] | None:
        """The stored arrays of ``stage`` if its fingerprint is ``fp``; None if absent."""
        path = self.path(stage)
        if not path.exists():
            return None
        try:
            arrays, meta = load_arrays(path)
        except CheckpointError as err:
            if self.overwrite:
                self._say(f"stage {stage!r}: {path} is unreadable; recomputing")
                return None
            reason = str(err).removesuffix("; delete it to recompute")
            raise StageError(
                f"{reason}; delete it or pass --overwrite to recompute the stage"
            ) from err
        if meta.get("fingerprint") != fp:
            if self.overwrite:
                self._say(f"stage {stage!r}: stored for another configuration; recomputing")
                return None
            raise StageError(
                f"{path} holds stage {stage!r} of another configuration, seed, data set or "
                f"fracsgd code (stored {meta.get('describe', '?')}; this code "
                f"{_io.code_digest()[:12]}); use another --out directory or pass --overwrite"
            )
        self._say(f"stage {stage!r}: resumed from {path}")
        return arrays

    def chunked(self, chunk_dir: Path, compute: Callable[[], Mapping[str, Any]]):
        """``compute`` (a sweep that keeps its finished chunks in ``chunk_dir``), wrapped so that
        with ``overwrite`` chunks left by an interrupted run of another configuration are
        deleted and the sweep started afresh (without it they are an error, as stages are)."""

        def run() -> Mapping[str, Any]:
            try:
                return compute()
            except CheckpointError as err:
                if not self.overwrite:
                    raise StageError(f"{err}; or pass --overwrite to recompute the stage") from err
                self._say(f"{chunk_dir} holds another configuration's chunks; deleting them")
                shutil.rmtree(chunk_dir, ignore_errors=True)
                return compute()

        return run

    def save(self, stage: str, fp: str, arrays: Mapping[str, Any], describe: str = "") -> None:
        """Save ``arrays`` atomically under ``stage`` with fingerprint ``fp`` (``describe`` is
        shown when another configuration meets the file; the code's digest is appended)."""
        describe = ", ".join(filter(None, [describe, f"code {_io.code_digest()[:12]}"]))
        save_arrays(self.path(stage), arrays, {"fingerprint": fp, "describe": describe})

    def stage(
        self,
        stage: str,
        fp: str,
        compute: Callable[[], Mapping[str, Any]],
        describe: str = "",
        note: str = "",
    ) -> dict[str, np.ndarray]:
        """Load ``stage`` or compute it, save it, and return its arrays (as loaded back, so a
        fresh run and a resumed one see identical values). ``note`` is shown when the stage
        starts computing (e.g. its size, when it has no progress bar)."""
        t0 = time.perf_counter()
        got = self.load(stage, fp)
        if got is not None:
            self.timings[stage] = time.perf_counter() - t0
            return got
        self._say(f"stage {stage!r}: computing" + (f" ({note})" if note else ""))
        self.save(stage, fp, compute(), describe)
        self._say(f"stage {stage!r}: done in {time.perf_counter() - t0:.1f} s, saved")
        verbose, self.verbose = self.verbose, False
        try:
            out = self.load(stage, fp)
        finally:
            self.verbose = verbose
        assert out is not None
        self.timings[stage] = time.perf_counter() - t0
        return out
