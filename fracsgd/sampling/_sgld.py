"""Stochastic-gradient Langevin dynamics, in the three levels of blackjax ``sgmcmc/sgld.py``:
``init``, ``build_kernel`` (everything that changes per step is an argument of the kernel) and a
top-level constructor.

Update (Welling & Teh 2011, in the convention of Lau et al. 2023 and devinterp, so step sizes
mean the same as there; theory.md §2)::

    w ← w − (ε/2) · ∇U(w) + sqrt(ε) · ξ,   ξ ~ N(0, I)

with ``∇U`` from a :mod:`gradient estimator <fracsgd.sampling._gradients>`. An optional ``mask``
pytree of 0/1 (e.g. :meth:`fracsgd.models.Model.param_mask`) multiplies drift and noise, so padded
units and BatchNorm statistics never move.

RMSprop-preconditioned SGLD (Li et al. 2016, "pSGLD"), with Adam-style bias correction of the
squared-gradient average (our choice, so the first steps are not over-preconditioned)::

    V ← α V + (1 − α) g²,   V̂ = V / (1 − α^t),   G = 1 / (δ + sqrt(V̂))
    w ← w − (ε/2) · G ⊙ ∇U(w) + sqrt(ε G) ⊙ ξ

where ``g`` is ``∇U``; defaults α = 0.99 and δ = 0.1, devinterp's ``RMSpropPreconditioner``
values (δ caps the preconditioner at ``G ≤ 1/δ``; with a tiny δ a chain started at an exact
minimum, where ``g = 0``, takes ``G = 1/δ`` at its first step and is thrown far from it).

The ``Γ(w)`` correction term of Li et al. is dropped, as is standard, and an *adapting* ``G``
then biases the chain: ``G`` follows the recent gradients, which depend on where the chain is
(measured on ``L_B(w) = ½|w − x̄_B|²`` in 4 dimensions, ``nβ`` = 100, ε = 1e-3: λ̂ 10–30 %
above the true 2, and 80 % above it on the noise-free ``½|w|²``). The kernel's ``adapt=False``
holds ``V`` and the step count fixed, so ``G`` is a constant matrix and the chain is plain
Langevin dynamics with that preconditioner, whose stationary law is exactly ``exp(−U)`` (up to
the ε discretisation), with no Γ term to drop. :func:`fracsgd.llc.estimate` adapts during
burn-in and freezes ``G`` for the draws — the warm-up/sampling split of adaptive MCMC, as Stan
does with its mass matrix.

Noise draws (:mod:`fracsgd.sampling._rng`): the Threefry-2x32-20 hash of jax (bitwise the same
function) written as plain ``uint32`` array code, keyed by the step key's two words, over counters
that run through every element of every leaf, two 32-bit words per hash; each word becomes a
standard normal by ``√2·erfinv(u)`` as in ``jax.random.normal`` (with a more accurate ``erfinv``:
relative error < 3·10⁻⁷ on every possible ``u``). The noise is a large part of an
SGLD step (one normal per parameter per chain-step, against about ``4 · batch`` floating-point
operations per parameter for the gradient). jax lowers its threefry primitive on CPU with rolled
loops (separate small kernels per draw) and, in its default partitionable layout, one hash per word;
the fused form is one loop that XLA merges with the update (measured on a 2-core CPU: 2.0 ns per
normal against 2.4 ns for ``jax.random.normal`` in the original layout and 3.9 ns in the
partitionable one; ``erfinv`` is ~0.9 ns of it; 1.2 ns with the 512-bit vectors the LLC's
programs compile with, :mod:`fracsgd._xla`). The kernels report the noise's root-mean-square
norm rather than summing the draw (:class:`SGLDInfo`), so the draw is used once, by the update.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from fracsgd._checks import check_key, check_number
from fracsgd._types import Array, PRNGKey, PyTree
from fracsgd.sampling._gradients import (
    GradientEstimator,
    check_binary_mask,
    check_like,
    concrete_number,
    tree_sq_norm,
)
from fracsgd.sampling._rng import key_words, normal_like


class SGLDState(NamedTuple):
    """Position of the chain."""

    position: PyTree


class PSGLDState(NamedTuple):
    """Position, the running average of squared gradients and the step count."""

    position: PyTree
    square_avg: PyTree
    step: Array


class SGLDInfo(NamedTuple):
    """Per-step diagnostics (stacked by ``lax.scan``; never part of the carry).

    Attributes:
        loss: minibatch loss ``L_B`` at the position *before* the step.
        drift_norm: ``||(ε/2) ∇U||`` (masked, preconditioned), as drawn.
        noise_norm: the root-mean-square norm of the injected noise,
            ``sqrt(E||sqrt(ε) ξ||²) = sqrt(ε · d)`` over the ``d`` active (unmasked) entries, times
            ``noise_scale``; pSGLD: ``sqrt(ε Σ G)`` over active entries. Not the realized norm
            of this step's draw, which differs from it by a relative ``O(1/sqrt(2d))``: summing
            the draw would cost a pass over the parameters every step and keep the noise from
            fusing into the update.
    """

    loss: Array
    drift_norm: Array
    noise_norm: Array


class SamplingAlgorithm(NamedTuple):
    """``init(position) -> state`` and ``step(key, state, batch) -> (state, info)``."""

    init: Callable[..., Any]
    step: Callable[..., Any]


def _noise_like(key: PRNGKey, tree: PyTree) -> PyTree:
    """Standard normals like ``tree``: Threefry-2x32 under the key's words, written as fusible
    array code, then ``√2·erfinv(u)`` (:mod:`fracsgd.sampling._rng`, module docstring)."""
    return normal_like(key_words(key), 0, tree)


def _masked(tree: PyTree, mask: PyTree | None) -> PyTree:
    """``tree`` with the entries where ``mask`` is 0 set to 0, in ``tree``'s dtypes: a select,
    not a product, so an inf or NaN gradient there stays out (0·inf is NaN) and a float64 mask
    under x64 leaves float32 leaves float32."""
    if mask is None:
        return tree
    return jax.tree.map(lambda t, m: jnp.where(m != 0, t, jnp.zeros_like(t)), tree, mask)


def _times(c: Any, x: Array) -> Array:
    """``c · x`` in ``x``'s dtype (a float64 hyper-parameter under x64 would promote a float32
    leaf, and the sampler's state would change dtype between steps)."""
    return jnp.asarray(c).astype(jnp.result_type(x)) * x


def _num_active(mask: PyTree | None, position: PyTree) -> Array:
    """``Σ m²`` over the mask (the number of entries that move, for a 0/1 mask), or the number of
    entries of ``position`` without one: ``E||m ⊙ ξ||²`` for standard normals ``ξ``."""
    if mask is None:
        return jnp.float32(sum(math.prod(jnp.shape(x)) for x in jax.tree.leaves(position)))
    parts = [jnp.sum(jnp.square(jnp.asarray(m, jnp.float32))) for m in jax.tree.leaves(mask)]
    return jnp.sum(jnp.stack(parts)) if parts else jnp.float32(0.0)


def _check_step(key: Any, state: Any, estimator: Any, step_size: Any, mask: Any) -> None:
    """Argument checks of a kernel call (static information and concrete numbers only)."""
    check_key(key)
    if not callable(estimator):
        raise ValueError("estimator must be callable as estimator(position, batch)")
    concrete_number("step_size", step_size, lo=0.0, lo_open=True)
    if mask is not None:
        check_like("mask", mask, "the position", state.position, floating=False)


def init(position: PyTree) -> SGLDState:
    """SGLD state at ``position``."""
    return SGLDState(position)


def build_kernel(mask: PyTree | None = None):
    """The SGLD transition ``kernel(key, state, batch, estimator, step_size)``.

    Args:
        mask: optional 0/1 pytree like the position; zero entries receive neither drift nor noise.

    Returns:
        ``kernel(key, state, batch, estimator, step_size, noise_scale=1.0) ->
        (SGLDState, SGLDInfo)``; ``noise_scale=0`` gives the plain gradient step
        ``w − (ε/2)∇U`` exactly.
    """
    # the mask's 0/1 check and Σ m² once, here (outside any step loop the kernel runs in); a
    # malformed mask is left to the kernel's argument check, which names it
    if mask is not None:
        check_binary_mask("mask", mask)
    try:
        mask_active = None if mask is None else _num_active(mask, mask)
    except (TypeError, ValueError):
        mask_active = None

    def kernel(
        key: PRNGKey,
        state: SGLDState,
        batch: Any,
        estimator: GradientEstimator,
        step_size: Any,
        noise_scale: Any = 1.0,
    ) -> tuple[SGLDState, SGLDInfo]:
        _check_step(key, state, estimator, step_size, mask)
        concrete_number("noise_scale", noise_scale, lo=0.0)
        grad, loss = estimator(state.position, batch)
        drift = _masked(jax.tree.map(lambda g: _times(0.5 * step_size, g), grad), mask)
        scale = noise_scale * jnp.sqrt(step_size)
        noise = _masked(
            jax.tree.map(lambda z: _times(scale, z), _noise_like(key, state.position)),
            mask,
        )
        position = jax.tree.map(lambda w, d, z: w - d + z, state.position, drift, noise)
        active = _num_active(mask, state.position) if mask_active is None else mask_active
        noise_rms = scale * jnp.sqrt(active)
        info = SGLDInfo(loss, jnp.sqrt(tree_sq_norm(drift)), noise_rms)
        return SGLDState(position), info

    return kernel


def sgld(
    estimator: GradientEstimator, step_size: Any, mask: PyTree | None = None
) -> SamplingAlgorithm:
    """SGLD with a fixed gradient estimator and step size.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from fracsgd import sampling
        >>> est = sampling.localized_gradient(lambda w, b: 0.5 * jnp.sum(w**2), jnp.zeros(3),
        ...                                   nbeta=1.0, localization=0.0)
        >>> alg = sampling.sgld(est, step_size=0.1)
        >>> state = alg.init(jnp.ones(3))
        >>> state, info = alg.step(jax.random.key(0), state, None)
        >>> state.position.shape
        (3,)
    """
    kernel = build_kernel(mask)
    concrete_number("step_size", step_size, lo=0.0, lo_open=True)

    def step(key: PRNGKey, state: SGLDState, batch: Any):
        return kernel(key, state, batch, estimator, step_size)

    return SamplingAlgorithm(init, step)


def psgld_init(position: PyTree) -> PSGLDState:
    """pSGLD state at ``position``."""
    return PSGLDState(position, jax.tree.map(jnp.zeros_like, position), jnp.zeros((), jnp.int32))


def psgld_preconditioner(state: PSGLDState, *, delta: float = 0.1, alpha: float = 0.99) -> PyTree:
    """``G = 1 / (δ + sqrt(V̂))`` of a pSGLD state, ``V̂ = V / (1 − α^t)`` (module docstring); the
    preconditioner a step with ``adapt=False`` uses. NaN entries before the first adapting step
    (``t = 0``: no gradient seen yet)."""
    correction = 1 - alpha ** jnp.asarray(state.step).astype(jnp.float32)
    return jax.tree.map(lambda v: 1.0 / (delta + jnp.sqrt(v / correction)), state.square_avg)


def build_psgld_kernel(mask: PyTree | None = None, *, alpha: float = 0.99, delta: float = 0.1):
    """The RMSprop-preconditioned SGLD transition (module docstring).

    Args:
        mask: optional 0/1 pytree like the position; zero entries receive neither drift nor noise.
        alpha: decay of the squared-gradient average, in ``[0, 1)``.
        delta: ``δ > 0`` in ``G = 1 / (δ + sqrt(V̂))``; ``G ≤ 1/δ``.

    Returns:
        ``kernel(key, state, batch, estimator, step_size, adapt=True, noise_scale=1.0) ->
        (PSGLDState, SGLDInfo)``.
        With ``adapt=True`` (a Python bool) the step first folds ``g²`` into ``V`` and counts
        itself; with ``adapt=False`` it uses the state's ``G`` unchanged
        (:func:`psgld_preconditioner`; the state must have adapted at least once) and returns
        ``V`` and the count as they were. ``noise_scale`` multiplies the noise as in
        :func:`build_kernel`: ``0`` gives the preconditioned gradient step ``w − (ε/2) G ∇U``
        exactly.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from fracsgd import sampling
        >>> est = sampling.localized_gradient(lambda w, b: 0.5 * jnp.sum(w**2), jnp.zeros(2),
        ...                                   nbeta=100.0, localization=0.0)
        >>> kernel = sampling.build_psgld_kernel()
        >>> state = sampling.psgld_init(jnp.ones(2))
        >>> state, _ = kernel(jax.random.key(0), state, None, est, 1e-3)  # adapts: g = 100
        >>> G = sampling.psgld_preconditioner(state)   # 1 / (0.1 + 100)
        >>> frozen, _ = kernel(jax.random.key(1), state, None, est, 1e-3, adapt=False)
        >>> bool(frozen.step == state.step), bool(jnp.all(frozen.square_avg == state.square_avg))
        (True, True)
    """

    alpha = check_number("alpha", alpha, lo=0.0, hi=1.0, hi_open=True)
    delta = check_number("delta", delta, lo=0.0, lo_open=True)
    if mask is not None:
        check_binary_mask("mask", mask)

    def kernel(
        key: PRNGKey,
        state: PSGLDState,
        batch: Any,
        estimator: GradientEstimator,
        step_size: Any,
        adapt: bool = True,
        noise_scale: Any = 1.0,
    ) -> tuple[PSGLDState, SGLDInfo]:
        _check_step(key, state, estimator, step_size, mask)
        if not isinstance(adapt, bool):
            raise ValueError(f"adapt must be a Python bool, got {type(adapt).__name__}")
        concrete_number("noise_scale", noise_scale, lo=0.0)
        grad, loss = estimator(state.position, batch)
        if not adapt and not isinstance(state.step, jax.core.Tracer) and int(state.step) == 0:
            raise ValueError(
                "adapt=False needs a state that has adapted at least once (step > 0): a fresh "
                "state has no preconditioner yet (its G is NaN); take a step with adapt=True "
                "first"
            )
        if adapt:
            square_avg = jax.tree.map(
                lambda v, g: alpha * v + (1 - alpha) * g * g, state.square_avg, grad
            )
            new = PSGLDState(state.position, square_avg, state.step + 1)
        else:
            new = state
        precond = psgld_preconditioner(new, delta=delta, alpha=alpha)
        drift = _masked(
            jax.tree.map(lambda g, p: _times(0.5 * step_size, p) * g, grad, precond), mask
        )
        noise = _masked(
            jax.tree.map(
                lambda z, p: _times(noise_scale, jnp.sqrt(_times(step_size, p))) * z,
                _noise_like(key, state.position),
                precond,
            ),
            mask,
        )
        position = jax.tree.map(lambda w, d, z: w - d + z, state.position, drift, noise)
        active = _masked(_masked(precond, mask), mask)  # m² G
        noise_rms = noise_scale * jnp.sqrt(
            step_size * sum(jnp.sum(p) for p in jax.tree.leaves(active))
        )
        info = SGLDInfo(loss, jnp.sqrt(tree_sq_norm(drift)), noise_rms)
        return new._replace(position=position), info

    return kernel


def psgld(
    estimator: GradientEstimator,
    step_size: Any,
    mask: PyTree | None = None,
    *,
    alpha: float = 0.99,
    delta: float = 0.1,
) -> SamplingAlgorithm:
    """RMSprop-preconditioned SGLD with a fixed estimator and step size; every step adapts
    (use :func:`build_psgld_kernel` with ``adapt=False`` to sample with a frozen ``G``)."""
    kernel = build_psgld_kernel(mask, alpha=alpha, delta=delta)
    concrete_number("step_size", step_size, lo=0.0, lo_open=True)

    def step(key: PRNGKey, state: PSGLDState, batch: Any):
        return kernel(key, state, batch, estimator, step_size)

    return SamplingAlgorithm(psgld_init, step)
