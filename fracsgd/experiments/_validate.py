"""Field checks shared by the experiment configurations (``ValueError`` naming the field as its
``--set`` key, ``study.field``), the lower bounds of the memory the stages hold, checked before
any stage runs, and the ``D_ξ`` power both studies report."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from fracsgd._checks import check_int, check_number
from fracsgd.llc._estimate import _check_float32
from fracsgd.train._api import _bytes
from fracsgd.train._config import check_float

MAX_WIDTH = 1 << 20  # a hidden layer wider than this is a typo, not an experiment
#: step counts, lengths and batch sizes: the compiled loops count steps in int32
MAX_STEPS = 2**31 - 1
#: how many networks, seeds or chains run side by side (vmapped): more is a typo
MAX_COUNT = 1 << 16
#: a byte count (1 EiB); larger ones are typos, and past ~1.8e308 no float holds them
MAX_BYTES = 1 << 60


def check_ints(study: str, config: Any, bounds: Mapping[str, tuple[int, int]]) -> None:
    """Each ``config.field`` an integer in ``bounds[field] = (lo, hi)``, or ``ValueError`` naming
    ``study.field``."""
    for field, (lo, hi) in bounds.items():
        check_int(f"{study}.{field}", getattr(config, field), lo, hi)


class Size(NamedTuple):
    """A lower bound of the memory one part of a run holds.

    Attributes:
        what: the part, in words (plural: "... need").
        nbytes: its bytes (at least).
        where: ``"host"`` (results gathered from the devices) or ``"device"`` (one unit that is
            never split across chunks: one network, one chain).
        lower: the settings (or options) whose decrease shrinks it.
        higher: those whose increase shrinks it.
    """

    what: str
    nbytes: int
    where: str
    lower: tuple[str, ...]
    higher: tuple[str, ...] = ()


def _either(names: Sequence[str]) -> str:
    return " or ".join(names) if len(names) < 3 else f"{', '.join(names[:-1])} or {names[-1]}"


def check_sizes(sizes: Sequence[Size], *, host: int | None, device: int | None) -> None:
    """``ValueError`` for the first of ``sizes`` above the memory of its kind (``None``: unknown,
    not checked); its message starts with the settings that shrink it."""
    for s in sizes:
        cap = host if s.where == "host" else device
        if cap is not None and s.nbytes > cap:
            if s.higher:
                advice = f"reduce {_either(s.lower)} or raise {_either(s.higher)}"
            else:
                advice = "reduce it" if len(s.lower) == 1 else "reduce one of them"
            raise ValueError(
                f"{_either((*s.lower, *s.higher))}: {s.what} need at least {_bytes(s.nbytes)} "
                f"of {s.where} memory but {_bytes(cap)} are available; {advice}"
            )


def int_tuple(name: str, value: Any, lo: int, hi: int = MAX_STEPS) -> tuple[int, ...]:
    """A non-empty tuple/list of integers in ``[lo, hi]``, or ``ValueError`` naming ``name``."""
    if not isinstance(value, tuple | list) or not value:
        raise ValueError(f"{name} must be a non-empty tuple of integers, got {value!r}")
    return tuple(check_int(name, v, lo, hi) for v in value)


def float_tuple(name: str, value: Any, *, allow_empty: bool = False) -> tuple[float, ...]:
    """A tuple/list of distinct finite numbers > 0, or ``ValueError`` naming ``name``."""
    if not isinstance(value, tuple | list) or (not value and not allow_empty):
        raise ValueError(f"{name} must be a tuple of numbers > 0, got {value!r}")
    out = tuple(check_number(name, v, lo=0.0, lo_open=True) for v in value)
    if len(set(out)) != len(out):
        raise ValueError(f"{name} contains duplicates: {tuple(value)!r}")
    return out


def learning_rates_f32(name: str, values: Sequence[Any]) -> None:
    """Learning rates as the training sweep checks them (``ValueError`` naming ``name``): each
    > 0 and finite after rounding to float32, the training precision, and no two equal there
    (they would be the same networks)."""
    for v in values:
        check_float(name, v, lo=0.0)
    if len({float(np.float32(v)) for v in values}) != len(values):
        raise ValueError(
            f"{name} contains values equal in float32 (the training precision): {tuple(values)!r}"
        )


def sgld_float32(name: str, value: Any, *, allow_zero: bool = False) -> None:
    """An SGLD setting (step size, localization) as the chains check it: a normal float32
    number, since they run in float32 (``allow_zero``: an exact 0 too); ``ValueError`` naming
    ``name``."""
    _check_float32(name, float(value), allow_zero=allow_zero)


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
