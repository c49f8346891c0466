"""stationary under vmap: out-of-range traced parameters give NaN, not a density."""

import jax
import jax.numpy as jnp
import numpy as np

import fracsgd as fs


def test_traced_bad_parameters_give_nan():
    grid = fs.ffpe.Grid1D(-4.0, 4.0, 41)
    ps = jax.vmap(lambda d: fs.ffpe.stationary(fs.ffpe.Problem(diffusion=d), grid))(
        jnp.array([-1.0, 0.0, 2.0])
    )
    assert np.all(np.isnan(ps[:2]))  # D = −1 gave a finite, positive "density"
    np.testing.assert_allclose(ps[2], fs.ffpe.stationary(fs.ffpe.Problem(diffusion=2.0), grid))
    grid2 = fs.ffpe.Grid2D(lo=(-3.0, -3.0), hi=(3.0, 3.0), cells=(12, 12))
    q = jax.vmap(lambda g: fs.ffpe.stationary(fs.ffpe.Problem(gamma=g), grid2))(
        jnp.array([jnp.inf, 1.0])
    )
    assert np.all(np.isnan(q[0])) and np.all(np.isfinite(q[1]))


def test_grid_properties_check_the_grid():
    import pytest

    with pytest.raises(ValueError, match=r"grid\.cells"):
        _ = fs.ffpe.Grid1D(-1.0, 1.0, 0).centers  # was ZeroDivisionError
