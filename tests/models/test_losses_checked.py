"""The loss helpers check shapes and dtypes (under jit too) and never read a wrong class."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fracsgd as fs


def test_cross_entropy_labels_are_checked():
    logits = jnp.log(jnp.array([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]]))
    want = -(np.log(0.5) + np.log(0.8)) / 2
    assert float(fs.models.cross_entropy(logits, jnp.array([0, 2]))) == pytest.approx(want)
    jitted = jax.jit(fs.models.cross_entropy)
    # out of range: NaN, not the last class (−1) or a clamped one (7)
    assert np.isnan(float(jitted(logits, jnp.array([0, -1]))))
    assert np.isnan(float(jitted(logits, jnp.array([7, 2]))))
    with pytest.raises(ValueError, match="labels must be integers"):
        fs.models.cross_entropy(logits, jnp.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"labels must have shape \(2,\)"):
        jitted(logits, jnp.array([[0], [1]]))


def test_squared_error_refuses_broadcasting():
    y = jnp.arange(5.0)[:, None]
    assert float(fs.models.squared_error(y, y)) == 0.0
    with pytest.raises(ValueError, match="same shape"):
        fs.models.squared_error(y, jnp.arange(5.0))  # used to broadcast to (5, 5): 10.0


def test_width_mask_of_the_wrong_length_is_named():
    with pytest.raises(ValueError, match=r"mask\[0\] must have shape \(4,\)"):
        fs.models.mlp((2, 4, 2)).init(jax.random.key(0), (np.ones(3, bool),))


def test_fgn_autocovariance_checks_its_arguments():
    with pytest.raises(ValueError, match="lags"):
        fs.diffusion.fgn_autocovariance(-1, 0.5)
    with pytest.raises(ValueError, match="hurst"):
        fs.diffusion.fgn_autocovariance(3, 2.0)


def test_pad_and_unpad_check_the_widths():
    model = fs.models.mlp((4, 8, 3))
    params = model.init(jax.random.key(0))
    for hidden in ((12,), (4, 4), (0,)):  # silently gave width 8, ignored a layer, width 0
        with pytest.raises(ValueError, match="hidden"):
            fs.models.unpad_params(model, params, hidden)
    wide = fs.models.mlp((4, 16, 3)).init(jax.random.key(0))
    with pytest.raises(ValueError, match="does not fit"):
        fs.models.pad_params(wide, model)
    narrow = fs.models.unpad_params(model, params, (4,))
    back = fs.models.pad_params(narrow, model)
    assert jax.tree.map(jnp.shape, back) == jax.tree.map(jnp.shape, params)
    deeper = fs.models.mlp((4, 2, 2, 3)).init(jax.random.key(0))  # another depth: structure
    for other in (deeper, {"params": narrow}, jax.tree.leaves(narrow)):
        with pytest.raises(ValueError, match="narrow must have the structure"):
            fs.models.pad_params(other, model)


@pytest.mark.parametrize(
    "hidden", [(2.5,), ("3",), (np.float64(3.0),), (np.True_,), (True,), 3, None]
)
def test_unpad_refuses_widths_that_are_not_integers(hidden):
    # int(2.5) == 2 and int("3") == 3 used to cut the parameters silently; a bare int or None
    # raised TypeError from len()
    model = fs.models.mlp((4, 8, 3))
    params = model.init(jax.random.key(0))
    with pytest.raises(ValueError, match="hidden"):
        fs.models.unpad_params(model, params, hidden)
    narrow = fs.models.unpad_params(model, params, (np.int64(3),))  # NumPy integers are widths
    assert narrow["layers"][0]["w"].shape == (4, 3)
