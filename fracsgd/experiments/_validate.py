"""Field checks shared by the experiment configurations (``ValueError`` naming the field), and
the ``D_ξ`` power both studies report."""

from __future__ import annotations

from typing import Any

import numpy as np

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


def xi_power(xi: float, d_w: float) -> float:
    """``D_ξ = ξ^(2 − d_w)`` in float64: ``inf`` where it overflows (Python's ``**`` raises there,
    as for ξ = 0.5 and an ``H`` near 0), NaN for a NaN ``d_w``."""
    with np.errstate(over="ignore", invalid="ignore"):
        return float(np.power(np.float64(xi), 2.0 - np.float64(d_w)))
