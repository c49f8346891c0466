"""Gradient estimators: functions of ``(position, minibatch)`` passed into kernels (blackjax
``sgmcmc/gradients.py``). The localisation term lives here, so one kernel serves full-batch
tests and minibatch production."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from fracsgd._checks import check_number
from fracsgd._types import Array, PyTree


class GradientEstimator(Protocol):
    """The type of a gradient estimator: ``estimator(position, batch) -> (∇U, L_B)``.

    Any callable of this shape serves (a plain function or a lambda; the protocol only names it
    for type checkers, as optax's ``TransformUpdateFn`` does). The kernels
    (:func:`build_kernel`, :func:`build_psgld_kernel`) call it once per step and never own
    data: ``batch`` is whatever the caller passes them (``None`` for a full-batch potential).

    Args:
        position: the chain's position, a pytree.
        batch: the minibatch the step uses, passed through unchanged.

    Returns:
        ``(grad_U, loss)``: the gradient of the potential ``U`` at ``position``, a pytree like
        it, and the minibatch loss ``L_B(position)``, a scalar (recorded in
        :class:`SGLDInfo`). :func:`localized_gradient` builds the one of theory.md §2,
        ``∇U = nβ ∇L_B(w) + γ (w − w*)``.

    Examples:
        A hand-written estimator of ``U(w) = ½|w|²`` (no data), in a noise-free SGLD step
        ``w − (ε/2) ∇U`` = ``(1 − ε/2) w``:

        >>> import jax, jax.numpy as jnp
        >>> from fracsgd import sampling
        >>> def estimator(position, batch):
        ...     return position, 0.5 * jnp.sum(position**2)
        >>> kernel = sampling.build_kernel()
        >>> state, info = kernel(jax.random.key(0), sampling.init(jnp.array([2.0, -4.0])), None,
        ...                      estimator, 0.5, noise_scale=0.0)
        >>> state.position.tolist(), float(info.loss)  # (1 − 0.25) w; ½ (4 + 16)
        ([1.5, -3.0], 10.0)
    """

    def __call__(self, position: PyTree, batch: Any, /) -> tuple[PyTree, Array]: ...


def localized_gradient(
    loss_fn: Callable[[PyTree, Any], Array], center: PyTree, *, nbeta: Any, localization: Any
) -> GradientEstimator:
    """Gradient of the localised tempered potential (Lau et al. 2023)::

        U(w) = nβ · L_B(w) + (γ/2) · ||w − w*||²,   ∇U = nβ ∇L_B(w) + γ (w − w*)

    Args:
        loss_fn: ``loss_fn(params, batch) -> scalar`` mean loss over the batch.
        center: ``w*``, the point whose learning coefficient is estimated.
        nbeta: ``nβ`` (traced).
        localization: ``γ`` (traced).

    Returns:
        ``estimator(position, batch) -> (∇U(position), L_B(position))``.

    Examples:
        >>> import jax.numpy as jnp
        >>> est = localized_gradient(lambda w, b: 0.5 * jnp.sum(w**2), jnp.ones(2), nbeta=10.0,
        ...                          localization=1.0)
        >>> g, loss = est(jnp.zeros(2), None)
        >>> g.tolist(), float(loss)
        ([-1.0, -1.0], 0.0)
    """

    if not callable(loss_fn):
        raise ValueError("loss_fn must be callable as loss_fn(params, batch) -> scalar")
    concrete_number("nbeta", nbeta, lo=0.0, lo_open=True)
    concrete_number("localization", localization, lo=0.0)

    def estimator(position: PyTree, batch: Any) -> tuple[PyTree, Array]:
        check_like("position", position, "center", center)
        out = jax.eval_shape(loss_fn, position, batch)  # trace-time only
        if (
            not hasattr(out, "shape")
            or out.shape != ()
            or not jnp.issubdtype(out.dtype, jnp.floating)
        ):
            got = f"shape {out.shape}, dtype {out.dtype}" if hasattr(out, "shape") else repr(out)
            raise ValueError(f"loss_fn must return a floating-point scalar, got {got}")
        loss, grad = jax.value_and_grad(loss_fn)(position, batch)
        return localize(grad, position, center, nbeta=nbeta, localization=localization), loss

    return estimator


def localize(grad: PyTree, position: PyTree, center: PyTree, *, nbeta: Any, localization: Any):
    """``∇U = nβ · grad + γ · (position − center)`` leaf by leaf, from the loss gradient
    ``grad`` at ``position``: what :func:`localized_gradient`'s estimator returns (for code that
    takes the loss gradient itself).

    ``U(w) = nβ L_B(w) + (γ/2)|w − w*|²`` is the potential of the localised tempered posterior
    ``p(w) ∝ exp(−U(w))`` that the LLC estimator samples (theory.md §2; Lau et al., "The Local
    Learning Coefficient: A Singularity-Aware Complexity Measure", arXiv:2308.12108, 2023,
    AISTATS 2025); ``localize`` is its gradient given ``∇L_B``.

    Args:
        grad: ``∇L_B(position)``, a pytree like ``position``.
        position: ``w``, the chain's position.
        center: ``w*``, the localisation centre, a pytree like ``position``.
        nbeta: ``nβ`` (a number or traced scalar).
        localization: ``γ`` (a number or traced scalar).

    Returns:
        ``∇U``, a pytree like ``grad`` in its leaves' dtypes (a float64 ``nβ`` or ``γ`` under
        x64 does not promote float32 leaves).

    Examples:
        >>> import jax.numpy as jnp
        >>> localize(jnp.ones(2), jnp.zeros(2), jnp.ones(2), nbeta=10.0, localization=1.0).tolist()
        [9.0, 9.0]

        It equals the gradient of ``U`` itself (here ``L(w) = ½|w|²``, so ``∇L = w``):

        >>> import jax
        >>> w, c = jnp.array([1.0, -2.0]), jnp.array([0.5, 0.5])
        >>> U = lambda w: 3.0 * 0.5 * jnp.sum(w**2) + 0.5 * 2.0 * jnp.sum((w - c) ** 2)
        >>> localize(w, w, c, nbeta=3.0, localization=2.0).tolist(), jax.grad(U)(w).tolist()
        ([4.0, -11.0], [4.0, -11.0])
    """

    def one(g: Any, w: Any, c: Any) -> Any:  # in the leaf's dtype (float64 scalars under x64)
        dt = jnp.result_type(g)
        return jnp.asarray(nbeta).astype(dt) * g + jnp.asarray(localization).astype(dt) * (w - c)

    return jax.tree.map(one, grad, position, center)


def concrete_number(name: str, value: Any, **bounds: Any) -> None:
    """:func:`~fracsgd._checks.check_number` for concrete values; tracers are data (unchecked)."""
    if not isinstance(value, jax.core.Tracer):
        check_number(name, value, **bounds)


def check_like(name: str, tree: PyTree, ref_name: str, ref: PyTree, floating: bool = True) -> None:
    """Raises ValueError unless ``tree`` has the structure, shapes and a float dtype like ``ref``
    (static information: cheap under jit)."""
    if str(jax.tree.structure(tree)) != str(jax.tree.structure(ref)):
        raise ValueError(
            f"{name} must have the pytree structure of {ref_name}: "
            f"{jax.tree.structure(tree)} vs {jax.tree.structure(ref)}"
        )
    for leaf, r in zip(jax.tree.leaves(tree), jax.tree.leaves(ref), strict=True):
        if jnp.shape(leaf) != jnp.shape(r):
            raise ValueError(
                f"{name} leaves must have the shapes of {ref_name}: {jnp.shape(leaf)} vs "
                f"{jnp.shape(r)}"
            )
        if floating and not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
            raise ValueError(f"{name} must hold floating-point arrays, got {jnp.result_type(leaf)}")


def check_binary_mask(name: str, tree: PyTree) -> None:
    """Raises ValueError unless every concrete leaf of the mask ``tree`` holds only 0 and 1
    (traced leaves are not checked). A mask multiplies the drift and the noise, so a value
    ``m`` other than 0/1 would sample that coordinate at temperature ``m``."""
    for leaf in jax.tree.leaves(tree):
        if isinstance(leaf, jax.core.Tracer):
            continue
        a = np.asarray(leaf)
        if a.dtype.kind not in "biuf":
            raise ValueError(f"{name} must hold numbers 0 and 1, got dtype {a.dtype}")
        if a.size and not np.all((a == 0) | (a == 1)):
            bad = a[(a != 0) & (a != 1)].ravel()[0]
            raise ValueError(
                f"{name} must hold only 0 and 1 (1: sampled, 0: held fixed), got {bad!r}; a "
                "value m would sample that coordinate at temperature m"
            )


def tree_sq_norm(tree: PyTree) -> Array:
    """``Σ leaf²`` over a pytree, each leaf's part as the dot product ``⟨x, x⟩``.

    A dot product rather than ``sum(square(x))``: XLA on CPU rewrites long sum reductions into
    a ``reduce-window`` tree (for accuracy) that ran ~4× slower than the dot kernel on the
    per-step norms of an SGLD chain (784-32-10 MLP, 4 chains, 2-core CPU).

    Args:
        tree: a pytree of real arrays (any shapes; scalars count as one entry).

    Returns:
        The squared Euclidean norm of all entries together, a scalar array (``0.0`` for a tree
        without leaves).

    Examples:
        >>> import jax.numpy as jnp
        >>> float(tree_sq_norm({"w": jnp.array([[1.0, 2.0], [2.0, 0.0]]), "b": jnp.array(4.0)}))
        25.0
        >>> float(tree_sq_norm({}))
        0.0
    """
    parts = [jnp.vdot(jnp.ravel(x), jnp.ravel(x)) for x in jax.tree.leaves(tree)]
    return jnp.sum(jnp.stack(parts)) if parts else jnp.zeros(())
