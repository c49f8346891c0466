"""Chain diagnostics on stacked traces ``(..., chains, draws)``: split R-hat and effective sample
size (Gelman et al., *Bayesian Data Analysis*, 3rd ed., §11.4–11.5; Geyer's initial monotone
sequence estimator as in Stan). Host-side NumPy functions of the traces."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from fracsgd._checks import refuse_traced


def _as_traces(x: ArrayLike, name: str) -> np.ndarray:
    if isinstance(x, str | bytes):
        raise ValueError(f"{name} must be an array of numbers (..., chains, draws), got {x!r:.40}")
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be an array of numbers (..., chains, draws): {err}") from err
    if a.ndim < 2:
        raise ValueError(f"{name} must have shape (..., chains, draws), got {a.shape}")
    if a.shape[-1] < 4:
        raise ValueError(f"{name} needs at least 4 draws per chain, got {a.shape[-1]}")
    if a.shape[-2] < 1:
        raise ValueError(f"{name} needs at least 1 chain, got shape {a.shape}")
    return a


def _split(a: np.ndarray) -> np.ndarray:
    half = a.shape[-1] // 2
    return np.concatenate([a[..., :half], a[..., a.shape[-1] - half :]], axis=-2)


def split_rhat(traces: ArrayLike) -> np.ndarray:
    """Split R-hat: each chain is halved, then ``sqrt(((n−1)/n · W + B/n) / W)`` with ``W`` the
    mean within-chain variance and ``B/n`` the variance of the chain means. Values near 1 mean
    the chains agree; > 1.01–1.1 signals non-convergence. NaN for chains with zero variance.

    Source: Gelman et al., *Bayesian Data Analysis*, 3rd ed. (2013), §11.4 (the split chains
    and ``R̂ = sqrt(var⁺/W)`` with ``var⁺ = (n−1)/n · W + B/n``).

    Args:
        traces: ``(..., chains, draws)`` array of numbers, at least 4 draws per chain (each
            chain is split into halves of ``draws // 2``; an odd middle draw is dropped).

    Returns:
        R-hat over the last two axes: shape ``traces.shape[:-2]`` (a NumPy float for 2-D
        traces).

    Raises:
        ValueError: for fewer than 2 axes, fewer than 4 draws, non-numeric or traced input.

    Examples:
        >>> import numpy as np
        >>> x = np.random.default_rng(0).normal(size=(4, 1000))
        >>> bool(abs(split_rhat(x) - 1) < 0.01)
        True

        Two chains stuck at different levels have not mixed:

        >>> stuck = np.stack([x[0], x[1] + 5.0])
        >>> bool(split_rhat(stuck) > 2)
        True
    """
    refuse_traced("fracsgd.sampling.split_rhat", traces=traces)
    a = _split(_as_traces(traces, "traces"))
    n = a.shape[-1]
    means = a.mean(axis=-1)
    w = a.var(axis=-1, ddof=1).mean(axis=-1)
    b_over_n = means.var(axis=-1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt(((n - 1) / n * w + b_over_n) / w)


def _autocov(x: np.ndarray) -> np.ndarray:
    n = x.shape[-1]
    centered = x - x.mean(axis=-1, keepdims=True)
    size = 2 ** int(np.ceil(np.log2(2 * n)))
    f = np.fft.rfft(centered, size, axis=-1)
    acov = np.fft.irfft(f * np.conj(f), size, axis=-1)[..., :n] / n
    return acov


def _geyer_tau(rho: np.ndarray, n: int) -> float:
    """The integrated autocorrelation time ``τ̂`` from the multi-chain autocorrelations
    ``ρ̂_t`` of split chains of ``n`` draws, as Stan and ArviZ compute it (Vehtari et al. 2021,
    Bayesian Analysis 16(2), §3.2 and Appendix A): Geyer's initial positive sequence of pair
    sums ``ρ̂_{2k} + ρ̂_{2k+1}`` (stopped at the first negative pair, within ``t < n − 3``), made
    monotone, plus the even term of the stopping pair when it is positive (their "improved
    estimate", which reduces the variance for antithetic chains)."""
    kept = np.zeros(n)
    even, odd = 1.0, float(rho[1])
    kept[0], kept[1] = even, odd
    t = 1
    while t < n - 3 and even + odd > 0:
        even, odd = float(rho[t + 1]), float(rho[t + 2])
        if even + odd >= 0:
            kept[t + 1], kept[t + 2] = even, odd
        t += 2
    last = t - 2
    if even > 0:
        kept[last + 1] = even
    t = 1
    while t <= last - 2:  # initial monotone sequence
        if kept[t + 1] + kept[t + 2] > kept[t - 1] + kept[t]:
            kept[t + 1] = kept[t + 2] = (kept[t - 1] + kept[t]) / 2
        t += 2
    return float(-1 + 2 * kept[: last + 1].sum() + kept[last + 1])


def effective_sample_size(traces: ArrayLike) -> np.ndarray:
    """Effective sample size of the pooled chains: split chains, the multi-chain
    autocorrelation, and Geyer's initial positive and monotone sequence, exactly as Stan's and
    ArviZ's ``ess(method="mean")`` (Vehtari et al. 2021; without rank normalisation), capped
    at ``S log₁₀ S`` for ``S`` draws in all. NaN when the pooled variance is 0 or not finite.

    Source: Gelman et al., *Bayesian Data Analysis*, 3rd ed. (2013), §11.5; Geyer,
    "Practical Markov chain Monte Carlo", Statistical Science 7 (1992), for the truncation,
    as Stan computes it.

    Args:
        traces: ``(..., chains, draws)`` array of numbers, at least 4 draws per chain.

    Returns:
        The effective number of independent draws of all chains together, over the last two
        axes: shape ``traces.shape[:-2]`` (a NumPy float for 2-D traces); NaN for constant
        traces.

    Raises:
        ValueError: for fewer than 2 axes, fewer than 4 draws, non-numeric or traced input.

    Examples:
        >>> import numpy as np
        >>> x = np.random.default_rng(0).normal(size=(4, 1000))
        >>> bool(3000 < effective_sample_size(x) < 5000)
        True

        An AR(1) chain with coefficient 0.9 has an integrated autocorrelation time of
        ``(1 + 0.9)/(1 − 0.9) = 19``, so 4 000 draws are worth about 210:

        >>> z = np.random.default_rng(1).normal(size=(4, 1000))
        >>> ar = np.zeros_like(z)
        >>> for t in range(1, 1000):
        ...     ar[:, t] = 0.9 * ar[:, t - 1] + z[:, t]
        >>> bool(120 < effective_sample_size(ar) < 320)
        True
    """
    refuse_traced("fracsgd.sampling.effective_sample_size", traces=traces)
    a = _split(_as_traces(traces, "traces"))
    lead = a.shape[:-2]
    m, n = a.shape[-2], a.shape[-1]
    flat = a.reshape(-1, m, n)
    out = np.empty(flat.shape[0])
    for i, chains in enumerate(flat):
        acov = _autocov(chains)
        chain_var = acov[:, 0] * n / (n - 1)
        w = chain_var.mean()
        var_plus = w * (n - 1) / n + (chains.mean(axis=1).var(ddof=1) if m > 1 else 0.0)
        if not np.isfinite(var_plus) or var_plus <= 0:
            out[i] = np.nan
            continue
        rho = 1 - (w - acov.mean(axis=0)) / var_plus
        out[i] = m * n / max(_geyer_tau(rho, n), 1.0 / np.log10(m * n))
    return out.reshape(lead) if lead else out[0]
