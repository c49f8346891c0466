"""Processes with known diffusion exponents and dimensions, for validating estimators (and for
users to calibrate theirs): Brownian motion, fractional Brownian motion, continuous-time random
walks, underdamped Langevin (ballistic → diffusive), and random walks on Z^k and on the
Sierpinski gasket. All are pure JAX functions of an explicit key, vmapped over walkers."""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fracsgd._checks import (
    check_int,
    check_key,
    check_number,
    real_array,
    refuse_traced_static,
    refuse_traced_value,
)
from fracsgd._types import Array, PRNGKey

#: Sierpinski gasket: d_f = log 3/log 2, d_w = log 5/log 2, d_s = 2 log 3/log 5
GASKET_SPECTRAL_DIMENSION = 2 * math.log(3) / math.log(5)
GASKET_WALK_DIMENSION = math.log(5) / math.log(2)


def _positive_int(name: str, v: object) -> int:
    refuse_traced_value(name, v, "a positive integer")
    if isinstance(v, bool) or not isinstance(v, int | np.integer) or v <= 0:
        raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return int(v)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _brownian(key, walkers, steps, dim):
    inc = jax.random.normal(key, (walkers, steps, dim))
    return jnp.concatenate([jnp.zeros((walkers, 1, dim)), jnp.cumsum(inc, axis=1)], axis=1)


def brownian(key: PRNGKey, walkers: int, steps: int, dim: int = 1) -> Array:
    """Brownian paths ``(walkers, steps + 1, dim)`` with unit-variance increments (H = 1/2).

    Args:
        key: a ``jax.random.key``.
        walkers: number of independent paths.
        steps: number of increments; every path starts at the origin (row 0).
        dim: dimension of the walk.

    Returns:
        ``(walkers, steps + 1, dim)`` positions, ``⟨|x_t − x_0|²⟩ = dim·t``.

    Examples:
        >>> import jax, numpy as np
        >>> from fracsgd.diffusion import ensemble_msd
        >>> x = brownian(jax.random.key(0), 4000, 100)
        >>> x.shape, float(np.abs(x[:, 0]).max())  # every path starts at 0
        ((4000, 101, 1), 0.0)
        >>> msd = ensemble_msd(x)  # ⟨x_t²⟩ = t; 4000 walkers: ±2.2 % (1σ) at t = 100
        >>> bool(abs(msd[100] / 100 - 1) < 0.1)
        True
    """
    return _brownian(
        check_key(key),
        _positive_int("walkers", walkers),
        _positive_int("steps", steps),
        _positive_int("dim", dim),
    )


def fgn_autocovariance(lags: int, hurst: Array | float) -> Array:
    """``γ(k) = ½(|k+1|^{2H} − 2|k|^{2H} + |k−1|^{2H})``, ``k = 0 … lags``: the autocovariance of
    unit fractional Gaussian noise, in the default float dtype, to a few units of the last place
    relative at every lag and every ``H``.

    Source: fGn is the increment process ``B_H(j+1) − B_H(j)`` of fractional Brownian motion
    (Mandelbrot & Van Ness 1968, SIAM Review 10, 422), whose covariance
    ``½(t^{2H} + s^{2H} − |t − s|^{2H})`` gives ``γ(k)`` above by expanding
    ``E[(B_H(k+1) − B_H(k))(B_H(1) − B_H(0))]``; it is also the covariance that Davies & Harte
    (1987) embed (:func:`fbm`).

    The three powers nearly cancel at large ``k`` (``γ(k) ≈ H(2H − 1) k^{2H−2}``) and, at every
    ``k ≥ 1``, when ``H`` is near ½ (``γ(k) ∝ 2H − 1``): evaluated as written in float32,
    ``γ(4096)`` is off by more than 100 % and the circulant embedding of 65 536 steps gets
    negative eigenvalues. So, with ``a = 2H``:

    - ``γ(1) = 2^{a−1} − 1``, computed as ``expm1((a − 1) log 2)``;
    - ``γ(k) = k^a Σ_{j≥1} C(a, 2j) k^{−2j}`` for ``k ≥ 2``, the binomial series of
      ``((1 + 1/k)^a + (1 − 1/k)^a − 2)/2``. For ``0 < a < 2`` every term has the sign of
      ``a(a − 1)`` (``C(a, 2j)`` has ``a(a − 1)`` times ``2j − 2`` negative factors), so the sum
      does not cancel; 30 terms leave a remainder below ``10⁻¹⁸`` relative at ``k = 2``.

    Measured against mpmath (``tests/diffusion/test_diffusion.py``): relative error ≤ 1e-6 in
    float32 and ≤ 1e-14 in float64 at lags 1–1 000 for ``H`` from 0.01 to 0.99, ``H = ½ ± 10⁻⁴``
    included. Traceable in ``hurst``.

    Examples:
        >>> import numpy as np
        >>> g = fgn_autocovariance(3, 0.5)  # Brownian increments are independent
        >>> bool(np.all(g == np.array([1, 0, 0, 0])))
        True
    """
    check_int("lags", lags, 0)
    if not isinstance(hurst, jax.core.Tracer):
        check_number("hurst", hurst, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    a = 2 * jnp.asarray(hurst, dtype=jnp.result_type(float))
    k = jnp.arange(lags + 1, dtype=a.dtype)
    inv2 = 1.0 / jnp.maximum(k, 1.0) ** 2
    coef = jnp.ones((), a.dtype)
    power = jnp.ones_like(k)
    total = jnp.zeros_like(k)
    for j in range(1, _FGN_TERMS + 1):  # C(a, 2j) from C(a, 2j − 2)
        coef = coef * (a - (2 * j - 2)) * (a - (2 * j - 1)) / ((2 * j - 1) * (2 * j))
        power = power * inv2
        total = total + coef * power
    lag1 = jnp.expm1((a - 1) * jnp.log(jnp.asarray(2.0, a.dtype)))
    return jnp.where(k >= 2, k**a * total, jnp.where(k == 1, lag1, jnp.ones_like(k)))


_FGN_TERMS = 30  # binomial-series terms: C(a, 2j) 4^{−j} < 1e-18 relative by j = 30 at k = 2


@functools.partial(jax.jit, static_argnums=(1, 2))
def _fbm(key, walkers, steps, hurst):
    n = steps
    gamma = fgn_autocovariance(n, hurst)
    circ = jnp.concatenate([gamma, gamma[1:-1][::-1]])  # length 2n
    # nonnegative in exact arithmetic for every H (fGn's embedding); rounding may leave ~-1e-7
    lam = jnp.maximum(jnp.fft.fft(circ).real, 0.0)
    m = circ.shape[0]
    kr, ki = jax.random.split(key)
    z = jax.random.normal(kr, (walkers, m), lam.dtype) + 1j * jax.random.normal(
        ki, (walkers, m), lam.dtype
    )
    y = jnp.fft.fft(jnp.sqrt(lam / m)[None, :] * z, axis=-1)
    fgn = y.real[:, :n]
    path = jnp.concatenate([jnp.zeros((walkers, 1), fgn.dtype), jnp.cumsum(fgn, axis=1)], axis=1)
    return path[..., None]


def fbm(key: PRNGKey, walkers: int, steps: int, hurst: float) -> Array:
    """Fractional Brownian motion ``(walkers, steps + 1, 1)`` with Hurst index ``hurst``
    (``⟨x_t²⟩ = t^{2H}``), exact, by circulant embedding (Davies & Harte 1987, Biometrika 74,
    95) of :func:`fgn_autocovariance`, in the default float dtype.

    Args:
        key: a ``jax.random.key``.
        walkers: number of independent paths.
        steps: number of increments; every path starts at 0.
        hurst: ``H`` in ``(0, 1)``; may be traced (``vmap``/``grad`` over ``H``).

    Returns:
        ``(walkers, steps + 1, 1)`` positions.

    Examples:
        >>> import jax
        >>> from fracsgd.diffusion import ensemble_msd
        >>> x = fbm(jax.random.key(0), 4000, 64, 0.25)  # H = 1/4: ⟨x_t²⟩ = √t
        >>> x.shape
        (4000, 65, 1)
        >>> msd = ensemble_msd(x)  # 4000 walkers: ±2.2 % (1σ)
        >>> bool(abs(msd[16] / 4 - 1) < 0.1), bool(abs(msd[64] / 8 - 1) < 0.1)
        (True, True)
    """
    if not isinstance(hurst, jax.core.Tracer):  # a traced H (vmap/grad over H) is data
        hurst = float(check_number("hurst", hurst, lo=0.0, hi=1.0, lo_open=True, hi_open=True))
    return _fbm(
        check_key(key),
        _positive_int("walkers", walkers),
        _positive_int("steps", steps),
        hurst,
    )


def mittag_leffler_waiting_times(key: PRNGKey, shape: tuple[int, ...], alpha: float) -> Array:
    """Waiting times with Laplace transform ``1/(1 + s^α)`` (Mittag-Leffler law; tail
    ``~ τ^{−1−α}``), by the exact transformation of Kozubowski & Rachev / Fulger et al. (2008):
    ``τ = −log U · (sin(απ)/tan(απV) − cos(απ))^{1/α}``.

    The law has no atom at 0, but for small α a draw can fall below the dtype's smallest
    normal number (at α = 0.05 in float32, with probability ≈ 0.013), where it would flush to
    0 and make a CTRW jump at ``t = 0``: such draws are returned as that smallest normal
    number, so every waiting time is positive.

    Args:
        key: a ``jax.random.key``.
        shape: shape of the draws (an int for 1-D).
        alpha: ``α`` in ``(0, 1]`` (1: unit exponential); may be traced (unchecked there).

    Returns:
        Positive waiting times of ``shape``; ``Pr(τ > t) = E_α(−t^α)``.

    Examples:
        >>> import jax, math
        >>> w = mittag_leffler_waiting_times(jax.random.key(0), (100_000,), 0.5)
        >>> bool((w > 0).all())
        True
        >>> # Pr(τ > 1) = E_{1/2}(−1) = e·erfc(1) ≈ 0.4276; 10⁵ draws: ±0.0016 (1σ)
        >>> bool(abs(float((w > 1).mean()) - math.e * math.erfc(1)) < 0.01)
        True
    """
    traced = isinstance(alpha, jax.core.Tracer)  # vmap/jit over α: data, unchecked
    if not traced:
        alpha = check_number("alpha", alpha, lo=0.0, hi=1.0, lo_open=True)
    if isinstance(shape, int | np.integer):
        shape = (shape,)
    if isinstance(shape, str | bytes) or not isinstance(shape, tuple | list):
        raise ValueError(f"shape must be a tuple of integers >= 0, got {shape!r}")
    shape = tuple(check_int("shape", s, 0) for s in shape)
    ku, kv = jax.random.split(check_key(key))
    u = jax.random.uniform(ku, shape, minval=1e-12, maxval=1.0)
    v = jax.random.uniform(kv, shape, minval=1e-12, maxval=1.0)
    if traced:
        one = alpha == 1.0  # exponential waits; the formula's 0/tan would be rounding noise
        a = jnp.where(one, 0.5, alpha) * jnp.pi
        factor = (jnp.sin(a) / jnp.tan(a * v) - jnp.cos(a)) ** (1 / jnp.where(one, 0.5, alpha))
        return _positive_waits(-jnp.log(u) * jnp.where(one, 1.0, factor))
    a_pi = alpha * math.pi
    if alpha == 1.0:
        return -jnp.log(u)
    waits = -jnp.log(u) * (math.sin(a_pi) / jnp.tan(a_pi * v) - math.cos(a_pi)) ** (1 / alpha)
    return _positive_waits(waits)


def _positive_waits(waits: Array) -> Array:
    """Waits that underflowed to 0 (or below the smallest normal) as the smallest normal."""
    return jnp.maximum(waits, jnp.finfo(waits.dtype).tiny)


class CTRWPaths(NamedTuple):
    """Positions of CTRW walkers at fixed observation times.

    Every walker starts at ``x = 0`` at ``t = 0``, which is not a row unless ``times`` starts
    at 0 (:meth:`from_origin` adds it).

    Attributes:
        times: ``(T,)`` observation times.
        positions: ``(walkers, T, dim)``.
        complete: ``(walkers,)`` the simulated jumps covered the last observation time (walkers
            that did not are flagged, never silently truncated).
    """

    times: Array
    positions: Array
    complete: Array

    def from_origin(self) -> CTRWPaths:
        """The paths with their common start ``x = 0`` at ``t = 0`` as the first row (the walk
        starts there; ``ctrw`` reports only the observation times asked for), as
        :func:`walk_dimension` and :func:`spectral_dimension` measure from the first row.
        Unchanged when the first observation time is already 0. Host-side (not for use under
        ``jit``), on the paths of one :func:`ctrw` call."""
        if float(self.times[0]) == 0.0:
            return self
        zero = jnp.zeros_like(self.positions[:, :1])
        return CTRWPaths(
            jnp.concatenate([jnp.zeros((1,), self.times.dtype), self.times]),
            jnp.concatenate([zero, self.positions], axis=1),
            self.complete,
        )


@functools.partial(jax.jit, static_argnums=(1, 4, 5))
def _ctrw(key, walkers, times, alpha, max_jumps, dim=1):
    kw, kj = jax.random.split(key)
    waits = mittag_leffler_waiting_times(kw, (walkers, max_jumps), alpha)
    arrivals = jnp.cumsum(waits, axis=1)
    jumps = jax.random.normal(kj, (walkers, max_jumps, dim))
    cum = jnp.concatenate([jnp.zeros((walkers, 1, dim)), jnp.cumsum(jumps, axis=1)], axis=1)
    count = jax.vmap(lambda a: jnp.searchsorted(a, times, side="right"))(arrivals)  # (W, T)
    pos = jnp.take_along_axis(cum, count[..., None], axis=1)
    return pos, arrivals[:, -1] > times[-1]


#: elements (walkers × jumps) one block of :func:`ctrw`'s default continuation may hold
CTRW_BLOCK_ELEMENTS = 2**26
#: jumps per walker beyond which :func:`ctrw`'s default continuation stops (and flags)
CTRW_MAX_TOTAL_JUMPS = 2**26


@functools.partial(jax.jit, static_argnums=(5,))
def _ctrw_block(keys, start_time, start_pos, times, alpha, block):
    """One block of ``block`` jumps per walker, continuing each walker from its last arrival
    ``start_time`` at ``start_pos``: positions at the observation times not before
    ``start_time`` (the others are resolved already, and returned as ``start_pos``), the last
    arrival and the position after the block."""

    def one(key, t0, x0):
        kw, kj = jax.random.split(key)
        arrivals = t0 + jnp.cumsum(mittag_leffler_waiting_times(kw, (block,), alpha))
        jumps = jax.random.normal(kj, (block, x0.shape[-1]), x0.dtype)
        cum = x0[None] + jnp.concatenate([jnp.zeros_like(x0)[None], jnp.cumsum(jumps, axis=0)])
        pos = cum[jnp.searchsorted(arrivals, times, side="right")]
        return pos, arrivals[-1], cum[-1]

    return jax.vmap(one)(keys, start_time, start_pos)


@functools.partial(jax.jit, static_argnums=(8,))
def _ctrw_continue(key, b, idx, last, end, positions, times, alpha, block):
    """Block ``b`` for the walkers ``idx`` (padded with repeats of one walker, whose repeated
    writes are identical): each continues from its last arrival ``last`` at ``end``; the
    observation times from ``last`` on take the block's positions."""
    keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(jax.random.fold_in(key, b), idx)
    t0 = last[idx]
    pos, arrived, after = _ctrw_block(keys, t0, end[idx], times, alpha, block)
    pending = times.reshape(1, -1) >= t0.reshape(-1, 1)  # not resolved by earlier blocks
    merged = jnp.where(pending[..., None], pos, positions[idx])
    return positions.at[idx].set(merged), last.at[idx].set(arrived), end.at[idx].set(after)


def _ctrw_block_size(t_last: float, alpha: float | None, walkers: int) -> int:
    """Jumps per block: a power of two near twice the mean number of jumps by ``t_last``,
    ``t^α/Γ(1+α)``, within ``CTRW_BLOCK_ELEMENTS`` per call. ``alpha=None`` (a traced α): the
    largest mean over ``α ∈ (0, 1]``, at most ``max(t, 1)/Γ_min`` with ``Γ_min = 0.8856`` the
    minimum of ``Γ(1 + α)``."""
    if alpha is None:
        mean_jumps = max(t_last, 1.0) / 0.8856
    else:
        mean_jumps = max(t_last, 0.0) ** alpha / math.gamma(1 + alpha)
    block = int(2 ** math.ceil(math.log2(2 * mean_jumps + 64)))
    return max(64, min(block, CTRW_BLOCK_ELEMENTS // max(walkers, 1)))


def _ctrw_continued(key, walkers, times, alpha, dim=1):
    """CTRW paths simulated in blocks of jumps until every walker's last arrival passes the
    last observation time. A walker's jumps in block ``b`` come from
    ``fold_in(fold_in(key, b), walker)``, so each walker's path does not depend on which
    others still needed jumps; continuing an unfinished walker with fresh jumps is exact (no
    conditioning on finishing)."""
    t_last = float(times[-1])
    block = _ctrw_block_size(t_last, alpha, walkers)
    positions = jnp.zeros((walkers, times.shape[0], dim))
    last = jnp.zeros(walkers, jnp.result_type(float))  # every walk starts at t = 0 (the
    # waiting times' dtype: float64 under x64)
    end = jnp.zeros((walkers, dim))
    todo = np.arange(walkers)
    total, b = 0, 0
    while todo.size and total < CTRW_MAX_TOTAL_JUMPS:
        # pad the unfinished walkers to a power of two of at least 1024 (or all walkers): few
        # distinct compiled shapes, usually two
        size = min(walkers, max(int(2 ** math.ceil(math.log2(todo.size))), 1024))
        idx = jnp.asarray(np.concatenate([todo, np.full(size - todo.size, todo[0])]), jnp.int32)
        positions, last, end = _ctrw_continue(
            key, jnp.uint32(b), idx, last, end, positions, times, alpha, block
        )
        todo = np.flatnonzero(np.asarray(last) <= t_last)
        total += block
        b += 1
    return positions, last > t_last


@functools.partial(jax.jit, static_argnums=(1, 4, 5))
def _ctrw_traced(key, walkers, times, alpha, block, dim=1):
    """:func:`_ctrw_continued` as one ``lax.while_loop`` (for a traced key): every block
    draws ``block`` jumps for every walker, from the same per-walker keys, and only the
    unfinished walkers take them, so the paths equal the host loop's bitwise."""
    t_last = times[-1]
    max_blocks = -(-CTRW_MAX_TOTAL_JUMPS // block)
    idx = jnp.arange(walkers, dtype=jnp.int32)

    def cond(state):
        b, _, last, _ = state
        return (b < max_blocks) & jnp.any(last <= t_last)

    def body(state):
        b, positions, last, end = state
        keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(jax.random.fold_in(key, b), idx)
        pos, arrived, after = _ctrw_block(keys, last, end, times, alpha, block)
        todo = last <= t_last
        pending = (times.reshape(1, -1) >= last.reshape(-1, 1)) & todo.reshape(-1, 1)
        positions = jnp.where(pending[..., None], pos, positions)
        last = jnp.where(todo, arrived, last)
        end = jnp.where(todo[:, None], after, end)
        return b + 1, positions, last, end

    state = (
        jnp.uint32(0),
        jnp.zeros((walkers, times.shape[0], dim)),
        jnp.zeros(walkers, jnp.result_type(float)),
        jnp.zeros((walkers, dim)),
    )
    _, positions, last, _ = jax.lax.while_loop(cond, body, state)
    return positions, last > t_last


def ctrw(
    key: PRNGKey, walkers: int, times: Array, alpha: float, *, max_jumps: int | None = None
) -> CTRWPaths:
    """Continuous-time random walk with Mittag-Leffler waiting times of order ``alpha`` and unit
    Gaussian jumps: the ensemble MSD is ``⟨x²(t)⟩ = t^α / Γ(1 + α)`` (subdiffusion; the CTRW
    whose scaling limit solves the time-fractional diffusion equation).

    Args:
        key: a ``jax.random.key``.
        walkers: number of independent walkers.
        times: observation times, strictly increasing; concrete (not traced: they size the
            simulation).
        alpha: order of the waiting times, in ``(0, 1]`` (1: exponential waits). Traced data
            under ``jit``/``vmap`` (unchecked there): the waiting times are computed the same
            way for a concrete and a traced α.
        max_jumps: ``None`` (default): simulate in blocks of jumps, continuing every walker
            whose jumps have not yet passed the last time, until all have (blocks of about
            twice the mean number of jumps ``t^α/Γ(1 + α)``; a walker still short after
            ``CTRW_MAX_TOTAL_JUMPS`` jumps is flagged). With a concrete key that is a host
            loop over the unfinished walkers only; with a traced key (under ``jit``, or
            ``vmap`` over keys) it is one ``lax.while_loop`` in which every walker draws each
            block and only the unfinished ones take it: the same paths, bitwise (with a
            traced α the blocks are sized for α = 1, so the paths differ from a concrete α's
            in which jumps each block holds, not in law). An int: one
            block of that many jumps per walker (one compiled call); walkers it does not
            carry past the last time are flagged in ``complete`` (their later positions stop
            at their last jump).

    Examples:
        >>> import jax, numpy as np
        >>> paths = ctrw(jax.random.key(0), 1000, np.array([10.0, 1e4]), 0.5)
        >>> paths.positions.shape, bool(paths.complete.all())
        ((1000, 2, 1), True)
    """
    traced_alpha = isinstance(alpha, jax.core.Tracer)  # vmap/jit over α: data, unchecked
    if traced_alpha:
        if jnp.shape(alpha) != ():
            raise ValueError(f"alpha must be a scalar in (0, 1], got shape {jnp.shape(alpha)}")
    else:
        alpha = check_number("alpha", alpha, lo=0.0, hi=1.0, lo_open=True)
    refuse_traced_static(
        "times", times, "the blocks of jumps are sized and the float32 clock checked from them"
    )
    t_np = real_array("times", times, finite=True)
    if t_np.ndim != 1 or t_np.size == 0 or not np.all(np.diff(t_np) > 0):
        raise ValueError("times must be a non-empty, strictly increasing 1-D array")
    if t_np[0] < 0:
        raise ValueError(f"times must be >= 0 (every walk starts at t = 0), got {t_np[0]}")
    if t_np[-1] > np.finfo(np.float32).max:
        raise ValueError(
            f"times must stay below {np.finfo(np.float32).max:.3g} (the walks' float32 clock), "
            f"got {t_np[-1]:.3g}"
        )
    t32 = t_np.astype(np.float32)
    if not np.all(np.diff(t32) > 0):
        raise ValueError(
            "times must stay strictly increasing in float32 (the walks' clock): some are closer "
            "than float32 resolution"
        )
    t = jnp.asarray(t32)
    key = check_key(key)
    walkers = _positive_int("walkers", walkers)
    if max_jumps is not None:
        pos, complete = _ctrw(key, walkers, t, alpha, _positive_int("max_jumps", max_jumps))
    elif traced_alpha or isinstance(jax.random.key_data(key), jax.core.Tracer):
        # under jit/vmap the host loop cannot run: the same blocks in a while_loop (a traced α
        # sizes them for the largest mean number of jumps over α ∈ (0, 1])
        block = _ctrw_block_size(float(t_np[-1]), None if traced_alpha else alpha, walkers)
        pos, complete = _ctrw_traced(key, walkers, t, alpha, block)
    else:
        pos, complete = _ctrw_continued(key, walkers, t, alpha)
    return CTRWPaths(t, pos, complete)


def _ou_position_variance(u: float) -> float:
    """``2u − 3 + 4e^{−u} − e^{−2u}`` (``γ² Var`` of the integrated velocity over one step,
    ``u = γ dt``), without its cancellation: the Taylor series ``Σ_{n≥3} (−1)^n (4 − 2^n) uⁿ/n!``
    below ``u = 0.01`` (the closed form's float64 error is ~``10⁻¹⁶/u²`` relative)."""
    if u < 0.01:
        return sum((-1) ** n * (4 - 2**n) * u**n / math.factorial(n) for n in range(3, 10))
    return 2 * u + 4 * math.expm1(-u) - math.expm1(-2 * u)


def _langevin_coefficients(dt: float, friction: float) -> tuple[float, ...]:
    """The exact one-step transition of ``(x, v)`` (Gillespie 1996), in float64 on the host:
    ``v' = e^{−u} v + ξ_v``, ``x' = x + (1 − e^{−u})/γ · v + ξ_x`` with ``Var ξ_v = 1 − e^{−2u}``,
    ``Var ξ_x = (2u − 3 + 4e^{−u} − e^{−2u})/γ²``, ``Cov = (1 − e^{−u})²/γ``; returned as
    ``(decay, drift, a, b, c)`` with ``ξ_v = a z₁``, ``ξ_x = b z₁ + c z₂``."""
    u = friction * dt
    decay = math.exp(-u)
    one_minus = -math.expm1(-u)
    var_v = -math.expm1(-2 * u)
    var_x = _ou_position_variance(u) / friction**2
    cov = one_minus**2 / friction
    a = math.sqrt(var_v)
    b = cov / a
    c = math.sqrt(max(var_x - b * b, 0.0))
    return decay, one_minus / friction, a, b, c


def _langevin_coefficients_traced(dt: Any, friction: Any) -> tuple[Any, ...]:
    """:func:`_langevin_coefficients` for traced ``dt`` / ``friction`` (under ``jit`` or
    ``vmap``), in the default float dtype: ``γ² Var ξ_x`` by its Taylor series up to ``u = 1``
    (terms to ``n = 20``, ``2ⁿ/n! < 10⁻¹²``), where the closed form loses to cancellation about
    ``10⁻⁷/u²`` relative in float32, and by the closed form above."""
    dtype = jnp.result_type(float)
    dt, friction = jnp.asarray(dt, dtype), jnp.asarray(friction, dtype)
    u = friction * dt
    decay = jnp.exp(-u)
    one_minus = -jnp.expm1(-u)
    var_v = -jnp.expm1(-2 * u)
    small = jnp.minimum(u, 1.0)  # the series' argument, kept finite where it is not used
    series = jnp.zeros_like(u)
    for n in range(20, 2, -1):  # Horner in u, then times u³
        series = series * small + (-1) ** n * (4 - 2**n) / math.factorial(n)
    series = series * small**3
    closed = 2 * u + 4 * jnp.expm1(-u) - jnp.expm1(-2 * u)
    var_x = jnp.where(u < 1.0, series, closed) / friction**2
    cov = one_minus**2 / friction
    a = jnp.sqrt(var_v)
    b = cov / a
    c = jnp.sqrt(jnp.maximum(var_x - b * b, 0.0))
    return decay, one_minus / friction, a, b, c


@functools.partial(jax.jit, static_argnums=(1, 2))
def _langevin(key, walkers, steps, coefficients):
    decay, drift, a, b, c = coefficients
    kv, kn = jax.random.split(key)
    v0 = jax.random.normal(kv, (walkers,))
    noise = jax.random.normal(kn, (steps, 2, walkers))

    def step(carry, z):
        x, v = carry
        x = x + drift * v + b * z[0] + c * z[1]  # exact: the integral of the OU velocity
        v = decay * v + a * z[0]
        return (x, v), x

    _, xs = jax.lax.scan(step, (jnp.zeros(walkers), v0), noise)
    return jnp.concatenate([jnp.zeros((1, walkers)), xs], axis=0).T[..., None]


def langevin(key: PRNGKey, walkers: int, steps: int, dt: float, friction: float) -> Array:
    """Underdamped Langevin particles (unit thermal velocity, friction γ), started in velocity
    equilibrium: ``⟨x²(t)⟩ = (2/γ²)(γt − 1 + e^{−γt})`` — ballistic (``∝ t²``) for ``t ≪ 1/γ``,
    diffusive (``∝ t``) for ``t ≫ 1/γ``. Returns ``(walkers, steps + 1, 1)`` at times
    ``k·dt``. Exact at those times for any ``dt``: each step draws the position and velocity
    increments from their joint Gaussian law (Gillespie 1996), so the sample MSD follows
    :func:`langevin_msd` with no discretisation error.

    ``dt`` and ``friction`` may be traced (``jit``, ``vmap`` over them; unchecked there): the
    step's coefficients are then computed in the default float dtype on the device, otherwise in
    float64 on the host.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> x = jax.vmap(lambda g: langevin(jax.random.key(0), 2000, 50, 0.1, g))(
        ...     jnp.array([0.5, 5.0]))
        >>> x.shape
        (2, 2000, 51, 1)
    """
    if isinstance(dt, jax.core.Tracer) or isinstance(friction, jax.core.Tracer):
        for name, v in (("dt", dt), ("friction", friction)):
            if jnp.shape(v) != ():
                raise ValueError(f"{name} must be a scalar > 0, got shape {jnp.shape(v)}")
            if not isinstance(v, jax.core.Tracer):
                check_number(name, v, lo=0.0, lo_open=True)
        coefficients = _langevin_coefficients_traced(dt, friction)
        return _langevin(
            check_key(key),
            _positive_int("walkers", walkers),
            _positive_int("steps", steps),
            coefficients,
        )
    dt = check_number("dt", dt, lo=0.0, lo_open=True)
    friction = check_number("friction", friction, lo=0.0, lo_open=True)
    dtype = jnp.result_type(float)  # float64 under x64, as the traced path's
    coefficients = tuple(jnp.asarray(v, dtype) for v in _langevin_coefficients(dt, friction))
    return _langevin(
        check_key(key),
        _positive_int("walkers", walkers),
        _positive_int("steps", steps),
        coefficients,
    )


def langevin_msd(t: Array, friction: float) -> Array:
    """Closed-form MSD of :func:`langevin`, ``(2/γ²)(γt − 1 + e^{−γt})``.

    ``u − 1 + e^{−u}`` is evaluated as ``u + expm1(−u)``, and below ``u = 0.1`` by its Taylor
    series ``Σ_{n≥2} (−u)ⁿ/n!`` (written as three terms, float32 lost 10 % at ``u = 10⁻³``).

    Source: the Ornstein–Fürth formula, ``⟨s²⟩ = (2kT/(mβ²))(βt − 1 + e^{−βt})`` for a free
    Brownian particle started in velocity equilibrium (Uhlenbeck & Ornstein 1930, "On the
    theory of the Brownian motion", Phys. Rev. 36, 823), here with unit thermal velocity
    ``kT/m = 1`` and ``β = γ``.

    Examples:
        >>> import numpy as np
        >>> bool(np.allclose(langevin_msd(np.array([1e-3, 100.0]), 1.0), [1e-6 - 1e-9 / 3, 198],
        ...                  rtol=1e-6))
        True
    """
    if isinstance(friction, jax.core.Tracer):  # vmap/jit over γ (as langevin): data, unchecked
        if jnp.shape(friction) != ():
            raise ValueError(f"friction must be a scalar > 0, got shape {jnp.shape(friction)}")
        g: Any = friction
    else:
        g = check_number("friction", friction, lo=0.0, lo_open=True)
    t_in: Any = t if isinstance(t, jax.core.Tracer) else real_array("t", t)  # traced: under jit
    u = g * jnp.asarray(t_in, dtype=jnp.result_type(float))
    series = sum((-u) ** n / math.factorial(n) for n in range(2, 10))
    return 2 / g**2 * jnp.where(u < 0.1, series, u + jnp.expm1(-u))


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _lattice_walk(key, walkers, steps, dim):
    axis = jax.random.randint(key, (walkers, steps), 0, 2 * dim)
    which = axis[..., None] % dim == jnp.arange(dim).reshape(1, 1, dim)
    moves = jnp.where(which, 1, 0) * jnp.where(axis[..., None] < dim, 1, -1)
    pos = jnp.cumsum(moves, axis=1)
    return jnp.concatenate([jnp.zeros((walkers, 1, dim), pos.dtype), pos], axis=1)


def lattice_walk(key: PRNGKey, walkers: int, steps: int, dim: int) -> Array:
    """Simple random walks on ``Z^dim`` from the origin: ``(walkers, steps + 1, dim)`` integer
    positions (``d_s = d_w·d_f/2 = dim``, ``d_w = 2``).

    Args:
        key: a ``jax.random.key``.
        walkers: number of independent walks.
        steps: number of unit steps, each along one of the ``2·dim`` lattice directions.
        dim: lattice dimension.

    Returns:
        ``(walkers, steps + 1, dim)`` integer positions; ``⟨|x_t|²⟩ = t`` exactly in law.

    Examples:
        >>> import jax, numpy as np
        >>> from fracsgd.diffusion import ensemble_msd
        >>> x = lattice_walk(jax.random.key(0), 4000, 100, 3)
        >>> x.shape, bool(np.all(np.abs(np.diff(x, axis=1)).sum(-1) == 1))  # unit steps
        ((4000, 101, 3), True)
        >>> bool(abs(ensemble_msd(x)[100] / 100 - 1) < 0.1)  # ⟨|x_t|²⟩ = t; ±2.2 % (1σ)
        True
    """
    return _lattice_walk(
        check_key(key),
        _positive_int("walkers", walkers),
        _positive_int("steps", steps),
        _positive_int("dim", dim),
    )


class Graph(NamedTuple):
    """A graph for random walks: node coordinates ``(N, 2)``, neighbour table ``(N, k)`` padded
    with -1, and degrees ``(N,)``."""

    coords: np.ndarray
    neighbors: np.ndarray
    degree: np.ndarray


_MAX_GENERATION = 12  # 3^12 = 531 441 unit triangles; each generation triples the memory


def sierpinski_gasket(generation: int) -> Graph:
    """The Sierpinski gasket graph of a given generation (side ``2^generation`` edges).

    Nodes are points ``a·e₁ + b·e₂`` of the triangular lattice (``e₁ = (1, 0)``,
    ``e₂ = (½, √3/2)``); interior nodes have degree 4, the three corners degree 2. The graph
    is built on the host and cached per generation, so its arrays are read-only.

    Args:
        generation: ``g`` in ``[1, 12]``: ``3^g`` unit triangles.

    Returns:
        A :class:`Graph` with ``(3^{g+1} + 3)/2`` nodes and ``3^{g+1}`` edges (cached).

    Examples:
        >>> g = sierpinski_gasket(3)
        >>> g.coords.shape, sorted(set(g.degree.tolist())), int((g.degree == 2).sum())
        ((42, 2), [2, 4], 3)
        >>> int(g.degree.sum()) // 2  # 3^4 edges
        81
    """
    refuse_traced_static("generation", generation, "it sets the graph, built on the host")
    return _sierpinski_gasket(check_int("generation", generation, 1, _MAX_GENERATION))


@functools.lru_cache(maxsize=8)
def _sierpinski_gasket(g: int) -> Graph:
    tris = np.zeros((1, 2), np.int64)  # lower-left corners of unit triangles, in (a, b)
    for level in range(g):
        s = 2**level
        tris = np.concatenate([tris, tris + np.array([s, 0]), tris + np.array([0, s])])
    corners = np.stack(
        [tris, tris + np.array([1, 0]), tris + np.array([0, 1])], axis=1
    )  # (T, 3, 2)
    flat = corners.reshape(-1, 2)
    nodes, inverse = np.unique(flat, axis=0, return_inverse=True)
    tri_nodes = inverse.reshape(-1, 3)
    edges = np.concatenate([tri_nodes[:, [0, 1]], tri_nodes[:, [1, 2]], tri_nodes[:, [0, 2]]])
    edges = np.unique(np.sort(edges, axis=1), axis=0)
    n = nodes.shape[0]
    neighbors = np.full((n, 4), -1, np.int32)
    degree = np.zeros(n, np.int32)
    for u, v in edges:
        neighbors[u, degree[u]] = v
        degree[u] += 1
        neighbors[v, degree[v]] = u
        degree[v] += 1
    coords = np.stack([nodes[:, 0] + 0.5 * nodes[:, 1], nodes[:, 1] * math.sqrt(3) / 2], axis=1)
    for a in (coords, neighbors, degree):  # shared by every caller through the cache
        a.flags.writeable = False
    return Graph(coords, neighbors, degree)


@functools.partial(jax.jit, static_argnums=(2,))
def _graph_walk(key, start, steps, neighbors, degree):
    def step(node, k):
        u = jax.random.uniform(k, node.shape)
        choice = jnp.minimum((u * degree[node]).astype(jnp.int32), degree[node] - 1)
        nxt = neighbors[node, choice]
        return nxt, nxt

    _, path = jax.lax.scan(step, start, jax.random.split(key, steps))
    return jnp.concatenate([start[None], path], axis=0).T


def graph_walk(key: PRNGKey, graph: Graph, start: Any, steps: int) -> Array:
    """Simple random walks on ``graph`` from nodes ``start`` (``(walkers,)``): node indices
    ``(walkers, steps + 1)``; ``graph.coords[path]`` gives positions. ``start`` may be traced
    (``jit``, ``vmap`` over starts): its values are then not checked, and a walker whose start
    is not a node index in ``[0, nodes)`` gets the path −1 throughout (as
    :func:`fracsgd.data.permute_index` marks an index out of range).

    Args:
        key: a ``jax.random.key``.
        graph: a :class:`Graph` (e.g. :func:`sierpinski_gasket`).
        start: ``(walkers,)`` integer start nodes.
        steps: number of steps; each moves to a uniformly chosen neighbour.

    Returns:
        ``(walkers, steps + 1)`` node indices (``int32``), row 0 the start.

    Examples:
        >>> import jax, numpy as np
        >>> g = sierpinski_gasket(1)  # 6 nodes: 3 corners (degree 2), 3 midpoints (4)
        >>> p = graph_walk(jax.random.key(0), g, np.array([0, 3]), 5)
        >>> p.shape, p[:, 0].tolist()
        ((2, 6), [0, 3])
        >>> rows = np.asarray(p)  # every step goes to a neighbour
        >>> bool(all(b in g.neighbors[a] for r in rows for a, b in zip(r, r[1:])))
        True
        >>> g.coords[np.asarray(p)].shape  # positions
        (2, 6, 2)
    """
    if not isinstance(graph, Graph):
        raise ValueError(f"graph must be a fracsgd.diffusion.Graph, got {type(graph).__name__}")
    n = graph.neighbors.shape[0]
    msg = f"start must be a non-empty 1-D array of node indices in [0, {n}), got {start!r}"
    if isinstance(start, jax.core.Tracer):  # data under jit/vmap: shape and dtype checked here
        if start.ndim != 1 or start.shape[0] == 0 or not jnp.issubdtype(start.dtype, jnp.integer):
            raise ValueError(f"start must be a 1-D integer array of node indices, got {start.aval}")
        nodes = start.astype(jnp.int32)
    else:
        start_f = real_array("start", start)
        if start_f.ndim != 1 or start_f.size == 0 or np.any(start_f != np.round(start_f)):
            raise ValueError(msg)
        if np.any(start_f < 0):
            raise ValueError(msg)
        if np.any(start_f >= n):
            raise ValueError(msg)
        nodes = jnp.asarray(start_f, jnp.int32)
    path = _graph_walk(
        check_key(key),
        nodes,
        _positive_int("steps", steps),
        jnp.asarray(graph.neighbors),
        jnp.asarray(graph.degree),
    )
    valid = (nodes >= 0) & (nodes < n)  # always true for a concrete start (checked above)
    return jnp.where(valid[:, None], path, -1)


def gasket_walk(key: PRNGKey, walkers: int, steps: int, generation: int = 8) -> Array:
    """Random walks on the Sierpinski gasket from a node near its centroid:
    ``(walkers, steps + 1, 2)`` positions in the default float dtype (float64 under x64, as
    the other generators; unit edges) (``d_s = 2 log 3/log 5 ≈ 1.365``,
    ``d_w = log 5/log 2 ≈ 2.32``; ``GASKET_SPECTRAL_DIMENSION``, ``GASKET_WALK_DIMENSION``).

    Args:
        key: a ``jax.random.key``.
        walkers: number of independent walks.
        steps: number of steps along the gasket's edges.
        generation: of :func:`sierpinski_gasket` (side ``2^generation`` edges); walks that
            reach its corners feel the boundary.

    Returns:
        ``(walkers, steps + 1, 2)`` positions.

    Examples:
        >>> import jax, numpy as np
        >>> x = gasket_walk(jax.random.key(0), 3, 10, generation=4)
        >>> steps = np.linalg.norm(np.diff(np.asarray(x), axis=1), axis=-1)
        >>> x.shape, bool(np.allclose(steps, 1.0))  # unit edges
        ((3, 11, 2), True)
        >>> round(GASKET_SPECTRAL_DIMENSION, 4), round(GASKET_WALK_DIMENSION, 4)
        (1.3652, 2.3219)
    """
    graph = sierpinski_gasket(generation)
    centre = graph.coords.mean(axis=0)
    start_node = int(
        np.argmin(np.sum((graph.coords - centre) ** 2, axis=1) + 1e9 * (graph.degree < 4))
    )
    start = np.full((_positive_int("walkers", walkers),), start_node, np.int32)
    path = graph_walk(key, graph, start, steps)
    return jnp.asarray(graph.coords, jnp.result_type(float))[path]
