"""Walk and spectral dimensions, mean-squared displacements, and the effective diffusion
coefficient ``D_ξ`` (theory.md §3, §5)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike

from fracsgd._checks import check_int, check_number, real_array, refuse_traced
from fracsgd.diffusion._fit import (
    FIT_VALUES,
    SUBDIFFUSIVE_SLOPE,
    ExponentFit,
    _BadValuesOfR,
    _check_window,
    _fit_from_values,
    _fit_values,
    _host_call,
    _is_traced,
    _last_decade,
    _least_squares,
    _window_for_host,
    _window_on_host,
    fit_exponent,
)


class _Displacements(NamedTuple):
    """Checked trajectories as displacements from each walker's first row, ``u = (x − x_0) /
    scale`` in float32, with ``scale`` a power of two (exact to divide by, so ties such as a
    lattice point at exactly the radius survive any change of units)."""

    u: jax.Array
    scale: float

    @property
    def walkers(self) -> int:
        return int(self.u.shape[0])


#: relative slack of ``|x_t − x_0| ≤ ξ``: float32 rounding of the squared distance cannot move a
#: point at exactly ξ (a lattice site) out of the ball, in whatever units the positions are
BALL_SLACK = 1e-5


def _power_of_two_scale(top: float, dtype: Any) -> float:
    """The power of two at or above ``top`` (the largest magnitude), capped so that it and its
    reciprocal are normal numbers of ``dtype`` (XLA may divide by multiplying with ``1/scale``,
    and flushes subnormals to zero); 1 when ``top`` is 0 or not finite (left to the checks).
    Dividing by it is exact, so it changes units without moving ties."""
    if not (np.isfinite(top) and top > 0):
        return 1.0
    info = jnp.finfo(dtype)
    e = min(max(math.frexp(top)[1], int(info.minexp) + 2), int(info.maxexp) - 2)
    return math.ldexp(1.0, e)


def _refuse_non_finite(name: str, finite_walker: np.ndarray) -> None:
    """``ValueError`` naming the walkers with NaN or inf positions. They are not dropped here:
    which walkers diverge may depend on how far they moved, so leaving them out is the
    caller's decision, made visibly. Under ``jit``/``vmap`` the element (one ensemble) reads
    NaN instead (``_BadValuesOfR``), so one diverged ensemble does not sink a batch."""
    bad = np.flatnonzero(~finite_walker)
    shown = ", ".join(map(str, bad[:5])) + (", …" if bad.size > 5 else "")
    raise _BadValuesOfR(
        f"{name} contains NaN or inf in {bad.size} of {finite_walker.size} walkers ({shown}); "
        f"pass the finite ones, e.g. x[np.isfinite(x).all(axis=(1, 2))], and report how many "
        "were left out"
    )


def _displacements(trajectories: ArrayLike, name: str = "trajectories") -> _Displacements:
    """Checks ``(walkers, T, dim)`` positions and returns their displacements. The start is
    subtracted in the input's precision (float64 for NumPy input) before the cast to float32,
    so a constant offset (positions near 1e7) costs no accuracy, and the power-of-two scale
    keeps extreme units (1e±20) clear of float32 overflow and underflow."""
    named: dict[str, Any] = {name: trajectories}
    refuse_traced("this fracsgd.diffusion estimator", **named)
    if isinstance(trajectories, jax.Array) and jnp.issubdtype(trajectories.dtype, jnp.floating):
        x: Any = trajectories  # no host round trip for device arrays
    else:
        x = real_array(name, trajectories)
    _check_trajectory_shape(name, x.shape)
    if isinstance(x, jax.Array):
        if not bool(jnp.all(jnp.isfinite(x))):
            _refuse_non_finite(name, np.asarray(jnp.all(jnp.isfinite(x), axis=(1, 2))))
        d = x - x[:, :1]
        top = max(float(jnp.max(d)), -float(jnp.min(d)))
    else:
        if not np.all(np.isfinite(x)):
            _refuse_non_finite(name, np.all(np.isfinite(x), axis=(1, 2)))
        d = x  # real_array's own float64 copy: work in place (no second full-size copy)
        d -= d[:, :1].copy()
        top = max(float(d.max()), -float(d.min()))
    scale = _power_of_two_scale(top, d.dtype)
    if isinstance(d, np.ndarray):
        d /= scale
        return _Displacements(jnp.asarray(d, jnp.float32), scale)
    return _Displacements((d / scale).astype(jnp.float32), scale)


def _msd(disp: _Displacements) -> np.ndarray:
    """``⟨|x(t) − x(0)|²⟩`` of checked trajectories, in the positions' units squared."""
    m = np.asarray(jnp.mean(jnp.sum(jnp.square(disp.u), axis=-1), axis=0), np.float64)
    return m * disp.scale**2


def _traced_trajectories(trajectories: Any, where: str, name: str = "trajectories") -> Any:
    """Trace-time checks of traced ``(walkers, T, dim)`` positions (shape and dtype; their
    values are checked on the host when the program runs, :func:`_host_call`)."""
    x = jnp.asarray(trajectories)
    if not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.integer)):
        raise ValueError(f"{name} must be a real array for {where}, got dtype {x.dtype}")
    _check_trajectory_shape(name, x.shape)
    return x


def _check_trajectory_shape(name: str, shape: tuple[int, ...]) -> None:
    if len(shape) != 3 or 0 in shape:
        raise ValueError(f"{name} must have shape (walkers >= 1, T, dim >= 1), got {shape}")
    if shape[1] < 4:
        raise ValueError(f"{name} needs at least 4 time points, got {shape[1]}")


def _host_positions(x: Any) -> np.ndarray:
    return np.asarray(x, np.float64)


def _traced_times(times: Any, length: int) -> Any:
    """``times`` on its way into :func:`_host_call`: None, checked float64 values, or a traced
    ``(T,)`` array checked on the host."""
    if times is None:
        return None
    if _is_traced(times):
        if jnp.shape(times) != (length,):
            raise ValueError(f"times must have shape ({length},), got {jnp.shape(times)}")
        return times
    _elapsed(times, length)
    return real_array("times", times)


def ensemble_msd(trajectories: ArrayLike) -> np.ndarray:
    """``⟨|x(t) − x(0)|²⟩`` over walkers, ``(T,)``. Under ``jit``/``vmap`` it runs on the host
    (``jax.pure_callback``, one call per element of a batch) and returns an array of JAX's
    default float dtype.

    Examples:
        >>> import numpy as np
        >>> x = np.zeros((2, 4, 1)); x[0, :, 0] = [0, 1, 2, 1]
        >>> ensemble_msd(x).tolist()
        [0.0, 0.5, 2.0, 0.5]
    """
    if _is_traced(trajectories):
        x = _traced_trajectories(trajectories, "ensemble_msd")
        dtype = jnp.result_type(float)
        return _host_call(
            lambda got: np.asarray(ensemble_msd(_host_positions(got["x"])), dtype),
            jax.ShapeDtypeStruct((x.shape[1],), dtype),
            x=x,
        )
    return _msd(_displacements(trajectories))


def time_averaged_msd(trajectories: ArrayLike, lags: ArrayLike) -> np.ndarray:
    """``(1/(T−Δ)) Σ_t |x(t+Δ) − x(t)|²`` per walker and lag, ``(walkers, len(lags))``.

    Caveat: for ergodic processes (Brownian, fBm) the time average equals the ensemble MSD at
    the same lag; for non-ergodic CTRW-type subdiffusion it does not — the time-averaged MSD
    grows *linearly* in the lag with a scatter between walkers and an amplitude that decays
    with the measurement time (weak ergodicity breaking; He, Burov, Metzler & Barkai 2008,
    Phys. Rev. Lett. 101, 058101, where this time average is defined). Use the ensemble MSD for
    exponents.

    Under ``jit``/``vmap`` (traced ``trajectories``; ``lags`` must be concrete, they set the
    result's shape) it runs on the host as :func:`ensemble_msd` does.

    Args:
        trajectories: ``(walkers, T, dim)`` positions.
        lags: 1-D integer lags ``Δ`` in ``[1, T)``.

    Returns:
        ``(walkers, len(lags))`` time-averaged squared displacements, float64.

    Examples:
        >>> import numpy as np
        >>> x = np.zeros((2, 5, 1))
        >>> x[0, :, 0] = np.arange(5)  # ballistic: Δ² at every lag
        >>> x[1, :, 0] = [0, 1, 0, 1, 0]  # period 2: 1 at odd lags, 0 at even ones
        >>> time_averaged_msd(x, [1, 2]).tolist()
        [[1.0, 4.0], [1.0, 0.0]]
    """
    if _is_traced(trajectories, lags):
        if _is_traced(lags):
            raise ValueError(
                "lags must be concrete (they set the result's shape), got a traced array: "
                "close over them or mark them static"
            )
        x = _traced_trajectories(trajectories, "time_averaged_msd")
        lag_checked = _checked_lags(lags, x.shape[1])
        dtype = jnp.result_type(float)
        return _host_call(
            lambda got: np.asarray(
                time_averaged_msd(_host_positions(got["x"]), lag_checked), dtype
            ),
            jax.ShapeDtypeStruct((x.shape[0], lag_checked.size), dtype),
            x=x,
        )
    disp = _displacements(trajectories)
    x = disp.u
    lag_arr = _checked_lags(lags, x.shape[1])
    out = [
        jnp.mean(jnp.sum(jnp.square(x[:, lag:] - x[:, :-lag]), axis=-1), axis=1) for lag in lag_arr
    ]
    return np.asarray(jnp.stack(out, axis=1), np.float64) * disp.scale**2


def _checked_lags(lags: ArrayLike, length: int) -> np.ndarray:
    """``lags`` as int64: a 1-D array of integers in ``[1, T)``."""
    lag_f = real_array("lags", lags)
    lag_arr = np.nan_to_num(lag_f).astype(np.int64)
    bad = lag_f.ndim != 1 or lag_f.size == 0 or np.any(lag_arr != lag_f)
    if bad or np.any(lag_arr <= 0) or np.any(lag_arr >= length):
        raise ValueError(f"lags must be a non-empty 1-D array of integers in [1, T = {length})")
    return lag_arr


#: groups of walkers of the delete-a-group jackknife behind the dimensions' intervals
JACKKNIFE_GROUPS = 20


def _groups(walkers: int) -> np.ndarray | None:
    """Group ids ``(walkers,)`` of ``min(JACKKNIFE_GROUPS, walkers)`` contiguous, near-equal
    groups; None below 3 walkers (no jackknife)."""
    if walkers < 3:
        return None
    g = min(JACKKNIFE_GROUPS, walkers)
    return np.repeat(np.arange(g), [len(a) for a in np.array_split(np.arange(walkers), g)])


def _group_sums(values: jax.Array, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-group sums of ``values`` ``(walkers, T)`` over walkers, ``(G, T)`` in float64, and the
    group sizes ``(G,)``."""
    g = int(ids[-1]) + 1
    sums = jax.ops.segment_sum(values, jnp.asarray(ids), num_segments=g)
    return np.asarray(sums, np.float64), np.bincount(ids, minlength=g).astype(np.float64)


def _jackknife_ci(estimate: float, replicates: list[float]) -> tuple[float, float] | None:
    """95 % delete-a-group jackknife interval ``estimate ± t_{G−1} · se``,
    ``se² = (G − 1)/G · Σ (θ₋g − θ̄)²`` (Efron & Stein; groups of independent walkers); None when
    fewer than 3 replicates could be computed."""
    reps = np.asarray([r for r in replicates if np.isfinite(r)], np.float64)
    if reps.size < 3:
        return None
    from scipy.stats import t as student_t

    g = reps.size
    se = math.sqrt((g - 1) / g * float(np.sum((reps - reps.mean()) ** 2)))
    half = float(student_t.ppf(0.975, g - 1)) * se
    return (estimate - half, estimate + half)


def _with_jackknife_ci(
    fit: ExponentFit,
    per_walker: jax.Array,
    t: np.ndarray,
    curve: Callable[[np.ndarray], np.ndarray],
) -> ExponentFit:
    """``fit`` with its interval replaced by the delete-a-group jackknife's: for each group of
    walkers left out, the mean of ``per_walker`` ``(walkers, T)`` over the others is mapped by
    ``curve`` to the fitted series, whose log–log slope is refitted on ``fit``'s window. The
    fit's own interval stays with fewer than 3 walkers."""
    ids = _groups(int(per_walker.shape[0]))
    if ids is None:
        return fit
    sums, sizes = _group_sums(per_walker, ids)
    total, n = sums.sum(axis=0), sizes.sum()
    in_window = (t >= fit.window[0]) & (t <= fit.window[1]) & (t > 0)
    reps = []
    for g in range(sizes.size):
        y = curve((total - sums[g]) / (n - sizes[g]))
        sel = in_window & (y > 0)
        ok = sel.sum() >= 3
        reps.append(_least_squares(np.log(t[sel]), np.log(y[sel]))[0] if ok else np.nan)
    ci = _jackknife_ci(fit.H, reps)
    return fit if ci is None else fit._replace(ci=ci)


class WalkDimension(NamedTuple):
    """``d_w = 1/H`` from the ensemble displacement ``R(t) = sqrt(MSD)``; ``fit`` holds H, and
    ``fit.ci`` its 95 % delete-a-group jackknife interval over ``JACKKNIFE_GROUPS`` groups of
    walkers on the same window (with at least 3 walkers; otherwise the curve's own interval,
    :class:`ExponentFit`). Walkers must be independent. ``ci``: the interval of ``d_w``, the
    image of ``fit.ci`` under ``1/H`` (``(1/H_hi, inf)`` when it reaches ``H ≤ 0``; NaN at
    both ends when all of it is ``≤ 0``).

    The interval is the walkers' sampling spread of the slope on the chosen window, not the
    window's finite-time bias: on the Sierpiński gasket the MSD oscillates log-periodically
    about ``t^{2/d_w}``, and in a review's Monte Carlo the interval covered ``log 5/log 2`` in
    20 of 24 independent ensembles, against a nominal 95 %."""

    d_w: float
    fit: ExponentFit
    ci: tuple[float, float] = (math.nan, math.nan)


def _elapsed(times: ArrayLike | None, length: int) -> np.ndarray:
    """``t − t_0`` of the rows' times (default ``0, 1, …``): displacements are measured from the
    first row, so the power laws run in the time elapsed since it."""
    if times is None:
        return np.arange(length, dtype=np.float64)
    t = real_array("times", times)
    if t.shape != (length,):
        raise ValueError(f"times must have shape ({length},), got {t.shape}")
    if not np.all(np.isfinite(t)) or not np.all(np.diff(t) > 0):
        raise ValueError("times must be finite and strictly increasing")
    return t - t[0]


def walk_dimension(
    trajectories: ArrayLike,
    *,
    times: ArrayLike | None = None,
    window: tuple[float, float] | None = None,
) -> WalkDimension:
    """Walk dimension from the ensemble MSD: ``R(τ) = sqrt(⟨|x_τ − x_0|²⟩) ~ τ^{1/d_w}``.

    Args:
        trajectories: ``(walkers, T, dim)`` positions; the first row is every walker's start.
        times: ``(T,)`` strictly increasing times of the rows (default ``0, 1, …``). The fit
            runs in the elapsed time ``τ = t − times[0]`` (a trajectory recorded from
            ``t = 1000`` on has the same ``d_w`` as from 0). A process observed only after its
            start (:func:`ctrw` paths) needs its origin as the first row:
            :meth:`CTRWPaths.from_origin`.
        window: ``(τ_start, τ_end)`` in elapsed time; default: detected
            (:func:`fit_exponent`), and a detected crossover kept only when the jackknife
            interval of ``H`` on its late window lies below ½ (the same test as
            :func:`fit_exponent`'s, with the walkers' interval instead of the curve's, which
            the MSD's correlated residuals make too narrow); otherwise the last decade.
            Lattice walks (no crossover): on Z¹–Z³, 40 ensembles each of 2 000 walkers ×
            3 000 steps, this kept none of the 8 false crossovers the curve's interval kept;
            on 100 ensembles of 2 000 × 2 000 on Z², 2 of 4 (d_w 2.06 and 2.09).

    Under ``jit``/``vmap`` (traced ``trajectories``, ``times`` or ``window``) the estimate runs
    on the host through ``jax.pure_callback``, once per element of a batch, and its fields are
    arrays of JAX's default float dtype (``fit`` as :func:`fit_exponent` gives it there);
    shapes are checked when tracing, values when the program runs. Walkers with NaN or inf
    positions (eager: a ``ValueError`` naming them) make their element NaN there, so one
    diverged ensemble does not sink a batch. Not under ``grad``.

    Examples:
        >>> import jax
        >>> from fracsgd.diffusion import brownian, walk_dimension
        >>> x = brownian(jax.random.key(0), walkers=2000, steps=400, dim=2)
        >>> round(walk_dimension(x, window=(10, 400)).d_w, 1)
        2.0
    """
    if _is_traced(trajectories, times, window):
        return _walk_dimension_traced(trajectories, times, window)
    disp = _displacements(trajectories)
    msd = _msd(disp)
    t = _elapsed(times, msd.shape[0])
    keep = t > 0
    r = np.sqrt(msd[keep])
    fit = fit_exponent(t[keep], r, window=window)
    squared = jnp.sum(jnp.square(disp.u), axis=-1)

    def jackknifed(f: ExponentFit) -> ExponentFit:
        return _with_jackknife_ci(f, squared, t, lambda m: np.sqrt(m * disp.scale**2))

    out = jackknifed(fit)
    if fit.crossover is not None and not out.ci[1] < SUBDIFFUSIVE_SLOPE:
        # fit_exponent keeps a detected crossover when the curve's own interval on the late
        # window lies below 1/2; the walkers' jackknife is the honest interval (the ensemble
        # MSD's residuals are correlated across times), so the same test is repeated with it
        out = jackknifed(fit_exponent(t[keep], r, window=_last_decade(t[keep])))
    return WalkDimension(out.walk_dimension, out, _reciprocal_interval(*out.ci))


def _walk_dimension_traced(trajectories: Any, times: Any, window: Any) -> WalkDimension:
    """:func:`walk_dimension` under ``jit``/``vmap``: the host estimate through
    ``jax.pure_callback``, its fields as arrays (``fit`` as :func:`fit_exponent`'s traced
    path gives it)."""
    x = _traced_trajectories(trajectories, "walk_dimension")
    dtype = jnp.result_type(float)
    window = _window_for_host(window, dtype)
    times = _traced_times(times, x.shape[1])

    def host(got: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        times = got["times"]
        est = walk_dimension(
            _host_positions(got["x"]),
            times=None if times is None else np.asarray(times, np.float64),
            window=_window_on_host(got["window"]),
        )
        v, n = _fit_values(est.fit, dtype)
        return np.concatenate([np.asarray([est.d_w, *est.ci], dtype), v]), n

    out = (jax.ShapeDtypeStruct((3 + FIT_VALUES,), dtype), jax.ShapeDtypeStruct((), jnp.int32))
    v, n = _host_call(host, out, x=x, times=times, window=window)
    return WalkDimension(v[..., 0], _fit_from_values(v[..., 3:], n), (v[..., 1], v[..., 2]))


def _reciprocal_interval(lo: float, hi: float) -> tuple[float, float]:
    """The image of ``[lo, hi]`` under ``1/H`` restricted to ``H > 0``: ``(1/hi, 1/lo)``;
    ``(1/hi, inf)`` when ``lo ≤ 0 < hi``; NaN at both ends when ``hi ≤ 0``."""
    if lo > 0:
        return (1 / hi, 1 / lo)
    return (1 / hi, math.inf) if hi > 0 else (math.nan, math.nan)


class SpectralDimension(NamedTuple):
    """The λ-free spectral-dimension estimate.

    Attributes:
        d_s: ``−2 ×`` the log–log slope of the return probability.
        ci: 95 % interval of ``d_s``: delete-a-group jackknife over ``JACKKNIFE_GROUPS`` (20)
            groups of independent walkers, refitting ``P`` on the same window, ``± t_{G−1}·se``
            (Efron & Stein). In a review's Monte Carlo on the gasket (5 000 walkers) it covered
            1.365 in 39 of 40 ensembles, where the fitted curve's own interval covered 68–78 %
            (60 ensembles); with fewer than 3 walkers it is the curve's interval
            (:class:`ExponentFit`).
        fit: the fit of ``log P`` against ``log t`` (its ``H`` is the slope ``−d_s/2``; its
            ``ci`` the jackknife interval of that slope).
        times: times at which ``P`` was measured; ``return_probability``: ``P(t)``.
        radius: the coarse-graining scale ξ.
    """

    d_s: float
    ci: tuple[float, float]
    fit: ExponentFit
    times: np.ndarray
    return_probability: np.ndarray
    radius: float


def return_probability(trajectories: ArrayLike, radius: float) -> np.ndarray:
    """``P(t) = Pr(|x_t − x_0| ≤ ξ)`` over walkers, ``(T,)``.

    A point at exactly ξ is inside, whatever the units: distances within a relative
    ``BALL_SLACK`` (1e-5) of ξ count as inside, so float32 rounding cannot drop a lattice site at
    distance ξ at one scale and keep it at another. Under ``jit``/``vmap`` (traced
    ``trajectories`` or ``radius``) it runs on the host as :func:`ensemble_msd` does.

    Source: theory.md §3 (return statistics at a coarse-graining scale, the λ-free estimator of
    ``d_s``): on a substrate of spectral dimension ``d_s`` the return probability decays as
    ``t^{−d_s/2}`` (Alexander & Orbach 1982, J. Physique Lett. 43, L625), which
    :func:`spectral_dimension` fits.

    Examples:
        >>> import numpy as np
        >>> x = np.zeros((2, 4, 1)); x[0, :, 0] = [0, 1, 2, 1]  # the other walker stays
        >>> return_probability(x * 0.1, 0.1).tolist()
        [1.0, 1.0, 0.5, 1.0]
    """
    if _is_traced(trajectories, radius):
        x = _traced_trajectories(trajectories, "return_probability")
        radius = _radius_for_host(radius)
        dtype = jnp.result_type(float)
        return _host_call(
            lambda got: np.asarray(
                return_probability(_host_positions(got["x"]), float(got["radius"])), dtype
            ),
            jax.ShapeDtypeStruct((x.shape[1],), dtype),
            x=x,
            radius=radius,
        )
    radius = check_number("radius", radius, lo=0.0, lo_open=True)
    return _return_probability(_displacements(trajectories), radius)


def _radius_for_host(radius: Any) -> Any:
    """``radius`` on its way into :func:`_host_call`: a checked float, or a traced scalar whose
    value the host checks."""
    if _is_traced(radius):
        if jnp.shape(radius) != ():
            raise ValueError(f"radius must be a scalar, got shape {jnp.shape(radius)}")
        return radius
    return check_number("radius", radius, lo=0.0, lo_open=True)


def _inside(disp: _Displacements, radius: float) -> jax.Array:
    """``(walkers, T)``: ``|x_t − x_0| ≤ ξ`` (with ``BALL_SLACK``)."""
    limit = (radius / disp.scale) ** 2 * (1 + BALL_SLACK)  # float64, then compared in float32
    return jnp.sum(jnp.square(disp.u), axis=-1) <= min(limit, 3e38)


def _return_probability(disp: _Displacements, radius: float) -> np.ndarray:
    counts = np.asarray(jnp.sum(_inside(disp, radius), axis=0, dtype=jnp.int32), np.float64)
    return counts / disp.walkers  # in float64 (a float32 mean rounded the fractions)


#: the default coarse-graining radius of :func:`spectral_dimension`, in RMS steps
DEFAULT_RADIUS_STEPS = 1.5


def _rms_step(disp: _Displacements) -> float:
    """The root-mean-square displacement between consecutive rows, over every walker and row,
    in the positions' units (1 on ``Z^k`` and on :func:`gasket_walk`'s gasket)."""
    steps = jnp.diff(disp.u, axis=1)
    return float(jnp.sqrt(jnp.mean(jnp.sum(jnp.square(steps), axis=-1)))) * disp.scale


def spectral_dimension(
    trajectories: ArrayLike,
    *,
    radius: float | None = None,
    times: ArrayLike | None = None,
    window: tuple[float, float] | None = None,
    min_count: int = 50,
) -> SpectralDimension:
    """Spectral dimension without λ, from the return probability at a coarse-graining scale.

    A diffusion of spectral dimension ``d_s`` returns to a ball of radius ξ around its start with
    probability ``P(t) ~ ξ^{d_f} t^{−d_s/2}`` once ``t ≫ ξ^{d_w}`` (the heat-kernel diagonal
    ``p(t; x, x) ~ t^{−d_s/2}``). We fit ``log P`` against ``log τ`` (``τ`` the time elapsed
    since the first row) over ``window``. Default: from the first time the ensemble MSD reaches
    ``10·ξ²`` — the walkers must have left the ball; the MSD keeps the rule free of units, so
    rescaling the positions and ξ together changes nothing — to the last time at which at least
    ``min_count`` walkers are inside the ball, so that counting noise stays below ~15 %.
    The default end selects an upward fluctuation of the count (the last time it reaches
    ``min_count``), and in three or more dimensions few walkers return: with 2 000 walkers a
    review measured ``d_s`` low by 0.06–0.10 on ``Z²`` and by 0.3–0.5 on ``Z³``, whose default
    windows spanned only 0.2–0.4 decades (with fixed windows the bias vanished: 2.03 and
    2.99). Check ``fit.window``: below about half a decade, use more walkers or pass a window.
    Choose ξ at least one step (one lattice spacing): below it the ball holds only the start and
    the default window begins within a few steps, where lattice corrections bias ``d_s`` low
    (``Z³`` at ξ = 0.5: 2.75 ± 0.16; at ξ = 1.5: 2.91 ± 0.17).

    Validated on random walks with known answers (tests): ``Z¹`` (1), ``Z²`` (2) and the
    Sierpinski gasket (``2 log 3/log 5 ≈ 1.365``).

    Args:
        trajectories: ``(walkers, T, dim)`` positions.
        radius: ξ > 0, in the units of the positions. ``None`` (default):
            ``DEFAULT_RADIUS_STEPS`` (1.5) times the RMS displacement between consecutive rows
            (over all walkers and rows), i.e. 1.5 lattice spacings on ``Z^k`` and on the
            gasket; the value used is ``SpectralDimension.radius``. The estimate is a
            statement about the scale ξ: for trajectories sampled unevenly (a CTRW at
            geometric times) or with steps of changing size, pass the ξ you mean.
        times: ``(T,)`` strictly increasing times (default ``0, 1, …``); the fit and ``window``
            use the elapsed time ``τ = t − times[0]``, and ``SpectralDimension.times`` is ``τ``.
        window: ``(τ_start, τ_end)`` for the fit; times at which no walker is in the ball
            are left out of it.
        min_count: walkers that must be inside the ball at the last time of the default
            window (at most the number of walkers; unused with ``window``).

    Under ``jit``/``vmap`` (traced ``trajectories``, ``radius``, ``times`` or ``window``) the
    estimate runs on the host through ``jax.pure_callback``, once per element of a batch (for
    example ``jax.vmap(spectral_dimension)`` over ensembles ``(E, walkers, T, dim)``); its
    fields are then arrays of JAX's default float dtype. An ensemble whose walkers defeat the
    estimate (NaN or inf positions, walkers that never move, too few returns to place or fill
    the window: eager, a ``ValueError`` saying which) reads NaN in every field there
    (``fit.num_points`` 0), and the other ensembles keep theirs. Not under ``grad``.

    Examples:
        >>> import jax
        >>> from fracsgd.diffusion import lattice_walk
        >>> walks = lattice_walk(jax.random.key(0), 4000, 400, 2)  # Z²: d_s = 2
        >>> est = spectral_dimension(walks)  # radius: 1.5 RMS steps = 1.5 lattice spacings
        >>> bool(abs(est.d_s - 2) < 0.2 and est.ci[0] < 2 < est.ci[1]), est.radius
        (True, 1.5)
    """
    check_int("min_count", min_count, 1)
    if _is_traced(trajectories, radius, times, window):
        return _spectral_dimension_traced(trajectories, radius, times, window, min_count)
    if radius is not None:
        radius = check_number("radius", radius, lo=0.0, lo_open=True)
    disp = _displacements(trajectories)
    if radius is None:
        step = _rms_step(disp)
        if not step > 0:
            raise _BadValuesOfR(
                "radius=None takes 1.5 RMS steps, but the walkers never move; pass a radius"
            )
        radius = DEFAULT_RADIUS_STEPS * step
    p = _return_probability(disp, radius)
    t = _elapsed(times, p.shape[0])
    if window is None:
        _check_min_count(min_count, disp.walkers)
        enough = np.flatnonzero(p * disp.walkers >= min_count)
        msd = _msd(disp)
        left = np.flatnonzero((msd >= 10 * float(radius) ** 2) & (t > 0))
        if not enough.size or not left.size:
            raise _BadValuesOfR(
                "cannot place the fit window: "
                + (
                    "the walkers never leave the ball (MSD < 10·radius²); use a smaller radius"
                    if not left.size
                    else "too few walkers return to the ball"
                )
                + " or pass a window"
            )
        t_start, t_end = float(t[left[0]]), float(t[enough[-1]])
        if not t_end > t_start:
            raise _BadValuesOfR(
                "too few walkers return to the ball to fit P(t): use more walkers, "
                "a larger radius, or pass a window"
            )
        window = (t_start, t_end)
    window = _check_window(window)
    if not np.any((p > 0) & (t >= window[0]) & (t <= window[1])):
        raise _BadValuesOfR(
            f"no walker is inside the ball (radius {radius}) at any time in the window {window}"
        )
    # times with no walker in the ball have no log: left out (on a lattice with ξ < 1 the
    # walk can only be back at even times; the default window ends before counts reach 0)
    seen = (p > 0) & (t > 0)  # P(0) = 1 trivially, and has no log time
    fit = fit_exponent(t[seen], p[seen], window=window)
    inside = _inside(disp, radius).astype(jnp.float32)
    fit = _with_jackknife_ci(fit, inside, t, lambda q: q)
    d_s = -2 * fit.H
    return SpectralDimension(
        d_s=d_s,
        ci=(-2 * fit.ci[1], -2 * fit.ci[0]),
        fit=fit,
        times=t,
        return_probability=p,
        radius=float(radius),
    )


def _check_min_count(min_count: int, walkers: int) -> None:
    if min_count > walkers:
        raise ValueError(
            f"min_count = {min_count} exceeds the {walkers} walkers: the default window "
            "needs that many inside the ball; use more walkers, a smaller min_count, or "
            "pass a window"
        )


def _spectral_dimension_traced(
    trajectories: Any, radius: Any, times: Any, window: Any, min_count: int
) -> SpectralDimension:
    """:func:`spectral_dimension` under ``jit``/``vmap``: the host estimate through
    ``jax.pure_callback``, its fields as arrays (``fit`` as :func:`fit_exponent`'s traced path
    gives it; ``times`` and ``return_probability`` ``(T,)``; ``radius`` the one used)."""
    x = _traced_trajectories(trajectories, "spectral_dimension")
    dtype = jnp.result_type(float)
    if radius is not None:
        radius = _radius_for_host(radius)
    window = _window_for_host(window, dtype)
    times = _traced_times(times, x.shape[1])
    if window is None:
        _check_min_count(min_count, x.shape[0])

    def host(got: dict[str, Any]) -> tuple[np.ndarray, ...]:
        times, radius = got["times"], got["radius"]
        est = spectral_dimension(
            _host_positions(got["x"]),
            radius=None if radius is None else float(radius),
            times=None if times is None else np.asarray(times, np.float64),
            window=_window_on_host(got["window"]),
            min_count=min_count,
        )
        v, n = _fit_values(est.fit, dtype)
        head = np.asarray([est.d_s, *est.ci, est.radius], dtype)
        return (
            np.concatenate([head, v]),
            n,
            np.asarray(est.times, dtype),
            np.asarray(est.return_probability, dtype),
        )

    series = jax.ShapeDtypeStruct((x.shape[1],), dtype)
    out = (
        jax.ShapeDtypeStruct((4 + FIT_VALUES,), dtype),
        jax.ShapeDtypeStruct((), jnp.int32),
        series,
        series,
    )
    v, n, t, p = _host_call(host, out, x=x, radius=radius, times=times, window=window)
    return SpectralDimension(
        d_s=v[..., 0],
        ci=(v[..., 1], v[..., 2]),
        fit=_fit_from_values(v[..., 4:], n),
        times=t,
        return_probability=p,
        radius=v[..., 3],
    )


def _traced(*values: Any) -> bool:
    """Whether any argument is a tracer (inside ``jit``/``vmap``/``grad``): the formulas then
    compute with ``jax.numpy`` and leave the checks of concrete values out."""
    return any(isinstance(v, jax.core.Tracer) for v in values)


def paper_spectral_dimension(llc: Any, H: Any) -> Any:
    """The paper's estimator ``d_s = 2 λ H`` (v2 Eq. 17: ``log R = (d_s/(2λ)) log t + c``).

    Say which λ you pass (final checkpoint or trajectory average λ̄): with the same λ here and
    in the bound ``d_s ≤ λ̄`` the bound reduces to ``H ≤ 1/2`` (theory.md §3). Elementwise;
    jit- and vmap-compatible (traced values are not checked). As :func:`effective_diffusion`:
    a NaN (a failed estimate) gives NaN in its element, ±inf is refused.

    Args:
        llc: λ (the LLC), array-like.
        H: the slope of ``log R`` against ``log t`` (:attr:`ExponentFit.H`), array-like.

    Returns:
        ``2 λ H``, broadcast over ``llc`` and ``H``.

    Examples:
        >>> float(paper_spectral_dimension(10.0, 0.25))
        5.0
        >>> paper_spectral_dimension([10.0, float("nan")], 0.5).tolist()  # H = ½: d_s = λ
        [10.0, nan]
    """
    if _traced(llc, H):
        return 2 * jnp.asarray(llc) * jnp.asarray(H)
    llc_a, h_a = _nan_or_checked("llc", llc), _nan_or_checked("H", H)
    try:
        np.broadcast_shapes(llc_a.shape, h_a.shape)
    except ValueError as err:
        raise ValueError(f"llc and H must broadcast together: {err}") from err
    return 2 * llc_a * h_a


def effective_diffusion(xi: Any, llc: Any, d_s: Any) -> Any:
    """``D_ξ = ξ^{2 − d_w} = ξ^{2 − 2λ/d_s}`` (v1 Definition 3.1, with the Alexander–Orbach
    relation ``d_w = 2λ/d_s``). Elementwise; ``xi``, ``d_s`` > 0; a NaN ``llc`` or ``d_s``
    (a failed estimate) gives NaN in its own element, ±inf is refused; jit- and
    vmap-compatible (traced values are not checked). Called eagerly it computes on the host in
    float64 and returns NumPy; traced, it follows JAX's dtype (float32 unless x64 is on), so the
    two agree to float32 rounding. :func:`paper_spectral_dimension` and
    :func:`walk_dimension_from_alexander_orbach` do the same.

    Examples:
        >>> float(effective_diffusion(0.5, 2.0, 2.0))  # d_w = 2: Brownian, D_ξ = 1
        1.0
        >>> import jax, jax.numpy as jnp
        >>> jax.vmap(effective_diffusion, in_axes=(None, 0, None))(0.5, jnp.array([1.0, 2.0]), 2.0)
        Array([0.5, 1. ], dtype=float32)
    """
    if _traced(xi, llc, d_s):
        return jnp.asarray(xi) ** (2 - 2 * jnp.asarray(llc) / jnp.asarray(d_s))
    xi_a = real_array("xi", xi)
    llc_a, d_s_a = _nan_or_checked("llc", llc), _nan_or_checked("d_s", d_s, positive=True)
    if np.any(~(xi_a > 0) | ~np.isfinite(xi_a)):
        raise ValueError("xi must be finite and > 0")
    try:
        np.broadcast_shapes(xi_a.shape, llc_a.shape, d_s_a.shape)
    except ValueError as err:
        raise ValueError(f"xi, llc and d_s must broadcast together: {err}") from err
    return xi_a ** (2 - 2 * llc_a / d_s_a)


def walk_dimension_from_alexander_orbach(llc: Any, d_s: Any) -> Any:
    """``d_w = 2λ/d_s`` (Alexander–Orbach with the LLC as fractal dimension); elementwise
    (``d_s`` > 0; NaN entries give NaN, ±inf is refused), jit- and vmap-compatible (traced
    values are not checked).

    Source: the Alexander–Orbach relation ``d_s = 2 d_f/d_w`` (Alexander & Orbach 1982,
    "Density of states on fractals: «fractons»", J. Physique Lett. 43, L625, there
    ``d̃ = 2 d̄/(2 + θ)`` with ``d_w = 2 + θ``), solved for ``d_w`` with ``d_f := λ``
    (theory.md §3).

    Args:
        llc: λ, array-like (NaN for a failed estimate).
        d_s: spectral dimension, array-like, ``> 0`` (or NaN).

    Returns:
        ``2 λ / d_s``, broadcast.

    Examples:
        >>> import math
        >>> from fracsgd.diffusion import GASKET_SPECTRAL_DIMENSION, GASKET_WALK_DIMENSION
        >>> d_f = math.log(3) / math.log(2)  # Sierpinski gasket: d_w = log 5/log 2
        >>> d_w = walk_dimension_from_alexander_orbach(d_f, GASKET_SPECTRAL_DIMENSION)
        >>> round(float(d_w), 12) == round(GASKET_WALK_DIMENSION, 12)
        True
        >>> float(walk_dimension_from_alexander_orbach(3.0, 3.0))  # Z^3: d_f = d_s, d_w = 2
        2.0
    """
    if _traced(llc, d_s):
        return 2 * jnp.asarray(llc) / jnp.asarray(d_s)
    d_s_a = _nan_or_checked("d_s", d_s, positive=True)
    return 2 * _nan_or_checked("llc", llc) / d_s_a


def _nan_or_checked(name: str, value: Any, *, positive: bool = False) -> np.ndarray:
    """``value`` as an array whose entries are NaN (a failed estimate of one element: it
    gives NaN in that element only, so one diverged network does not sink a sweep) or finite
    (and > 0 with ``positive``); ±inf or an out-of-range number is a ValueError."""
    a = real_array(name, value)
    number = ~np.isnan(a)
    bad = number & (~np.isfinite(a) | (~(a > 0) if positive else False))
    if np.any(bad):
        what = "finite and > 0" if positive else "finite"
        raise ValueError(f"{name} must be {what} (or NaN for a failed estimate), got {a[bad][0]}")
    return a


def displacement_from_checkpoints(checkpoints: Any, reference: Any, mask: Any = None) -> np.ndarray:
    """``R = ||w_k − w_ref||₂`` for parameter checkpoints with a leading ``(K,)`` axis (e.g.
    ``TrainResult.checkpoints`` against ``TrainResult.init_params``), over the entries where
    ``mask`` (a 0/1 pytree like the parameters, e.g. ``Model.param_mask()``) is 1. Pass a later
    checkpoint as ``reference`` for displacements from ``t0 > 0`` (theory.md §1).

    Examples:
        >>> import numpy as np
        >>> ck = {"w": np.array([[0.0, 0.0], [3.0, 4.0]])}
        >>> displacement_from_checkpoints(ck, {"w": np.zeros(2)}).tolist()
        [0.0, 5.0]

    A host computation (NumPy, float64); under ``jit``/``vmap``, ``vmap``
    :func:`fracsgd.train.displacement` over the checkpoints.
    """
    refuse_traced(
        "fracsgd.diffusion.displacement_from_checkpoints",
        hint="Under jit/vmap, vmap fracsgd.train.displacement over the checkpoints",
        checkpoints=checkpoints,
        reference=reference,
        mask=mask,
    )
    leaves, tree = jax.tree.flatten(checkpoints)
    refs, ref_tree = jax.tree.flatten(reference)
    masks = jax.tree.leaves(mask) if mask is not None else [None] * len(leaves)
    same = [str(ref_tree) == str(tree)]  # PyTreeDefs compare by structure; str keeps mypy calm
    if mask is not None:
        same.append(str(jax.tree.structure(mask)) == str(tree))
    if not all(same) or len(masks) != len(leaves):
        raise ValueError(
            "checkpoints, reference and mask must have the same pytree structure, got "
            f"{tree}, {ref_tree}" + ("" if mask is None else f" and {jax.tree.structure(mask)}")
        )
    total = 0.0
    if not leaves:
        raise ValueError("checkpoints must be a non-empty pytree of arrays")
    for c, r, m in zip(leaves, refs, masks, strict=True):
        c, r = real_array("checkpoints", c), real_array("reference", r)
        if c.ndim == 0 or c.shape[1:] != r.shape:
            raise ValueError(f"checkpoint leaf {c.shape} does not match reference {r.shape}")
        d = c - r[None]
        if m is not None:
            m = real_array("mask", m)
            if m.shape != r.shape:
                raise ValueError(f"mask leaf {m.shape} does not match reference {r.shape}")
            d = d * m[None]
        total = total + np.sum(d.reshape(d.shape[0], -1) ** 2, axis=1)
    return np.sqrt(total)
