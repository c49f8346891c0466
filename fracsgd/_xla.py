"""``jit`` with fracsgd's compiler options.

On CPU, recent jaxlib releases hand matrix products (and what XLA fuses around them) to YNNPACK
("ynn fusions"). For the shapes the training loop runs — a few networks, a
minibatch of ~100 rows, narrow layers, a 10-class read-out — those kernels measured 2–8× slower
than XLA's own Eigen path on the 2-core CPU of ``benchmarks/`` (jaxlib 0.10, AMD EPYC: a 784-128
layer's forward product 567 → 209 µs for 4 networks, the 128-10 read-out's backward product
340 → 45 µs; the whole benchmark sweep ~3 % faster, since the runtime overlaps kernels). The
training engine's step programs compiled here therefore switch YNNPACK fusions off
(``xla_cpu_experimental_ynn_fusion_type = ""``) on the CPU backend only, and only when

- the user has not chosen otherwise in ``XLA_FLAGS`` (a user setting of that flag wins), and
- this jaxlib accepts the option (probed once, by compiling a one-line function).

Other backends compile with default options. The SGLD programs of :mod:`fracsgd.llc` and the
engine's full-data evaluation use plain ``jax.jit``: with YNNPACK on they measured faster
(784-512-10 MLP, 4 chains; 784-128-10 evaluated on 5 000 images, 24 against 36 ms). Results agree
with the default to float32 rounding; they are bitwise reproducible for a given jaxlib, machine
and options.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import jax

CPU_OPTIONS: dict[str, Any] = {"xla_cpu_experimental_ynn_fusion_type": ""}


@functools.cache
def compiler_options() -> dict[str, Any] | None:
    """The options fracsgd's programs compile with on the default backend (``None``: XLA's
    defaults)."""
    if "ynn_fusion_type" in os.environ.get("XLA_FLAGS", ""):
        return None
    if jax.default_backend() != "cpu":
        return None
    try:
        jax.jit(lambda x: x + 1, compiler_options=CPU_OPTIONS).lower(1.0).compile()
    except Exception:  # an older or newer jaxlib without the option
        return None
    return dict(CPU_OPTIONS)


class jit:
    """``jax.jit(fun, **kwargs)`` compiled with :func:`compiler_options`.

    The backend is looked up at the first call, not at import, so that ``jax_platforms`` set
    after ``import fracsgd`` still counts. Attributes (``lower``, ``_cache_size`` …) are those of
    the underlying jitted function."""

    def __init__(self, fun: Callable, **kwargs: Any) -> None:
        self._fun, self._kwargs = fun, kwargs
        self._jitted: Any = None
        functools.update_wrapper(self, fun)

    def _get(self) -> Any:
        if self._jitted is None:
            self._jitted = jax.jit(self._fun, compiler_options=compiler_options(), **self._kwargs)
        return self._jitted

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._get()(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._get(), name)
