"""L1 discretisation of the Caputo derivative on uniform and graded meshes (theory.md §4).

Caputo derivative of order ``0 < α ≤ 1`` (with ``f'(τ)`` inside the integral — the paper
prints ``f'(t)``)::

    D_t^α u(t) = 1/Γ(1−α) ∫_0^t u'(τ) (t − τ)^{−α} dτ

L1 scheme (Lin & Xu 2007; Stynes et al. 2017 for graded meshes): on a mesh
``0 = t_0 < t_1 < … < t_N``, ``u`` is piecewise linear, so::

    D^α u(t_n) ≈ Σ_{k=1}^{n} a_{n,k} (u^k − u^{k−1}),
    a_{n,k} = [(t_n − t_{k−1})^{1−α} − (t_n − t_k)^{1−α}] / (Γ(2−α) τ_k),  τ_k = t_k − t_{k−1}.

The bracket is computed without cancellation as ``x^{1−α} expm1((1−α) log1p(τ_k/x))`` with
``x = t_n − t_k`` (``τ_n^{1−α}`` when ``k = n``), so strongly graded meshes keep their accuracy.
The weights ``a_{n,k}`` are positive and decrease away from ``k = n``, which makes the implicit
scheme positivity- and mass-preserving for an M-matrix operator with zero column sums. For
``α = 1`` it is backward Euler. Order: 1 at a fixed time on uniform meshes for the typical
``t^α``-singular solutions, ``2 − α`` on the graded mesh ``t_k = T (k/N)^r`` with
``r = (2 − α)/α``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from fracsgd._types import Array


def graded_mesh(t_final: float, num_steps: int, grading: float = 1.0) -> np.ndarray:
    """``t_k = T (k/N)^r``, ``k = 0 … N`` (``r = 1``: uniform; ``r = (2−α)/α``: optimal for the
    L1 scheme on ``t^α``-singular solutions).

    Examples:
        >>> graded_mesh(1.0, 4, 2.0).tolist()
        [0.0, 0.0625, 0.25, 0.5625, 1.0]
    """
    if not float(t_final) > 0:
        raise ValueError(f"t_final must be > 0, got {t_final}")
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps <= 0:
        raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")
    if not float(grading) >= 1:
        raise ValueError(f"grading must be >= 1, got {grading}")
    return float(t_final) * (np.arange(num_steps + 1) / num_steps) ** float(grading)


def l1_weights(ts: Array, n: Array, alpha: Array) -> Array:
    """Row ``n`` of the L1 weights: ``a_{n,k}`` for ``k = 1 … N`` (zero for ``k > n``), shape
    ``(N,)``; ``ts`` has ``N + 1`` points. Differentiable in ``alpha``."""
    t = jnp.asarray(ts)
    k = jnp.arange(1, t.shape[0])
    tau = t[1:] - t[:-1]
    x = t[n] - t[1:]  # t_n − t_k
    safe_x = jnp.where(x > 0, x, 1.0)
    bracket = jnp.where(
        x > 0,
        safe_x ** (1 - alpha) * jnp.expm1((1 - alpha) * jnp.log1p(tau / safe_x)),
        tau ** (1 - alpha),
    )
    w = bracket / (jnp.exp(jax.lax.lgamma(2.0 - alpha)) * tau)
    return jnp.where(k <= n, w, 0.0)
