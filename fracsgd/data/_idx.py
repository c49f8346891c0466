"""Reading and writing IDX files, the format of the original MNIST distribution.

An IDX file is a 4-byte magic number ``0, 0, dtype code, ndim``, then ``ndim`` big-endian
uint32 dimensions, then the array in C order, big-endian. Reference: Y. LeCun, C. Cortes,
C. J. C. Burges, "The MNIST database of handwritten digits" (file-format section).
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

#: IDX data-type code → NumPy dtype (big-endian on disk).
_CODE_TO_DTYPE: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_DTYPE_TO_CODE: dict[np.dtype, int] = {dt.newbyteorder("="): c for c, dt in _CODE_TO_DTYPE.items()}


def _read_bytes(path: Path) -> bytes:
    """Reads a file, decompressing it when its content starts with the gzip magic bytes
    ``1F 8B``, or when its name ends in ``.gz`` and its content is not IDX. An IDX file starts
    with ``00 00``, so the two cannot be confused: a gzipped file saved without its suffix
    still reads, and so does an IDX file that kept its ``.gz`` name after a browser or a
    download tool decompressed it on the way (it was refused as "not a valid gzip file")."""
    raw = path.read_bytes()  # FileNotFoundError names the path.
    if raw[:2] != b"\x1f\x8b" and (path.suffix != ".gz" or raw[:2] == b"\x00\x00"):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"{path}: not a valid gzip file ({err})") from err


def _read_idx_with_magic(path: str | os.PathLike[str]) -> tuple[int, np.ndarray]:
    """Like :func:`read_idx`, but also returns the file's magic number."""
    if not isinstance(path, str | os.PathLike):
        raise ValueError(f"path must be a str or os.PathLike, got {path!r}")
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: is a directory, not an IDX file")
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise ValueError(f"{path}: truncated IDX header ({len(raw)} bytes, need at least 4)")
    magic = int.from_bytes(raw[:4], "big")
    code, ndim = raw[2], raw[3]
    if raw[0] != 0 or raw[1] != 0 or code not in _CODE_TO_DTYPE:
        raise ValueError(
            f"{path}: bad magic number {magic} (0x{magic:08X}); an IDX file starts with bytes "
            f"0, 0, a type code in {{{', '.join(f'0x{c:02X}' for c in _CODE_TO_DTYPE)}}}, ndim"
        )
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise ValueError(
            f"{path}: truncated IDX header ({len(raw)} bytes, {ndim} dimensions need {header_len})"
        )
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = _CODE_TO_DTYPE[code]
    expected = math.prod(shape) * dtype.itemsize
    actual = len(raw) - header_len
    if actual != expected:
        problem = "truncated" if actual < expected else "has trailing bytes"
        raise ValueError(
            f"{path}: {problem}: the header says shape {shape} of {dtype.newbyteorder('=')} "
            f"({expected} data bytes) but the file holds {actual} data bytes"
        )
    array = np.frombuffer(raw, dtype=dtype, count=math.prod(shape), offset=header_len)
    return magic, array.reshape(shape).astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Reads an IDX file (optionally gzip-compressed) into a NumPy array.

    Supported type codes: ``0x08`` uint8, ``0x09`` int8, ``0x0B`` int16, ``0x0C`` int32,
    ``0x0D`` float32, ``0x0E`` float64. Content starting with the gzip magic bytes is
    decompressed first, and so is a file whose name ends in ``.gz`` unless its content is
    already IDX (starts with ``00 00``: a download that was decompressed but kept its name).

    Args:
        path: The file to read.

    Returns:
        A writeable array in native byte order with the shape given in the header.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the file is not valid IDX (bad magic number, truncated header or data,
            trailing bytes, broken gzip stream); the message starts with the path.

    Examples:
        >>> import tempfile, numpy as np
        >>> path = tempfile.mkdtemp() + "/a-idx2-short.gz"
        >>> write_idx(path, np.arange(6, dtype=np.int16).reshape(2, 3))
        >>> read_idx(path)
        array([[0, 1, 2],
               [3, 4, 5]], dtype=int16)
    """
    return _read_idx_with_magic(path)[1]


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Writes an array as an IDX file, gzip-compressed when ``path`` ends in ``.gz``.

    Args:
        path: Destination file (overwritten).
        array: Array with dtype uint8, int8, int16, int32, float32 or float64 and at most
            255 dimensions, each below 2**32.

    Raises:
        ValueError: if ``array`` has a dtype or shape IDX cannot store.

    Examples:
        >>> import tempfile, numpy as np
        >>> path = tempfile.mkdtemp() + "/labels-idx1-ubyte"
        >>> write_idx(path, np.array([7, 2, 1], dtype=np.uint8))
        >>> from pathlib import Path
        >>> Path(path).read_bytes()
        b'\\x00\\x00\\x08\\x01\\x00\\x00\\x00\\x03\\x07\\x02\\x01'
    """
    array = np.asarray(array)
    native = array.dtype.newbyteorder("=")
    if native not in _DTYPE_TO_CODE:
        allowed = ", ".join(str(dt) for dt in _DTYPE_TO_CODE)
        raise ValueError(f"array has dtype {array.dtype}, which IDX cannot store; use {allowed}")
    if array.ndim > 255 or any(d >= 2**32 for d in array.shape):
        raise ValueError(f"array shape {array.shape} does not fit an IDX header")
    code = _DTYPE_TO_CODE[native]
    header = bytes([0, 0, code, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    data = header + np.ascontiguousarray(array, dtype=_CODE_TO_DTYPE[code]).tobytes()
    path = Path(path)
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
