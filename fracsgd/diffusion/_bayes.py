"""The tempered-posterior comparison of v1 Corollary 3.1 [v2 Cor. 3.2] (theory.md §5).

With ``γ = 1`` and the log-loss, SGD's stationary law ``p_s ∝ exp(−L_m/D_ξ)`` raised to the power
``m·D_ξ`` is the likelihood, so ``p(w | X_m) = ρ(w) p_s(w)^{m D_ξ} / Z``: SGD is a Bayesian
sampler tempered by accessibility. For another ``γ`` the steady state ``p_s ∝ exp(−γL_m/D_ξ)``
(v1 Lemma 3.1) needs the power ``m·D_ξ/γ`` (``gamma``, default 1 as in the corollary). The
experiment compares *cluster masses*:

1. Many SGD solutions are clustered **in function space** (their outputs on a probe set; the
   default because parameter space has permutation and rescaling symmetries that split one
   function into many clusters) by k-means (k-means++ initialisation, explicit key).
2. ``q_c``: the fraction of SGD solutions in cluster ``c``.
3. Tempered SGD masses: ``q̃_c ∝ q_c^{m·D_ξ,c/γ}`` — the corollary applied at the level of clusters,
   treating each cluster's SGD mass as its density level. ``m`` is the number of training
   samples (the ``m`` of ``L_m``; an argument, so other readings can be tested), and
   ``D_ξ,c = ξ^{2 − 2λ_c/d_s,c}`` uses the cluster's mean LLC ``λ_c`` and mean spectral
   dimension ``d_s,c`` over its SGD solutions (v1 Definition 3.1).
4. ``p_c``: the fraction of SGLD posterior samples assigned to each SGD cluster (nearest
   centroid).
5. KL, Jensen–Shannon and Wasserstein-1 (ground metric: distances between cluster centroids)
   between ``p`` and ``q̃``, scanned over ξ; the ξ with the smallest KL is reported.

The tempered masses are computed in log space and KL is taken from their logarithms: with
``m`` in the hundreds a minority cluster's ``q̃`` is far below any float's resolution
(``0.1^{800}``), and a KL of clamped masses read the same value at every ξ. An exponent so
large that ``e·log q`` overflows gives the limit (all mass on the cluster(s) with the smallest
``e_c·(−log q_c)``).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike

from fracsgd._checks import check_int, check_key, check_number, real_array, refuse_traced
from fracsgd._types import PRNGKey
from fracsgd.diffusion._dimensions import _power_of_two_scale


class Clustering(NamedTuple):
    """k-means result: ``labels (N,)``, ``centroids (k, F)``, ``inertia``."""

    labels: np.ndarray
    centroids: np.ndarray
    inertia: float


@functools.partial(jax.jit, static_argnums=(2, 3))
def _kmeans_runs(
    keys: jax.Array, x: jax.Array, k: int, iterations: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One k-means++ start and ``iterations`` Lloyd steps per key (vmapped): centroids
    ``(R, k, F)``, labels ``(R, N)`` and inertia ``(R,)``. Compiled once per shape, ``k`` and
    ``iterations`` (the points are an argument, not a constant of a fresh closure: kmeans
    recompiled on every call)."""

    def sq_dist(c):
        return jnp.sum(jnp.square(x[:, None, :] - c[None, :, :]), axis=-1)

    def one(key):
        def pick(carry, kk):
            cents, i = carry
            d = jnp.min(jnp.where(jnp.arange(k)[None, :] < i, sq_dist(cents), jnp.inf), axis=1)
            d = jnp.where(i == 0, jnp.ones_like(d), d)
            j = jax.random.choice(kk, x.shape[0], p=d / jnp.sum(d))
            return (cents.at[i].set(x[j]), i + 1), None

        (cents, _), _ = jax.lax.scan(
            pick, (jnp.zeros((k, x.shape[1])), 0), jax.random.split(key, k)
        )

        def lloyd(cents, _):
            lab = jnp.argmin(sq_dist(cents), axis=1)
            onehot = jax.nn.one_hot(lab, k)
            counts = onehot.sum(0)
            new = (onehot.T @ x) / jnp.maximum(counts, 1)[:, None]
            return jnp.where(counts[:, None] > 0, new, cents), None

        cents, _ = jax.lax.scan(lloyd, cents, None, length=iterations)
        d = sq_dist(cents)
        return cents, jnp.argmin(d, axis=1), jnp.sum(jnp.min(d, axis=1))

    return jax.vmap(one)(keys)


def kmeans(
    key: PRNGKey, points: ArrayLike, num_clusters: int, *, iterations: int = 100, restarts: int = 8
) -> Clustering:
    """k-means (Lloyd) with k-means++ initialisation; the best of ``restarts`` runs (vmapped).

    Examples:
        >>> import jax, numpy as np
        >>> x = np.concatenate([np.zeros((5, 2)), np.ones((7, 2)) * 10])
        >>> sorted(np.bincount(kmeans(jax.random.key(0), x, 2).labels).tolist())
        [5, 7]
    """
    refuse_traced("fracsgd.diffusion.kmeans", key=key, points=points)
    check_key(key)
    x64 = real_array("points", points, finite=True)
    if x64.ndim != 2 or 0 in x64.shape:
        raise ValueError(f"points must have shape (N >= 1, features >= 1), got {x64.shape}")
    # unit-free in float32: centred in float64 and scaled by a power of two (exact), so tiny or
    # huge units neither underflow the k-means++ weights nor overflow the distances
    shift = x64.mean(axis=0)
    scale = _power_of_two_scale(float(np.max(np.abs(x64 - shift))), x64.dtype)
    x = jnp.asarray((x64 - shift) / scale, jnp.float32)
    if (
        isinstance(num_clusters, bool)
        or not isinstance(num_clusters, int | np.integer)
        or not (1 <= num_clusters <= x.shape[0])
    ):
        raise ValueError(f"num_clusters must be an integer in [1, N = {x.shape[0]}]")
    k = int(num_clusters)
    distinct = np.unique(np.asarray(x), axis=0).shape[0]  # as clustered (float32)
    if k > distinct:  # k-means++ would pick a point twice and leave a cluster empty
        raise ValueError(
            f"num_clusters = {k} exceeds the {distinct} distinct points: at most {distinct} "
            "clusters can be non-empty"
        )
    iterations = check_int("iterations", iterations, 0)
    restarts = check_int("restarts", restarts, 1)

    cents, labels, inertia = _kmeans_runs(jax.random.split(key, restarts), x, k, iterations)
    best = int(jnp.argmin(inertia))
    centroids = np.asarray(cents[best], np.float64) * scale + shift
    return Clustering(np.asarray(labels[best]), centroids, float(inertia[best]) * scale**2)


def assign(points: ArrayLike, centroids: ArrayLike) -> np.ndarray:
    """Index of the nearest centroid for each point: ``points (N, F)``, ``centroids (k ≥ 1, F)``,
    both finite.

    Args:
        points: ``(N, F)`` points (e.g. SGLD samples' outputs on the probe set).
        centroids: ``(k, F)`` centroids (e.g. :attr:`Clustering.centroids`).

    Returns:
        ``(N,)`` integer labels in ``[0, k)`` (Euclidean distance; ties go to the lower index).

    Examples:
        >>> assign([[0.1, 0.0], [0.9, 1.0], [5.0, 5.0]], [[0.0, 0.0], [1.0, 1.0]]).tolist()
        [0, 1, 1]
    """
    refuse_traced("fracsgd.diffusion.assign", points=points, centroids=centroids)
    x = real_array("points", points, finite=True)
    c = real_array("centroids", centroids, finite=True)
    if x.ndim != 2:
        raise ValueError(f"points must have shape (N, features), got {x.shape}")
    if c.ndim != 2 or c.shape[0] == 0 or c.shape[1] != x.shape[1]:
        raise ValueError(
            f"centroids must have shape (k >= 1, {x.shape[1]}) to match points' features, "
            f"got {c.shape}"
        )
    return np.argmin(((x[:, None, :] - c[None]) ** 2).sum(-1), axis=1)


def masses(labels: ArrayLike, num_clusters: int) -> np.ndarray:
    """Fraction of points per cluster, ``(num_clusters,)``; labels in ``[0, num_clusters)``.

    Args:
        labels: 1-D non-negative integer labels.
        num_clusters: number of clusters, ``≥ 1`` (empty ones get mass 0).

    Returns:
        ``(num_clusters,)`` fractions summing to 1 (all 0 for no labels).

    Examples:
        >>> masses([0, 2, 2, 1], 4).tolist()
        [0.25, 0.25, 0.5, 0.0]
    """
    refuse_traced("fracsgd.diffusion.masses", labels=labels)
    num_clusters = check_int("num_clusters", num_clusters, 1)
    lab_f = real_array("labels", labels)
    lab = np.nan_to_num(lab_f).astype(np.int64)
    if lab.ndim != 1 or np.any(lab != lab_f) or np.any(lab < 0):
        raise ValueError("labels must be a 1-D array of non-negative integer cluster labels")
    if lab.size and lab.max() >= num_clusters:  # dropping them would lose mass silently
        raise ValueError(
            f"labels must be below num_clusters = {num_clusters}, found label {int(lab.max())}"
        )
    return np.bincount(lab, minlength=num_clusters)[:num_clusters] / max(lab.size, 1)


def tempered_masses(sgd_masses: ArrayLike, exponents: ArrayLike) -> np.ndarray:
    """``q̃_c ∝ q_c^{e_c}`` of the normalised masses ``q = sgd_masses / Σ sgd_masses``
    (counts or fractions give the same result), ``e_c ≥ 0``; computed in log space
    (:func:`tempered_log_masses`), empty clusters keep zero mass.

    Examples:
        >>> tempered_masses([50, 25, 25], 2.0).round(12).tolist()  # ∝ (1/4, 1/16, 1/16)
        [0.666666666667, 0.166666666667, 0.166666666667]
    """
    refuse_traced("fracsgd.diffusion.tempered_masses", sgd_masses=sgd_masses, exponents=exponents)
    return np.exp(tempered_log_masses(sgd_masses, exponents))


def tempered_log_masses(sgd_masses: ArrayLike, exponents: ArrayLike) -> np.ndarray:
    """``log q̃_c`` of :func:`tempered_masses` (``−inf`` for empty clusters): exact where the
    masses themselves underflow (``0.1^{800}`` is ``−1842.07`` here, 0 in float64). An
    exponent so large that ``e_c log q_c`` overflows gives the limit: the mass goes to the
    cluster(s) with the smallest ``e_c·(−log q_c)``, shared equally when tied (all
    exponents infinite: the largest ``q_c``).

    Args:
        sgd_masses: 1-D non-negative masses (counts or fractions) with a positive total.
        exponents: ``e_c ≥ 0`` (``+inf`` allowed), broadcast to ``sgd_masses``' shape.

    Returns:
        ``log q̃_c``, normalised (``logsumexp = 0``), ``−inf`` for empty clusters.

    Examples:
        >>> # q = (0.9, 0.1), e = 800: log q̃₂ = 800·log(0.1/0.9); q̃₂ itself underflows
        >>> tempered_log_masses([9, 1], 800.0).round(2).tolist()
        [0.0, -1757.78]
        >>> tempered_masses([9, 1], 800.0).tolist()
        [1.0, 0.0]
        >>> tempered_log_masses([9, 1], 0.0).round(6).tolist()  # e = 0: uniform, log ½
        [-0.693147, -0.693147]
    """
    refuse_traced(
        "fracsgd.diffusion.tempered_log_masses", sgd_masses=sgd_masses, exponents=exponents
    )
    q = _distribution("sgd_masses", sgd_masses)
    e = real_array("exponents", exponents)
    if np.any(np.isnan(e)) or np.any(e < 0):
        raise ValueError("exponents must be >= 0 (+inf allowed: the limit), got a NaN or < 0")
    try:
        e = np.broadcast_to(e, q.shape)
    except ValueError as err:
        raise ValueError(f"exponents must broadcast to sgd_masses' shape {q.shape}") from err
    pos = q > 0
    if pos.sum() == 1:  # one cluster holds every solution: q^e keeps it so for any e
        return np.where(pos, 0.0, -np.inf)
    # log of the normalised masses without forming q / Σq (Σq can overflow, and q_c/Σq can
    # round to 1 when the others are below float64's resolution relative to it)
    top = q.max()
    logq = np.where(pos, np.log(np.where(pos, q / top, 1.0)), 0.0) - math.log(np.sum(q / top))
    logq = np.minimum(logq, -np.finfo(np.float64).tiny)  # < 0 on the non-empty clusters
    with np.errstate(over="ignore", invalid="ignore"):
        a = np.where(pos, e * logq, -np.inf)  # e = 0: 0 (uniform over non-empty clusters)
    finite = np.isfinite(a)
    if finite.any():
        a = a - a[finite].max()
        return a - math.log(float(np.sum(np.exp(a))))
    # every e_c log q_c overflowed: compare the logarithms of e_c·(−log q_c)
    with np.errstate(divide="ignore"):
        rate = np.where(pos, np.log(e) + np.log(-logq), np.inf)
    if not np.isfinite(rate[pos]).any():  # all exponents infinite: the largest q wins
        rate = np.where(pos, -logq, np.inf)
    best = rate == rate.min()
    return np.where(best, -math.log(int(best.sum())), -np.inf)


def _distribution(name: str, value: ArrayLike) -> np.ndarray:
    """A 1-D array of finite non-negative masses with a positive total."""
    a = real_array(name, value, finite=True)
    if a.ndim != 1 or np.any(a < 0) or not np.any(a > 0):  # max, not sum: it cannot overflow
        raise ValueError(f"{name} must be a 1-D array of non-negative masses with positive sum")
    return a


def _normalised(a: np.ndarray) -> np.ndarray:
    """``a / Σa`` for finite non-negative masses, without overflowing the sum."""
    a = a / a.max()
    return a / a.sum()


def _pair(p: ArrayLike, q: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Two distributions over the same bins, each normalised to total mass 1."""
    p, q = _distribution("p", p), _distribution("q", q)
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same shape, got {p.shape} and {q.shape}")
    return _normalised(p), _normalised(q)


def kl_divergence(p: ArrayLike, q: ArrayLike, eps: float = 1e-12) -> float:
    """``KL(p ‖ q) = Σ p log(p/q)`` of the normalised masses. ``eps`` guards empty bins of
    ``q`` only: a bin with ``p > 0`` and ``q = 0`` contributes ``p log(p/eps)``, finite, instead
    of ``+inf``; a bin with ``0 < q < eps`` counts with its own ``q`` (``0 < eps < 1``).
    Tempered masses that underflow to 0 need their logarithms: the comparison uses
    :func:`tempered_log_masses`.

    Source: the relative entropy of Kullback & Leibler (1951, Ann. Math. Statist. 22, 79; Cover
    & Thomas, "Elements of Information Theory", 2nd ed. 2006, §2.3), natural log; one of the
    three distances of the tempered-posterior comparison (theory.md §5).

    Examples:
        >>> round(kl_divergence([0.5, 0.5], [1 - 1e-20, 1e-20]), 4)  # 0.5 log(0.5/1e-20) + …
        22.3327
    """
    refuse_traced("fracsgd.diffusion.kl_divergence", p=p, q=q)
    eps = check_number("eps", eps, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    p, q = _pair(p, q)
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / np.where(q[mask] > 0, q[mask], eps))))


def _kl_from_log(p: np.ndarray, log_q: np.ndarray, eps: float = 1e-12) -> float:
    """:func:`kl_divergence` of normalised ``p`` against masses given by their logarithms
    (``−inf`` for an empty bin: guarded by ``eps`` as there)."""
    mask = p > 0
    lq = np.where(np.isfinite(log_q[mask]), log_q[mask], math.log(eps))
    return float(np.sum(p[mask] * (np.log(p[mask]) - lq)))


def js_divergence(p: ArrayLike, q: ArrayLike) -> float:
    """Jensen–Shannon divergence (natural log; at most log 2):
    ``½ KL(p ‖ m) + ½ KL(q ‖ m)`` with ``m = (p + q)/2`` of the normalised masses (Lin 1991,
    "Divergence measures based on the Shannon entropy", IEEE Trans. Inf. Theory 37, 145).

    Args:
        p, q: 1-D non-negative masses over the same bins, each with a positive total.

    Returns:
        The divergence, in ``[0, log 2]``.

    Examples:
        >>> import math
        >>> js_divergence([1, 0], [0, 1]) == math.log(2)  # disjoint supports
        True
        >>> js_divergence([1, 2], [2, 4])  # the same distribution, as counts
        0.0
    """
    refuse_traced("fracsgd.diffusion.js_divergence", p=p, q=q)
    p, q = _pair(p, q)
    m = 0.5 * (p + q)
    return 0.5 * kl_divergence(p, m) + 0.5 * kl_divergence(q, m)


def wasserstein(p: ArrayLike, q: ArrayLike, cost: ArrayLike) -> float:
    """Wasserstein-1 between discrete distributions with ground cost matrix ``cost`` (exact
    transport LP, scipy HiGHS): ``min_π Σ_ij π_ij c_ij`` over couplings ``π ≥ 0`` with
    marginals ``p`` and ``q`` (the Kantorovich problem; Villani 2009, "Optimal Transport: Old
    and New", ch. 6).

    Args:
        p, q: ``(k,)`` non-negative masses, each with a positive total (normalised here).
        cost: ``(k, k)`` non-negative ground costs (e.g. distances between centroids).

    Returns:
        The minimal transport cost.

    Examples:
        >>> import numpy as np
        >>> x = np.arange(3.0)  # three bins on a line: W₁ = ∫|F_p − F_q| = ½ + ½
        >>> round(wasserstein([0.5, 0.5, 0], [0, 0.5, 0.5], np.abs(x[:, None] - x)), 6)
        1.0
    """
    from scipy.optimize import linprog

    refuse_traced("fracsgd.diffusion.wasserstein", p=p, q=q, cost=cost)
    p, q = _pair(p, q)
    c = real_array("cost", cost, finite=True)
    k = p.size
    if c.shape != (k, k):
        raise ValueError(f"cost must have shape ({k}, {k}), got {c.shape}")
    if np.any(c < 0):
        raise ValueError("cost must be non-negative (a ground distance between clusters)")
    a_eq = np.zeros((2 * k, k * k))
    for i in range(k):
        a_eq[i, i * k : (i + 1) * k] = 1
        a_eq[k + i, i::k] = 1
    res = linprog(
        c.ravel(),
        A_eq=a_eq,
        b_eq=np.concatenate([p, q / q.sum() * p.sum()]),
        bounds=(0, None),
        method="highs",
    )
    return float(res.fun)


class TemperedComparison(NamedTuple):
    """The ξ scan of the comparison (module docstring).

    Attributes:
        xis: ``(X,)`` scanned coarse-graining lengths.
        kl, js, wasserstein: ``(X,)`` distances between SGLD masses ``p`` and tempered SGD
            masses ``q̃(ξ)``; ``kl_untempered`` etc. compare ``p`` with raw SGD masses ``q``.
        best_xi: the ξ with the smallest KL.
        sgd_masses, sgld_masses: ``q`` and ``p``; ``tempered``: ``(X, k)`` masses ``q̃(ξ)``;
            ``log_tempered``: their logarithms (exact where ``tempered`` underflows to 0; KL is
            computed from them).
        d_xi: ``(X, k)`` per-cluster ``D_ξ``; ``m``: the sample count used; ``gamma``: the
            ``γ`` of the steady state (exponents ``m·D_ξ/γ``).
        clustering: the SGD clustering.
    """

    xis: np.ndarray
    kl: np.ndarray
    js: np.ndarray
    wasserstein: np.ndarray
    kl_untempered: float
    js_untempered: float
    wasserstein_untempered: float
    best_xi: float
    sgd_masses: np.ndarray
    sgld_masses: np.ndarray
    tempered: np.ndarray
    d_xi: np.ndarray
    m: int
    clustering: Clustering
    log_tempered: np.ndarray
    gamma: float


def tempered_posterior_comparison(
    key: PRNGKey,
    sgd_functions: ArrayLike,
    sgld_functions: ArrayLike,
    *,
    num_clusters: int,
    m: int,
    llc: ArrayLike,
    d_s: ArrayLike,
    xis: ArrayLike,
    gamma: float = 1.0,
) -> TemperedComparison:
    """Compare SGLD posterior cluster masses with SGD masses tempered by ``p^{m D_ξ/γ}``.

    Args:
        key: for k-means.
        sgd_functions: ``(M, F)`` each SGD solution's outputs on the probe set (e.g. softmax
            probabilities, flattened).
        sgld_functions: ``(S, F)`` the same for SGLD posterior samples.
        num_clusters: k.
        m: number of training samples (the ``m`` of ``L_m``).
        llc, d_s: ``(M,)`` each SGD solution's λ and ``d_s`` (averaged per cluster).
        xis: ξ values to scan (> 0).
        gamma: the ``γ`` of the steady state ``p_s ∝ exp(−γL_m/D_ξ)`` (> 0; the corollary's
            ``γ = 1`` by default).

    Returns:
        A :class:`TemperedComparison` over ``xis``.

    Examples:
        Two clusters with SGD masses ``q = (¾, ¼)`` and SGLD masses ``p = (0.9, 0.1)``; with
        ``λ = 2``, ``d_s = 1`` the exponent is ``m·D_ξ = m·ξ^{−2}``, and ``q^2 ∝ (0.9, 0.1)``,
        so ``m = 2`` matches exactly at ``ξ = 1``:

        >>> import jax, numpy as np
        >>> sgd = np.repeat([[0.0], [1.0]], [30, 10], axis=0)
        >>> sgld = np.repeat([[0.0], [1.0]], [90, 10], axis=0)
        >>> res = tempered_posterior_comparison(
        ...     jax.random.key(0), sgd, sgld, num_clusters=2, m=2,
        ...     llc=np.full(40, 2.0), d_s=np.ones(40), xis=[0.5, 1.0, 2.0])
        >>> res.best_xi, sorted(res.sgd_masses.tolist()), sorted(res.sgld_masses.tolist())
        (1.0, [0.25, 0.75], [0.1, 0.9])
        >>> res.kl.round(6).tolist(), round(res.kl_untempered, 4)
        ([0.553959, 0.0, 0.185594], 0.0725)
    """
    refuse_traced(
        "fracsgd.diffusion.tempered_posterior_comparison",
        key=key,
        sgd_functions=sgd_functions,
        sgld_functions=sgld_functions,
        llc=llc,
        d_s=d_s,
        xis=xis,
    )
    gamma = check_number("gamma", gamma, lo=0.0, lo_open=True)
    f_sgd = real_array("sgd_functions", sgd_functions, finite=True)
    f_post = real_array("sgld_functions", sgld_functions, finite=True)
    if f_sgd.ndim != 2 or f_post.ndim != 2 or f_sgd.shape[1] != f_post.shape[1]:
        raise ValueError("sgd_functions and sgld_functions must be (N, F) with the same F")
    if f_post.shape[0] == 0:
        raise ValueError("sgld_functions must hold at least one posterior sample")
    lam, ds = real_array("llc", llc, finite=True), real_array("d_s", d_s, finite=True)
    if lam.shape != (f_sgd.shape[0],) or ds.shape != lam.shape:
        raise ValueError("llc and d_s need one value per SGD solution")
    if np.any(~(ds > 0)):
        raise ValueError("d_s must be > 0")
    xs = real_array("xis", xis, finite=True)
    if xs.ndim != 1 or xs.size == 0 or np.any(~(xs > 0)):
        raise ValueError("xis must be a non-empty 1-D array of positive values")
    m = check_int("m", m, 1)
    cl = kmeans(key, f_sgd, num_clusters)
    q = masses(cl.labels, num_clusters)
    p = masses(assign(f_post, cl.centroids), num_clusters)
    cost = np.sqrt(((cl.centroids[:, None] - cl.centroids[None]) ** 2).sum(-1))
    lam_c = np.array(
        [
            lam[cl.labels == c].mean() if (cl.labels == c).any() else np.nan
            for c in range(num_clusters)
        ]
    )
    ds_c = np.array(
        [
            ds[cl.labels == c].mean() if (cl.labels == c).any() else np.nan
            for c in range(num_clusters)
        ]
    )
    with np.errstate(over="ignore"):  # D_ξ = inf (d_s → 0): the tempering's limit
        d_xi = xs[:, None] ** (2 - 2 * lam_c[None, :] / ds_c[None, :])
        exponents = np.where(np.isnan(d_xi), 1.0, m * d_xi / gamma)  # NaN: an empty cluster
    log_tempered = np.stack([tempered_log_masses(q, e) for e in exponents])
    tempered = np.exp(log_tempered)
    kl = np.array([_kl_from_log(p, lt) for lt in log_tempered])
    js = np.array([js_divergence(p, t) for t in tempered])
    w1 = np.array([wasserstein(p, t, cost) for t in tempered])
    return TemperedComparison(
        xis=xs,
        kl=kl,
        js=js,
        wasserstein=w1,
        kl_untempered=kl_divergence(p, q),
        js_untempered=js_divergence(p, q),
        wasserstein_untempered=wasserstein(p, q, cost),
        best_xi=float(xs[int(np.argmin(kl))]),
        sgd_masses=q,
        sgld_masses=p,
        tempered=tempered,
        d_xi=d_xi,
        m=m,
        clustering=cl,
        log_tempered=log_tempered,
        gamma=gamma,
    )
