"""Particle picture of the SGD-FFPE (theory.md §4): a continuous-time random walk whose jumps are
Langevin (Euler–Maruyama) steps in the potential and whose waiting times are Mittag-Leffler.

Construction. A particle waits ``τ_0·W_n`` between jumps, ``W_n`` i.i.d. with Laplace transform
``1/(1 + s^α)`` (:func:`fracsgd.diffusion.mittag_leffler_waiting_times`), and at every jump makes
one Euler–Maruyama step of operational time ``dτ`` of the Langevin equation whose Fokker–Planck
operator is ``𝓛p = ∇·(D∇p + γp∇L)``::

    w ← w − γ ∇L(w) dτ + sqrt(2 D dτ) ξ,   ξ ~ N(0, I).

Time scale. The number of jumps by time ``t`` is the fractional Poisson process ``N(t)`` with
``E[u^{N(t)}] = E_α(−(1 − u)(t/τ_0)^α)`` (Laskin 2003), which is a standard Poisson process of
rate ``1/τ_0^α`` run at the inverse-stable operational clock ``S(t)`` (Meerschaert, Nane &
Vellaisamy 2011). The Montroll–Weiss equation ``p̂(s) = (1−ψ̂)/s · [1 − ψ̂ P_dτ]^{−1} p_0`` with
``ψ̂(s) = 1/(1 + (τ_0 s)^α)`` and the jump kernel ``P_dτ = e^{dτ𝓛} + O(dτ²)`` gives exactly::

    p̂(s) = s^{α−1} [s^α − K_α (P_dτ − I)/dτ]^{−1} p_0,   K_α = dτ / τ_0^α,

i.e. the particle density solves ``D_t^α p = K_α 𝓛_dτ p`` with ``𝓛_dτ = (P_dτ − I)/dτ = 𝓛 +
O(dτ)``: the FFPE with its right-hand side multiplied by the generalised constant ``K_α``, up to
the ``O(dτ)`` Euler–Maruyama error and for *every* ``t`` (no long-time limit is needed). This
module sets ``τ_0 = dτ^{1/α}`` so that ``K_α = 1`` and the particles sample the solution of
``D_t^α p = ∇·(D∇p + γp∇L)`` that :func:`fracsgd.ffpe.solve` computes. Consequences that are exact
for any ``dτ`` (used by the tests): free particles have ``⟨|w(t) − w_0|²⟩ = 2·dim·D·t^α/Γ(1+α)``,
and in ``L = k|w|²/2`` the mean is ``w_0 E_α(−γ k t^α)``.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fracsgd._checks import check_key, check_number, real_array, refuse_traced_value
from fracsgd._types import Array, PRNGKey
from fracsgd.diffusion import mittag_leffler_waiting_times
from fracsgd.ffpe._solve import Problem
from fracsgd.ffpe._space import check_point_indexing


class Particles(NamedTuple):
    """Particle positions at the observation times.

    Attributes:
        times: ``(T,)`` observation times.
        positions: ``(particles, T, dim)``.
        jumps: ``(particles,)`` jumps made before the last observation time.
        complete: ``(particles,)`` the particle's jumps covered the last observation time;
            ``False`` means ``max_jumps`` ran out first (from its last jump on it stays at the
            position that jump reached, and its ``jumps`` is ``max_jumps``; its later positions
            are biased, and should
            be discarded or ``max_jumps`` raised), flagged per particle, never silently.
    """

    times: Array
    positions: Array
    jumps: Array
    complete: Array


def _traced(v: Any) -> bool:
    return isinstance(v, jax.core.Tracer)


def _check_scalar(name: str, v: Any, **bounds: Any) -> Any:
    """A concrete number checked against ``bounds``; a traced one (``jit``/``vmap`` over it) is
    data, unchecked beyond being a scalar (an invalid value gives NaN positions)."""
    if _traced(v):
        if jnp.shape(v) != ():
            raise ValueError(f"{name} must be a scalar, got shape {jnp.shape(v)}")
        return v
    return check_number(name, v, **bounds)


def _check(problem: Any, w0: Any, times: Any, step: Any, max_jumps: Any):
    if not isinstance(problem, Problem):
        raise ValueError(f"problem must be a fracsgd.ffpe.Problem, got {type(problem).__name__}")
    alpha = _check_scalar("alpha", problem.alpha, lo=0.0, hi=1.0, lo_open=True)
    if callable(problem.diffusion):
        raise ValueError("diffusion must be a number > 0 for ctrw (no D(w) functions)")
    if problem.reference_diffusion is not None:
        raise ValueError(
            "reference_diffusion is for a diffusion function D(w) only (with a constant "
            f"diffusion D_0 = D), got reference_diffusion={problem.reference_diffusion!r}"
        )
    _check_scalar("diffusion", problem.diffusion, lo=0.0, lo_open=True)
    _check_scalar("gamma", problem.gamma)
    if not callable(problem.potential):
        raise ValueError("potential must be a function L(w) of a point w of shape (dim,)")
    if _traced(w0):
        if w0.ndim != 2 or not jnp.issubdtype(w0.dtype, jnp.floating):
            raise ValueError(f"w0 must be a float array (particles, dim), got {w0.aval}")
        shape = w0.shape
    else:
        shape = real_array("w0", w0, finite=True).shape
    if len(shape) != 2 or shape[0] < 1 or shape[1] < 1:
        raise ValueError(f"w0 must have shape (particles, dim), got {shape}")
    w = jnp.asarray(w0)
    # at least the default float dtype: the waiting times are drawn in it (float32 positions
    # with x64 enabled would mix dtypes in the loop)
    w = w.astype(jnp.promote_types(w.dtype, jnp.result_type(float)))
    out = jax.eval_shape(problem.potential, jax.ShapeDtypeStruct(w.shape[1:], w.dtype))
    if getattr(out, "shape", None) != ():
        raise ValueError(
            f"potential must map a point of shape {w.shape[1:]} to a scalar, got "
            f"{getattr(out, 'shape', type(out).__name__)}"
        )
    check_point_indexing(problem.potential, "potential", jnp.zeros(w.shape[1:], w.dtype))
    if _traced(times):  # data under jit/vmap, unchecked (as a traced alpha)
        if jnp.ndim(times) != 1 or jnp.size(times) < 1:
            raise ValueError(f"times must be a 1-D array of positive times, got {times.aval}")
        t = times
    else:
        t = real_array("times", times)
        if t.ndim != 1 or t.size < 1 or not np.all(t > 0) or not np.all(np.diff(t) > 0):
            raise ValueError("times must be a strictly increasing 1-D array of positive times")
        if not np.all(np.isfinite(t)):
            raise ValueError("times must be finite")
    _check_scalar("step", step, lo=0.0, lo_open=True)
    refuse_traced_value("max_jumps", max_jumps, "a positive integer")
    if isinstance(max_jumps, bool) or not isinstance(max_jumps, int | np.integer) or max_jumps < 1:
        raise ValueError(f"max_jumps must be a positive integer, got {max_jumps!r}")
    return alpha, w, jnp.asarray(t, w.dtype)


@functools.partial(jax.jit, static_argnames=("potential", "max_jumps"))
def _simulate(keys, w0, times, d, gamma, step, alpha, *, potential, max_jumps):
    grad = jax.grad(potential)
    tau0 = step ** (1.0 / alpha)  # K_α = dτ / τ_0^α = 1
    noise_scale = jnp.sqrt(2 * d * step)
    t_last = times[-1]

    def one(key, w_start):
        def cond(carry):
            n, arrival, _, _ = carry
            return (arrival <= t_last) & (n < max_jumps)

        def body(carry):
            n, arrival, w, rec = carry
            k_wait, k_jump = jax.random.split(jax.random.fold_in(key, n))
            nxt = arrival + tau0 * mittag_leffler_waiting_times(k_wait, (), alpha)
            # observation times in [arrival_n, arrival_{n+1}) see the position after n jumps
            seen = (times >= arrival) & (times < nxt)
            rec = jnp.where(seen[:, None], w[None, :], rec)
            xi = jax.random.normal(k_jump, w.shape, w.dtype)
            w = w - gamma * step * grad(w) + noise_scale * xi
            return n + 1, nxt, w, rec

        rec0 = jnp.zeros((times.shape[0], w_start.shape[0]), w_start.dtype)
        zero = jnp.zeros((), w_start.dtype)
        n, arrival, w_end, rec = jax.lax.while_loop(
            cond, body, (jnp.zeros((), jnp.int32), zero, w_start, rec0)
        )
        # a finished particle's last jump fell after t_last: n − 1 jumps came before it. One
        # that ran out of jumps made all n by `arrival` and stays after its last jump
        complete = arrival > t_last
        rec = jnp.where((times >= arrival)[:, None], w_end[None, :], rec)
        return rec, jnp.where(complete, n - 1, n), complete

    return jax.vmap(one)(keys, w0)


def ctrw(
    key: PRNGKey,
    problem: Problem,
    w0: Any,
    times: Any,
    *,
    step: float = 1e-2,
    max_jumps: int = 100_000,
) -> Particles:
    """Sample the SGD-FFPE ``D_t^α p = ∇·(D∇p + γp∇L)`` with CTRW / subordinated-Langevin
    particles (vmapped over particles, one compiled program).

    Each particle waits Mittag-Leffler times ``τ_0 W`` (``W`` with Laplace transform
    ``1/(1+s^α)``) and then makes the Euler–Maruyama step
    ``w ← w − γ∇L(w)·dτ + sqrt(2D·dτ)·ξ`` of operational time ``dτ = step``. With
    ``τ_0 = dτ^{1/α}`` the generalised diffusion constant ``K_α = dτ/τ_0^α`` is 1, so the density
    solves the FFPE of ``problem`` up to the ``O(dτ)`` Euler–Maruyama bias, at every time (see the
    module docstring for the derivation). A particle makes on average
    ``(t/τ_0)^α/Γ(1+α) = t^α/(dτ·Γ(1+α))`` jumps by time ``t``.

    Args:
        key: a ``jax.random.key``; particle ``i`` uses ``fold_in(split(key)[i], jump)``.
        problem: a :class:`~fracsgd.ffpe.Problem` with a constant ``diffusion``; ``potential``
            is static (one compile per function), ``alpha``, ``diffusion``, ``gamma`` and
            ``step`` are traced: new values do not recompile, and ``jit``/``vmap`` (and
            forward-mode ``jax.jvp``; reverse mode cannot pass the particles' ``while_loop``)
            may go over them. Traced values are not range-checked: an invalid one gives NaN
            positions for every particle and ``complete = False``.
        w0: ``(particles, dim)`` initial positions (draw them from ``p_0``); may be traced.
        times: strictly increasing positive observation times ``(T,)``; may be traced (then
            unchecked, as the other traced values).
        step: the operational time ``dτ`` of one jump (> 0); smaller is more accurate and makes
            ``1/dτ`` times more jumps.
        max_jumps: cap on jumps per particle; particles that reach it before the last
            observation time are flagged ``complete = False``.

    Returns:
        :class:`Particles`.

    Examples:
        >>> import math
        >>> import jax, jax.numpy as jnp
        >>> import fracsgd as fs
        >>> free = fs.ffpe.Problem(alpha=0.5, diffusion=1.0, gamma=0.0)
        >>> out = fs.ffpe.ctrw(jax.random.key(0), free, jnp.zeros((4000, 1)), [1.0], step=0.05)
        >>> bool(out.complete.all())
        True
        >>> msd = float(jnp.mean(out.positions[:, -1, 0] ** 2))  # 2 D t^α / Γ(1 + α) ≈ 2.26
        >>> abs(msd / (2 / math.gamma(1.5)) - 1) < 0.1
        True
    """
    alpha, w, t = _check(problem, w0, times, step, max_jumps)
    keys = jax.random.split(check_key(key), w.shape[0])
    a = jnp.asarray(alpha, w.dtype)
    d = jnp.asarray(problem.diffusion, w.dtype)
    g = jnp.asarray(problem.gamma, w.dtype)
    s = jnp.asarray(step, w.dtype)
    pos, jumps, complete = _simulate(
        keys, w, t, d, g, s, a, potential=problem.potential, max_jumps=int(max_jumps)
    )
    # traced parameters are not checked above: an invalid one (α outside (0, 1], D or dτ not
    # > 0, γ not finite) would still give finite positions for some particles, or all zero
    # positions (α = 0); mark the whole result instead: NaN positions, nothing complete
    ok = (
        (a > 0) & (a <= 1) & (d > 0) & (s > 0) & jnp.isfinite(d) & jnp.isfinite(g) & jnp.isfinite(s)
    )
    pos = jnp.where(ok, pos, jnp.nan)
    return Particles(t, pos, jumps, complete & ok)
