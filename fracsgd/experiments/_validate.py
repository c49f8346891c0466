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


def canonical(config: Any) -> Any:
    """``config`` (a validated configuration NamedTuple) with each field in the type of its
    default: floats as ``float``, integers as ``int``, sequences as tuples of those (nested for
    ``hidden``). The resume fingerprints hash the configuration, so ``100`` and ``100.0`` (or a
    list and a tuple) must be the same setting; a ``--set`` of ``llc_localization=100`` was
    refused as "another configuration"."""

    def like(default: Any, value: Any) -> Any:
        if isinstance(value, np.generic):  # NumPy scalars hash unlike Python's
            value = value.item()
        if value is None or isinstance(default, bool) or default is None:
            return value
        if isinstance(default, float):
            return float(value)
        if isinstance(default, int):
            return int(value)
        if isinstance(default, tuple) and isinstance(value, tuple | list):
            inner = default[0] if default else None
            return tuple(like(inner, v) if inner is not None else v for v in value)
        return value

    defaults = type(config)._field_defaults
    return config._replace(
        **{k: like(defaults[k], v) for k, v in config._asdict().items() if k in defaults}
    )


def xi_power(xi: float, d_w: float) -> float:
    """``D_ξ = ξ^(2 − d_w)`` in float64: ``inf`` where it overflows (Python's ``**`` raises there,
    as for ξ = 0.5 and an ``H`` near 0), NaN for a NaN ``d_w``."""
    with np.errstate(over="ignore", invalid="ignore"):
        return float(np.power(np.float64(xi), 2.0 - np.float64(d_w)))
