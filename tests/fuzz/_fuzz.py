"""Shared pieces of the bad-input fuzz suite (issue #7).

The contract under test: a public entry point given any input returns a correct result or raises
``ValueError`` whose message names the offending argument; never a ``TypeError``/``IndexError``/
``ZeroDivisionError``/XLA error from inside, a hang, or a silently wrong number.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

#: Small, fast example counts; validation errors are cheap, valid inputs reuse compiled programs.
FAST = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)
FEW = settings(FAST, max_examples=10)

#: Values that are not a real number at all.
NOT_A_NUMBER = st.sampled_from(
    [None, "a", "1.5", b"x", [], [1.0, 2.0], (1, 2), {}, object(), np.array([1.0, 2.0]), 1j]
)
#: Real numbers that break most ranges.
NON_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])
#: Anything a user might pass where a positive finite number is expected.
BAD_SCALARS = st.one_of(
    NOT_A_NUMBER,
    NON_FINITE,
    st.sampled_from([True, 0, 0.0, -1, -1e-300, -1e300]),
)
#: Anything a user might pass where a positive integer is expected.
BAD_INTS = st.one_of(
    NOT_A_NUMBER, NON_FINITE, st.sampled_from([True, 0, -1, -(2**40), 1.5, 2.0, np.float64(3.0)])
)


def raises_naming(fn: Callable[[], Any], *names: str) -> str:
    """Calls ``fn``; asserts it raises ValueError whose message names one of ``names``."""
    try:
        fn()
    except ValueError as err:
        msg = str(err)
        assert any(n in msg for n in names), f"ValueError does not name {names}: {msg!r}"
        return msg
    raise AssertionError(f"expected a ValueError naming {names}, got a result")


def result_or_named_error(fn: Callable[[], Any], *names: str) -> Any:
    """Calls ``fn``: its result, or ``None`` after a ValueError naming one of ``names``. Any other
    exception propagates (and fails the test)."""
    try:
        return fn()
    except ValueError as err:
        msg = str(err)
        assert any(n in msg for n in names), f"ValueError does not name {names}: {msg!r}"
        return None


class Started(Exception):
    """Raised by a stub in place of the compiled training loop: validation passed."""


def stop_training(*args: Any, **kwargs: Any) -> None:
    raise Started
