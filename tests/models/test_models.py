"""Maskable widths: a padded network with a width mask is exactly the narrow network."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fracsgd as fs
from fracsgd.models import pad_params, unpad_params

CASES = [
    ("mlp", (5, 9, 7, 3), (4, 2), False),
    ("mlp", (5, 9, 7, 3), (9, 3), True),
    ("deep_linear", (4, 6, 5, 3), (2, 5), False),
]


def _make(kind, widths, bn):
    return fs.models.mlp(widths, batch_norm=bn) if kind == "mlp" else fs.models.deep_linear(widths)


@functools.partial(jax.jit, static_argnums=(0, 5))
def _loss(model, params, x, y, mask, train):
    if train:
        out, _ = model.apply_train(params, x, mask)
    else:
        out = model.apply(params, x, mask)
    return jnp.sum(jnp.square(out - y))


_grad = jax.jit(jax.grad(_loss.__wrapped__, argnums=1), static_argnums=(0, 5))


@pytest.mark.parametrize(("kind", "widths", "hidden", "bn"), CASES)
@jax.default_matmul_precision("highest")
def test_masked_network_is_the_narrow_network(kind, widths, hidden, bn):
    """The claim is float32 arithmetic: on a GPU JAX's default float32 products are TF32, and the
    padded and narrow products can take different kernels (10⁻⁴ relative in the loss on an
    H200), so the precision is pinned; on the CPU the decorator changes nothing."""
    wide = _make(kind, widths, bn)
    narrow = _make(kind, (widths[0], *hidden, widths[-1]), bn)
    mask = wide.width_mask(hidden)
    key = jax.random.key(3)
    # nested initialisation: the masked init is the narrow init, zero-padded (bitwise)
    p_wide = wide.init(key, mask)
    p_narrow = narrow.init(key)
    jax.tree.map(np.testing.assert_array_equal, unpad_params(wide, p_wide, hidden), p_narrow)
    jax.tree.map(np.testing.assert_array_equal, pad_params(p_narrow, wide), p_wide)

    x = jax.random.normal(jax.random.key(1), (16, widths[0]))
    y = jax.random.normal(jax.random.key(2), (16, widths[-1]))
    for train in (False, True):
        out_w = _loss(wide, p_wide, x, y, mask, train)
        out_n = _loss(narrow, p_narrow, x, y, None, train)
        # same function up to float32 summation order (padded terms add exact zeros)
        np.testing.assert_allclose(out_w, out_n, rtol=1e-6)
        g_w = _grad(wide, p_wide, x, y, mask, train)
        g_n = _grad(narrow, p_narrow, x, y, None, train)
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
            unpad_params(wide, g_w, hidden),
            g_n,
        )
        # padded units get exactly zero gradient (running statistics are not parameters)
        pm = wide.param_mask(mask)
        g_w = {k: v for k, v in g_w.items() if k != "batch_stats"}
        pm = {k: v for k, v in pm.items() if k != "batch_stats"}
        for g, m in zip(jax.tree.leaves(g_w), jax.tree.leaves(pm), strict=True):
            assert np.all(np.asarray(g)[np.asarray(m) == 0] == 0)
    assert int(wide.num_params(mask)) == narrow.num_params()


def test_param_mask_excludes_batch_stats_and_padding():
    model = fs.models.mlp((3, 4, 2), batch_norm=True)
    mask = model.width_mask((2,))
    pm = model.param_mask(mask)
    assert all(np.all(np.asarray(v) == 0) for v in jax.tree.leaves(pm["batch_stats"]))
    np.testing.assert_array_equal(pm["layers"][0]["w"].sum(), 3 * 2)
    # weights 3*2 + BN scale/bias 2*2 + output 2*2 + output bias 2
    assert int(model.num_params(mask)) == 6 + 4 + 4 + 2


def test_num_params_counts_match_parameter_leaves():
    model = fs.models.mlp((784, 32, 16, 10))
    params = model.init(jax.random.key(0))
    assert model.num_params() == sum(p.size for p in jax.tree.leaves(params))
    assert model.num_params() == 784 * 32 + 32 + 32 * 16 + 16 + 16 * 10 + 10


def test_init_scale_uses_true_fan_in():
    """He scaling: Var(w) = 2 / fan_in with the active fan-in, not the allocated one."""
    wide = fs.models.mlp((400, 300, 10))
    mask = wide.width_mask((100,))
    p = wide.init(jax.random.key(0), mask)
    w2 = np.asarray(p["layers"][1]["w"])[:100]  # output layer: fan-in 100, LeCun gain 1
    # 1000 draws: the sample variance is within 15 % of 1/100 with overwhelming probability
    np.testing.assert_allclose(w2.var(), 1 / 100, rtol=0.15)
    w1 = np.asarray(p["layers"][0]["w"])[:, :100]
    np.testing.assert_allclose(w1.var(), 2 / 400, rtol=0.05)


def test_init_scale_is_the_ieee_float32_value_for_every_fan_in():
    """The scale ``sqrt(gain / fan_in)`` is the IEEE float32 value (NumPy's), whether the fan-in
    is traced (a masked network, vmapped over masks) or a constant (the narrow network): nested
    initialisation is bitwise only if both agree, and XLA's GPU division and square root are not
    correctly rounded."""
    from fracsgd.models._mlp import _init_scale

    width = 300
    fans = np.arange(1, width + 1)
    masks = (np.arange(width)[None, :] < fans[:, None]).astype(np.float32)
    for gain in (1.0, 2.0):
        want = np.sqrt(np.float32(gain) / fans.astype(np.float32))
        traced = jax.jit(jax.vmap(lambda u, g=gain: _init_scale(g, u)))(masks)
        np.testing.assert_array_equal(traced, want)
        constant = jax.jit(lambda g=gain: _init_scale(g, jnp.ones((width,), jnp.float32)))()
        assert constant == want[-1]
        # no active unit: the fan-in counts as 1, as for an empty layer's zero weights
        assert _init_scale(gain, jnp.zeros((width,), jnp.float32)) == np.sqrt(np.float32(gain))


def test_deep_linear_params_compute_the_factor_product():
    key = jax.random.key(0)
    factors = [
        jax.random.normal(k, s)
        for k, s in zip(jax.random.split(key, 3), [(4, 3), (2, 4), (5, 2)], strict=True)
    ]
    model = fs.models.deep_linear((3, 4, 2, 5))
    params = fs.models.deep_linear_params(factors)
    x = jax.random.normal(jax.random.key(1), (7, 3))
    product = factors[2] @ factors[1] @ factors[0]
    np.testing.assert_allclose(model.apply(params, x), x @ product.T, rtol=1e-5, atol=1e-5)


def test_models_are_interned():
    assert fs.models.mlp([4, 8, 2]) is fs.models.mlp((4, 8, 2))
    assert fs.models.mlp((4, 8, 2)) is not fs.models.mlp((4, 8, 2), batch_norm=True)


@pytest.mark.parametrize(
    "widths", [(4, 0, 2), (4, -1, 2), (4,), "abc", (4, 2.5, 2), (4.0, 2), (True, 2), (2, 2**40, 2)]
)
def test_bad_widths_raise(widths):
    with pytest.raises(ValueError, match="widths"):
        fs.models.mlp(widths)


def test_bad_hidden_for_mask_raises():
    model = fs.models.mlp((4, 8, 2))
    with pytest.raises(ValueError, match="hidden"):
        model.width_mask((9,))
    with pytest.raises(ValueError, match="hidden"):
        model.width_mask((4, 4))


@pytest.mark.parametrize("flag", ["no", 0, None])
def test_batch_norm_flag_must_be_a_bool(flag):
    # bool("no") is True: a string or number used to give a BatchNorm network silently
    with pytest.raises(ValueError, match="batch_norm"):
        fs.models.mlp((4, 8, 2), batch_norm=flag)
