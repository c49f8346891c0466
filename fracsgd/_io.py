"""Atomic files and fingerprints, shared by resumable sweeps (:func:`fracsgd.train.sweep`) and
resumable experiment stages (:mod:`fracsgd.experiments`).

A file is written to a temporary name in its directory, flushed to disk and moved into place with
:func:`os.replace` (atomic on POSIX and Windows): a crash or SIGKILL leaves the old file, the new
one, or none — never half of one. The temporary file's hidden name carries the writer's host
and process id (``.NAME.~HOST~PID~.XXXXXXXX.tmp``), so that one left by a killed process can be
told from one being written: :func:`remove_stale_temporaries` deletes those of dead processes on
this host. Array files are ``.npz`` archives with a JSON ``__meta__``
entry holding the fingerprint of everything the arrays depend on; :func:`load_arrays` refuses a
file that cannot be read or carries another fingerprint (:class:`CheckpointError`).
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import re
import socket
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

META = "__meta__"


class CheckpointError(ValueError):
    """A stored checkpoint is corrupt, or belongs to another configuration, key, data set or
    code (:func:`software`); it is never silently reused.

    A ``ValueError``, so callers that catch bad configuration catch it too; exported as
    ``fracsgd.train.CheckpointError``.

    Examples:
        >>> import fracsgd as fs
        >>> fs.train.CheckpointError is CheckpointError, issubclass(CheckpointError, ValueError)
        (True, True)
    """


def fingerprint(*parts: Any) -> str:
    """SHA-256 (hex) of a JSON rendering of ``parts`` (keys sorted, other objects as ``repr``).

    Examples:
        >>> fingerprint({"a": 1, "b": 2.5}) == fingerprint({"b": 2.5, "a": 1})
        True
        >>> fingerprint(1) == fingerprint(2)
        False
    """
    text = json.dumps(parts, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


def array_digest(*arrays: Any) -> str:
    """SHA-256 (hex) of arrays' dtypes, shapes and bytes (host copies), e.g. a data set's
    identity."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(np.asarray(a))
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


@functools.cache
def code_digest() -> str:
    """SHA-256 (hex) of fracsgd's own source: every ``.py`` file of the installed package, by
    relative path and bytes, in sorted order (computed once per process).

    Stored results carry it in their fingerprints (:func:`software`), so a result computed by
    other code — a changed formula, a noise draw whose last bits moved, a bug fix — is never
    resumed as if it were this code's, even when ``fracsgd.__version__`` did not change. Any
    edit of a source file changes it, docstrings included: resuming after an upgrade is refused
    (``--overwrite`` recomputes).
    """
    return tree_digest(Path(__file__).resolve().parent)


def tree_digest(root: str | os.PathLike, pattern: str = "*.py") -> str:
    """SHA-256 (hex) of the files under ``root`` matching ``pattern`` (recursively): each file's
    path relative to ``root`` (``/``-separated), its length and its bytes, in sorted path order,
    so the digest does not depend on the file system's listing order.

    Examples:
        >>> import pathlib, tempfile
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "a.py").write_text("x = 1")
        >>> before = tree_digest(d)
        >>> _ = (d / "a.py").write_text("x = 2")
        >>> tree_digest(d) == before
        False
    """
    root = Path(root)
    h = hashlib.sha256()
    files = sorted((p.relative_to(root).as_posix(), p) for p in root.rglob(pattern) if p.is_file())
    for rel, path in files:
        data = path.read_bytes()
        h.update(f"{rel}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def software() -> dict[str, str]:
    """The software a stored result's numbers depend on, for fingerprints and provenance:
    fracsgd's version and :func:`code_digest`, and the jax and jaxlib versions (XLA's code
    generation decides the last bits)."""
    import jax
    import jaxlib

    import fracsgd

    return {
        "fracsgd": fracsgd.__version__,
        "code": code_digest(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
    }


def default_file_mode() -> int:
    """``0o666`` less the process's umask: the mode ``open`` would give a new file
    (:func:`tempfile.mkstemp` creates its files ``0o600``, which results must not keep)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def prepare_directory(path: str | os.PathLike, name: str) -> None:
    """Create the directory ``path`` (parents too) or raise ``ValueError`` naming ``name`` (the
    option or argument it came from): a file there, a path through a file, no permission."""
    where = os.fspath(path)
    if os.path.exists(where) and not os.path.isdir(where):
        raise ValueError(f"{name} must be a directory, but {where!r} is a file")
    try:
        os.makedirs(where, exist_ok=True)
    except OSError as err:
        raise ValueError(f"{name} {where!r} cannot be created: {err.strerror or err}") from err
    if not os.access(where, os.W_OK | os.X_OK):
        raise ValueError(f"{name} {where!r} is not writable")


#: the writer's tag in a temporary file's name: ``.NAME.~HOST~PID~.XXXXXXXX.tmp``
_TEMPORARY = re.compile(r"^\..*\.~(?P<host>[^~/]*)~(?P<pid>[0-9]+)~\.[A-Za-z0-9_]+\.tmp$")


def _host() -> str:
    return socket.gethostname().replace("~", "_").replace("/", "_")


def _process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (POSIX ``kill(pid, 0)``)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # another user's process, or not a pid at all
        return True
    return True


def remove_stale_temporaries(directory: str | os.PathLike) -> list[str]:
    """Delete the temporary files :func:`atomic_write_bytes` left in ``directory`` when its
    process was killed (SIGKILL, power loss) before it could clean up: those named with this
    host and the id of a process that no longer runs. A temporary file of a live process
    (another run writing there now), of another host (a shared file system) or of an older
    fracsgd (no tag) is kept. Only on POSIX (elsewhere nothing is deleted). Returns the names
    deleted.

    Examples:
        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> atomic_write_text(os.path.join(d, "a.json"), "{}")
        >>> remove_stale_temporaries(d), sorted(os.listdir(d))
        ([], ['a.json'])
    """
    if os.name != "posix" or not os.path.isdir(directory):
        return []
    host, removed = _host(), []
    for name in sorted(os.listdir(directory)):
        m = _TEMPORARY.match(name)
        if m is None or m["host"] != host or int(m["pid"]) == os.getpid():
            continue
        if not _process_alive(int(m["pid"])):
            try:
                os.unlink(os.path.join(directory, name))
            except FileNotFoundError:  # removed meanwhile
                continue
            removed.append(name)
    return removed


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file, ``fsync`` and :func:`os.replace`; the
    file gets the mode a plain ``open`` would give it (:func:`default_file_mode`). The
    temporary file is ``.NAME.~HOST~PID~.XXXXXXXX.tmp`` in the same directory (see
    :func:`remove_stale_temporaries`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.~{_host()}~{os.getpid()}~.", suffix=".tmp"
    )
    try:
        os.chmod(tmp, default_file_mode())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """:func:`atomic_write_bytes` of UTF-8 text."""
    atomic_write_bytes(path, text.encode())


def save_arrays(
    path: str | os.PathLike, arrays: Mapping[str, Any], meta: Mapping[str, Any]
) -> None:
    """Save ``arrays`` and a JSON-able ``meta`` (which should hold a ``"fingerprint"``)
    atomically as one ``.npz`` file.

    Examples:
        >>> import tempfile, os
        >>> d = tempfile.mkdtemp()
        >>> save_arrays(os.path.join(d, "a.npz"), {"x": np.arange(3)}, {"fingerprint": "f"})
        >>> arrays, meta = load_arrays(os.path.join(d, "a.npz"), "f")
        >>> arrays["x"].tolist(), meta["fingerprint"]
        ([0, 1, 2], 'f')
    """
    buf = io.BytesIO()
    payload: dict[str, Any] = {k: np.asarray(v) for k, v in arrays.items()}
    payload[META] = np.asarray(json.dumps(dict(meta), sort_keys=True))
    np.savez(buf, **payload)
    atomic_write_bytes(path, buf.getvalue())


def load_arrays(
    path: str | os.PathLike, expected_fingerprint: str | None = None
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Arrays and meta of a file written by :func:`save_arrays`.

    Raises:
        CheckpointError: the file cannot be read (truncated, not a zip, no meta), or its
            fingerprint is not ``expected_fingerprint`` (when given).
    """
    try:
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(str(arrays.pop(META)))
        if not isinstance(meta, dict):
            raise ValueError("meta is not a JSON object")
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as err:
        raise CheckpointError(
            f"{path} is corrupt or truncated ({type(err).__name__}: {err}); delete it to recompute"
        ) from err
    if expected_fingerprint is not None and meta.get("fingerprint") != expected_fingerprint:
        raise CheckpointError(
            f"{path} was written for another configuration, key, data set or software "
            f"(fracsgd's code or the jax version; stored: {meta.get('describe', '?')}; this "
            f"code {code_digest()[:12]}); use another directory or delete it"
        )
    return arrays, meta
