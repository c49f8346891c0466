"""The stateless epoch permutation (``fracsgd.data.permute_index`` / ``epoch_batch``)."""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fracsgd.data import _shuffle, epoch_batch, permute_index


def _chi2_upper(df: int, p: float = 1e-6) -> float:
    """Upper ``p`` quantile of χ²(df) (Wilson–Hilferty; accurate to ~1 % for df ≥ 10)."""
    z = {1e-6: 4.753}[p]
    a = 2.0 / (9.0 * df)
    return df * (1.0 - a + z * math.sqrt(a)) ** 3


@pytest.mark.parametrize("n", [1, 2, 3, 7, 255, 256, 257, 1000, 4096, 65537])
def test_every_position_maps_to_a_distinct_value(n):
    for seed in (0, 1):
        got = np.asarray(permute_index(jax.random.key(seed), jnp.arange(n), n))
        assert got.dtype == np.int32
        np.testing.assert_array_equal(np.sort(got), np.arange(n))


def _orderings(n: int, num_keys: int) -> np.ndarray:
    keys = jax.random.split(jax.random.key(123), num_keys)
    perm = jax.jit(jax.vmap(lambda k: permute_index(k, jnp.arange(n), n)))
    return np.asarray(perm(keys))


def _chi2_of_orderings(perms: np.ndarray) -> tuple[float, int]:
    n = perms.shape[1]
    index = {p: i for i, p in enumerate(itertools.permutations(range(n)))}
    counts = np.bincount([index[tuple(p)] for p in perms], minlength=len(index))
    expected = len(perms) / len(index)
    return float(((counts - expected) ** 2 / expected).sum()), len(index) - 1


@pytest.mark.parametrize("n", [4, 5])
def test_all_orderings_equally_likely(n):
    """Over many keys every one of the n! orderings appears equally often (χ² at p = 1e-6)."""
    stat, df = _chi2_of_orderings(_orderings(n, 40 * math.factorial(n)))
    assert stat < _chi2_upper(df), (stat, df)


def test_a_weak_shuffle_fails_the_uniformity_test(monkeypatch):
    """The χ² test has power: a one-round Feistel network is far from uniform."""
    monkeypatch.setattr(_shuffle, "ROUNDS", 1)
    stat, df = _chi2_of_orderings(_orderings(5, 40 * 120))
    assert stat > 10 * _chi2_upper(df)


def test_pairs_of_positions_are_uniform_for_larger_n():
    """(π(0), π(1)) is uniform over the 30 ordered pairs of {0..5} and π(j) over {0..299}."""
    keys = jax.random.split(jax.random.key(7), 6000)
    first_two = np.asarray(jax.vmap(lambda k: permute_index(k, jnp.arange(2), 6))(keys))
    counts = np.zeros((6, 6))
    np.add.at(counts, (first_two[:, 0], first_two[:, 1]), 1)
    assert np.all(np.diag(counts) == 0)
    off = counts[~np.eye(6, dtype=bool)]
    stat = float(((off - 200.0) ** 2 / 200.0).sum())
    assert stat < _chi2_upper(29)
    where = np.asarray(jax.vmap(lambda k: permute_index(k, jnp.int32(17), 300))(keys))
    hist = np.bincount(where, minlength=300)
    stat = float(((hist - 20.0) ** 2 / 20.0).sum())
    assert stat < _chi2_upper(299)


def test_epoch_batches_partition_each_epoch():
    n, b = 103, 10  # 10 batches per epoch, 3 samples dropped each epoch
    key = jax.random.key(0)
    per_epoch = n // b
    traced = jax.jit(lambda t: epoch_batch(key, t, n, b))
    epochs = []
    for e in range(3):
        rows = [np.asarray(epoch_batch(key, t, n, b)) for t in range(e * 10, e * 10 + per_epoch)]
        for t, row in zip(range(e * 10, e * 10 + per_epoch), rows, strict=True):
            np.testing.assert_array_equal(np.asarray(traced(t)), row)  # traced step: same
        seen = np.concatenate(rows)
        assert len(np.unique(seen)) == per_epoch * b and seen.min() >= 0 and seen.max() < n
        epochs.append(seen)
    assert not np.array_equal(epochs[0], epochs[1])
    # a different key gives a different order
    other = np.concatenate([np.asarray(epoch_batch(jax.random.key(1), t, n, b)) for t in range(10)])
    assert not np.array_equal(other, epochs[0])


def test_full_batch_epochs_are_permutations():
    got = np.asarray(epoch_batch(jax.random.key(3), 5, 8, 8))
    np.testing.assert_array_equal(np.sort(got), np.arange(8))
    # NumPy integers are integers
    same = epoch_batch(jax.random.key(3), 5, np.int64(8), np.int32(8))
    np.testing.assert_array_equal(np.asarray(same), got)


@pytest.mark.parametrize(
    ("call", "parameter"),
    [
        (lambda: permute_index(jax.random.key(0), jnp.arange(3), 0), "n"),
        (lambda: permute_index(jax.random.key(0), jnp.arange(3), 2**31), "n"),
        (lambda: permute_index(jax.random.key(0), jnp.arange(3), 3.0), "n"),
        (lambda: epoch_batch(jax.random.key(0), 0, 10, 11), "batch_size"),
        (lambda: epoch_batch(jax.random.key(0), 0, 10, 0), "batch_size"),
        (lambda: epoch_batch(jax.random.key(0), 0, 10, True), "batch_size"),
        (lambda: epoch_batch(jax.random.key(0), 0, 10.0, 2), "n"),
        # out of range: used to cycle-walk forever (≥ 2^(2h)) or alias a valid position
        (lambda: permute_index(jax.random.key(0), jnp.array([-1]), 5), r"index .*\[0, 5\)"),
        (lambda: permute_index(jax.random.key(0), jnp.array([0, 256]), 5), r"got 256"),
        (lambda: permute_index(jax.random.key(0), jnp.array([5]), 5), r"index"),
        (lambda: permute_index(jax.random.key(0), jnp.array([0.5]), 5), r"index .*integer"),
        (lambda: permute_index(jax.random.PRNGKey(0), jnp.arange(3), 5), "key"),
    ],
)
def test_bad_input_names_the_parameter(call, parameter):
    with pytest.raises(ValueError, match=parameter):
        call()


def test_traced_out_of_range_positions_read_minus_one():
    """Under jit the positions cannot be checked: out-of-range ones give −1 (and terminate),
    the valid ones their permuted value, and NumPy integer sizes are accepted."""
    idx = jnp.array([3, -1, 5, 256, 0])
    got = np.asarray(jax.jit(lambda i: permute_index(jax.random.key(0), i, np.int64(5)))(idx))
    full = np.asarray(permute_index(jax.random.key(0), jnp.arange(5), 5))
    np.testing.assert_array_equal(got, [full[3], -1, -1, -1, full[0]])


@pytest.mark.parametrize("n", [257, 1000, 4097, 65537])
@pytest.mark.parametrize("unroll", [0, 2, 32])
def test_the_straight_line_walk_equals_the_loop(monkeypatch, n, unroll):
    """On the platforms of fracsgd._xla.STRAIGHT_LINE_PLATFORMS (run here on the CPU) the cycle
    walk's first WALK_UNROLL steps are unconditional and the loop finishes what remains; the
    permutation is the same. Unroll 2 leaves work for the loop (n = 4^h + 1 keeps about 3/4 of
    the domain out of range); after 32 steps a position of n positions is still out with
    probability (3/4)^32 ≈ 10⁻⁴ each, so for n = 65 537 a few still are."""
    from fracsgd import _xla

    positions = jnp.arange(n)
    loop = np.asarray(jax.jit(lambda k: permute_index(k, positions, n))(jax.random.key(5)))
    monkeypatch.setattr(_xla, "STRAIGHT_LINE_PLATFORMS", ("cpu",))
    monkeypatch.setattr(_shuffle, "WALK_UNROLL", unroll)
    walk = np.asarray(jax.jit(lambda k: permute_index(k, positions, n))(jax.random.key(5)))
    np.testing.assert_array_equal(walk, loop)
    np.testing.assert_array_equal(np.sort(walk), np.arange(n))
