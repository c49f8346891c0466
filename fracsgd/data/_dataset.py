"""The :class:`Dataset` container, its validation, and :func:`make_dataset`."""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from fracsgd._checks import refuse_traced, refuse_traced_value
from fracsgd._types import Array


class Dataset(NamedTuple):
    """A train/test split, already converted to JAX arrays on the default device.

    Classification: ``y_*`` are ``Int32[Array, "n"]`` labels in ``[0, num_classes)`` and
    ``num_classes > 0``. Regression: ``y_*`` are ``Float32[Array, "n outputs"]`` and
    ``num_classes == 0``. Inputs are always ``Float32[Array, "n features"]``.

    The ``name`` and ``source`` strings make a ``Dataset`` unsuitable as an argument of a
    jitted function: pass its arrays instead.

    Attributes:
        x_train: Training inputs, ``Float32[Array, "n_train features"]``.
        y_train: Training labels (classification) or targets (regression).
        x_test: Test inputs, ``Float32[Array, "n_test features"]``.
        y_test: Test labels or targets.
        num_classes: Number of classes; ``0`` for regression.
        name: Short name, e.g. ``"mnist"``, ``"moons"``, ``"deep_linear"``.
        source: Human-readable provenance (which files or generator produced the data).

    Examples:
        Build one with :func:`make_dataset` (which validates and converts), or :func:`load`:

        >>> import numpy as np
        >>> import fracsgd as fs
        >>> data = fs.data.make_dataset(np.zeros((4, 2)), np.array([0, 1, 0, 1]),
        ...                             np.zeros((2, 2)), np.array([1, 0]), num_classes=2,
        ...                             name="toy", source="zeros")
        >>> data.num_train, data.num_test, data.num_features, data.task
        (4, 2, 2, 'classification')
        >>> data.x_train.dtype, data.y_train.dtype
        (dtype('float32'), dtype('int32'))
    """

    x_train: Array
    y_train: Array
    x_test: Array
    y_test: Array
    num_classes: int
    name: str
    source: str

    @property
    def num_train(self) -> int:
        """Number of training examples."""
        return int(self.x_train.shape[0])

    @property
    def num_test(self) -> int:
        """Number of test examples."""
        return int(self.x_test.shape[0])

    @property
    def num_features(self) -> int:
        """Input dimension (columns of ``x_train``)."""
        return int(self.x_train.shape[1])

    @property
    def task(self) -> str:
        """``"classification"`` when ``num_classes > 0``, else ``"regression"``."""
        return "classification" if self.num_classes > 0 else "regression"

    @property
    def num_outputs(self) -> int:
        """Model output width: ``num_classes`` (classification) or the width of ``y_train``."""
        return self.num_classes if self.num_classes > 0 else int(self.y_train.shape[1])

    def validate(self) -> None:
        """Checks shapes, dtypes, finiteness and label range.

        Raises:
            ValueError: naming the offending field, e.g. ``"x_train and y_train have different
                lengths (4000 vs 3999)"``, ``"x_train contains NaN or inf"`` or
                ``"y_test has labels outside [0, 10): min 0, max 11"``.

        Examples:
            >>> import numpy as np
            >>> ds = make_dataset(np.zeros((3, 2)), np.array([0, 1, 0]), np.zeros((1, 2)),
            ...                   np.array([1]), num_classes=2, name="toy", source="zeros")
            >>> ds._replace(y_test=ds.y_train).validate()
            Traceback (most recent call last):
            ...
            ValueError: x_test and y_test have different lengths (1 vs 3)
        """
        _check_int("num_classes", self.num_classes, 0)
        for field in ("name", "source"):
            value = getattr(self, field)
            if not isinstance(value, str):
                raise ValueError(f"{field} must be a str, got {type(value).__name__}")
        classification = self.num_classes > 0
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.ndim != 2:
                raise ValueError(f"x_{split} must be 2-D (n, features), got shape {x.shape}")
            if y.ndim != (1 if classification else 2):
                shape = "(n,) labels" if classification else "(n, outputs) targets"
                raise ValueError(f"y_{split} must be {shape} for {self.task}, got shape {y.shape}")
            if x.shape[0] != y.shape[0]:
                raise ValueError(
                    f"x_{split} and y_{split} have different lengths ({x.shape[0]} vs {y.shape[0]})"
                )
            if x.dtype != jnp.float32:
                raise ValueError(f"x_{split} must have dtype float32, got {x.dtype}")
            y_dtype = jnp.int32 if classification else jnp.float32
            if y.dtype != y_dtype:
                raise ValueError(f"y_{split} must have dtype {np.dtype(y_dtype)}, got {y.dtype}")
        if self.num_train < 1:
            raise ValueError("x_train must hold at least one example, got 0")
        if self.x_test.shape[1] != self.x_train.shape[1]:
            raise ValueError(
                f"x_train and x_test have different feature counts "
                f"({self.x_train.shape[1]} vs {self.x_test.shape[1]})"
            )
        if not classification and self.y_test.shape[1] != self.y_train.shape[1]:
            raise ValueError(
                f"y_train and y_test have different output widths "
                f"({self.y_train.shape[1]} vs {self.y_test.shape[1]})"
            )
        # One compiled reduction and one device-to-host transfer for all value checks.
        finite, ranges = jax.device_get(
            _summary(self.x_train, self.y_train, self.x_test, self.y_test, classification)
        )
        for field, ok in zip(("x_train", "y_train", "x_test", "y_test"), finite, strict=True):
            if not ok:
                raise ValueError(f"{field} contains NaN or inf")
        for split, (lo, hi) in zip(("train", "test"), ranges, strict=False):
            if getattr(self, f"y_{split}").size and (lo < 0 or hi >= self.num_classes):
                raise ValueError(
                    f"y_{split} has labels outside [0, {self.num_classes}): min {lo}, max {hi}"
                )


@functools.partial(jax.jit, static_argnames="classification")
def _summary(
    x_train: Array, y_train: Array, x_test: Array, y_test: Array, classification: bool
) -> tuple[tuple[Array, ...], tuple[tuple[Array, Array], ...]]:
    """Finiteness of each array and, for classification, the label range of each split."""
    finite = tuple(jnp.all(jnp.isfinite(a)) for a in (x_train, y_train, x_test, y_test))
    if not classification:
        return finite, ()
    big = np.iinfo(np.int32)
    ranges = tuple(
        (jnp.min(y, initial=big.max), jnp.max(y, initial=big.min)) for y in (y_train, y_test)
    )
    return finite, ranges


def make_dataset(
    x_train: ArrayLike,
    y_train: ArrayLike,
    x_test: ArrayLike,
    y_test: ArrayLike,
    *,
    num_classes: int,
    name: str,
    source: str,
) -> Dataset:
    """Builds a validated :class:`Dataset` from NumPy or JAX arrays.

    Inputs are cast to float32; labels (``num_classes > 0``) must have an integer dtype and
    are cast to int32 after their range is checked; regression targets are cast to float32,
    and 1-D targets become one column ``(n, 1)``. Inputs with more than two axes (images
    ``(n, 28, 28)`` or ``(n, 28, 28, 1)``) are flattened row-major to ``(n, features)``, the
    layout of the MLPs and of the IDX reader. The arrays are placed on the default device.

    Args:
        x_train: Training inputs, shape ``(n_train, features)`` (or ``(n_train, *shape)``,
            flattened).
        y_train: Training labels ``(n_train,)`` or regression targets ``(n_train, outputs)``.
        x_test: Test inputs, shape ``(n_test, features)`` (or ``(n_test, *shape)``).
        y_test: Test labels or targets.
        num_classes: Number of classes (``> 0``), or ``0`` for regression.
        name: Short name of the data set.
        source: Human-readable provenance.

    Returns:
        The validated :class:`Dataset`. Built on the host (its values are checked there):
        not under ``jit``/``vmap``, where a traced input is refused by name.

    Raises:
        ValueError: if a shape, dtype, value or label is invalid; the message names the field.

    Examples:
        >>> import numpy as np
        >>> ds = make_dataset(np.ones((4, 3)), np.array([0, 1, 2, 1]), np.ones((2, 3)),
        ...                   np.array([2, 0]), num_classes=3, name="toy", source="ones")
        >>> ds.num_train, ds.num_test, ds.num_features, ds.task, ds.x_train.dtype
        (4, 2, 3, 'classification', dtype('float32'))
        >>> make_dataset(np.ones((4, 3)), np.ones((3, 1)), np.ones((2, 3)), np.ones((2, 1)),
        ...              num_classes=0, name="toy", source="ones")
        Traceback (most recent call last):
        ...
        ValueError: x_train and y_train have different lengths (4 vs 3)
    """
    refuse_traced(
        "fracsgd.data.make_dataset",
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
    )
    _check_int("num_classes", num_classes, 0)
    ys = {"y_train": y_train, "y_test": y_test}
    converted: dict[str, Array] = {}
    for field, y in ys.items():
        if num_classes > 0:
            dtype = np.dtype(y.dtype) if hasattr(y, "dtype") else np.asarray(y).dtype
            if dtype.kind not in "iu":
                raise ValueError(
                    f"{field} must hold integer class labels for classification, got dtype "
                    f"{dtype}; cast it (e.g. y.astype(int)) or pass num_classes=0 for regression"
                )
            # Check the range before the int32 cast, so that huge int64 labels cannot wrap.
            _check_labels(field, y, num_classes)
            converted[field] = jnp.asarray(y, dtype=jnp.int32)
        else:
            arr = _float32(field, y)
            converted[field] = arr[:, None] if arr.ndim == 1 else arr
    x_train_32 = _flat(_float32("x_train", x_train))
    x_test_32 = _flat(_float32("x_test", x_test))
    dataset = Dataset(
        x_train=x_train_32,
        y_train=converted["y_train"],
        x_test=x_test_32,
        y_test=converted["y_test"],
        num_classes=num_classes,
        name=name,
        source=source,
    )
    dataset.validate()
    return dataset


def _flat(x: Array) -> Array:
    """Images ``(n, *shape)`` as rows ``(n, prod(shape))``; other arrays unchanged (a 0-D or
    1-D ``x`` is left for :meth:`Dataset.validate` to name)."""
    return x.reshape(x.shape[0], math.prod(x.shape[1:])) if x.ndim > 2 else x


def _float32(field: str, value: Any) -> Array:
    """``value`` as a float32 JAX array, or ValueError naming ``field`` (values beyond float32
    become inf; :meth:`Dataset.validate` names them)."""
    if not isinstance(value, jax.Array):
        try:
            kind = np.asarray(value).dtype.kind
        except (TypeError, ValueError) as err:  # ragged nested sequences
            raise ValueError(f"{field} must be an array of real numbers: {err}") from err
        if kind not in "biuf":
            raise ValueError(
                f"{field} must be an array of real numbers, got {type(value).__name__}"
            )
    elif not jnp.issubdtype(value.dtype, jnp.number) or jnp.iscomplexobj(value):
        raise ValueError(f"{field} must be an array of real numbers, got dtype {value.dtype}")
    with np.errstate(over="ignore"):
        return jnp.asarray(value, dtype=jnp.float32)


def _check_labels(field: str, y: Any, num_classes: int) -> None:
    """Raises ValueError when an integer label array has values outside ``[0, num_classes)``."""
    if np.size(y) == 0:
        return
    if not hasattr(y, "min"):
        y = np.asarray(y)
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= num_classes:
        raise ValueError(f"{field} has labels outside [0, {num_classes}): min {lo}, max {hi}")


def _check_int(field: str, value: Any, minimum: int) -> int:
    """Returns ``value`` as an int, or raises ValueError naming ``field``."""
    refuse_traced_value(field, value, f"an integer >= {minimum}")
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{field} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{field} must be >= {minimum}, got {value}")
    return int(value)


def _check_nonneg_float(field: str, value: Any) -> float:
    """Returns ``value`` as a float, or raises ValueError naming ``field``."""
    refuse_traced_value(field, value, "a finite number >= 0")
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{field} must be a finite number >= 0, got {value!r}")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{field} must be a finite number >= 0, got {value}")
    return float(value)
