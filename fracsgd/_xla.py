"""``jit`` with fracsgd's compiler options.

fracsgd's compiled programs come in two kinds, each with its own CPU options:

- ``"engine"``, the training engine's step programs. On CPU, recent jaxlib releases hand matrix
  products (and what XLA fuses around them) to YNNPACK ("ynn fusions"). For the shapes the
  training loop runs — a few networks, a minibatch of ~100 rows, narrow layers, a 10-class
  read-out — those kernels measured 2–8× slower than XLA's own Eigen path on the 2-core CPU of
  ``benchmarks/`` (jaxlib 0.10, AMD EPYC: a 784-128 layer's forward product 567 → 209 µs for 4
  networks, the 128-10 read-out's backward product 340 → 45 µs; the whole benchmark sweep ~3 %
  faster, since the runtime overlaps kernels), so they switch YNNPACK fusions off
  (``xla_cpu_experimental_ynn_fusion_type = ""``).
- ``"sampler"``, the SGLD programs of :mod:`fracsgd.llc` (chains, full-data loss, gradient
  variance): YNNPACK fusions off as well. They were kept on until the eleventh session, when
  on a 2-core Intel Xeon (family 6, model 207) turning them off made the LLC estimates of
  ``benchmarks/llc_vs_devinterp.py`` faster in every configuration (784-W-10 MLPs, 4 chains ×
  200 draws, alternating runs in one process): with one CPU device per core 2.2 % (W = 32),
  2.6 % (W = 128), 1.1 % (W = 512) and 11 % (the 64-chain calibration grid, 5.29 against
  5.96 s); on one device 13 %, 7.6 %, 2.6 % and 15 %. YNNPACK's batched forward product
  (784 × W per chain) took twice Eigen's time in a profile. On the AMD EPYC Zen 4 of the
  earlier sessions YNNPACK had been faster at W = 512 on one device (2.2–2.5 s against
  2.4–2.9 s without), so the better choice depends on the CPU: set
  ``--xla_cpu_experimental_ynn_fusion_type=...`` in ``XLA_FLAGS`` to override.

Both prefer 512-bit vectors in XLA's own loops (``xla_cpu_prefer_vector_width = 512``; XLA's
default is 256). The SGLD noise — a 20-round integer hash and an inverse error function per
parameter per step — is such a loop: one normal cost 1.40 ns against 2.09 ns, and whole LLC
estimates ran ~9 % faster at every width (784-W-10, W = 32, 128, 512, six alternating pairs in
one process; 2-core AMD EPYC Zen 4). CPUs without AVX-512 ignore the preference; where 512-bit
vectors lower the clock (some Intel Xeons), set ``--xla_cpu_prefer_vector_width=256`` in
``XLA_FLAGS``.

An option is passed (per program, through ``jax.jit(..., compiler_options=...)``) on the CPU
backend only, and only when

- the user has not set the same flag in ``XLA_FLAGS`` (a user setting wins), and
- this jaxlib accepts the option (probed once per option, by compiling a one-line function).

Other backends compile with default options; so does the engine's full-data evaluation (plain
``jax.jit``: 784-128-10 evaluated on 5 000 images, 24 ms with YNNPACK against 36 ms without).
Results agree with the default options to float32 rounding; they are bitwise reproducible for a
given jaxlib, machine and options.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import jax

#: platforms on which fracsgd's SGLD programs replace their per-step control flow with
#: straight-line code that computes the same numbers up to rounding (bitwise on the CPU in the
#: cases of ``tests/``; with pSGLD and MALA the acceptance differed by 1.4·10⁻⁸, XLA sharing
#: the branch's work with the step) through ``jax.lax.platform_dependent``: the
#: drift's norm and the distance from the centre computed at every step and kept at the
#: measured draws instead of under a conditional (:data:`fracsgd.llc.DRIFT_NORM_EVERY`), and
#: the epoch batches' cycle walk begun with :data:`fracsgd.data._shuffle.WALK_UNROLL`
#: unconditional steps before its loop. On a GPU,
#: XLA's runtime executes each conditional and each iteration of a data-dependent loop by copying
#: its predicate to the host and waiting for the device (several round trips per SGLD step); on
#: the CPU and TPU it does not, and there the straight-line code is slower
#: (``benchmarks/control_flow.py``: 1.87×, 1.47× and 1.24× the time of an LLC estimate of
#: 784-W-10 MLPs at W = 32, 128, 512 on 2 CPU cores). On an NVIDIA H200 the same script measured
#: the straight-line program at 0.77×, 0.81× and 0.83× the conditional one's time, with bitwise
#: equal loss traces (``benchmarks/results/control_flow_gpu.json``), so ``"cuda"`` is listed.
#: ROCm has the same runtime design but was never measured; add ``"rocm"`` (or clear the
#: tuple) before the first estimate to change it. The epoch batches of the training engine (the
#: same cycle walk) follow it too, read when their programs are first compiled.
STRAIGHT_LINE_PLATFORMS: tuple[str, ...] = ("cuda",)

#: CPU compiler options per program kind (see the module docstring)
CPU_OPTIONS: dict[str, dict[str, Any]] = {
    "engine": {"xla_cpu_experimental_ynn_fusion_type": "", "xla_cpu_prefer_vector_width": 512},
    "sampler": {"xla_cpu_experimental_ynn_fusion_type": "", "xla_cpu_prefer_vector_width": 512},
}


@functools.cache
def _accepted(name: str, value: Any) -> bool:
    """Whether this jaxlib compiles with option ``name = value``."""
    try:
        jax.jit(lambda x: x + 1, compiler_options={name: value}).lower(1.0).compile()
    except Exception:  # an older or newer jaxlib without the option
        return False
    return True


@functools.cache
def compiler_options(kind: str = "engine") -> dict[str, Any] | None:
    """The options fracsgd's programs of ``kind`` (``"engine"`` or ``"sampler"``) compile with on
    the default backend (``None``: XLA's defaults).

    Examples:
        >>> opts = compiler_options("sampler")
        >>> opts is None or set(opts) <= set(CPU_OPTIONS["sampler"])
        True
    """
    if kind not in CPU_OPTIONS:
        raise ValueError(f"unknown program kind {kind!r}; allowed: {', '.join(CPU_OPTIONS)}")
    if jax.default_backend() != "cpu":
        return None
    flags = os.environ.get("XLA_FLAGS", "")
    out = {
        name: value
        for name, value in CPU_OPTIONS[kind].items()
        if name not in flags and _accepted(name, value)
    }
    return out or None


class jit:
    """``jax.jit(fun, **kwargs)`` compiled with :func:`compiler_options` of ``kind``.

    The backend is looked up at the first call, not at import, so that ``jax_platforms`` set
    after ``import fracsgd`` still counts. Attributes (``lower``, ``_cache_size`` …) are those of
    the underlying jitted function."""

    def __init__(self, fun: Callable, *, kind: str = "engine", **kwargs: Any) -> None:
        if kind not in CPU_OPTIONS:
            raise ValueError(f"unknown program kind {kind!r}; allowed: {', '.join(CPU_OPTIONS)}")
        self._fun, self._kind, self._kwargs = fun, kind, kwargs
        self._jitted: Any = None
        functools.update_wrapper(self, fun)

    def _get(self) -> Any:
        if self._jitted is None:
            self._jitted = jax.jit(
                self._fun, compiler_options=compiler_options(self._kind), **self._kwargs
            )
        return self._jitted

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._get()(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._get(), name)
