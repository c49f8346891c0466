"""Bad input, systematically: training (issue #7).

The compiled loop is replaced by a stub that raises ``Started``: reaching it means validation
accepted the input, which is correct only for valid inputs. Nothing is compiled, so the suite
stays fast.
"""

import math
from unittest import mock

import jax
import numpy as np
import pytest
from _fuzz import BAD_INTS, BAD_SCALARS, FAST, Started, raises_naming, stop_training
from hypothesis import given
from hypothesis import strategies as st

import fracsgd as fs
from fracsgd.train import _api

KEY = jax.random.key(0)
DATA = fs.data.load("moons", n=64, noise=0.1, seed=0)
MODEL = fs.models.mlp((2, 4, 2))
CONFIG = fs.train.TrainConfig(steps=4, batch_size=8, num_checkpoints=2)
GRID = fs.train.Grid(
    hidden=(4,), learning_rates=(0.1,), batch_sizes=(8,), steps=4, num_checkpoints=2
)


def _accepted(fn, *names):
    """True when validation accepted the input (the stubbed loop was reached), False after a
    ValueError naming one of ``names``."""
    with mock.patch.object(_api, "_train_bucket", stop_training):
        try:
            fn()
        except Started:
            return True
        except ValueError as err:
            assert any(n in str(err) for n in names), str(err)
            return False
    raise AssertionError("returned without training")


_CONFIG_FIELDS = {
    "steps": BAD_INTS,
    "batch_size": st.one_of(BAD_INTS, st.just(65)),
    "learning_rate": BAD_SCALARS,
    "optimizer": st.sampled_from([None, "SGD", ["sgd"], 1]),
    "momentum": st.one_of(BAD_SCALARS.filter(lambda v: v != 0), st.just(1.0)),
    "eps": BAD_SCALARS,
    "sampling": st.sampled_from([None, "epochs", 3]),
    "record_every": st.one_of(BAD_INTS, st.just(3)),
    "num_checkpoints": BAD_INTS,
}


@FAST
@given(field_bad=st.one_of(*(st.tuples(st.just(f), s) for f, s in _CONFIG_FIELDS.items())))
def test_train_config_fields_are_named(field_bad):
    field, bad = field_bad
    cfg = CONFIG._replace(**{field: bad})
    accepted = _accepted(
        lambda: fs.train.run(KEY, MODEL, DATA, cfg, progress=False), field, "record_every"
    )
    assert not accepted, f"{field}={bad!r} was accepted"


@FAST
@given(
    key=st.sampled_from([0, None, "k", jax.random.split(KEY, 2)]),
    which=st.sampled_from(["run", "sweep", "branch"]),
)
def test_keys_are_named(key, which):
    params = jax.vmap(MODEL.init)(jax.random.split(KEY, 2))
    call = {
        "run": lambda: fs.train.run(key, MODEL, DATA, CONFIG, progress=False),
        "sweep": lambda: fs.train.sweep(key, DATA, GRID, progress=False),
        "branch": lambda: fs.train.branch(
            key, MODEL, DATA, params, CONFIG, replicas=2, progress=False
        ),
    }[which]
    raises_naming(call, "key")


_GRID_FIELDS = {
    "hidden": st.sampled_from([((4.5,),), (None,), ("a",), ((0,),), (), 4, [[4], [4]]]),
    "seeds": st.sampled_from([(1.5,), 3, (), (-1,), (2**31,), ("a",)]),
    "learning_rates": st.one_of(BAD_SCALARS.map(lambda v: (v,)), st.just(())),
    "optimizers": st.sampled_from([(None,), ("lbfgs",), ()]),
    "batch_sizes": st.sampled_from([(8.0,), (0,), (65,), ()]),
    "model": st.sampled_from([None, "cnn", []]),
    "max_padding_overhead": st.sampled_from([math.nan, 0.5, "a", True]),
    "memory_limit": st.sampled_from([1.5, 0, -1, "a"]),
    "steps": BAD_INTS,
}


@FAST
@given(field_bad=st.one_of(*(st.tuples(st.just(f), s) for f, s in _GRID_FIELDS.items())))
def test_grid_fields_are_named(field_bad):
    field, bad = field_bad
    grid = GRID._replace(**{field: bad})
    names = (field, "optimizer", "model", "hidden", "seeds")
    accepted = _accepted(lambda: fs.train.sweep(KEY, DATA, grid, progress=False), *names)
    assert not accepted, f"{field}={bad!r} was accepted"


def test_run_and_branch_objects_are_named():
    params = jax.vmap(MODEL.init)(jax.random.split(KEY, 2))
    run = fs.train.run
    raises_naming(lambda: run(KEY, None, DATA, CONFIG, progress=False), "model")
    raises_naming(lambda: run(KEY, MODEL, None, CONFIG, progress=False), "dataset")
    raises_naming(lambda: run(KEY, MODEL, DATA, {}, progress=False), "config")
    raises_naming(
        lambda: run(KEY, fs.models.mlp((3, 4, 2)), DATA, CONFIG, progress=False), "input width"
    )
    bad_x = DATA._replace(x_train=DATA.x_train.at[0, 0].set(np.nan))
    raises_naming(lambda: run(KEY, MODEL, bad_x, CONFIG, progress=False), "x_train")
    br = fs.train.branch
    raises_naming(
        lambda: br(KEY, MODEL, DATA, params, CONFIG, replicas=0, progress=False), "replicas"
    )
    raises_naming(lambda: br(KEY, MODEL, DATA, None, CONFIG, replicas=2, progress=False), "params")
    raises_naming(
        lambda: br(
            KEY,
            MODEL,
            DATA,
            params,
            CONFIG,
            replicas=2,
            progress=False,
            learning_rates=[np.nan, 1.0],
        ),
        "learning_rates",
    )


# ---- inputs that used to escape validation (found by fuzzing, now refused by name)


def test_run_memory_limit_type_is_named():
    raises_naming(
        lambda: fs.train.run(KEY, MODEL, DATA, CONFIG, progress=False, memory_limit="a"),
        "memory_limit",
    )


def test_sweep_huge_width_is_named():
    _accepted(
        lambda: fs.train.sweep(KEY, DATA, GRID._replace(hidden=(10**30,)), progress=False), "hidden"
    )


def test_sweep_duplicate_numpy_seed_is_named():
    assert not _accepted(
        lambda: fs.train.sweep(KEY, DATA, GRID._replace(seeds=[0, np.int64(0)]), progress=False),
        "seeds",
    )


def test_sweep_batch_norm_must_be_a_bool():
    assert not _accepted(
        lambda: fs.train.sweep(KEY, DATA, GRID._replace(batch_norm="yes"), progress=False),
        "batch_norm",
    )


def test_branch_learning_rates_scalar_is_named():
    params = jax.vmap(MODEL.init)(jax.random.split(KEY, 2))
    raises_naming(
        lambda: fs.train.branch(
            KEY, MODEL, DATA, params, CONFIG, replicas=2, progress=False, learning_rates=0.1
        ),
        "learning_rates",
    )


@pytest.mark.parametrize("mask", [5, (np.ones((2, 3)),)])
def test_branch_mask_is_checked(mask):
    params = jax.vmap(MODEL.init)(jax.random.split(KEY, 2))
    assert not _accepted(
        lambda: fs.train.branch(
            KEY, MODEL, DATA, params, CONFIG, replicas=2, progress=False, mask=mask
        ),
        "mask",
    )
