"""Stochastic-gradient MCMC over any pytree: SGLD and RMSprop-preconditioned SGLD kernels,
localised gradient estimators, and chain diagnostics. Knows nothing about neural networks."""

from fracsgd.sampling._diagnostics import effective_sample_size, split_rhat
from fracsgd.sampling._gradients import (
    GradientEstimator,
    localize,
    localized_gradient,
    tree_sq_norm,
)
from fracsgd.sampling._sgld import (
    PSGLDState,
    SamplingAlgorithm,
    SGLDInfo,
    SGLDState,
    build_kernel,
    build_psgld_kernel,
    init,
    psgld,
    psgld_init,
    psgld_preconditioner,
    sgld,
)

__all__ = [
    "GradientEstimator",
    "PSGLDState",
    "SGLDInfo",
    "SGLDState",
    "SamplingAlgorithm",
    "build_kernel",
    "build_psgld_kernel",
    "effective_sample_size",
    "init",
    "localize",
    "localized_gradient",
    "psgld",
    "psgld_init",
    "psgld_preconditioner",
    "sgld",
    "split_rhat",
    "tree_sq_norm",
]
