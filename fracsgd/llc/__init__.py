"""The local learning coefficient λ: a batched SGLD estimator with diagnostics, and ground
truth for deep linear networks (theory.md §2, Appendix A)."""

from fracsgd.llc._calibrate import (
    MAX_NOISE_RATIO,
    MIN_ESS,
    MIXED_RHAT_DISTANCE,
    STABILITY_TOLERANCE,
    UNMIXED_TIE,
    Calibration,
    TrajectoryLLC,
    calibrate,
    plot_trace,
    time_average,
    trajectory,
)
from fracsgd.llc._curvature import StepSizeBias, step_size_bias
from fracsgd.llc._estimate import (
    DRIFT_NORM_EVERY,
    NBETA_RULES,
    SAMPLERS,
    DivergedChainsWarning,
    LLCResult,
    NotAMinimumWarning,
    batch_nbeta,
    chain_bytes,
    default_nbeta,
    estimate,
    estimate_many,
    minibatch_noise_ratio,
    resolve_nbeta,
)
from fracsgd.llc._truth import aoyagi_lambda, reduced_rank_lambda

__all__ = [
    "DRIFT_NORM_EVERY",
    "MAX_NOISE_RATIO",
    "MIN_ESS",
    "MIXED_RHAT_DISTANCE",
    "NBETA_RULES",
    "SAMPLERS",
    "STABILITY_TOLERANCE",
    "UNMIXED_TIE",
    "Calibration",
    "DivergedChainsWarning",
    "LLCResult",
    "NotAMinimumWarning",
    "StepSizeBias",
    "TrajectoryLLC",
    "aoyagi_lambda",
    "batch_nbeta",
    "calibrate",
    "chain_bytes",
    "default_nbeta",
    "estimate",
    "estimate_many",
    "minibatch_noise_ratio",
    "plot_trace",
    "reduced_rank_lambda",
    "resolve_nbeta",
    "step_size_bias",
    "time_average",
    "trajectory",
]
