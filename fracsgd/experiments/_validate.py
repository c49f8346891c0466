"""Field checks shared by the experiment configurations (``ValueError`` naming the field)."""

from __future__ import annotations

from typing import Any

from fracsgd._checks import check_int, check_number

MAX_WIDTH = 1 << 20  # a hidden layer wider than this is a typo, not an experiment


def int_tuple(name: str, value: Any, lo: int, hi: int | None = None) -> tuple[int, ...]:
    """A non-empty tuple/list of integers in ``[lo, hi]``, or ``ValueError`` naming ``name``."""
    if not isinstance(value, tuple | list) or not value:
        raise ValueError(f"{name} must be a non-empty tuple of integers, got {value!r}")
    return tuple(check_int(name, v, lo, hi) for v in value)


def float_tuple(name: str, value: Any, *, allow_empty: bool = False) -> tuple[float, ...]:
    """A tuple/list of finite numbers > 0, or ``ValueError`` naming ``name``."""
    if not isinstance(value, tuple | list) or (not value and not allow_empty):
        raise ValueError(f"{name} must be a tuple of numbers > 0, got {value!r}")
    return tuple(check_number(name, v, lo=0.0, lo_open=True) for v in value)
