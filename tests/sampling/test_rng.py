"""The fused Threefry-2x32 generator behind SGLD's noise (``fracsgd.sampling._rng``)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.random import threefry_2x32

from fracsgd.sampling import _rng


def test_threefry_is_bitwise_jax_threefry():
    """The array-code hash equals jax's threefry2x32 primitive (Random123 Threefry-2x32-20)."""
    for key in ([0x13198A2E, 0x03707344], [0, 0], [0xFFFFFFFF, 0xFFFFFFFF]):
        k = jnp.asarray(key, jnp.uint32)
        counts = jax.random.bits(jax.random.key(sum(key) % 97), (512,), jnp.uint32)
        want = np.asarray(threefry_2x32(k, counts))
        y0, y1 = _rng.threefry2x32(k[0], k[1], counts[:256], counts[256:])
        np.testing.assert_array_equal(np.concatenate([y0, y1]), want)


def test_key_words_of_threefry_and_wider_keys():
    key = jax.random.key(3)
    np.testing.assert_array_equal(_rng.key_words(key), jax.random.key_data(key))
    rbg = jax.random.key(3, impl="rbg")
    words = np.asarray(_rng.key_words(rbg))
    assert words.shape == (2,) and words.dtype == np.uint32


def _phi(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.vectorize(math.erf)(z / math.sqrt(2.0)))


def test_normals_have_the_standard_normal_law():
    """Moments and the Kolmogorov–Smirnov distance of 2·10⁵ draws (leaves of odd sizes)."""
    tree = {"a": jnp.zeros((333, 301)), "b": jnp.zeros((7,))}
    z = _rng.normal_like(_rng.key_words(jax.random.key(0)), 5, tree)
    assert z["a"].shape == (333, 301) and z["b"].shape == (7,)
    x = np.concatenate([np.ravel(z["a"]), np.ravel(z["b"])]).astype(np.float64)
    n = x.size
    assert abs(x.mean()) < 5 / math.sqrt(n)
    assert abs(x.var() - 1.0) < 5 * math.sqrt(2.0 / n)
    assert abs(np.mean(x**4) / x.var() ** 2 - 3.0) < 5 * math.sqrt(24.0 / n)
    xs = np.sort(x[:20000])
    ks = np.max(np.abs(_phi(xs) - np.arange(1, xs.size + 1) / xs.size))
    assert ks < 1.95 / math.sqrt(xs.size)  # p ≈ 0.001


def test_draws_are_uncorrelated_across_steps_leaves_and_keys():
    words = _rng.key_words(jax.random.key(1))
    draw = jax.jit(jax.vmap(lambda t: _rng.normal_like(words, t, (jnp.zeros(3), jnp.zeros(2)))))
    a, b = draw(jnp.arange(20000))
    x = np.concatenate([np.asarray(a), np.asarray(b)], axis=1)  # (steps, 5)
    corr = np.corrcoef(np.concatenate([x[:-1], x[1:]], axis=1).T)  # lag 0 and lag 1
    off = corr[~np.eye(10, dtype=bool)]
    assert np.max(np.abs(off)) < 5 / math.sqrt(20000)
    other = _rng.normal_like(_rng.fold(words, 0, 1), 0, jnp.zeros(20000))
    same = _rng.normal_like(words, 0, jnp.zeros(20000))
    assert abs(np.corrcoef(other, same)[0, 1]) < 5 / math.sqrt(20000)
