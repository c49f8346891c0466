"""Random numbers for the compiled sampling loops: Threefry-2x32 written as fusible array code.

jax's ``threefry2x32`` primitive is lowered on CPU with *rolled* loops (five ``while``
iterations of four rounds, chosen by jax for compile time): for the per-step draws of an SGLD
chain that is a chain of small kernels per draw, each a separate pass over memory. Here the same
hash — Threefry-2x32 with 20 rounds (Salmon et al. 2011, Random123; bitwise equal to
:func:`jax.extend.random.threefry_2x32`, tested) — is written as plain ``uint32`` array
arithmetic, which XLA fuses into one loop with whatever consumes the bits. On the 2-core CPU of
``benchmarks/llc_vs_devinterp.py`` a standard normal cost 2.0 ns this way (2.2 ns with
``jax.lax.erf_inv``) against 2.4 ns for ``jax.random.normal`` (original threefry layout) and
3.9–4.6 ns in jax's default layout, all with XLA's default 256-bit vectors; the SGLD programs
compile with 512-bit vectors (:mod:`fracsgd._xla`), where it cost 1.2 ns.

Counters: :func:`bits` hashes ``(x0, x1) = (offset + j, step)`` under two key words, ``j``
running over pairs of output words, and :func:`normal_like` gives every leaf its own block of
``j``. An SGLD chain (:mod:`fracsgd.llc`) derives each step's key words with one hash,
:func:`fold` of the step counter, and draws with ``step = 0``; no jax key is split or folded per
step. Normals: each hash gives two 32-bit words; each word
becomes a uniform ``u`` in ``(−1, 1)`` from its top 23 bits, exactly as ``jax.random.normal``
does, and ``z = √2 · erfinv(u)`` with :func:`erfinv` (Giles' single-precision approximation,
evaluated with ``log`` of the product ``(1 − x)(1 + x)`` as in his reference code). Over all
2²³ uniforms the normal's relative error is below 3·10⁻⁷ (at most 4.4 float32 ulp; tested
exhaustively against float64), where ``jax.lax.erf_inv`` — the same polynomials evaluated
through ``log1p(−x²)`` — reaches 5.8·10⁻⁶ in the tails; and XLA's CPU ``log`` is cheaper than its
``log1p`` (0.89 against 1.12 ns per value on the 2-core benchmark machine). The logarithm is
:func:`log_positive`, Cephes' ``logf`` polynomial without the special cases a general ``log``
handles: ``(1 − x)(1 + x) ≥ 2⁻²³`` is always a positive normal float here. It is more accurate
than XLA's CPU ``log`` (0.82 against 1.15 ulp) and made the W = 512 LLC estimate of
``benchmarks/llc_vs_devinterp.py`` 3 % faster (one CPU device per core, 1.16 → 1.12 s,
alternating processes; in the fused update the transform costs more than the hash). The bits
are jax's; the normals therefore agree with ``jax.random.normal`` (original layout) to that
accuracy, not bitwise.

Compiled and eager evaluation differ in the last bit: XLA's CPU code generator contracts each
multiply–add of a fused loop into one FMA instruction (the optimised LLVM IR has separate
``fmul``/``fadd``; the object code has ``vfmadd``), while op-by-op (eager) calls round each
product. About 4 % of the normals (and 0.1 % of :func:`log_positive`'s values) differ by one
ulp between ``jax.jit(normal_like)`` and ``normal_like`` called eagerly. The SGLD programs are
always compiled, so their draws are reproducible bitwise for a given jaxlib and machine.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from fracsgd._types import Array, PRNGKey, PyTree

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = 0x1BD11BDA


def _rotl(x: Array, r: int) -> Array:
    return (x << jnp.uint32(r)) | (x >> jnp.uint32(32 - r))


def threefry2x32(k0: Any, k1: Any, x0: Any, x1: Any) -> tuple[Array, Array]:
    """Threefry-2x32-20 of counters ``(x0, x1)`` under key ``(k0, k1)`` (all ``uint32``,
    broadcast together); bitwise equal to ``jax.extend.random.threefry_2x32``."""
    k0, k1 = jnp.asarray(k0, jnp.uint32), jnp.asarray(k1, jnp.uint32)
    ks = (k0, k1, k0 ^ k1 ^ jnp.uint32(_PARITY))
    x0 = jnp.asarray(x0, jnp.uint32) + ks[0]
    x1 = jnp.asarray(x1, jnp.uint32) + ks[1]
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = _rotl(x1, r) ^ x0
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + jnp.uint32(i + 1)
    return x0, x1


def key_words(key: PRNGKey) -> Array:
    """Two ``uint32`` words from a JAX PRNG key of any implementation (threefry keys: their
    data; wider keys: the words xor-folded pairwise)."""
    words = jnp.ravel(jax.random.key_data(key)).astype(jnp.uint32)
    if words.shape[0] == 2:
        return words
    if words.shape[0] % 2:
        words = jnp.concatenate([words, jnp.zeros((1,), jnp.uint32)])
    pairs = words.reshape(-1, 2)
    return jnp.bitwise_xor.reduce(pairs, axis=0)


def fold(words: Array, data: Array, tag: int = 0) -> Array:
    """New key words: the hash of counter ``(data, tag)`` under ``words`` (a cheap
    ``fold_in``)."""
    y0, y1 = threefry2x32(words[0], words[1], jnp.asarray(data).astype(jnp.uint32), tag)
    return jnp.stack([y0, y1])


def bits(words: Array, step: Any, n: int, offset: int = 0) -> Array:
    """``n`` uint32 words for step ``step``: hashes of counters ``(offset + j, step)``,
    ``j < ⌈n/2⌉``, both output words of each hash used."""
    m = (n + 1) // 2
    j = jnp.arange(m, dtype=jnp.uint32) + jnp.uint32(offset)
    y0, y1 = threefry2x32(words[0], words[1], j, jnp.asarray(step).astype(jnp.uint32))
    return jnp.concatenate([y0, y1])[:n]


# Giles (2011), "Approximating the erfinv function", GPU Computing Gems Jade Edition, ch. 10:
# single-precision coefficients, highest degree first, of p(w − 2.5) for w < 5 (central) and of
# p(√w − 3) otherwise (tails), w = −log((1 − x)(1 + x)); erfinv(x) ≈ p · x
_ERFINV_CENTRAL = (
    2.81022636e-08,
    3.43273939e-07,
    -3.5233877e-06,
    -4.39150654e-06,
    0.00021858087,
    -0.00125372503,
    -0.00417768164,
    0.246640727,
    1.50140941,
)
_ERFINV_TAIL = (
    -0.000200214257,
    0.000100950558,
    0.00134934322,
    -0.00367342844,
    0.00573950773,
    -0.0076224613,
    0.00943887047,
    1.00167406,
    2.83297682,
)


# Cephes ``logf`` (S. L. Moshier, Cephes Math Library): log(1 + f) ≈ f − f²/2 + f³·P(f) for
# f = m − 1, m ∈ [√½, √2); coefficients of P, highest degree first
_LOG_POLY = (
    7.0376836292e-2,
    -1.1514610310e-1,
    1.1676998740e-1,
    -1.2420140846e-1,
    1.4249322787e-1,
    -1.6668057665e-1,
    2.0000714765e-1,
    -2.4999993993e-1,
    3.3333331174e-1,
)
_LN2_HI, _LN2_LO = 0.693359375, -2.12194440e-4  # ln 2 = hi + lo, hi exact in 9 bits


def log_positive(t: Array) -> Array:
    """Natural logarithm of float32 ``t`` that is positive, normal and finite, without the
    special cases (zero, negative, subnormal, inf, NaN) a general ``log`` checks for.

    ``t = 2ᵏ·m`` with ``m ∈ [√½, √2)`` read from the bits (adding ``1 − √½`` to the bit pattern
    before splitting it moves the exponent's boundary to ``√2``), then
    ``log t = k·ln 2 + f − f²/2 + f³·P(f)``, ``f = m − 1``, with Cephes' ``logf`` polynomial ``P``
    and ``ln 2`` in two parts. Error below 0.82 float32 ulp (tested; XLA's CPU ``log`` reaches
    1.15). It leaves out the special-case handling of XLA's CPU ``log`` (about 15 vector
    operations per value in its LLVM IR: compares, masks and selects for zero, negative,
    subnormal and infinite inputs), which :func:`erfinv`'s argument never needs.

    Examples:
        >>> import jax.numpy as jnp
        >>> round(float(log_positive(jnp.float32(0.25))), 6)
        -1.386294
    """
    i = jax.lax.bitcast_convert_type(jnp.asarray(t, jnp.float32), jnp.uint32)
    i = i + jnp.uint32(0x3F800000 - 0x3F3504F3)
    k = (jax.lax.bitcast_convert_type(i, jnp.int32) >> 23) - 127
    m = jax.lax.bitcast_convert_type(
        (i & jnp.uint32(0x007FFFFF)) + jnp.uint32(0x3F3504F3), jnp.float32
    )
    f = m - jnp.float32(1.0)
    p = jnp.float32(_LOG_POLY[0])
    for c in _LOG_POLY[1:]:
        p = p * f + jnp.float32(c)
    z = f * f
    kf = k.astype(jnp.float32)
    r = f * z * p + kf * jnp.float32(_LN2_LO)
    r = r - jnp.float32(0.5) * z
    return f + r + kf * jnp.float32(_LN2_HI)


def _erfinv_open(x: Array) -> Array:
    """:func:`erfinv` on ``(−1, 1)`` only (no checks of the ends): there
    ``(1 − x)(1 + x) ≥ 2⁻²³`` is a normal float32, so :func:`log_positive` applies."""
    x = jnp.asarray(x, jnp.float32)
    w = -log_positive((jnp.float32(1.0) - x) * (jnp.float32(1.0) + x))
    central = w < jnp.float32(5.0)
    s = jnp.where(central, w - jnp.float32(2.5), jnp.sqrt(w) - jnp.float32(3.0))
    p = jnp.where(central, jnp.float32(_ERFINV_CENTRAL[0]), jnp.float32(_ERFINV_TAIL[0]))
    for a, b in zip(_ERFINV_CENTRAL[1:], _ERFINV_TAIL[1:], strict=True):
        p = jnp.where(central, jnp.float32(a), jnp.float32(b)) + p * s
    return p * x


def erfinv(x: Array) -> Array:
    """Inverse error function of float32 ``x`` in ``(−1, 1)`` (Giles 2011, single precision).

    ``w = −log((1 − x)(1 + x))`` (with :func:`log_positive`); ``erfinv(x) ≈ p(w − 2.5) · x`` for
    ``w < 5`` and ``p(√w − 3) · x`` otherwise, both branches one Horner loop with per-lane
    coefficients. Relative error of ``√2 · erfinv(u)`` below 3·10⁻⁷ on the uniforms
    :func:`_to_normal` produces (tested exhaustively); ``erfinv(±1) = ±inf`` and NaN outside
    ``[−1, 1]``.

    Examples:
        >>> import jax.numpy as jnp
        >>> round(float(erfinv(jnp.float32(0.5))), 6)
        0.476936
    """
    x = jnp.asarray(x, jnp.float32)
    inner = _erfinv_open(jnp.where(jnp.abs(x) < jnp.float32(1.0), x, jnp.float32(0.0)))
    edge = jnp.where(jnp.abs(x) == jnp.float32(1.0), x * jnp.float32(jnp.inf), jnp.nan)
    return jnp.where(jnp.abs(x) < jnp.float32(1.0), inner, edge)


def uniform_open(b: Array) -> Array:
    """Float32 uniforms on ``[nextafter(−1, 0), 1)`` from the top 23 bits of ``uint32`` words
    (``jax.random.normal``'s construction: the grid ``−1 + 2k/2²³`` with ``k = 0`` moved inside)."""
    f = jax.lax.bitcast_convert_type((b >> jnp.uint32(9)) | jnp.uint32(0x3F800000), jnp.float32)
    f = f - jnp.float32(1.0)
    lo = jnp.nextafter(jnp.float32(-1.0), jnp.float32(0.0))
    return jnp.maximum(lo, lo + (jnp.float32(1.0) - lo) * f)


def _to_normal(b: Array, dtype) -> Array:
    """``√2 · erfinv(u)`` with ``u`` from :func:`uniform_open` (``jax.random.normal``'s transform,
    with the more accurate :func:`erfinv`)."""
    return (jnp.float32(math.sqrt(2.0)) * _erfinv_open(uniform_open(b))).astype(dtype)


def normal_like(words: Array, step: Any, tree: PyTree) -> PyTree:
    """Standard normals shaped like ``tree``'s leaves for step ``step``: leaf ``ℓ`` hashes the
    counter block after those of the leaves before it, so every element of every leaf and step
    has its own counter."""
    leaves, treedef = jax.tree.flatten(tree)
    out, offset = [], 0
    for leaf in leaves:
        n = math.prod(leaf.shape)
        out.append(_to_normal(bits(words, step, n, offset), leaf.dtype).reshape(leaf.shape))
        offset += (n + 1) // 2
    if offset >= 2**32:
        raise ValueError(f"too many parameters for one draw: {2 * offset} > 2**33")
    return jax.tree.unflatten(treedef, out)
