"""Argument checks shared by the public entry points: each raises ``ValueError`` naming the
argument and the allowed values, before anything is traced (conventions §9)."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def refuse_traced(where: str, *, hint: str = "", **values: Any) -> None:
    """Raises ``ValueError`` when a leaf of any of ``values`` is a tracer: ``where`` is a
    host-side driver (it checks its inputs on the host and compiles and runs its own programs),
    so under ``jit``/``vmap``/``grad`` it would fail deep inside with a tracer error. ``hint``
    (a sentence) is appended, e.g. the traceable alternative."""
    for name, value in values.items():
        if any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(value)):
            raise ValueError(
                f"{where} runs on the host (it checks its inputs there and runs its own "
                f"compiled programs or NumPy): call it outside jit/vmap/grad, got a traced {name}"
                + (f". {hint}" if hint else "")
            )


def refuse_traced_static(name: str, value: Any, why: str) -> None:
    """Raises ``ValueError`` when ``value`` (an argument that fixes shapes or a host-side
    computation: it must be a concrete value) is traced, saying ``why``."""
    if any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(value)):
        raise ValueError(
            f"{name} must be concrete under jit/vmap ({why}): close over it or mark it static, "
            "got a traced value"
        )


def check_key(key: Any, name: str = "key") -> Any:
    """``key`` if it is one typed ``jax.random.key`` (a tracer of key type under jit/vmap too)."""
    if not (isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)):
        raise ValueError(
            f"{name} must be a typed key from jax.random.key(seed), got {type(key).__name__}"
        )
    if key.shape != ():
        raise ValueError(f"{name} must be a single key (shape ()), got shape {key.shape}")
    return key


def refuse_traced_value(name: str, value: Any, what: str) -> None:
    """:func:`refuse_traced_static` for a number or integer checked on the host: says so by
    name, not as ``got JitTracer(...)``."""
    refuse_traced_static(name, value, f"{what}, checked on the host before anything is traced")


def check_int(name: str, value: Any, lo: int, hi: int | None = None) -> int:
    """``value`` as an ``int`` in ``[lo, hi]`` (Python or NumPy integers; never bools)."""
    rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
    refuse_traced_value(name, value, f"an integer {rng}")
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer {rng}, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        raise ValueError(f"{name} must be an integer {rng}, got {value!r}")
    return int(value)


def check_number(
    name: str,
    value: Any,
    *,
    lo: float = -math.inf,
    hi: float = math.inf,
    lo_open: bool = False,
    hi_open: bool = False,
) -> float:
    """``value`` as a finite ``float`` in the given interval (a real scalar; never a bool)."""
    # infinite ends are open whatever the flag: the number must be finite
    lb = "(" if lo_open or math.isinf(lo) else "["
    rb = ")" if hi_open or math.isinf(hi) else "]"
    what = f"a finite real number in {lb}{lo}, {hi}{rb}"
    refuse_traced_value(name, value, what)
    try:
        scalar = not isinstance(value, bool | str | bytes) and np.ndim(value) == 0
    except ValueError:  # ragged nested sequences
        scalar = False
    if not scalar:
        raise ValueError(f"{name} must be {what}, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError, OverflowError) as err:
        raise ValueError(f"{name} must be {what}, got {value!r}") from err
    ok_lo = v > lo if lo_open else v >= lo
    ok_hi = v < hi if hi_open else v <= hi
    if not (math.isfinite(v) and ok_lo and ok_hi):
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return v


def real_array(name: str, value: Any, *, finite: bool = False) -> np.ndarray:
    """``value`` as a float64 NumPy array; ``finite=True`` also rejects NaN and inf."""
    try:
        raw = np.asarray(value)
    except (TypeError, ValueError) as err:  # ragged nested sequences
        raise ValueError(f"{name} must be an array of real numbers: {err}") from err
    if raw.dtype.kind not in "biuf":
        raise ValueError(
            f"{name} must be an array of real numbers, got dtype {raw.dtype} ({value!r:.60})"
        )
    a = raw.astype(np.float64)
    if finite and not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or inf")
    return a
