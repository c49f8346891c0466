"""Diffusion exponents from displacement curves (theory.md §3).

Every exponent is named, never a bare "alpha": ``H`` is the slope of ``log R`` against
``log t``; the mean-squared-displacement exponent is ``2H``; the Caputo order of the fractional
Fokker–Planck equation is ``α = 2H = 2/d_w``; the walk dimension is ``d_w = 1/H``. (The paper's
experimental tables call ``H`` "α"; its equation calls the Caputo order α.)
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike

from fracsgd._checks import check_int, check_number, real_array, refuse_traced

#: local slope of log R vs log t below which motion counts as sub-diffusive (Brownian: 1/2)
SUBDIFFUSIVE_SLOPE = 0.5


class ExponentFit(NamedTuple):
    """A least-squares fit ``log R = H log t + c`` over a window.

    Attributes:
        H: the slope; ``msd_exponent = 2H``; ``caputo_order = 2H``; ``walk_dimension = 1/H``.
        intercept: ``c``.
        r2: coefficient of determination of the log–log fit.
        ci: 95 % confidence interval of ``H``: the wider of the classical least-squares
            interval (right for independent residuals) and a Newey–West interval robust to
            residuals correlated in log-time (Bartlett kernel in ``|log t_i − log t_j|``,
            Andrews' AR(1) bandwidth, Student t with one degree of freedom per independent
            stretch). One trajectory's ``R(t)`` and ensemble averages have such residuals: the
            classical interval alone covered ½ for 1.5 % of 50-dimensional Brownian ``R(t)``
            (t ≤ 10⁴, window [100, 10⁴]) and 51 % of 200-walker MSD curves; this one covers
            81 % and 88 %, and ≥ 0.94 for independent noise (``tests/diffusion``). Few
            correlation lengths fit in a window (the residuals of one trajectory are correlated
            over about the window's span in log-time), so it still under-covers: a review's
            Monte Carlo (fixed windows, 100–300 replicates) measured 59–61 % for one 1-D
            Brownian trajectory, 78 % in 3-D, 84 ± 3 % for 200-walker Brownian MSD curves,
            55–73 % for fBm with H = 0.3 and 65–76 % for 200-walker CTRWs, while for smooth
            ensemble curves (fBm H = 0.7, 200 walkers; Langevin) it is about twice too wide.
            No interval from one series can be calibrated here: the spread of ``H`` over seeds
            or walkers is the error bar to trust (:func:`walk_dimension` and
            :func:`spectral_dimension` take it from groups of walkers).
        crossover: the detected crossover time (None when a window was given, when the series
            is sub-diffusive throughout, or when the late slope is not significantly below ½:
            see :func:`fit_exponent`'s ``window`` and ``min_late_decades``); a detection, not
            a calibrated test (noise around H = ½ produces one in ~7.5 % of diffusive
            ensembles); use ``window`` when the regime is known.
        window: ``(t_start, t_end)`` actually used (in the units of ``t``).
        num_points: points in the window.
    """

    H: float
    intercept: float
    r2: float
    ci: tuple[float, float]
    window: tuple[float, float]
    num_points: int
    crossover: float | None

    @property
    def msd_exponent(self) -> float:
        """``2H``: ``⟨R²⟩ ~ t^{2H}``."""
        return 2 * self.H

    @property
    def caputo_order(self) -> float:
        """``α = 2H = 2/d_w``, the order of the time-fractional Fokker–Planck equation."""
        return 2 * self.H

    @property
    def walk_dimension(self) -> float:
        """``d_w = 1/H`` (2 for Brownian motion, > 2 for subdiffusion)."""
        if isinstance(self.H, jax.Array):  # a fit under jit/vmap: 1/0 is inf there
            return 1 / self.H
        return 1 / self.H if self.H != 0 else math.inf


class _BadValuesOfR(ValueError):
    """``R`` has too few finite positive values where a fit needs them (a diverged network's NaN
    or inf, a zero): a problem of one curve's values, not of the call. The host fit raises it
    as a ``ValueError``; under ``jit``/``vmap`` the curve's element reads NaN instead, so one
    diverged network does not sink a batch (conventions.md 9)."""


def _short_of_values(t: np.ndarray, needed: int, message: str) -> ValueError:
    """The error for fewer than ``needed`` usable points: :class:`_BadValuesOfR` when ``t``
    alone has enough positive times (so ``R``'s values are short), else a plain ``ValueError``."""
    return (_BadValuesOfR if int(np.sum(t > 0)) >= needed else ValueError)(message)


def _check_series(t: ArrayLike, r: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    refuse_traced("this fracsgd.diffusion fit", t=t, R=r)
    t = real_array("t", t)
    r = real_array("R", r)
    if t.ndim != 1:
        raise ValueError(f"t must be one-dimensional, got shape {t.shape}")
    if r.shape != t.shape:
        raise ValueError(f"R must have the shape of t {t.shape}, got {r.shape}")
    if np.any(~np.isfinite(t)) or np.any(np.diff(t) <= 0):
        raise ValueError("t must be finite and strictly increasing")
    return t, r


def _check_window(window: Any, name: str = "window") -> tuple[float, float]:
    """``window`` as ``(start, end)``: two finite numbers with ``start < end``."""
    msg = f"{name} must be (t_start, t_end) of finite numbers with t_start < t_end, got {window!r}"
    if isinstance(window, str | bytes) or not hasattr(window, "__len__") or len(window) != 2:
        raise ValueError(msg)
    try:
        lo, hi = (check_number(name, w) for w in window)
    except ValueError as err:
        raise ValueError(msg) from err
    if not lo < hi:
        raise ValueError(msg)
    return lo, hi


def _least_squares(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, np.ndarray]:
    """``(slope, intercept, r², residuals)`` of the least-squares line through ``(x, y)``."""
    xm, ym = x.mean(), y.mean()
    sxx = np.sum((x - xm) ** 2)
    slope = float(np.sum((x - xm) * (y - ym)) / sxx)
    intercept = float(ym - slope * xm)
    resid = y - (intercept + slope * x)
    ss_tot = float(np.sum((y - ym) ** 2))
    r2 = 1.0 - float(np.sum(resid**2)) / ss_tot if ss_tot > 0 else 1.0
    return slope, intercept, r2, resid


#: points of the uniform log-time grid on which the residuals' lag-one correlation is read
_HAC_GRID = 256
#: bins of the kernel sum (O(bins log bins) instead of O(n²) for long series)
_HAC_BINS = 2048


def _hac_bandwidth(x: np.ndarray, resid: np.ndarray) -> float:
    """Bartlett bandwidth, in units of ``x`` (log-time), by Andrews' (1991) AR(1) plug-in rule
    ``S = 1.1447 (a m)^{1/3}`` lags, ``a = 4ρ² / ((1 − ρ)² (1 + ρ)²)``, with ``ρ`` the lag-one
    correlation of the residuals interpolated to ``m`` uniform log-time points (clipped to
    [0, 0.99]; a self-similar process's residuals are stationary in log-time)."""
    span = float(x[-1] - x[0])
    m = min(x.size, _HAC_GRID)
    grid = np.linspace(x[0], x[-1], m)
    e = np.interp(grid, x, resid)
    den = float(np.sum(e[:-1] ** 2))
    rho = float(np.sum(e[1:] * e[:-1])) / den if den > 0 else 0.0
    rho = min(max(rho, 0.0), 0.99)
    a = 4 * rho**2 / ((1 - rho) ** 2 * (1 + rho) ** 2)
    lags = min(1.1447 * (a * m) ** (1 / 3), m - 1)
    return lags * span / (m - 1)


def _slope_ci(x: np.ndarray, resid: np.ndarray) -> tuple[float, float]:
    """Half-widths of two 95 % intervals of the least-squares slope: the classical one
    (independent, equal-variance residuals; Student t, ``n − 2`` degrees of freedom) and a
    heteroskedasticity- and autocorrelation-consistent one (Newey–West with the Bartlett kernel
    in log-time distance ``|x_i − x_j|``, bandwidth :func:`_hac_bandwidth`, the ``n/(n − 2)``
    small-sample factor, and Student t with ``min(n, span/bandwidth) − 2`` degrees of freedom:
    one per independent stretch)."""
    n = x.size
    if n <= 2:  # pragma: no cover - windows need >= 3 points
        return math.inf, math.inf
    from scipy.stats import t as student_t

    xc = x - x.mean()
    sxx = float(np.sum(xc**2))
    classical = float(student_t.ppf(0.975, n - 2)) * math.sqrt(
        float(np.sum(resid**2)) / (n - 2) / sxx
    )
    u = xc / sxx * resid  # slope − H = Σ u_i (errors in place of residuals)
    span = float(x[-1] - x[0])
    bw = _hac_bandwidth(x, resid)
    if bw > 0:
        bins = _HAC_BINS
        idx = np.minimum(((x - x[0]) / span * bins).astype(np.int64), bins - 1)
        ub = np.bincount(idx, weights=u, minlength=bins)
        kernel = np.clip(1 - np.abs(np.arange(1 - bins, bins)) * (span / bins) / bw, 0, None)
        var = float(ub @ np.convolve(ub, kernel)[bins - 1 : 2 * bins - 1])
        n_eff = min(float(n), span / bw)
    else:
        var, n_eff = float(u @ u), float(n)
    var = max(var, 0.0) * n / (n - 2)
    robust = float(student_t.ppf(0.975, max(n_eff - 2, 1.0))) * math.sqrt(var)
    return classical, robust


#: decades each local slope of the crossover detection spans (:func:`fit_exponent`)
CROSSOVER_SPAN = 0.5


def local_slopes(
    t: ArrayLike, r: ArrayLike, *, points_per_decade: int = 10, span: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Local log–log slopes ``d log R / d log t`` on a log-spaced grid.

    Each slope is a least-squares fit over ``span`` decades centred on the grid point. A host
    computation (NumPy): the grid's length depends on ``t``'s values, so it does not run under
    ``jit``/``vmap`` (a ``ValueError`` says so); :func:`detect_crossover` and
    :func:`fit_exponent` do.

    Args:
        t: ``(T,)`` times (only ``t > 0`` with finite ``R > 0`` enter).
        r: ``(T,)`` displacements ``R(t)`` (or any positive series).
        points_per_decade: grid density, ``≥ 1``.
        span: decades each local fit spans, ``> 0``.

    Returns:
        ``(t_grid, slopes)``: grid times from half a span after the first time to half a span
        before the last, and the slope there (NaN where the window holds fewer than 3 points).

    Examples:
        >>> import numpy as np
        >>> t = np.geomspace(1.0, 1e4, 81)
        >>> r = np.minimum(t, 10 * np.sqrt(t))  # ballistic (H = 1), diffusive (½) after t = 100
        >>> grid, slopes = local_slopes(t, r)
        >>> grid.size, round(float(slopes[0]), 3), round(float(slopes[-1]), 3)
        (36, 1.0, 0.5)
    """
    t, r = _check_series(t, r)
    check_int("points_per_decade", points_per_decade, 1)
    check_number("span", span, lo=0.0, lo_open=True)
    ok = (t > 0) & (r > 0) & np.isfinite(r)
    lt, lr = np.log10(t[ok]), np.log10(r[ok])
    if lt.size < 3:
        raise _short_of_values(
            t,
            3,
            f"R needs at least 3 points with t > 0 and finite R > 0 for local slopes, "
            f"got {lt.size}",
        )
    grid = np.arange(lt[0] + span / 2, lt[-1] - span / 2 + 1e-12, 1 / points_per_decade)
    slopes = np.full(grid.shape, np.nan)
    for i, g in enumerate(grid):
        sel = np.abs(lt - g) <= span / 2
        if sel.sum() >= 3:
            slopes[i] = _least_squares(lt[sel], lr[sel])[0]
    return 10**grid, slopes


def _first_below_for_good(grid: np.ndarray, slopes: np.ndarray, threshold: float) -> float | None:
    """The crossover rule of :func:`detect_crossover` on computed local slopes."""
    finite = np.isfinite(slopes)
    below = finite & (slopes < threshold)
    if not below.any() or not below[finite][-1]:
        return None
    above = np.flatnonzero(finite & ~below)  # NaN slopes (too few points in a window) do not
    if above.size == 0:  # count; below from the first local fit on: no transition observed
        return None
    start = above[-1] + 1
    return float(grid[start]) if start < grid.size else None


def _is_traced(*values: Any) -> bool:
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(values))


def _traced_series(t: Any, r: Any, where: str) -> None:
    """Checks ``t`` and ``R`` of a fit called under ``jit``/``vmap`` for what needs no values
    (shapes, real dtypes); the rest is checked on the host when the program runs."""
    for name, a in (("t", t), ("R", r)):
        dt = a.dtype if hasattr(a, "dtype") else np.asarray(a).dtype
        if not (jnp.issubdtype(dt, jnp.floating) or jnp.issubdtype(dt, jnp.integer)):
            raise ValueError(f"{name} must be a real array for {where}, got dtype {dt}")
    if len(np.shape(t)) != 1:
        raise ValueError(f"t must be one-dimensional, got shape {np.shape(t)}")
    if np.shape(r) != np.shape(t):
        raise ValueError(f"R must have the shape of t {np.shape(t)}, got {np.shape(r)}")


def _host_call(fn: Any, out: Any, **inputs: Any) -> Any:
    """``fn(inputs)`` (a dict of NumPy or Python values in, NumPy out) run on the host from a
    traced program, once per element of a ``vmap`` batch (``jax.pure_callback``,
    ``vmap_method="sequential"``). Only the traced inputs pass through the callback (and JAX's
    dtype); the others reach ``fn`` as given, float64 included. Where ``fn`` raises
    :class:`_BadValuesOfR` (the element's own values defeat the estimate), the element's outputs
    are NaN (integer ones 0) instead of an error of the whole program."""
    traced = {k: jnp.asarray(v) for k, v in inputs.items() if v is not None and _is_traced(v)}
    fixed = {k: v for k, v in inputs.items() if k not in traced}

    def host(*values: Any) -> Any:
        try:
            return fn({**fixed, **dict(zip(traced, values, strict=True))})
        except _BadValuesOfR:  # one element's own values (a diverged run): NaN there, not an
            # error of the whole batch (conventions.md 9); integer outputs (counts) read 0
            return jax.tree.map(
                lambda o: np.full(o.shape, np.nan if np.dtype(o.dtype).kind == "f" else 0, o.dtype),
                out,
            )

    return jax.pure_callback(host, out, *traced.values(), vmap_method="sequential")


def detect_crossover(
    t: ArrayLike,
    r: ArrayLike,
    *,
    threshold: float = SUBDIFFUSIVE_SLOPE,
    points_per_decade: int = 10,
    span: float = 0.5,
) -> float | None:
    """The crossover from early (super-)diffusion to late subdiffusion.

    Rule (documented decision, theory.md §3): the first time on the log grid after which the
    local slope (see :func:`local_slopes`) stays below ``threshold`` (1/2) for the rest of the
    series. None when the late slope is not below the threshold, and when every local slope is
    (sub-diffusive from the start: no transition was observed). Under ``jit``/``vmap`` it runs
    on the host as :func:`fit_exponent` does and returns a scalar array, NaN for None (and
    for a curve with fewer than 3 finite positive values, which raises on the host).

    Examples:
        >>> import numpy as np
        >>> t = np.geomspace(1, 1e4, 81)
        >>> r = np.where(t < 100, t, 100 * (t / 100) ** 0.3)  # ballistic, then H = 0.3
        >>> 50 < detect_crossover(t, r) < 200
        True
        >>> detect_crossover(t, t**0.3) is None  # a pure power law has no crossover
        True
    """
    check_number("threshold", threshold)
    if _is_traced(t, r):
        check_int("points_per_decade", points_per_decade, 1)
        check_number("span", span, lo=0.0, lo_open=True)
        _traced_series(t, r, "detect_crossover")
        dtype = jnp.result_type(float)

        def host(got):  # a diverged curve's _BadValuesOfR: NaN in its element (_host_call)
            c = detect_crossover(
                np.asarray(got["t"], np.float64),
                np.asarray(got["R"], np.float64),
                threshold=threshold,
                points_per_decade=points_per_decade,
                span=span,
            )
            return np.asarray(math.nan if c is None else c, dtype)

        return _host_call(host, jax.ShapeDtypeStruct((), dtype), t=t, R=r)
    grid, slopes = local_slopes(t, r, points_per_decade=points_per_decade, span=span)
    return _first_below_for_good(grid, slopes, threshold)


def fit_exponent(
    t: ArrayLike,
    R: ArrayLike,
    *,
    window: tuple[float, float] | None = None,
    min_points: int = 3,
    min_late_decades: float = 0.0,
) -> ExponentFit:
    """Fit ``log R(t) = H log t + c`` by least squares with r² and a 95 % confidence interval.

    Args:
        t: strictly increasing times (SGD steps), 1-D.
        R: displacements, same shape; must be positive inside the window.
        window: ``(t_start, t_end)`` in the units of ``t``; times ``t ≤ 0`` inside it are
            left out (a log–log fit has no point there: ``R(0) = 0``, so a window from step 0
            fits from the first positive time). ``None``: detect the crossover to
            the late sub-diffusive regime (:func:`detect_crossover`, local fits over
            ``CROSSOVER_SPAN`` decades) and fit from ``crossover · 10^{span/2}`` — where the
            first sub-diffusive local window ends, so no diffusive point enters the fit
            (starting at the crossover itself biased H up: 0.264 for 0.25) — to the end.
            A crossover whose late window would span less than ``CROSSOVER_SPAN`` decades
            (one within ``1.5·span`` decades of the end) is not kept: so short a stretch is no
            evidence of a late regime, and a crossover found at the last local slope once left
            a fit of the last 5 of 2 000 points, H = −0.008 with an interval excluding ½.
            A crossover is kept only when ``H`` on that late window is significantly below ½
            (its 95 % CI below ½): noise alone ends a diffusive series below ½ now and then,
            and the stretch picked for it reads low; its CI, chosen after the window, is too
            narrow to make this a 5 % test. Measured on lattice walks (R = √MSD of 2 000
            walkers, 3 000 steps, 40 ensembles on each of Z¹–Z³): 8 of 120 (6.7 %) kept a
            crossover (7.5 ± 1.7 % over 240 in a review's Monte Carlo before the late window's
            minimum span). :func:`walk_dimension`, which has the walkers, repeats the test
            with their jackknife interval: 0 of those 120. ``min_late_decades`` makes the test
            stricter. When every local slope is below ½ (sub-diffusive throughout), fit the
            whole series; without a kept crossover, fit the last decade (or the last half of
            the points in log-time, whichever is larger). Both report ``crossover=None``.
        min_points: fewest points a window may hold (≥ 3).
        min_late_decades: with ``window=None``, keep a crossover only when the late window
            after it spans at least this many decades *and* ``H`` is also significantly below
            ½ over the last ``min_late_decades`` decades, a window fixed before looking at the
            slopes. 0 (default): no such requirement. 1: false crossovers on the lattice walks
            above fall to 0.4 %, but a real one needs a decade of late regime (H 0.5 → 0.25 at
            t = 100 with T = 10⁴ and 200-walker noise: kept 92 %; 0.5 → 0.4: 50 %), so short
            runs (an SGD run of 1 000 steps crossing over near t = 180) lose theirs and fall
            back to the last decade, which then mixes in the early regime.

    Returns:
        An :class:`ExponentFit`.

    Under ``jit`` or ``vmap`` (traced ``t``, ``R`` or ``window``) the same fit runs on the host
    through ``jax.pure_callback``, once per element of a ``vmap`` batch, and the fields are
    arrays of the default float dtype (float32 unless x64 is on; ``num_points`` int32,
    ``crossover`` NaN where the host fit has None). Shapes and dtypes are checked when the
    function is traced; the checks of values (increasing ``t``, the window's points) raise
    when the program runs, inside jax's runtime error. A curve whose own values defeat the fit
    — NaN, inf or ``R ≤ 0`` at a positive time inside the window, or fewer than
    ``min_points`` finite positive values (a network that diverged from the start) — is not
    an error there: its element's float fields are NaN and ``num_points`` 0, so one diverged
    network does not sink a batch (conventions.md 9); the host call raises the
    ``ValueError``. Not differentiable (no JVP rule).

    Raises:
        ValueError: non-increasing ``t``, mismatched shapes, a window with fewer than
            ``min_points`` points at positive times, or non-positive ``R`` at a positive time
            inside the window.

    Examples:
        >>> import numpy as np
        >>> t = np.arange(1, 1001.0)
        >>> fit = fit_exponent(t, 3 * t**0.3, window=(10, 1000))
        >>> round(fit.H, 6), round(fit.walk_dimension, 4), round(fit.r2, 6)
        (0.3, 3.3333, 1.0)

        Many curves at once, under ``vmap`` (one host fit per curve):

        >>> import jax, jax.numpy as jnp
        >>> curves = jnp.stack([3 * t**0.3, t**0.45])
        >>> fits = jax.vmap(lambda r: fit_exponent(t, r, window=(10, 1000)))(curves)
        >>> [round(float(h), 4) for h in fits.H]
        [0.3, 0.45]
    """
    if _is_traced(t, R, window):
        return _fit_exponent_traced(t, R, window, min_points, min_late_decades)
    t, r = _check_series(t, R)
    check_int("min_points", min_points, 3)
    check_number("min_late_decades", min_late_decades, lo=0.0)
    crossover = None
    if window is None:
        usable = np.flatnonzero((t > 0) & np.isfinite(r) & (r > 0))
        if usable.size < min_points:
            raise _short_of_values(
                t,
                min_points,
                f"R needs at least {min_points} points with t > 0 and finite R > 0, "
                f"got {usable.size}",
            )
        # a series that ends in NaN (a network that diverged) is fitted up to its last finite
        # point; the detection skips the NaN tail likewise
        t, r = t[: usable[-1] + 1], r[: usable[-1] + 1]
        grid, slopes = local_slopes(t, r, span=CROSSOVER_SPAN)
        crossover = _first_below_for_good(grid, slopes, SUBDIFFUSIVE_SLOPE)
        finite = slopes[np.isfinite(slopes)]
        if crossover is None and finite.size and np.all(finite < SUBDIFFUSIVE_SLOPE):
            # sub-diffusive from the first local fit on: the whole series is the late regime
            window = (float(t[usable[0]]), float(t[-1]))
        elif crossover is not None:
            # the first local fit that reads below 1/2 straddles the crossover (its centre can
            # lie up to span/2 decades before the end of the diffusive regime): start the fit
            # where that local window ends, unless too few points would remain
            start = crossover * 10 ** (CROSSOVER_SPAN / 2)
            if np.sum(t >= start) < min_points:
                start = crossover
            window = (start, float(t[-1]))
            # a late window shorter than one local fit's span is no evidence of a late regime
            # (a crossover at the last local slope left a fit of the last 5 of 2 000 steps,
            # H = −0.008 with a CI excluding 1/2); the tolerance absorbs the grid's rounding
            short = window[1] < window[0] * 10 ** (CROSSOVER_SPAN * (1 - 1e-6))
            # noise alone ends a diffusive series below 1/2 now and then, and the stretch picked
            # for it reads low: keep the crossover only when its late window spans a decade and
            # H is significantly < 1/2 both there and on the last decade, a window fixed
            # before looking at the slopes
            late = None if short else _fit_window(t, r, window, min_points, crossover)
            keep = late is not None and late.ci[1] < SUBDIFFUSIVE_SLOPE
            if keep and late is not None and min_late_decades > 0:
                span = 10.0**min_late_decades
                fixed = _fit_window(t, r, (float(t[-1]) / span, float(t[-1])), min_points, None)
                keep = (
                    late.window[1] >= span * late.window[0]
                    and fixed is not None
                    and fixed.ci[1] < SUBDIFFUSIVE_SLOPE
                )
            if not keep:
                crossover, window = None, _last_decade(t)
        else:
            window = _last_decade(t)
    else:
        window = _check_window(window)
    fit = _fit_window(t, r, window, min_points, crossover)
    if fit is None:
        inside = (t >= window[0]) & (t <= window[1]) & (t > 0)
        raise ValueError(
            f"window {window} holds {int(np.sum(inside))} points with t > 0; "
            f"at least {min_points} are needed"
        )
    return fit


def _fit_exponent_traced(
    t: Any, r: Any, window: Any, min_points: int, min_late_decades: float
) -> ExponentFit:
    """:func:`fit_exponent` under ``jit``/``vmap``: the host fit through ``jax.pure_callback``,
    its fields as arrays of the default float dtype (``num_points`` int32, ``crossover`` NaN for
    None). Inputs that are not traced stay on the host as they are (float64), so that only the
    traced ones are rounded to JAX's dtype."""
    check_int("min_points", min_points, 3)
    check_number("min_late_decades", min_late_decades, lo=0.0)
    _traced_series(t, r, "fit_exponent")  # shapes and dtypes, at trace time
    dtype = jnp.result_type(float)
    window = _window_for_host(window, dtype)

    def host(got):  # a diverged curve's _BadValuesOfR: NaN fields, 0 points (_host_call)
        fit = fit_exponent(
            np.asarray(got["t"], np.float64),
            np.asarray(got["R"], np.float64),
            window=_window_on_host(got["window"]),
            min_points=min_points,
            min_late_decades=min_late_decades,
        )
        return _fit_values(fit, dtype)

    v, n = _host_call(host, _fit_out(dtype), t=t, R=r, window=window)
    return _fit_from_values(v, n)


def _window_for_host(window: Any, dtype: Any) -> Any:
    """A ``window`` argument on its way into :func:`_host_call`: None, a checked pair of floats,
    or (when traced) a stacked ``(2,)`` array whose values the host checks."""
    if window is None:
        return None
    if isinstance(window, str | bytes) or not hasattr(window, "__len__") or len(window) != 2:
        raise ValueError(
            f"window must be (t_start, t_end) of finite numbers with t_start < t_end, "
            f"got {window!r}"
        )
    if _is_traced(window):
        return jnp.stack([jnp.asarray(w, dtype) for w in window])
    return _check_window(window)


def _window_on_host(window: Any) -> tuple[float, float] | None:
    return None if window is None else (float(window[0]), float(window[1]))


def _fit_values(fit: ExponentFit, dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    """A host fit as ``FIT_VALUES`` numbers and ``num_points``, for the way back from
    :func:`_host_call` (``crossover`` NaN for None)."""
    crossover = math.nan if fit.crossover is None else fit.crossover
    values = (fit.H, fit.intercept, fit.r2, *fit.ci, *fit.window, crossover)
    return np.asarray(values, dtype), np.asarray(fit.num_points, np.int32)


#: numbers of a fit passed back from the host by :func:`_fit_values`
FIT_VALUES = 8


def _fit_out(dtype: Any) -> tuple[jax.ShapeDtypeStruct, jax.ShapeDtypeStruct]:
    return jax.ShapeDtypeStruct((FIT_VALUES,), dtype), jax.ShapeDtypeStruct((), jnp.int32)


def _fit_from_values(v: Any, n: Any) -> ExponentFit:
    """The :class:`ExponentFit` of :func:`_fit_values`' arrays; ``v[..., k]`` keeps a ``vmap``'s
    batch axes."""
    return ExponentFit(
        H=v[..., 0],
        intercept=v[..., 1],
        r2=v[..., 2],
        ci=(v[..., 3], v[..., 4]),
        window=(v[..., 5], v[..., 6]),
        num_points=n,
        crossover=v[..., 7],
    )


def _last_decade(t: np.ndarray) -> tuple[float, float]:
    """The default window when there is no (significant) crossover: the last decade, or the
    last half of the points in log-time, whichever is larger."""
    positive = t[t > 0]
    lo = min(float(positive[-1]) / 10, float(np.sqrt(positive[0] * positive[-1])))
    return (lo, float(t[-1]))


def _fit_window(
    t: np.ndarray, r: np.ndarray, window: tuple[float, float], min_points: int, crossover
) -> ExponentFit | None:
    """The least-squares fit over the positive times of ``window`` (None: fewer than
    ``min_points`` points)."""
    sel = (t >= window[0]) & (t <= window[1]) & (t > 0)
    if sel.sum() < min_points:
        return None
    bad = sel & (~(r > 0) | ~np.isfinite(r))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise _BadValuesOfR(
            f"a log fit needs t > 0 and finite R > 0 at every point of the window "
            f"({window[0]:g}, {window[1]:g}); at t = {t[i]:g} (index {i}) R = {r[i]:g}: pass a "
            "window that avoids it"
        )
    x = np.log(t[sel])
    slope, intercept, r2, resid = _least_squares(x, np.log(r[sel]))
    half = max(_slope_ci(x, resid))
    return ExponentFit(
        H=slope,
        intercept=intercept,
        r2=r2,
        ci=(slope - half, slope + half),
        window=(float(t[sel][0]), float(t[sel][-1])),
        num_points=int(sel.sum()),
        crossover=crossover,
    )


def log_resample(t: ArrayLike, values: ArrayLike, num: int = 50) -> tuple[np.ndarray, Any]:
    """Resample a series at ``num`` log-spaced times (nearest recorded time, duplicates
    dropped), so that log–log fits weigh every decade equally. A host computation (the number
    of times kept depends on ``t``'s values): not under ``jit``/``vmap``.

    Args:
        t: ``(T,)`` finite, strictly increasing times, at least two of them ``> 0``.
        values: ``(..., T)`` series over ``t`` (resampled along the last axis).
        num: target number of log-spaced times between the first positive and the last time.

    Returns:
        ``(t_kept, values_kept)``: at most ``num`` recorded times (fewer where two targets share
        their nearest recorded time) and the values there.

    Examples:
        >>> import numpy as np
        >>> t = np.arange(0.0, 10_001.0)
        >>> tk, vk = log_resample(t, np.sqrt(t), num=5)
        >>> tk.tolist(), vk.round(3).tolist()  # one time per decade
        ([1.0, 10.0, 100.0, 1000.0, 10000.0], [1.0, 3.162, 10.0, 31.623, 100.0])
    """
    refuse_traced("fracsgd.diffusion.log_resample", t=t, values=values)
    t = real_array("t", t)
    v = np.asarray(values)
    check_int("num", num, 1)
    if t.ndim != 1 or np.any(~np.isfinite(t)) or np.any(np.diff(t) <= 0):
        raise ValueError("t must be a finite, strictly increasing 1-D array")
    if v.shape[-1:] != t.shape:
        raise ValueError(f"values must have t's length {t.size} on the last axis, got {v.shape}")
    pos = t > 0
    if pos.sum() < 2:
        raise ValueError("need at least two positive times to resample")
    target = np.geomspace(t[pos][0], t[pos][-1], num)
    right = np.clip(np.searchsorted(t, target), 1, t.size - 1)
    left = right - 1
    # nearest in log-time among the two recorded neighbours (the left one may be t = 0)
    with np.errstate(divide="ignore"):
        d_left = np.where(
            t[left] > 0, np.log(target) - np.log(np.where(t[left] > 0, t[left], 1)), np.inf
        )
    d_right = np.abs(np.log(t[right]) - np.log(target))
    idx = np.unique(np.where(d_left < d_right, left, right))
    return t[idx], v[..., idx]
