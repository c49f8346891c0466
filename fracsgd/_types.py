"""Type aliases shared across fracsgd (one place, as in diffrax's ``_custom_types.py``).

Shapes are written in docstrings jaxtyping-style, e.g. ``Float[Array, "n features"]``.
"""

from __future__ import annotations

from typing import Any

import jax

Array = jax.Array
#: A ``jax.random.key`` value (new-style typed key).
PRNGKey = jax.Array
#: Any pytree of arrays (model parameters, optimiser states, …).
PyTree = Any
#: Per-hidden-layer boolean vectors marking the active units of a width-masked network.
WidthMask = tuple[jax.Array, ...]

__all__ = ["Array", "PRNGKey", "PyTree", "WidthMask"]
