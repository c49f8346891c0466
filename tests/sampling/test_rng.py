"""The fused Threefry-2x32 generator behind SGLD's noise (``fracsgd.sampling._rng``)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
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


def test_normal_transform_is_accurate_on_every_uniform():
    """All 2²³ uniforms the transform can see: √2·erfinv(u) against float64 (scipy), relative
    error < 3·10⁻⁷ on the CPU (about 4 float32 ulp; 2.86·10⁻⁷ measured), and strictly increasing
    in u (a monotone quantile). Other backends evaluate ``log`` with their own float32 routine:
    3.26·10⁻⁷ was measured on an NVIDIA H200 (jax 0.11.2), so the bound there is 3.5·10⁻⁷."""
    from scipy.special import erfinv as erfinv64

    k = jnp.arange(2**23, dtype=jnp.uint32) << jnp.uint32(9)  # every value of the top 23 bits
    u = _rng.uniform_open(k)
    z = np.asarray(jax.jit(lambda b: _rng._to_normal(b, jnp.float32))(k), np.float64)
    want = math.sqrt(2.0) * erfinv64(np.asarray(u, np.float64))
    nonzero = want != 0.0
    assert np.all(z[~nonzero] == 0.0)
    rel = np.abs(z[nonzero] - want[nonzero]) / np.abs(want[nonzero])
    assert rel.max() < (3e-7 if jax.default_backend() == "cpu" else 3.5e-7)
    assert np.all(np.diff(z) >= 0.0) and np.count_nonzero(np.diff(z) == 0) < 2**23 // 100
    assert z.min() < -5.4 and z.max() > 5.2  # u = −1 + 2⁻²⁴ and 1 − 2⁻²²: the tails


def test_log_positive_is_faithful_on_every_float_of_two_binades_and_a_wide_sample():
    """``log_positive`` against float64: below 1 float32 ulp of the result (0.82 measured) on
    every float32 in [1/4, 1) — the reduction's two branches, ``k = −1`` and ``k = 0``, cover every
    mantissa there — and on 2²⁰ log-uniform samples over [2⁻¹²⁶, 2¹²⁷), the normal floats."""
    binades = np.arange(0x3E800000, 0x3F800000, dtype=np.uint32).view(np.float32)
    rng = np.random.default_rng(0)
    wide = np.exp2(rng.uniform(-126.0, 127.0, 2**20)).astype(np.float32)
    one = np.array([1.0, 2.0, 0.5, np.float32(2.0**-126)], np.float32)
    t = np.concatenate([binades, wide, one])
    got = np.asarray(jax.jit(_rng.log_positive)(t), np.float64)
    want = np.log(t.astype(np.float64))
    ulp = np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)
    nonzero = want != 0.0
    assert np.all(got[~nonzero] == 0.0)  # log 1 = 0 exactly
    assert np.max(np.abs(got - want)[nonzero] / ulp[nonzero]) < 1.0


def test_erfinv_edges():
    x = jnp.array([1.0, -1.0, 1.5, -2.0, 0.0, -0.5, np.nan, np.inf], jnp.float32)
    got = np.asarray(_rng.erfinv(x))
    assert got[0] == np.inf and got[1] == -np.inf
    assert np.isnan(got[2]) and np.isnan(got[3]) and np.isnan(got[6]) and np.isnan(got[7])
    assert got[4] == 0.0 and got[5] == pytest.approx(-0.4769362762, rel=1e-6)
