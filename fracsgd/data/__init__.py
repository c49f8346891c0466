"""Data sets: MNIST (full from IDX files, or the embedded real subset), two moons, and deep
linear teachers, all as validated :class:`Dataset` values of JAX arrays."""

from fracsgd.data._dataset import Dataset, make_dataset
from fracsgd.data._idx import read_idx, write_idx
from fracsgd.data._load import load
from fracsgd.data._shuffle import epoch_batch, permute_index
from fracsgd.data._synthetic import LinearTeacher, deep_linear_teacher, moons

__all__ = [
    "Dataset",
    "LinearTeacher",
    "deep_linear_teacher",
    "epoch_batch",
    "load",
    "make_dataset",
    "moons",
    "permute_index",
    "read_idx",
    "write_idx",
]
