"""Random numbers for the compiled sampling loops: Threefry-2x32 written as fusible array code.

jax's ``threefry2x32`` primitive is lowered on CPU with *rolled* loops (five ``while``
iterations of four rounds, chosen by jax for compile time): for the per-step draws of an SGLD
chain that is a chain of small kernels per draw, each a separate pass over memory. Here the same
hash — Threefry-2x32 with 20 rounds (Salmon et al. 2011, Random123; bitwise equal to
:func:`jax.extend.random.threefry_2x32`, tested) — is written as plain ``uint32`` array
arithmetic, which XLA fuses into one loop with whatever consumes the bits. On the 2-core CPU of
``benchmarks/llc_vs_devinterp.py`` a standard normal cost 2.1–2.3 ns this way against 2.4 ns for
``jax.random.normal`` (original threefry layout) and 3.9–4.6 ns in jax's default layout.

Counters: :func:`bits` hashes ``(x0, x1) = (offset + j, step)`` under two key words, ``j``
running over pairs of output words, and :func:`normal_like` gives every leaf its own block of
``j``. An SGLD chain (:mod:`fracsgd.llc`) derives each step's key words with one hash,
:func:`fold` of the step counter, and draws with ``step = 0``; no jax key is split or folded per
step. Normals: each hash gives two 32-bit words; each word
becomes a uniform ``u`` in ``(−1, 1)`` from its top 23 bits, exactly as ``jax.random.normal``
does, and ``z = √2 · erfinv(u)``.
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


def _to_normal(b: Array, dtype) -> Array:
    """``√2 · erfinv(u)`` with ``u`` uniform on ``[nextafter(−1, 0), 1)`` from the top 23 bits
    (``jax.random.normal``'s transform)."""
    f = jax.lax.bitcast_convert_type((b >> jnp.uint32(9)) | jnp.uint32(0x3F800000), jnp.float32)
    f = f - jnp.float32(1.0)
    lo = jnp.nextafter(jnp.float32(-1.0), jnp.float32(0.0))
    u = jnp.maximum(lo, lo + (jnp.float32(1.0) - lo) * f)
    return (jnp.float32(math.sqrt(2.0)) * jax.lax.erf_inv(u)).astype(dtype)


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
