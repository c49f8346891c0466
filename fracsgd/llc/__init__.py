"""The local learning coefficient λ: a batched SGLD estimator with diagnostics, and ground
truth for deep linear networks (theory.md §2, Appendix A)."""

from fracsgd.llc._estimate import (
    NBETA_RULES,
    SAMPLERS,
    LLCResult,
    NotAMinimumWarning,
    batch_nbeta,
    default_nbeta,
    estimate,
    estimate_many,
    resolve_nbeta,
)
from fracsgd.llc._truth import aoyagi_lambda, reduced_rank_lambda

__all__ = [
    "NBETA_RULES",
    "SAMPLERS",
    "LLCResult",
    "NotAMinimumWarning",
    "aoyagi_lambda",
    "batch_nbeta",
    "default_nbeta",
    "estimate",
    "estimate_many",
    "reduced_rank_lambda",
    "resolve_nbeta",
]
