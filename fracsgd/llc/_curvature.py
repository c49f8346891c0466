"""SGLD's discretisation bias predicted from the loss's largest curvature at the centre.

No diagnostic of a chain sees the bias its step size causes: on ``U(w) = ½ k w²`` the SGLD
update ``w ← w − (ε/2) U'(w) + √ε ξ`` has the stationary variance ``1/(k (1 − εk/4))``
instead of ``1/k``, so ``λ̂`` reads high by ``x/(1 − x)`` in that direction, ``x = εk/4``, and
the chain diverges when ``x ≥ 1``. With ``U = nβ L_n + (γ/2)|w − w*|²`` the curvature of a
direction is ``k = nβ a + γ`` for a Hessian eigenvalue ``a`` of ``L_n``, and the largest ``a``
gives the largest ``x``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from fracsgd._checks import check_key, refuse_traced
from fracsgd._types import PRNGKey, PyTree
from fracsgd.llc._estimate import (
    _check_float_leaves,
    _check_int,
    _check_pos,
    _full_loss,
    _num_samples,
    _row_chunks,
    resolve_nbeta,
)


class StepSizeBias(NamedTuple):
    """What :func:`step_size_bias` predicts.

    Attributes:
        curvature: ``a``, the largest Hessian eigenvalue of the full-data loss ``L_n`` at
            ``params`` (power iteration; over the unmasked entries).
        x: ``ε (nβ a + γ) / 4``.
        bias: ``x / (1 − x)``, the relative excess of ``λ̂`` in the stiffest direction of a
            locally quadratic loss (``inf`` when ``x ≥ 1``, where SGLD diverges there).
        nbeta: the ``nβ`` used.
        not_minimum: a negative eigenvalue dominated the iteration (``params`` is not at a
            local minimum; ``curvature`` is then the largest eigenvalue found after a shift).
    """

    curvature: float
    x: float
    bias: float
    nbeta: float
    not_minimum: bool


def _top_eigenvalue(hvp: Callable, v0: jax.Array, iterations: int, shift: jax.Array):
    """Power iteration on ``H + shift·I``; returns the Rayleigh quotient of ``H``."""

    def body(_, v):
        w = hvp(v) + shift * v
        return w / jnp.maximum(jnp.linalg.norm(w), jnp.finfo(w.dtype).tiny)

    v = jax.lax.fori_loop(0, iterations, body, v0 / jnp.linalg.norm(v0))
    return jnp.vdot(v, hvp(v)) / jnp.vdot(v, v)


def step_size_bias(
    key: PRNGKey,
    loss_fn: Callable,
    params: PyTree,
    data: PyTree,
    *,
    step_size: float,
    localization: float,
    nbeta: Any = None,
    mask: PyTree | None = None,
    num_iterations: int = 50,
) -> StepSizeBias:
    """Predict SGLD's discretisation bias of ``λ̂`` at ``params`` before sampling.

    The largest eigenvalue ``a`` of the Hessian of ``L_n(w) = mean loss_fn(w, batch)`` over
    all of ``data`` (in chunks, as :func:`fracsgd.llc.estimate`'s ``init_loss``) comes from
    ``num_iterations`` steps of power iteration on Hessian-vector products (forward over
    reverse mode), from a random start drawn with ``key``; masked entries (``mask`` 0, e.g.
    padded units) are left out. Then ``x = ε (nβ a + γ)/4`` and ``bias = x/(1 − x)``: on a
    locally quadratic loss ``λ̂`` reads ``1 + bias`` times its target in the stiffest
    direction, and less in softer ones (module docstring), so ``bias`` bounds the relative
    discretisation bias of the whole estimate there. The Rayleigh quotient approaches ``a``
    from below (an MLP 784-128-10 on the embedded MNIST read 4.585 after 50 iterations and
    4.614 after 200): raise ``num_iterations`` when the top eigenvalues are close. Flat
    (singular) directions, curved by ``γ`` alone, have less bias; minibatch noise adds its own
    excess (``LLCResult.minibatch_noise_ratio``). ``nbeta`` is a number, or ``None`` /
    ``"n/log n"``; the batch rule ``"batch/log batch"`` is refused (there is no batch size
    here): pass ``fracsgd.llc.batch_nbeta(batch_size)``. A host driver: not under ``jit``.

    Args:
        key: ``jax.random.key`` for the power iteration's random start.
        loss_fn: ``loss_fn(params, batch) -> scalar`` mean loss, as for
            :func:`fracsgd.llc.estimate`.
        params: the centre ``w*`` (a pytree).
        data: pytree with the samples on the leading axis (read in chunks).
        step_size: ε > 0 of the SGLD run to check.
        localization: γ ≥ 0.
        nbeta: nβ > 0, or ``None`` / ``"n/log n"`` (default ``n/log n``).
        mask: ``None`` or a 0/1 pytree like ``params`` (0: left out).
        num_iterations: power-iteration steps (≥ 1).

    Returns:
        A :class:`StepSizeBias` (``curvature``, ``x``, ``bias``, ``nbeta``, ``not_minimum``).

    Raises:
        ValueError: a bad argument, named (the batch nβ rule included), or a traced input.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> import fracsgd as fs
        >>> a = jnp.array([1.0, 4.0])  # L_n = ½ Σ a_i w_i²: largest curvature 4
        >>> loss = lambda w, b: 0.5 * jnp.sum(a * w**2) + 0.0 * jnp.sum(b)
        >>> r = fs.llc.step_size_bias(jax.random.key(0), loss, jnp.zeros(2), jnp.zeros((100, 1)),
        ...                           step_size=1e-3, localization=0.0, nbeta=100.0)
        >>> round(r.curvature, 4), round(r.x, 4), round(r.bias, 4)  # x = 1e-3 · 400 / 4
        (4.0, 0.1, 0.1111)
    """
    refuse_traced(
        "fracsgd.llc.step_size_bias",
        key=key,
        params=params,
        data=data,
        mask=mask,
        step_size=step_size,
        localization=localization,
        nbeta=nbeta,
        num_iterations=num_iterations,
    )
    step = _check_pos("step_size", step_size)
    gamma = _check_pos("localization", localization, allow_zero=True)
    iterations = _check_int("num_iterations", num_iterations, 1)
    check_key(key)
    _check_float_leaves(params)
    n = _num_samples(data)
    if isinstance(nbeta, str) and nbeta == "batch/log batch":
        # no batch size here: resolving the rule with B = n would silently give n/log n
        raise ValueError(
            "nbeta='batch/log batch' needs a batch size, which step_size_bias does not take: "
            "pass the number, nbeta=fracsgd.llc.batch_nbeta(batch_size)"
        )
    nb = resolve_nbeta(nbeta, n, n)
    flat, unravel = ravel_pytree(params)
    if mask is None:
        keep = jnp.ones_like(flat)
    else:
        try:  # a mask leaf per params leaf, broadcastable to it (as estimate's)
            full = jax.tree.map(lambda m, p: jnp.broadcast_to(m, jnp.shape(p)), mask, params)
        except (ValueError, TypeError) as err:
            raise ValueError(
                "mask must have the structure of params, each leaf broadcastable to its leaf"
            ) from err
        keep = ravel_pytree(jax.tree.map(lambda m: (m != 0).astype(flat.dtype), full))[0]
        if not bool(jnp.any(keep)):
            raise ValueError("mask leaves no entry of params to sample")
    chunk = _row_chunks(n)[0]

    @jax.jit
    def run(key, flat, keep, data):
        def grad(w):
            return jax.grad(lambda u: _full_loss(loss_fn, unravel(u), data, n, chunk))(w) * keep

        def hvp(v):
            return jax.jvp(grad, (flat,), (v * keep,))[1] * keep

        v0 = jax.random.normal(key, flat.shape, flat.dtype) * keep
        top = _top_eigenvalue(hvp, v0, iterations, jnp.zeros((), flat.dtype))
        # a negative eigenvalue of larger magnitude dominated: iterate on H + |top|·I, whose
        # top eigenvalue is the largest of H shifted (only then: a second full iteration)
        largest = jax.lax.cond(
            top < 0, lambda: _top_eigenvalue(hvp, v0, iterations, jnp.abs(top)), lambda: top
        )
        return top, largest

    top, curvature = (float(v) for v in run(key, flat, keep, data))
    if not math.isfinite(curvature):
        raise ValueError(f"the loss's curvature at params is not finite ({curvature})")
    x = step * (nb * max(curvature, 0.0) + gamma) / 4
    bias = x / (1 - x) if x < 1 else math.inf
    return StepSizeBias(float(curvature), float(x), float(bias), float(nb), bool(top < 0))


__all__ = ["StepSizeBias", "step_size_bias"]
