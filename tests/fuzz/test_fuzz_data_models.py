"""Bad input, systematically: data sets and models (issue #7).

Correct results here: a :class:`Dataset` that passes its own ``validate()`` with the requested
sizes; IDX arrays whose bytes round-trip; model outputs row by row (a NaN input row gives NaN in
that row only, every other row is unchanged: ``apply`` is a per-example function).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
from _fuzz import BAD_INTS, BAD_SCALARS, FAST, FEW, NOT_A_NUMBER, raises_naming
from hypothesis import given
from hypothesis import strategies as st

import fracsgd as fs

KEY = jax.random.key(0)
WIDTH_JUNK = st.sampled_from([math.nan, math.inf, 2.5, None, "3", True])


@FAST
@given(
    n=st.one_of(st.integers(2, 40), BAD_INTS),
    noise=st.one_of(st.floats(0, 1), BAD_SCALARS),
    seed=st.one_of(st.integers(0, 3), BAD_INTS),
)
def test_moons_sizes_or_named_error(n, noise, seed):
    try:
        ds = fs.data.load("moons", n=n, noise=noise, seed=seed)
    except ValueError as err:
        assert str(err).split()[0] in ("n", "noise", "seed"), str(err)
        # only a bad argument may be refused
        ok_n = isinstance(n, int) and not isinstance(n, bool) and n >= 2
        ok_seed = isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0
        ok_noise = (
            isinstance(noise, int | float)
            and not isinstance(noise, bool)
            and math.isfinite(noise)
            and noise >= 0
        )
        assert not (ok_n and ok_seed and ok_noise), str(err)
        return
    assert ds.num_train == n and ds.num_test == max(n // 4, 1)
    assert int(ds.y_train.sum()) == n - n // 2  # n // 2 points of class 0, the rest class 1


@FEW
@given(name=st.one_of(st.text(max_size=6), st.integers(), st.none()))
def test_load_unknown_names_are_named(name):
    if name in ("mnist", "moons"):
        return
    raises_naming(lambda: fs.data.load(name), "name")


@FEW
@given(data_dir=st.one_of(st.integers(), st.floats(), st.lists(st.text(max_size=2), max_size=2)))
def test_load_data_dir_of_wrong_type_is_named(data_dir):
    raises_naming(lambda: fs.data.load("mnist", data_dir=data_dir), "data_dir")


_FIELD_NAMES = ("x_train", "y_train", "x_test", "y_test", "num_classes")


@FAST
@given(
    x=st.one_of(
        st.sampled_from([np.nan, np.inf, -np.inf, 1e39, 0.0]).map(
            lambda v: np.full((4, 2), v)  # 1e39 overflows float32 to inf
        ),
        st.sampled_from([np.zeros(4), np.zeros((4, 2, 1)), np.zeros((3, 2))]),
        NOT_A_NUMBER,
        st.just([[1.0, 2.0], [3.0]]),  # ragged
    ),
    labels=st.sampled_from(
        [np.array([0, 1, 0, 1]), np.array([0, 1, 0, 2]), np.array([-1, 0, 0, 0]), np.zeros(4)]
    ),
    num_classes=st.one_of(st.sampled_from([2, 0]), BAD_INTS),
)
def test_make_dataset_validates_every_field(x, labels, num_classes):
    try:
        ds = fs.data.make_dataset(
            x,
            labels,
            np.zeros((1, 2)),
            labels[:1],
            num_classes=num_classes,
            name="toy",
            source="fuzz",
        )
    except ValueError as err:
        assert any(f in str(err) for f in _FIELD_NAMES), str(err)
        return
    ds.validate()
    assert bool(jnp.all(jnp.isfinite(ds.x_train)))  # NaN/inf inputs never get through
    if ds.num_classes:
        assert int(ds.y_train.min()) >= 0 and int(ds.y_train.max()) < ds.num_classes


@FAST
@given(
    key=st.one_of(st.just(KEY), st.sampled_from([0, None, "k", jax.random.split(KEY, 2)])),
    widths=st.one_of(st.lists(st.integers(1, 4), min_size=2, max_size=3), BAD_INTS),
    rank=st.one_of(st.integers(0, 4), BAD_INTS),
    n=st.one_of(st.just(6), BAD_INTS),
)
def test_deep_linear_teacher_rank_or_named_error(key, widths, rank, n):
    try:
        t = fs.data.deep_linear_teacher(key, widths, rank, n)
    except ValueError as err:
        assert str(err).startswith(("key", "widths", "rank", "n ")), str(err)
        return
    assert int(np.linalg.matrix_rank(np.asarray(t.product, np.float64), tol=1e-4)) == rank


@FAST
@given(raw=st.binary(max_size=40), gz=st.booleans())
def test_read_idx_random_bytes_is_valid_idx_or_named_error(tmp_path_factory, raw, gz):
    import gzip

    path = tmp_path_factory.mktemp("idx") / ("f-idx.gz" if gz else "f-idx")
    path.write_bytes(gzip.compress(raw) if gz and len(raw) % 2 else raw)  # sometimes not gzip
    try:
        arr = fs.data.read_idx(path)
    except ValueError as err:
        assert str(path) in str(err)
        return
    out = path.with_name("back" + ("-idx.gz" if gz else "-idx"))
    fs.data.write_idx(out, arr)  # a file read back is valid IDX: it round-trips
    np.testing.assert_array_equal(fs.data.read_idx(out), arr)


def test_read_idx_wrong_path_types_are_named(tmp_path):
    raises_naming(lambda: fs.data.read_idx(None), "path")
    raises_naming(lambda: fs.data.read_idx(3), "path")
    raises_naming(lambda: fs.data.read_idx(tmp_path), "directory")


@FAST
@given(
    widths=st.one_of(
        st.lists(st.one_of(st.integers(-2, 5), WIDTH_JUNK), min_size=0, max_size=4),
        NOT_A_NUMBER,
    ),
    linear=st.booleans(),
)
def test_model_widths_or_named_error(widths, linear):
    build = fs.models.deep_linear if linear else fs.models.mlp
    try:
        model = build(widths)
    except ValueError as err:
        assert "widths" in str(err), str(err)
        return
    assert model.widths == tuple(int(w) for w in widths)
    assert all(w >= 1 for w in model.widths) and len(model.widths) >= 2


MODEL = fs.models.mlp((3, 4, 2))
PARAMS = MODEL.init(KEY)


@FAST
@given(
    hidden=st.one_of(
        st.lists(st.one_of(st.integers(-1, 6), st.just(2.5)), max_size=2), NOT_A_NUMBER
    )
)
def test_width_mask_or_named_error(hidden):
    try:
        mask = MODEL.width_mask(hidden)
    except ValueError as err:
        assert "hidden" in str(err), str(err)
        return
    (h,) = hidden
    assert isinstance(h, int) and 1 <= h <= 4
    assert int(mask[0].sum()) == h  # exactly the first h units are active


@FEW
@given(key=st.sampled_from([0, 1.5, None, "key", jax.random.split(KEY, 3), jnp.zeros(2)]))
def test_init_refuses_anything_but_one_typed_key(key):
    raises_naming(lambda: MODEL.init(key), "key")


@FAST
@given(
    rows=st.lists(
        st.lists(st.sampled_from([0.0, 1.0, -2.0, math.nan, math.inf]), min_size=3, max_size=3),
        min_size=5,
        max_size=5,
    )
)
def test_apply_is_per_row_nan_stays_in_its_row(rows):
    x = jnp.asarray(rows, jnp.float32)  # one shape: one compiled program for every example
    out = np.asarray(MODEL.apply(PARAMS, x))
    for i, row in enumerate(rows):
        if all(math.isfinite(v) for v in row):
            ref = np.asarray(MODEL.apply(PARAMS, x[i : i + 1]))[0]
            np.testing.assert_allclose(out[i], ref, rtol=1e-6, atol=1e-6)  # float32 matmul order
            assert np.all(np.isfinite(out[i]))


@FEW
@given(
    x=st.one_of(
        st.sampled_from([jnp.ones((2, 4)), jnp.ones((2, 2)), jnp.ones(()), "abc"]),
        st.just([["a", "b", "c"]]),
    )
)
def test_apply_wrong_inputs_are_named(x):
    raises_naming(lambda: MODEL.apply(PARAMS, x), "x")
