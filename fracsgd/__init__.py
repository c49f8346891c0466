"""fracsgd: the fractal dynamics of stochastic gradient descent, in JAX.

Implements and tests Hennick & De Baerdemacker, "Almost Bayesian: The Fractal Dynamics of
Stochastic Gradient Descent" (arXiv 2503.22478).
"""

from fracsgd import data, diffusion, experiments, ffpe, llc, models, parallel, sampling, train

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "data",
    "diffusion",
    "experiments",
    "ffpe",
    "llc",
    "models",
    "parallel",
    "sampling",
    "train",
]
