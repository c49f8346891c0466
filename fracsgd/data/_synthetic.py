"""Synthetic data: two moons (NumPy, seeded) and deep linear teachers (JAX, keyed)."""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fracsgd._checks import check_key, refuse_traced
from fracsgd._types import Array, PRNGKey
from fracsgd.data._dataset import Dataset, _check_int, _check_nonneg_float, make_dataset


def _moons_points(rng: np.random.Generator, n: int, noise: float) -> tuple[np.ndarray, ...]:
    """Draws ``n`` shuffled two-moons points: ``n // 2`` of class 0, the rest class 1."""
    labels = np.repeat(np.array([0, 1]), [n // 2, n - n // 2])
    t = rng.uniform(0.0, np.pi, size=n)
    # Class 0: upper half of the unit circle around (0, 0); class 1: lower half of the unit
    # circle around (1, 0.5) -- the construction of sklearn.datasets.make_moons.
    x = np.where(labels == 0, np.cos(t), 1.0 - np.cos(t))
    y = np.where(labels == 0, np.sin(t), 0.5 - np.sin(t))
    points = np.stack([x, y], axis=1) + noise * rng.standard_normal((n, 2))
    order = rng.permutation(n)
    return points[order], labels[order]


def moons(
    n: int = 1000, noise: float = 0.1, seed: int = 0, *, n_test: int | None = None
) -> Dataset:
    """Two interleaving half circles, a 2-class problem in the plane (sklearn's ``make_moons``).

    Class 0 lies on the upper half of the unit circle centred at ``(0, 0)``, class 1 on the
    lower half of the unit circle centred at ``(1, 0.5)``; angles are uniform on ``[0, π]``
    and isotropic Gaussian noise of standard deviation ``noise`` is added. Generation uses
    NumPy's ``default_rng`` seeded by ``seed`` (acceptable for data sets: it runs once, outside
    any jitted code); train and test come from independent child streams of that seed, so the
    training set does not depend on ``n_test``.

    Args:
        n: Number of training points, ``>= 2``; ``n // 2`` have label 0, the rest label 1.
        noise: Standard deviation of the added Gaussian noise, ``>= 0``.
        seed: Non-negative integer seed.
        n_test: Number of test points (``>= 0``), drawn independently of the training points;
            default ``max(n // 4, 1)``.

    Returns:
        A classification :class:`Dataset` named ``"moons"`` with ``num_classes == 2``.

    Raises:
        ValueError: naming the invalid parameter.

    Examples:
        >>> ds = moons(n=100, noise=0.0, seed=1)
        >>> ds.x_train.shape, ds.x_test.shape, int(ds.y_train.sum())
        ((100, 2), (25, 2), 50)
    """
    n = _check_int("n", n, 2)
    noise = _check_nonneg_float("noise", noise)
    seed = _check_int("seed", seed, 0)
    n_test = max(n // 4, 1) if n_test is None else _check_int("n_test", n_test, 0)
    train_seq, test_seq = np.random.SeedSequence(seed).spawn(2)
    x_train, y_train = _moons_points(np.random.default_rng(train_seq), n, noise)
    x_test, y_test = _moons_points(np.random.default_rng(test_seq), n_test, noise)
    return make_dataset(
        x_train,
        y_train,
        x_test,
        y_test,
        num_classes=2,
        name="moons",
        source=f"two moons (numpy seed {seed}, noise {noise}, {n} train / {n_test} test points)",
    )


class LinearTeacher(NamedTuple):
    """A deep linear teacher network and the regression data it generates.

    Attributes:
        dataset: Regression :class:`Dataset` named ``"deep_linear"``.
        factors: ``(W_1, …, W_L)``, ``W_s`` of shape ``(H_{s+1}, H_s)``.
        product: End-to-end matrix ``W_L ⋯ W_1``, shape ``(H_{L+1}, H_1)``.
        rank: Rank of ``product``.
        widths: ``(H_1, …, H_{L+1})``.

    Examples:
        A noiseless rank-1 teacher with widths ``(3, 2, 4)`` (from :func:`deep_linear_teacher`):

        >>> import jax, jax.numpy as jnp, numpy as np
        >>> import fracsgd as fs
        >>> t = fs.data.deep_linear_teacher(jax.random.key(0), (3, 2, 4), rank=1, n=8)
        >>> t.widths, [w.shape for w in t.factors], t.product.shape
        ((3, 2, 4), [(2, 3), (4, 2)], (4, 3))
        >>> t.rank, int(np.linalg.matrix_rank(np.asarray(t.product)))
        (1, 1)
        >>> bool(jnp.allclose(t.factors[1] @ t.factors[0], t.product))  # W_2 W_1
        True
        >>> bool(jnp.allclose(t.dataset.x_train @ t.product.T, t.dataset.y_train, atol=1e-5))
        True
    """

    dataset: Dataset
    factors: tuple[Array, ...]
    product: Array
    rank: int
    widths: tuple[int, ...]


def deep_linear_teacher(
    key: PRNGKey,
    widths: Sequence[int],
    rank: int,
    n: int,
    noise: float = 0.0,
    *,
    n_test: int | None = None,
) -> LinearTeacher:
    """A random deep linear teacher of given end-to-end rank, and data drawn from it.

    Model (theory.md, Appendix A; Aoyagi 2024): ``y = W_L ⋯ W_1 x`` with ``W_s`` of shape
    ``(H_{s+1}, H_s)``. The factors have i.i.d. ``N(0, 1/H_s)`` entries, except that rows
    ``rank, …, H_2 - 1`` of ``W_1`` are zero, so the product has rank exactly ``rank`` (with
    probability one: generic factors lose no further rank since ``rank <= min(widths)``).
    Inputs are ``x ~ N(0, I_{H_1})`` and targets ``y = x @ product.T + noise * ε`` with
    ``ε ~ N(0, I_{H_{L+1}})``. All arrays are float32.

    Args:
        key: A ``jax.random.key``, used once: all factors, inputs and noise come from one
            Gaussian draw. Same key and arguments, same teacher and data.
        widths: ``(H_1, …, H_{L+1})`` (a sequence or a 1-D NumPy array): input width, hidden
            widths, output width; at least two entries, each ``>= 1``.
        rank: End-to-end rank, ``0 <= rank <= min(widths)``; ``0`` gives a zero product.
        n: Number of training examples, ``>= 1``.
        noise: Standard deviation of the target noise, ``>= 0``.
        n_test: Number of test examples (``>= 0``); default ``max(n // 4, 1)``.

    Returns:
        The :class:`LinearTeacher`; its ``dataset`` has ``num_classes == 0`` and targets of
        shape ``(n, H_{L+1})``.

    Raises:
        ValueError: naming the invalid parameter; also under ``jit``/``vmap`` (a traced key or
            noise): the teacher is built and validated on the host, as a :class:`Dataset` is;
            draw several teachers in a Python loop.

    Examples:
        >>> import jax, numpy as np
        >>> teacher = deep_linear_teacher(jax.random.key(0), (10, 5, 10), rank=2, n=100)
        >>> teacher.dataset.x_train.shape, teacher.dataset.y_train.shape, teacher.product.shape
        ((100, 10), (100, 10), (10, 10))
        >>> int(np.linalg.matrix_rank(np.asarray(teacher.product)))
        2
    """
    refuse_traced("fracsgd.data.deep_linear_teacher", key=key, noise=noise)
    if isinstance(widths, np.ndarray) and widths.ndim == 1:  # a NumPy vector of widths
        widths = widths.tolist()
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence) or len(widths) < 2:
        raise ValueError(f"widths must be a sequence of at least two integers, got {widths!r}")
    widths = tuple(_check_int(f"widths[{i}]", h, 1) for i, h in enumerate(widths))
    rank = _check_int("rank", rank, 0)
    if rank > min(widths):
        raise ValueError(f"rank must satisfy 0 <= rank <= min(widths) = {min(widths)}, got {rank}")
    n = _check_int("n", n, 1)
    noise = _check_nonneg_float("noise", noise)
    n_test = max(n // 4, 1) if n_test is None else _check_int("n_test", n_test, 0)

    factors, product, x_train, y_train, x_test, y_test = _teacher_arrays(
        check_key(key), jnp.float32(noise), widths=widths, rank=rank, n=n, n_test=n_test
    )
    dataset = make_dataset(
        x_train,
        y_train,
        x_test,
        y_test,
        num_classes=0,
        name="deep_linear",
        source=f"deep linear teacher (widths {widths}, rank {rank}, noise {noise})",
    )
    return LinearTeacher(dataset, factors, product, rank, widths)


@functools.partial(jax.jit, static_argnames=("widths", "rank", "n", "n_test"))
def _teacher_arrays(
    key: PRNGKey, noise: Array, *, widths: tuple[int, ...], rank: int, n: int, n_test: int
) -> tuple[tuple[Array, ...], Array, Array, Array, Array, Array]:
    """Factors, product and train/test arrays of :func:`deep_linear_teacher`.

    All Gaussian numbers come from one ``jax.random.normal`` draw, cut in order into
    ``W_1 … W_L``, ``x_train``, ``ε_train``, ``x_test``, ``ε_test``: XLA on CPU compiles each
    random-number kernel separately (about 0.3 s each), so one draw instead of ``L + 4`` keeps
    the first call fast.
    """
    h_in, h_out = widths[0], widths[-1]
    shapes = [(b, a) for a, b in itertools.pairwise(widths)]
    shapes += [(n, h_in), (n, h_out), (n_test, h_in), (n_test, h_out)]
    sizes = [math.prod(shape) for shape in shapes]
    z = jax.random.normal(key, (sum(sizes),), dtype=jnp.float32)
    pieces = [
        z[start : start + size].reshape(shape)
        for start, size, shape in zip(
            [0, *itertools.accumulate(sizes[:-1])], sizes, shapes, strict=True
        )
    ]
    *factors, x_train, eps_train, x_test, eps_test = pieces
    factors = [w / jnp.sqrt(jnp.float32(w.shape[1])) for w in factors]
    factors[0] = factors[0].at[rank:].set(0.0)
    product = functools.reduce(lambda acc, w: w @ acc, factors[1:], factors[0])
    y_train = x_train @ product.T + noise * eps_train
    y_test = x_test @ product.T + noise * eps_test
    return tuple(factors), product, x_train, y_train, x_test, y_test
