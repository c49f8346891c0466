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
    """Position of the chain (:func:`init`).

    Attributes:
        position: the chain's current point ``w``, a pytree.
    """

    position: PyTree


class PSGLDState(NamedTuple):
    """Position, the running average of squared gradients and the step count (:func:`psgld_init`).

    Attributes:
        position: the chain's current point ``w``, a pytree.
        square_avg: ``V``, the exponential average of ``g²`` (``g = ∇U``), a pytree like
            ``position``; zeros before the first adapting step.
        step: ``t``, the number of adapting steps so far (``int32`` scalar), for the bias
            correction ``V̂ = V / (1 − α^t)`` (:func:`psgld_preconditioner`).
    """

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
    """``init(position) -> state`` and ``step(key, state, batch) -> (state, info)``: what
    :func:`sgld` and :func:`psgld` return (blackjax's ``SamplingAlgorithm``).

    Attributes:
        init: ``init(position) -> state``.
        step: ``step(key, state, batch) -> (state, SGLDInfo)``, the kernel with the estimator
            and step size fixed.
    """

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
    """SGLD state at ``position``.

    Args:
        position: the starting point, a pytree of floating-point arrays (kept as given, not
            copied).

    Returns:
        ``SGLDState(position)``.

    Examples:
        >>> import jax.numpy as jnp
        >>> init({"w": jnp.ones(2)}).position["w"].tolist()
        [1.0, 1.0]
    """
    return SGLDState(position)


def build_kernel(mask: PyTree | None = None):
    """The SGLD transition ``kernel(key, state, batch, estimator, step_size)``.

    Args:
        mask: optional 0/1 pytree like the position; zero entries receive neither drift nor noise.

    Returns:
        ``kernel(key, state, batch, estimator, step_size, noise_scale=1.0) ->
        (SGLDState, SGLDInfo)``; ``noise_scale=0`` gives the plain gradient step
        ``w − (ε/2)∇U`` exactly.

    Raises:
        ValueError: if ``mask`` holds values other than 0 and 1 (at build time); the kernel
            raises it for a bad key, a non-callable estimator, ``step_size ≤ 0``,
            ``noise_scale < 0`` or a mask unlike the position.

    Examples:
        With the noise off, one step is the gradient step ``w − (ε/2)∇U``; with ``∇U = nβ w``
        (``L = ½|w|²``, ``nβ = 2``, no localisation) and ``ε = 0.1`` that is ``0.9 w``. The
        mask holds the second entry fixed:

        >>> import jax, jax.numpy as jnp
        >>> from fracsgd import sampling
        >>> est = sampling.localized_gradient(lambda w, b: 0.5 * jnp.sum(w**2), jnp.zeros(3),
        ...                                   nbeta=2.0, localization=0.0)
        >>> kernel = sampling.build_kernel(mask=jnp.array([1.0, 0.0, 1.0]))
        >>> w = jnp.array([1.0, 2.0, -3.0])
        >>> state, info = kernel(jax.random.key(0), sampling.init(w), None, est, 0.1,
        ...                      noise_scale=0.0)
        >>> [round(x, 4) for x in state.position.tolist()]
        [0.9, 2.0, -2.7]
        >>> round(float(info.drift_norm), 4), float(info.noise_norm)  # 0.1·|(1, 0, −3)|
        (0.3162, 0.0)

        With the noise on, ``info.noise_norm`` is ``sqrt(ε · d)`` over the ``d = 2`` active
        entries, and the masked entry still does not move:

        >>> state, info = kernel(jax.random.key(0), sampling.init(w), None, est, 0.1)
        >>> round(float(info.noise_norm), 4), float(state.position[1])  # sqrt(0.2)
        (0.4472, 2.0)
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
    """SGLD with a fixed gradient estimator and step size (the top level of blackjax's three;
    the update is the module docstring's ``w ← w − (ε/2) ∇U(w) + sqrt(ε) ξ``).

    Args:
        estimator: ``estimator(position, batch) -> (∇U, L_B)`` (:class:`GradientEstimator`).
        step_size: ``ε > 0``.
        mask: optional 0/1 pytree like the position; zero entries receive neither drift nor noise.

    Returns:
        A :class:`SamplingAlgorithm`: ``init`` is :func:`init`; ``step(key, state, batch)`` is
        :func:`build_kernel`'s kernel with ``estimator`` and ``step_size`` fixed and the noise
        on.

    Raises:
        ValueError: if ``step_size ≤ 0`` or ``mask`` holds values other than 0 and 1.

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

        The info reads the step's loss ``½|w|² = 1.5`` at the start, the drift's norm
        ``(ε/2)|∇U| = 0.05·sqrt(3)`` and the noise's root-mean-square norm ``sqrt(ε d)``:

        >>> float(info.loss), round(float(info.drift_norm), 4), round(float(info.noise_norm), 4)
        (1.5, 0.0866, 0.5477)

        The same key gives the same step (bitwise):

        >>> again, _ = alg.step(jax.random.key(0), alg.init(jnp.ones(3)), None)
        >>> bool(jnp.all(again.position == state.position))
        True
    """
    kernel = build_kernel(mask)
    concrete_number("step_size", step_size, lo=0.0, lo_open=True)

    def step(key: PRNGKey, state: SGLDState, batch: Any):
        return kernel(key, state, batch, estimator, step_size)

    return SamplingAlgorithm(init, step)


def psgld_init(position: PyTree) -> PSGLDState:
    """pSGLD state at ``position``: ``V = 0`` and no steps taken.

    Args:
        position: the starting point, a pytree of floating-point arrays.

    Returns:
        ``PSGLDState(position, zeros like position, int32 0)``; its preconditioner is NaN until
        a step with ``adapt=True`` (:func:`psgld_preconditioner`).

    Examples:
        >>> import jax.numpy as jnp
        >>> state = psgld_init(jnp.ones(2))
        >>> state.square_avg.tolist(), int(state.step), state.step.dtype
        ([0.0, 0.0], 0, dtype('int32'))
    """
    return PSGLDState(position, jax.tree.map(jnp.zeros_like, position), jnp.zeros((), jnp.int32))


def psgld_preconditioner(state: PSGLDState, *, delta: float = 0.1, alpha: float = 0.99) -> PyTree:
    """``G = 1 / (δ + sqrt(V̂))`` of a pSGLD state, ``V̂ = V / (1 − α^t)`` (module docstring); the
    preconditioner a step with ``adapt=False`` uses. NaN entries before the first adapting step
    (``t = 0``: no gradient seen yet).

    Source: the RMSprop preconditioner of pSGLD, ``G = diag(1 ⊘ (λ1 + sqrt(V)))`` with
    ``V ← αV + (1 − α) ḡ ⊙ ḡ`` (Li, Chen, Carlson, Carin, "Preconditioned Stochastic Gradient
    Langevin Dynamics for Deep Neural Networks", AAAI 2016, arXiv:1512.07666, Algorithm 1);
    their ``λ`` is ``delta`` here. Two choices are fracsgd's, not the paper's: the Adam-style
    bias correction ``V̂`` (Kingma & Ba 2015), and ``ḡ`` = ``∇U``, the gradient of the
    localised tempered potential (:func:`localize`). ``delta`` and ``alpha`` must be the
    kernel's (:func:`build_psgld_kernel`); they are not stored in the state.

    Args:
        state: a :class:`PSGLDState` (``square_avg`` = ``V``, ``step`` = ``t``).
        delta: ``δ > 0``; ``G ≤ 1/δ``.
        alpha: the decay ``α`` of the squared-gradient average.

    Returns:
        ``G``, a pytree like ``state.square_avg`` (float32 leaves for float32 ``V``).

    Examples:
        After two adapting steps with gradients ``g₁ = 3`` and ``g₂ = 4`` (``α = 0.5``),
        ``V = 0.5·(0.5·9) + 0.5·16 = 10.25`` and ``V̂ = V / (1 − 0.25) = 13.667``, so
        ``G = 1 / (0.1 + 3.6968) = 0.2634``:

        >>> import jax.numpy as jnp
        >>> state = PSGLDState(jnp.zeros(1), jnp.array([10.25]), jnp.int32(2))
        >>> [round(g, 4) for g in psgld_preconditioner(state, delta=0.1, alpha=0.5).tolist()]
        [0.2634]

        A fresh state has seen no gradient: its ``G`` is NaN.

        >>> bool(jnp.isnan(psgld_preconditioner(psgld_init(jnp.zeros(1)))[0]))
        True
    """
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
        >>> G = sampling.psgld_preconditioner(state)
        >>> round(float(G[0]), 5)  # V̂ = g² = 100²: G = 1 / (0.1 + 100)
        0.00999
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
    (use :func:`build_psgld_kernel` with ``adapt=False`` to sample with a frozen ``G``).

    The update is the module docstring's (Li et al. 2016, with fracsgd's bias correction and
    without the ``Γ`` term; :func:`psgld_preconditioner`).

    Args:
        estimator: ``estimator(position, batch) -> (∇U, L_B)`` (:class:`GradientEstimator`).
        step_size: ``ε > 0``.
        mask: optional 0/1 pytree like the position; zero entries receive neither drift nor noise.
        alpha: decay of the squared-gradient average, in ``[0, 1)``.
        delta: ``δ > 0`` in ``G = 1 / (δ + sqrt(V̂))``.

    Returns:
        A :class:`SamplingAlgorithm`: ``init`` is :func:`psgld_init`; ``step(key, state,
        batch)`` is :func:`build_psgld_kernel`'s kernel with ``adapt=True`` and the noise on.

    Raises:
        ValueError: if ``step_size ≤ 0``, ``alpha`` is outside ``[0, 1)``, ``delta ≤ 0`` or
            ``mask`` holds values other than 0 and 1.

    Examples:
        The first step folds ``g²`` into ``V = (1 − α) g²`` and, bias-corrected, ``V̂ = g²``:
        with ``∇U = 100 w`` at ``w = (1, 1)`` the preconditioner is ``1 / (0.1 + 100)``.

        >>> import jax, jax.numpy as jnp
        >>> from fracsgd import sampling
        >>> est = sampling.localized_gradient(lambda w, b: 0.5 * jnp.sum(w**2), jnp.zeros(2),
        ...                                   nbeta=100.0, localization=0.0)
        >>> alg = sampling.psgld(est, step_size=1e-3)
        >>> state, info = alg.step(jax.random.key(0), alg.init(jnp.ones(2)), None)
        >>> int(state.step), [round(v, 2) for v in state.square_avg.tolist()]  # 0.01 · 100²
        (1, [100.0, 100.0])
        >>> G = sampling.psgld_preconditioner(state)
        >>> [round(g, 5) for g in G.tolist()]  # 1 / 100.1
        [0.00999, 0.00999]
        >>> round(float(info.noise_norm), 5)  # sqrt(ε Σ G) = sqrt(1e-3 · 2 / 100.1)
        0.00447
    """
    kernel = build_psgld_kernel(mask, alpha=alpha, delta=delta)
    concrete_number("step_size", step_size, lo=0.0, lo_open=True)

    def step(key: PRNGKey, state: PSGLDState, batch: Any):
        return kernel(key, state, batch, estimator, step_size)

    return SamplingAlgorithm(psgld_init, step)
