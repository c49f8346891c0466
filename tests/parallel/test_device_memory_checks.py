"""device_memory checks its mesh like every other function of fracsgd.parallel (check_mesh's
docstring promises it): a bad mesh raised AttributeError deep inside instead of a ValueError
naming the argument."""

import jax
import numpy as np
import pytest
from jax.sharding import Mesh

from fracsgd.parallel import batch_mesh, device_memory


@pytest.mark.parametrize(
    "mesh",
    ["batch", lambda: Mesh(np.asarray(jax.devices()[:1], dtype=object), ("x",))],
    ids=["not-a-mesh", "wrong-axis"],
)
def test_a_bad_mesh_is_named(mesh):
    mesh = mesh() if callable(mesh) else mesh
    with pytest.raises(ValueError, match=r"^mesh must be None or a one-dimensional"):
        device_memory(mesh)


def test_a_good_mesh_still_works():
    # None only where the platform reports nothing (neither memory stats nor /proc/meminfo)
    for mesh in (None, batch_mesh(jax.devices()[:1])):
        got = device_memory(mesh)
        assert got is None or got > 0
