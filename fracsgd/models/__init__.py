"""Models as ``Model(init, apply, …)`` pairs of pure functions on plain pytrees.

See :mod:`fracsgd.models._mlp` for the parameter layout, width masks and nested initialisation.
"""

from fracsgd.models._mlp import (
    Model,
    cross_entropy,
    deep_linear,
    deep_linear_params,
    mlp,
    pad_params,
    squared_error,
    unpad_params,
)

__all__ = [
    "Model",
    "cross_entropy",
    "deep_linear",
    "deep_linear_params",
    "mlp",
    "pad_params",
    "squared_error",
    "unpad_params",
]
