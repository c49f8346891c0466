"""Stateless epoch shuffling: a keyed pseudo-random permutation of ``[0, n)`` evaluated at any
position, so that a compiled loop draws the minibatch of step ``t`` without storing (or sorting
for) a permutation.

The permutation is a balanced Feistel network on ``2h`` bits (``2^{2h}`` the smallest even power of
two ≥ ``max(n, 256)``) with ``ROUNDS`` rounds whose round function is the MurmurHash3 finaliser
of the right half xor a round key, restricted to ``[0, n)`` by *cycle walking*: apply the network
again while the value is ≥ ``n``. A Feistel network is a bijection whatever its round function
(Luby & Rackoff 1988: four rounds with pseudo-random round functions give a pseudo-random
permutation), and cycle walking a bijection of ``[0, 2^{2h})`` yields a bijection of ``[0, n)``
(Black & Rogaway 2002). The expected number of walks is ``2^{2h}/n < 4`` for ``n ≥ 256``.

Compared with ``jax.random.permutation`` (a sort of ``n`` random keys, repeated), the cost is
``O(B)`` per minibatch instead of ``O(n log n)`` per epoch, with no ``n``-sized state: on the
2-core CPU of ``benchmarks/train_sweep.py`` the sorts took about a sixth of a sweep's time.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from fracsgd import _xla
from fracsgd._checks import check_key
from fracsgd._types import Array

ROUNDS = 8
_MIN_BITS = 8

#: cycle-walking steps taken unconditionally, in one fused computation, before the loop on the
#: platforms of :data:`fracsgd._xla.STRAIGHT_LINE_PLATFORMS`, where a GPU would otherwise make
#: one host round trip per step. A step leaves a position out of range with probability
#: ``q = 1 − n / 4^h`` (``4^h`` the domain, at least 256): for ``n > 64`` ``q < 3/4``, and the
#: loop's first check finds a position still out with probability ``q^WALK_UNROLL`` each
#: (``(3/4)^32 ≈ 10⁻⁴``); for small ``n`` (``q`` near 1) the loop finishes most of the walk.
#: Either way the permutation is the loop's: the walk leaves positions in range unchanged
WALK_UNROLL = 32


def _fmix32(h: Array) -> Array:
    """MurmurHash3's 32-bit finaliser (a bijection of uint32 with full avalanche)."""
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def _half_bits(n: int) -> int:
    bits = max(_MIN_BITS, (max(n, 2) - 1).bit_length())
    return (bits + 1) // 2


def permute_index(key: Array, index: Array, n: int) -> Array:
    """``π_key(index)`` for a pseudo-random permutation ``π_key`` of ``{0, …, n − 1}``.

    Args:
        key: a ``jax.random.key``; each key gives a different permutation.
        index: integer array of positions in ``[0, n)`` (any shape). A concrete position
            outside ``[0, n)`` is refused; a traced one (under ``jit``/``vmap``) gives ``−1``.
        n: the size of the permuted set (static, ``1 ≤ n ≤ 2³¹ − 1``).

    Returns:
        ``int32`` array of ``index``'s shape: ``π(index)``. Over all positions ``0 … n − 1`` each
        value appears exactly once.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from fracsgd.data import permute_index
        >>> p = permute_index(jax.random.key(0), jnp.arange(10), 10)
        >>> sorted(p.tolist()) == list(range(10))
        True
    """
    check_key(key)
    n = _check_n(n)
    idx = jnp.asarray(index)
    if not jnp.issubdtype(idx.dtype, jnp.integer):
        raise ValueError(f"index must be an integer array, got dtype {idx.dtype}")
    if not isinstance(idx, jax.core.Tracer):
        bad = np.flatnonzero((np.asarray(idx) < 0) | (np.asarray(idx) >= n))
        if bad.size:
            v = np.asarray(idx).ravel()[bad[0]]
            raise ValueError(f"index must lie in [0, n) = [0, {n}), got {v}")
    # traced: out-of-range positions would cycle-walk forever (or alias valid ones); they are
    # evaluated at 0 and reported as −1
    valid = (idx >= 0) & (idx < n)
    out = permute_with(round_keys(key), jnp.where(valid, idx, 0), n)
    return jnp.where(valid, out, -1)


def _check_n(n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or not 1 <= n <= 2**31 - 1:
        raise ValueError(f"n must be an integer in [1, 2**31 - 1], got {n!r}")
    return int(n)


def round_keys(key: Array) -> Array:
    """The ``(ROUNDS,)`` uint32 round keys of the permutation keyed by ``key`` (compute once,
    then evaluate :func:`permute_with` at many positions)."""
    return jax.random.bits(key, (ROUNDS,), jnp.uint32)


def permute_with(keys: Array, index: Array, n: int) -> Array:
    """:func:`permute_index` with precomputed :func:`round_keys`, for positions known to lie in
    ``[0, n)`` (unchecked: one outside would cycle-walk forever or alias a valid one)."""
    n = _check_n(n)
    half = _half_bits(n)
    mask = jnp.uint32((1 << half) - 1)

    def feistel(x: Array) -> Array:
        left, right = x >> half, x & mask
        for r in range(ROUNDS):
            left, right = right, left ^ (_fmix32(right ^ keys[r]) & mask)
        return (left << half) | right

    x = feistel(jnp.asarray(index).astype(jnp.uint32))
    if n == 1 << (2 * half):
        return x.astype(jnp.int32)
    bound = jnp.uint32(n)

    def walk(v: Array) -> Array:  # positions out of range take one more step; the others stay
        return jnp.where(v >= bound, feistel(v), v)

    def loop(v: Array) -> Array:
        return jax.lax.while_loop(lambda v: jnp.any(v >= bound), walk, v)

    def unrolled(v: Array) -> Array:  # the same walk, its first WALK_UNROLL steps unconditional
        for _ in range(WALK_UNROLL):
            v = walk(v)
        return loop(v)

    straight = dict.fromkeys(_xla.STRAIGHT_LINE_PLATFORMS, unrolled)
    x = jax.lax.platform_dependent(x, default=loop, **straight)
    return x.astype(jnp.int32)


def epoch_batch(key: Array, step: Array, n: int, batch_size: int) -> Array:
    """Indices ``(batch_size,)`` of minibatch number ``step`` (0-based) under epoch sampling.

    Epoch ``e = step // (n // batch_size)`` visits the samples in the order of the permutation
    keyed by ``fold_in(key, e)``; step ``step`` takes positions ``[p·B, (p + 1)·B)`` of it with
    ``p = step mod (n // B)``. The last ``n mod B`` samples of each epoch's order are not used
    (dropped, as with ``drop_last=True`` in PyTorch), so every sample is seen at most once per
    epoch and ``n // B`` steps make an epoch. ``step`` may be traced.

    Args:
        key: a ``jax.random.key``; epoch ``e`` uses the permutation of ``fold_in(key, e)``.
        step: the 0-based step (an integer, possibly traced).
        n: number of training samples (a concrete integer).
        batch_size: ``B``, a concrete integer in ``[1, n]``.

    Returns:
        ``int32`` sample indices of shape ``(batch_size,)``, distinct within an epoch.

    Raises:
        ValueError: ``n`` or ``batch_size`` is not an integer, or ``batch_size`` is outside
            ``[1, n]``.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from fracsgd.data import epoch_batch
        >>> key = jax.random.key(0)
        >>> epoch = jnp.concatenate([epoch_batch(key, t, 12, 4) for t in range(3)])
        >>> sorted(epoch.tolist()) == list(range(12))
        True
    """
    for name, v in (("n", n), ("batch_size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer):
            raise ValueError(f"{name} must be an integer, got {v!r}")
    n, batch_size = int(n), int(batch_size)
    if not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must be an integer in [1, n={n}], got {batch_size!r}")
    per_epoch = n // batch_size
    step = jnp.asarray(step, jnp.int32)
    keys = round_keys(jax.random.fold_in(key, step // per_epoch))
    return batch_of_epoch(keys, step % per_epoch, n, batch_size)


def batch_of_epoch(keys: Array, pos: Array, n: int, batch_size: int) -> Array:
    """Minibatch ``pos`` (0-based, within its epoch) of the epoch whose permutation has round
    keys ``keys`` (:func:`round_keys` of ``fold_in(key, epoch)``): what :func:`epoch_batch`
    returns, with the round keys computed once per epoch by the caller."""
    positions = pos * batch_size + jnp.arange(batch_size, dtype=jnp.int32)
    return permute_with(keys, positions, n)
