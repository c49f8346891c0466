"""Correlation dimension (Grassberger & Procaccia 1983) of point clouds and trajectories, with
a Theiler window for trajectories (Theiler 1986), and the paper's lemma checks."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike

from fracsgd._checks import check_number, real_array, refuse_traced
from fracsgd.diffusion._dimensions import _power_of_two_scale
from fracsgd.diffusion._fit import ExponentFit, _check_window, fit_exponent


class CorrelationDimension(NamedTuple):
    """``D₂``: the slope of ``log C(r)`` against ``log r``.

    Attributes:
        d2: the correlation dimension; ``ci`` the 95 % interval of the log–log fit
            (:class:`ExponentFit`). Pair counts are strongly correlated across radii, so this
            interval is no calibrated error bar: a review's Monte Carlo (50 point sets of 2 000)
            found it about 11 times too wide on squares and cubes and covering only 58–66 % on
            unbiased cases (a circle in R³, a line in R⁵). Repeat over independent point sets
            for an error bar. ``d2`` also reads low near the boundary of a filled set (unit
            cubes, N = 2 000: −0.06 in 2-D, −0.18 in 3-D, −0.61 in 5-D), as the finite-N
            Grassberger–Procaccia estimate does.
        radii, correlation_sum: ``C(r)``, the fraction of admissible pairs closer than ``r``.
        fit: the log–log fit over ``scaling_range``.
    """

    d2: float
    ci: tuple[float, float]
    radii: np.ndarray
    correlation_sum: np.ndarray
    fit: ExponentFit
    scaling_range: tuple[float, float]


#: rows of the pair-count loop per block (a block's counts, at most
#: ``_ROWS_PER_BLOCK · (_ROWS_PER_BLOCK + N/2)``, fit int32 for N < 3·10⁷; the blocks are added on
#: the host in int64)
_ROWS_PER_BLOCK = 64


@jax.jit
def _block_pair_counts(points: jax.Array, radii: jax.Array, theiler: jax.Array) -> jax.Array:
    """``(blocks, R)`` int32 counts of pairs more than ``theiler`` apart in time and closer than
    each radius, one row per block of ``_ROWS_PER_BLOCK`` values of ``i``.

    Each unordered pair is visited once, from the point whose circular successor the other is
    within half a circle (offsets ``1 … ⌊N/2⌋``; for even N the pairs exactly half a circle apart
    only from the first half), so a block compares its rows with one contiguous slice of the
    points: half the work of comparing all ``N²`` ordered pairs. A pair's bin is the number of
    radii at most its distance (a binary search), and the counts per radius are the cumulative
    histogram of the bins: O(log R) per pair instead of one comparison per radius (12–15× faster
    at N = 8 000 with 40 radii on the 2-core CPU, the same counts)."""
    n = points.shape[0]
    num_radii = radii.shape[0]
    half = n // 2
    width = _ROWS_PER_BLOCK - 1 + half
    pad = jnp.zeros((_ROWS_PER_BLOCK, points.shape[1]), points.dtype)  # masked rows
    doubled = jnp.concatenate([points, points, pad])  # every block's slices stay inside
    i_local = jnp.arange(_ROWS_PER_BLOCK).reshape(-1, 1)
    j_local = jnp.arange(width).reshape(1, -1)

    def block(b: jax.Array) -> jax.Array:
        start = b * _ROWS_PER_BLOCK
        here = jax.lax.dynamic_slice_in_dim(doubled, start, _ROWS_PER_BLOCK)
        there = jax.lax.dynamic_slice_in_dim(doubled, start + 1, width)
        d = jnp.sqrt(jnp.sum(jnp.square(there[None, :, :] - here[:, None, :]), axis=-1))
        i = start + i_local
        offset = j_local + 1 - i_local  # of j from i, around the circle
        apart = jnp.where(i + offset < n, offset, n - offset)  # the pair's distance in time
        ok = (offset >= 1) & (offset <= half) & (i < n) & (apart > theiler)
        ok &= (2 * offset < n) | (i < half)
        k = jnp.searchsorted(radii, d, side="right", method="scan_unrolled")
        k = jnp.where(ok, k, num_radii)  # d < radii[m] for every m >= k
        hist = jnp.zeros(num_radii + 1, jnp.int32).at[k.reshape(-1)].add(1)
        return jnp.cumsum(hist)[:num_radii]

    return jax.lax.map(block, jnp.arange(-(-n // _ROWS_PER_BLOCK)))


def _pair_counts(points: jax.Array, radii: jax.Array, theiler: Any) -> np.ndarray:
    """Counts of admissible pairs closer than each radius, ``(R,)`` int64: the per-block int32
    counts added on the host (one int32 sum over all pairs overflowed from N ≈ 65 536)."""
    if points.shape[0] >= 2**31 // _ROWS_PER_BLOCK:
        raise ValueError(f"points: at most {2**31 // _ROWS_PER_BLOCK - 1} points per call")
    blocks = _block_pair_counts(points, radii, jnp.int32(theiler))
    return np.asarray(blocks, np.int64).sum(axis=0)


def correlation_dimension(
    points: ArrayLike,
    *,
    theiler: int = 0,
    radii: ArrayLike | None = None,
    scaling_range: tuple[float, float] | None = None,
) -> CorrelationDimension:
    """Grassberger–Procaccia correlation dimension.

    ``C(r) = (#pairs (i < j, j − i > w) with |x_i − x_j| < r) / (#admissible pairs)`` and
    ``D₂ = d log C / d log r`` over the scaling range. Pairs are counted in int64 (any N up to
    3·10⁷ points; the work is O(N² log R) for R radii: N = 8 000 and 40 radii take about a
    second on a 2-core CPU).

    Args:
        points: ``(N, dim)`` points, or a trajectory ``(T, dim)`` in time order.
        theiler: the Theiler window ``w``: pairs at most ``w`` steps apart in time are excluded
            (use the autocorrelation time for trajectories; 0 for independent points).
        radii: radii to evaluate (default: 40 log-spaced between the 0.1 % and 50 % quantiles
            of a sample of pair distances).
        scaling_range: ``(r_min, r_max)`` for the fit (default: radii where ``C`` is between
            1e-3 and 1e-1, so that small-r counting noise and large-r saturation stay out).

    Examples:
        >>> import numpy as np
        >>> x = np.random.default_rng(0).uniform(size=(2000, 2))
        >>> 1.8 < correlation_dimension(x).d2 < 2.1
        True
    """
    refuse_traced("fracsgd.diffusion.correlation_dimension", points=points, radii=radii)
    x64 = real_array("points", points, finite=True)
    if x64.ndim != 2 or x64.shape[0] < 10 or x64.shape[1] < 1:
        raise ValueError(f"points must have shape (N >= 10, dim >= 1), got {x64.shape}")
    # distances are unit-free in float32: centred in float64 and scaled by a power of two
    # (exact), so offsets and extreme units (1e±20) neither lose accuracy nor overflow
    x64 = x64 - x64.mean(axis=0)
    scale = _power_of_two_scale(float(np.max(np.abs(x64))), x64.dtype)
    x = jnp.asarray(x64 / scale, jnp.float32)
    if isinstance(theiler, bool) or not isinstance(theiler, int | np.integer) or theiler < 0:
        raise ValueError(f"theiler must be an integer >= 0, got {theiler!r}")
    if theiler >= x.shape[0] - 2:
        raise ValueError(f"theiler ({theiler}) leaves no pairs for {x.shape[0]} points")
    xs = x64
    if radii is None:
        rng = np.random.default_rng(0)  # only chooses which pairs set the default radius range
        i, j = rng.integers(0, xs.shape[0], (2, 20_000))
        d = np.linalg.norm(xs[i] - xs[j], axis=1)
        d = d[d > 0]
        if d.size == 0:
            raise ValueError("points all coincide: no pair distance to set the radii; pass radii")
        r = np.geomspace(np.quantile(d, 0.001), np.quantile(d, 0.5), 40)
    else:
        r = real_array("radii", radii)
        if r.ndim != 1 or r.size < 3 or np.any(~(r > 0)) or np.any(~np.isfinite(r)):
            raise ValueError("radii must be at least 3 finite positive, strictly increasing values")
        if np.any(np.diff(r) <= 0):
            raise ValueError("radii must be positive and strictly increasing")
    if scaling_range is not None:
        scaling_range = _check_window(scaling_range, "scaling_range")
        held = int(np.sum((r >= scaling_range[0]) & (r <= scaling_range[1])))
        if held < 3:
            raise ValueError(
                f"scaling_range {scaling_range} holds {held} of the radii; at least 3 are needed"
            )
    counts = _pair_counts(x, jnp.asarray(r / scale, jnp.float32), theiler).astype(np.float64)
    n = xs.shape[0]
    admissible = n - 1 - theiler  # pairs (i, j) with j − i > theiler
    c = counts / (admissible * (admissible + 1) // 2)
    if scaling_range is None:
        sel = (c >= 1e-3) & (c <= 1e-1)
        if sel.sum() < 3:
            raise ValueError("no scaling range with 1e-3 <= C(r) <= 1e-1: pass scaling_range")
        scaling_range = (float(r[sel][0]), float(r[sel][-1]))
    inside = (r >= scaling_range[0]) & (r <= scaling_range[1])
    if np.any(inside & (c <= 0)):
        raise ValueError(
            f"C(r) = 0 (no pair closer than r) at r = {float(r[inside & (c <= 0)][0]):g} inside "
            f"scaling_range {scaling_range}: start the scaling range (or radii) at larger r"
        )
    fit = fit_exponent(r, np.where(c > 0, c, np.nan), window=scaling_range)
    return CorrelationDimension(fit.H, fit.ci, r, c, fit, scaling_range)


class BoundCheck(NamedTuple):
    """The bound ``d_s ≤ λ̄`` (v1 Lemma 3.2 / Corollary 3.2; v2 Lemma 3.4 / Cor. 3.3).

    Attributes:
        d_s: the spectral dimension tested; ``d_s_source`` says how it was obtained (e.g.
            ``"2·λ_final·H (Eq. 17)"`` or ``"return probability (λ-free)"``).
        lambda_bar: the time-averaged LLC over the late window (the bound's λ).
        lambda_final: the LLC at the final checkpoint (reported beside it).
        holds: ``d_s ≤ λ̄``; ``margin = λ̄ − d_s``.
        note: the caveat when ``d_s`` was itself computed from ``λ̄`` (then the bound is
            ``H ≤ 1/2``, theory.md §3).
    """

    d_s: float
    d_s_source: str
    lambda_bar: float
    lambda_final: float
    holds: bool
    margin: float
    note: str


def check_bound(
    d_s: float,
    lambda_bar: float,
    lambda_final: float,
    *,
    d_s_source: str,
    uses_lambda_bar: bool | None = None,
) -> BoundCheck:
    """Check ``d_s ≤ λ̄`` with both λ's named.

    Args:
        d_s, lambda_bar, lambda_final: finite numbers.
        d_s_source: how ``d_s`` was estimated (free text, reported).
        uses_lambda_bar: whether ``d_s`` was computed from ``λ̄`` itself (then, with
            ``d_s = 2λ̄H``, the check is ``H ≤ 1/2`` for ``λ̄ > 0`` and ``H ≥ 1/2`` for
            ``λ̄ < 0``, and the result carries that note). ``None``: inferred from
            ``d_s_source`` naming ``λ̄`` or ``lambda_bar`` (pass it explicitly when the text
            says otherwise, e.g. "not from λ̄").

    Examples:
        >>> check_bound(3.0, 5.0, 6.0, d_s_source="return probability").holds
        True
        >>> bool(check_bound(3.0, 5.0, 6.0, d_s_source="2·λ̄·H", uses_lambda_bar=True).note)
        True
    """
    refuse_traced(
        "fracsgd.diffusion.check_bound", d_s=d_s, lambda_bar=lambda_bar, lambda_final=lambda_final
    )
    if not isinstance(d_s_source, str) or not d_s_source:
        raise ValueError("d_s_source must name how d_s was estimated")
    if uses_lambda_bar is not None and not isinstance(uses_lambda_bar, bool):
        raise ValueError(f"uses_lambda_bar must be True, False or None, got {uses_lambda_bar!r}")
    d_s = check_number("d_s", d_s)
    lambda_bar = check_number("lambda_bar", lambda_bar)
    lambda_final = check_number("lambda_final", lambda_final)
    if uses_lambda_bar is None:
        uses_lambda_bar = "lambda_bar" in d_s_source or "λ̄" in d_s_source
    note = ""
    if uses_lambda_bar:
        # 2·λ̄·H ≤ λ̄ ⇔ λ̄·(2H − 1) ≤ 0: H ≤ 1/2 for λ̄ > 0, H ≥ 1/2 for λ̄ < 0 (an estimate at
        # a point that is not a minimum, theory.md Appendix B), always for λ̄ = 0
        if lambda_bar > 0:
            same = "equivalent to H ≤ 1/2"
        elif lambda_bar < 0:
            same = "equivalent to H ≥ 1/2, since λ̄ < 0"
        else:
            same = "always true, since λ̄ = 0"
        note = f"d_s was computed from λ̄ itself, so d_s ≤ λ̄ is {same} (theory.md §3)"
    return BoundCheck(
        float(d_s),
        d_s_source,
        float(lambda_bar),
        float(lambda_final),
        bool(d_s <= lambda_bar),
        float(lambda_bar - d_s),
        note,
    )


class NearStability(NamedTuple):
    """The near-stability hypothesis over a window (theory.md §5): λ(w_t) roughly constant.

    Attributes:
        coefficient_of_variation: std/|mean| of λ̂ at the checkpoints in the window.
        mean_grad_norm: mean minibatch gradient norm over the window (small near critical
            points).
        window: ``(t_start, t_end)``; ``num_checkpoints`` inside it.
    """

    coefficient_of_variation: float
    mean_grad_norm: float
    window: tuple[float, float]
    num_checkpoints: int


def near_stability(
    checkpoint_steps: ArrayLike,
    llc: ArrayLike,
    record_steps: ArrayLike,
    grad_norm: ArrayLike,
    window: tuple[float, float],
) -> NearStability:
    """Coefficient of variation of λ̂ and the mean gradient norm over ``window``.

    ``llc`` may hold NaN (a failed estimate: left out) but not ±inf; ``grad_norm`` NaN (not
    recorded: left out) or finite values ≥ 0. The coefficient of variation is NaN with fewer
    than two finite λ̂ in the window, and inf when their mean is 0 and they differ (0/0: NaN);
    the mean gradient norm is NaN with no finite value in the window.

    Examples:
        >>> ns = near_stability([10, 100, 1000], [4.0, 5.0, 6.0], [10, 1000], [0.5, 0.1], (50, 1e3))
        >>> round(ns.coefficient_of_variation, 4), ns.mean_grad_norm, ns.num_checkpoints
        (0.0909, 0.1, 2)
    """
    refuse_traced(
        "fracsgd.diffusion.near_stability",
        checkpoint_steps=checkpoint_steps,
        llc=llc,
        record_steps=record_steps,
        grad_norm=grad_norm,
    )
    ck = real_array("checkpoint_steps", checkpoint_steps)
    lam = real_array("llc", llc)
    rs = real_array("record_steps", record_steps)
    gn = real_array("grad_norm", grad_norm)
    window = _check_window(window)
    if ck.shape != lam.shape or rs.shape != gn.shape:
        raise ValueError("checkpoint_steps/llc and record_steps/grad_norm must match in shape")
    if np.any(np.isinf(lam)):
        raise ValueError("llc must be finite (or NaN for a failed estimate), got ±inf")
    if np.any(np.isinf(gn) | (gn < 0)):
        raise ValueError("grad_norm must be finite and >= 0 (or NaN where not recorded)")
    sel = (ck >= window[0]) & (ck <= window[1]) & np.isfinite(lam)
    gsel = (rs >= window[0]) & (rs <= window[1]) & np.isfinite(gn)
    cv = math.nan
    if sel.sum() > 1:
        std, mean = float(np.std(lam[sel])), abs(float(np.mean(lam[sel])))
        cv = std / mean if mean > 0 else (math.inf if std > 0 else math.nan)
    return NearStability(
        cv,
        float(np.mean(gn[gsel])) if gsel.any() else math.nan,
        (float(window[0]), float(window[1])),
        int(sel.sum()),
    )
