"""Training engine: closed forms, sweep = one-by-one runs, determinism, no recompilation,
per-network failure flags, bad input, memory refusal, saving."""

import dataclasses
import itertools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fracsgd as fs
from fracsgd.data import epoch_batch
from fracsgd.data._shuffle import round_keys
from fracsgd.train import _engine as E


@pytest.fixture(scope="module")
def moons():
    return fs.data.load("moons", n=128, noise=0.1, seed=0)


def _grid(**kw):
    base = dict(
        hidden=(4, 8),
        seeds=(0, 1),
        learning_rates=(0.05, 0.2),
        optimizers=("sgd",),
        batch_sizes=(16,),
        steps=40,
        num_checkpoints=3,
    )
    base.update(kw)
    return fs.train.Grid(**base)


def test_sgd_on_quadratic_loss_matches_closed_form_displacement():
    """Full-batch GD on linear least squares: W_t − W* = (W_0 − W*)(I − γΣ)^t, so
    R(t) = ||(W_0 − W*)((I − γΣ)^t − I)||_F exactly (in exact arithmetic)."""
    key = jax.random.key(0)
    teacher = fs.data.deep_linear_teacher(key, (6, 3), rank=3, n=64, noise=0.5)
    data = teacher.dataset
    model = fs.models.deep_linear((6, 3))
    cfg = fs.train.TrainConfig(steps=200, batch_size=64, learning_rate=0.3, num_checkpoints=5)
    res = fs.train.run(jax.random.key(1), model, data, cfg, progress=False)

    x = np.asarray(data.x_train, np.float64)
    y = np.asarray(data.y_train, np.float64)
    n = x.shape[0]
    sigma = x.T @ x / n  # loss ½ mean ||y − xW||² has gradient Σ W − xᵀy / n (W = w, row form)
    w_star = np.linalg.solve(sigma, x.T @ y / n)
    w0 = np.asarray(res.init_params["layers"][0]["w"], np.float64)
    evals, evecs = np.linalg.eigh(sigma)
    expected = []
    for t in res.record_steps:
        decay = evecs @ np.diag((1 - 0.3 * evals) ** t) @ evecs.T
        expected.append(np.linalg.norm((decay - np.eye(6)) @ (w0 - w_star)))
    # float32 training over 200 steps: relative error ~1e-6 per step, accumulated
    np.testing.assert_allclose(res.displacement, expected, rtol=2e-4)
    assert res.checkpoint_steps[-1] == 200
    np.testing.assert_allclose(res.final_params["layers"][0]["w"], w_star, atol=2e-3)


@jax.default_matmul_precision("highest")
def test_sweep_equals_runs_made_one_by_one(moons):
    """The claim is float32 arithmetic; on GPU JAX's default float32 products are TF32 (measured
    on an H200: 1.4e-4 relative between padded and narrow R(t)), so the precision is pinned.
    On CPU products are always full float32 and the decorator changes nothing."""
    grid = _grid(
        optimizers=("sgd", "momentum", "adam"),
        learning_rates=(0.05,),
        steps=30,
        max_padding_overhead=2.0,
    )
    key = jax.random.key(7)
    sw = fs.train.sweep(key, moons, grid, progress=False)
    assert sw.num_runs == 2 * 2 * 1 * 3
    assert sw.num_programs == 1  # widths 4 and 8 share a program (padding overhead 1.4 < 2)
    for i in range(sw.num_runs):
        one = sw.result(i)
        ref = fs.train.run(
            jax.random.fold_in(key, int(sw.coords["seed"][i])),
            one.model,
            moons,
            one.config,
            progress=False,
        )
        # identical arithmetic up to float32 summation order in padded / batched matmuls
        np.testing.assert_allclose(one.displacement, ref.displacement, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(one.test_loss, ref.test_loss, rtol=1e-4)
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
            one.final_params,
            ref.final_params,
        )
        np.testing.assert_array_equal(one.checkpoint_steps, ref.checkpoint_steps)


def test_same_key_gives_bitwise_identical_results(moons):
    grid = _grid()
    a = fs.train.sweep(jax.random.key(3), moons, grid, progress=False)
    b = fs.train.sweep(jax.random.key(3), moons, grid, progress=False)
    c = fs.train.sweep(jax.random.key(4), moons, grid, progress=False)
    np.testing.assert_array_equal(a.displacement, b.displacement)
    np.testing.assert_array_equal(a.test_loss, b.test_loss)
    assert not np.array_equal(a.displacement, c.displacement)


def test_new_learning_rates_do_not_recompile(moons):
    grid = _grid(steps=20)
    fs.train.sweep(jax.random.key(0), moons, grid, progress=False)
    sizes = (E.segment_program._cache_size(), E.init_program._cache_size())
    fs.train.sweep(
        jax.random.key(1),
        moons,
        grid._replace(learning_rates=(0.01, 0.3), momentum=0.5, seeds=(5, 6)),
        progress=False,
    )
    assert (E.segment_program._cache_size(), E.init_program._cache_size()) == sizes


def test_diverging_network_is_flagged_and_leaves_others_untouched(moons):
    grid = _grid(learning_rates=(0.05, 1e8), steps=30)
    sw = fs.train.sweep(jax.random.key(0), moons, grid, progress=False)
    bad = sw.coords["learning_rate"] == 1e8
    assert sw.diverged[bad].all() and not sw.diverged[~bad].any()
    assert (sw.diverged_step[bad] >= 0).all()
    assert np.isnan(sw.displacement[bad, -1]).all()
    # every record of a frozen network reads NaN from its divergence on
    assert np.isnan(sw.grad_norm[bad, -1]).all() and np.isnan(sw.train_loss[bad, -1]).all()
    assert np.isfinite(sw.grad_norm[~bad]).all()
    ok = fs.train.sweep(
        jax.random.key(0), moons, grid._replace(learning_rates=(0.05,)), progress=False
    )
    np.testing.assert_allclose(sw.displacement[~bad], ok.displacement, rtol=1e-6)
    # the flagged network keeps its last finite parameters
    frozen = sw.result(int(np.flatnonzero(bad)[0])).final_params
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(frozen))


def _numpy_square(x):
    """The engine's ``x²`` emulated in NumPy float32 with separately rounded operations."""
    x = np.asarray(x, np.float32)
    hi = (x.view(np.int32) & np.int32(-4096)).view(np.float32)
    lo = x - hi
    return hi * hi + (np.float32(2.0) * hi * lo + lo * lo)


def _numpy_pairwise(v):
    while v.shape[-1] > 1:
        if v.shape[-1] % 2:
            pad = (1 << (v.shape[-1] - 1).bit_length()) - v.shape[-1]
            v = np.concatenate([v, np.zeros((*v.shape[:-1], pad), v.dtype)], axis=-1)
        v = v[..., 0::2] + v[..., 1::2]
    return v[..., 0]


@pytest.mark.parametrize("size", [1, 7, 12, 130, 784 * 3 + 5])
@pytest.mark.parametrize("networks", [1, 3, 8])
def test_sum_of_squares_is_bitwise_whatever_xla_fuses(size, networks):
    """``Σ x²`` in the engine equals the separately rounded pairwise sum exactly, for any number
    of networks vmapped beside it: XLA CPU contracts ``a·a + b·b`` into a fused multiply-add
    depending on the program's shapes (what broke chunk invariance), and the split square makes
    every product exact so contraction cannot change a bit."""
    x = jax.random.normal(jax.random.key(size), (networks, size)) * jnp.exp(
        3.0 * jax.random.normal(jax.random.key(size + 1), (networks, 1))
    )
    got = np.asarray(jax.jit(jax.vmap(lambda v: E._sum(E._square(v))))(x))
    want = _numpy_pairwise(_numpy_square(np.asarray(x)))
    np.testing.assert_array_equal(got, want)
    sq = np.asarray(jax.jit(E._square)(x), np.float64)
    np.testing.assert_allclose(sq, np.asarray(x, np.float64) ** 2, rtol=2.5e-7)
    half = x.astype(jnp.float16)  # other dtypes: plain x·x
    np.testing.assert_array_equal(np.asarray(E._square(half)), np.asarray(half * half))


def test_joint_gradient_and_displacement_sums_are_the_separate_ones_bitwise():
    """The step's one-pass ``(Σ g², R²)`` equals the two separate sums bit for bit, masked or
    not, under vmap."""
    model = fs.models.mlp((5, 9, 3))
    mask = model.width_mask((6,))
    k = jax.random.split(jax.random.key(3), 3)
    p0 = jax.vmap(lambda kk: model.init(kk, mask))(jax.random.split(k[0], 4))
    p = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(k[1], a.shape), p0)
    g = jax.tree.map(lambda a: jax.random.normal(k[2], a.shape), p0)
    pm = jax.vmap(lambda _: model.param_mask(mask))(jnp.arange(4))
    for m in (pm, None):
        both = jax.jit(jax.vmap(E._grad_and_displacement_sq))(g, p, p0, m)
        gsq = jax.jit(jax.vmap(E._sq_norm))(g)
        rsq = jax.jit(jax.vmap(E._sq_displacement))(p, p0, m)
        np.testing.assert_array_equal(np.asarray(both[0]), np.asarray(gsq))
        np.testing.assert_array_equal(np.asarray(both[1]), np.asarray(rsq))


def test_overflowing_parameters_are_flagged_even_in_masked_units(moons):
    """Divergence is read off ``R² = Σ((w − w0)·mask)²`` of the new parameters: an infinite
    entry in a padded (masked) unit makes it NaN (``inf · 0``), so it is caught like any other."""
    model = fs.models.mlp((2, 4, 2))
    mask = model.width_mask((3,))
    p0 = model.init(jax.random.key(0), mask)
    pm = model.param_mask(mask)
    bad = jax.tree.map(lambda a: a, p0)
    bad["layers"][0]["w"] = bad["layers"][0]["w"].at[0, 3].set(jnp.inf)  # unit 4 is padding
    assert float(pm["layers"][0]["w"][0, 3]) == 0.0
    assert np.isnan(float(E._sq_displacement(bad, p0, pm)))
    assert float(E._sq_displacement(p0, p0, pm)) == 0.0
    assert float(E.displacement(p0, p0)) == 0.0


@pytest.mark.parametrize("n", [5, 21, 30])
@jax.default_matmul_precision("highest")
def test_evaluate_in_chunks_equals_the_direct_mean(monkeypatch, n):
    """Full-data metrics in chunks of 7 rows (n < 7; n = 3 full chunks exactly; 4 full chunks
    and a remainder of 2) equal the plain mean loss and accuracy. Float32 products are pinned: on
    a GPU JAX's default is TF32, and the chunked and direct products can take different kernels
    (4·10⁻⁵ relative on an H200); on the CPU the decorator changes nothing."""
    monkeypatch.setattr(E, "EVAL_CHUNK", 7)
    model = fs.models.mlp((3, 5, 4))
    params = model.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (n, 3))
    y = jax.random.randint(jax.random.key(2), (n,), 0, 4)
    got = np.asarray(jax.jit(lambda p: E.evaluate(model, "classification", p, None, x, y))(params))
    logits = np.asarray(model.apply(params, x), np.float64)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    want_loss = -np.mean(logp[np.arange(n), np.asarray(y)])
    want_acc = np.mean(np.argmax(logits, axis=1) == np.asarray(y))
    np.testing.assert_allclose(got, [want_loss, want_acc], rtol=1e-6)


def test_epoch_sampling_visits_every_sample_once_per_epoch(moons):
    n, b = moons.num_train, 16
    static = E.Static(
        fs.models.mlp((2, 4, 2)), "classification", 100, b, 1, (100,), "epoch", ("sgd",), False
    )
    keys = jax.random.split(jax.random.key(0), 2)
    consts = E.Consts(None, None, None, None, keys)
    per_epoch = n // b
    epochs = []
    for epoch in range(2):
        rk = jax.vmap(lambda k, e=epoch: round_keys(jax.random.fold_in(k, e)))(keys)
        steps = range(epoch * per_epoch, (epoch + 1) * per_epoch)
        idx = [np.asarray(E._batch_indices(static, jnp.int32(t), consts, rk, n)) for t in steps]
        epochs.append(np.concatenate(idx, axis=1))
        # the engine's batches are the public epoch_batch of each network's data key
        for net in range(2):
            public = [np.asarray(epoch_batch(keys[net], t, n, b)) for t in steps]
            np.testing.assert_array_equal(epochs[-1][net], np.concatenate(public))
    for e in epochs:
        for row in e:
            used = n - n % b  # the incomplete last batch of each epoch is dropped
            assert len(np.unique(row)) == used and row.min() >= 0 and row.max() < n
    assert not np.array_equal(epochs[0], epochs[1])  # a fresh permutation each epoch
    assert not np.array_equal(epochs[0][0], epochs[0][1])  # and one per network


def test_batch_norm_displacement_excludes_running_statistics(moons):
    model = fs.models.mlp((2, 8, 2), batch_norm=True)
    cfg = fs.train.TrainConfig(steps=20, batch_size=16, learning_rate=0.1, num_checkpoints=2)
    res = fs.train.run(jax.random.key(0), model, moons, cfg, progress=False)
    final, init = res.final_params, res.init_params
    trainable = {k: v for k, v in final.items() if k != "batch_stats"}
    trainable0 = {k: v for k, v in init.items() if k != "batch_stats"}
    diff = jax.tree.map(
        lambda a, b: np.sum((np.asarray(a) - np.asarray(b)) ** 2), trainable, trainable0
    )
    np.testing.assert_allclose(res.displacement[-1], np.sqrt(sum(jax.tree.leaves(diff))), rtol=1e-5)
    assert not np.allclose(final["batch_stats"][0]["mean"], 0.0)  # stats did move


def test_replacement_sampling_differs_from_epoch_sampling(moons):
    a = fs.train.sweep(jax.random.key(0), moons, _grid(), progress=False)
    b = fs.train.sweep(jax.random.key(0), moons, _grid(sampling="replacement"), progress=False)
    assert a.displacement.shape == b.displacement.shape
    assert not np.allclose(a.displacement, b.displacement)


def test_bucketing_rule_and_program_count(moons):
    assert fs.train.bucket_widths([(16,), (32,), (64,), (128,)], 784, 10, 2.0) == [
        [(128,), (64,), (32,)],
        [(16,)],
    ]
    assert fs.train.bucket_widths([(16,), (32,)], 784, 10, 1.0) == [[(32,)], [(16,)]]
    assert fs.train.bucket_widths([(8,), (4, 4)], 2, 2, float("inf")) == [[(8,)], [(4, 4)]]
    sw = fs.train.sweep(
        jax.random.key(0),
        moons,
        _grid(
            hidden=((4,), (8,), (4, 4)),
            batch_sizes=(8, 16),
            steps=10,
            max_padding_overhead=float("inf"),
        ),
        progress=False,
    )
    assert sw.num_programs == 4  # 2 depths × 2 batch sizes


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (dict(hidden=(0,)), "hidden"),
        (dict(hidden=((8, -2),)), "hidden"),
        (dict(learning_rates=(0.0,)), "learning_rates"),
        (dict(learning_rates=(-0.1,)), "learning_rates"),
        (dict(learning_rates=(float("nan"),)), "learning_rates"),
        # the engine runs in float32: 1e-46 would be 0 and 1e39 inf (no warning, no error)
        (dict(learning_rates=(1e-46,)), "learning_rates .* in float32"),
        (dict(learning_rates=(1e39,)), "learning_rates must be at most 3.402823e\\+38"),
        (dict(b2=1 - 1e-9), "b2 .* which is 1.0 in float32"),
        (dict(batch_sizes=(0,)), "batch_sizes"),
        (dict(batch_sizes=(10_000,)), "batch_sizes"),
        (dict(steps=0), "steps"),
        (dict(optimizers=("rmsprop",)), "optimizer"),
        (dict(seeds=()), "seeds"),
        (dict(sampling="shuffle"), "sampling"),
        (dict(model="cnn"), "model"),
        (dict(record_every=7), "record_every"),
        (dict(num_checkpoints=0), "num_checkpoints"),
    ],
)
def test_bad_grid_raises_before_compiling(moons, change, match):
    before = E.segment_program._cache_size()
    with pytest.raises(ValueError, match=match):
        fs.train.sweep(jax.random.key(0), moons, _grid(**change), progress=False)
    assert E.segment_program._cache_size() == before


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (dict(learning_rate=0.0), "learning_rate"),
        (dict(batch_size=0), "batch_size"),
        (dict(batch_size=129), "batch_size"),
        (dict(steps=-1), "steps"),
        # the engine counts steps in int32: 2**31 used to overflow only at the last segment
        (dict(steps=2**31, record_every=2**31, num_checkpoints=1), "steps must be at most"),
        (dict(optimizer="sgdd"), "optimizer"),
        (dict(momentum=1.0), "momentum"),
        (dict(momentum=1 - 1e-9), "momentum .* in float32"),
        (dict(b1=1 - 1e-9, optimizer="adam"), "b1 .* in float32"),
        (dict(learning_rate=1e-46), "learning_rate .* which is 0.0 in float32"),
        (dict(learning_rate=-1e39), "learning_rate"),
        (dict(learning_rate=1e39), "learning_rate must be at most"),
        (dict(eps=1e-50, optimizer="adam"), "eps"),
    ],
)
def test_bad_config_raises(moons, change, match):
    cfg = fs.train.TrainConfig(steps=10, batch_size=8, num_checkpoints=2)._replace(**change)
    with pytest.raises(ValueError, match=match):
        fs.train.run(jax.random.key(0), fs.models.mlp((2, 4, 2)), moons, cfg, progress=False)


def test_default_checkpoints_fit_short_runs(moons):
    # only T distinct steps exist: K > T is clamped to T, in run and in sweep alike
    cfg = fs.train.TrainConfig(steps=5, batch_size=8)
    res = fs.train.run(jax.random.key(0), fs.models.mlp((2, 4, 2)), moons, cfg, progress=False)
    assert res.checkpoint_steps.tolist() == [1, 2, 3, 4, 5]
    assert res.config.num_checkpoints == 5
    grid = fs.train.Grid(hidden=(4,), batch_sizes=(8,), steps=3)
    sw = fs.train.sweep(jax.random.key(0), moons, grid, progress=False)
    assert np.asarray(sw.checkpoint_steps).tolist() == [1, 2, 3]
    assert sw.grid.num_checkpoints == 3


def test_run_rejects_mismatched_model_and_bad_key(moons):
    cfg = fs.train.TrainConfig(steps=10, batch_size=8, num_checkpoints=2)
    with pytest.raises(ValueError, match="input width"):
        fs.train.run(jax.random.key(0), fs.models.mlp((3, 4, 2)), moons, cfg, progress=False)
    with pytest.raises(ValueError, match="key"):
        fs.train.run(0, fs.models.mlp((2, 4, 2)), moons, cfg, progress=False)


def test_sweep_whose_single_network_does_not_fit_is_refused(moons):
    """Buckets that do not fit are chunked (tests/parallel); only a cap below one network's
    needs (1000 bytes here) is an error, raised before anything compiles."""
    with pytest.raises(ValueError, match="memory"):
        fs.train.sweep(jax.random.key(0), moons, _grid(memory_limit=1000), progress=False)


def test_save_is_atomic_and_opens_in_xarray(moons, tmp_path):
    xr = pytest.importorskip("xarray")
    sw = fs.train.sweep(jax.random.key(0), moons, _grid(), progress=False)
    path = tmp_path / "out" / "sweep.nc"
    sw.save(path)
    assert os.listdir(path.parent) == ["sweep.nc"]  # no temporary file left behind
    with xr.open_dataset(path) as ds:
        np.testing.assert_allclose(ds["displacement"].values, sw.displacement)
        assert list(ds["optimizer"].values) == ["sgd"] * sw.num_runs
        assert list(ds["hidden"].values) == list(sw.coords["hidden"])
        np.testing.assert_array_equal(ds["checkpoint"].values, sw.checkpoint_steps)
        # unpadded parameters of a narrow run, flattened, then NaN padding
        i = int(sw.select(hidden="4", seed=0, learning_rate=0.05)[0])
        flat = jax.flatten_util.ravel_pytree(sw.result(i).final_params)[0]
        row = ds["checkpoint_params"].values[i, -1]
        np.testing.assert_allclose(row[: flat.size], flat)
        assert np.isnan(row[flat.size :]).all()
        frame = ds[["displacement"]].to_dataframe()
        assert len(frame) == sw.num_runs * len(sw.record_steps)
        # the grid labels are coordinates: columns of the frame, selectable by label
        assert {"seed", "hidden", "learning_rate", "optimizer"} <= set(frame.columns)
        assert {"seed", "optimizer"} <= set(ds["test_accuracy"].coords)
        narrow = ds.set_xindex("hidden").sel(hidden="4")
        np.testing.assert_allclose(
            narrow["displacement"].values, sw.displacement[sw.select(hidden="4")]
        )
    # the file gets the mode open() would give it (mkstemp's 0o600 is not kept)
    mask = os.umask(0o022)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask
    # a non-ASCII data set name or source (a user's data directory) is saved as UTF-8
    other = dataclasses.replace(sw, dataset_name="moons-λ", dataset_source="/tmp/données/mnist")
    other.save(tmp_path / "utf8.nc")
    with xr.open_dataset(tmp_path / "utf8.nc") as ds:
        names = [ds.attrs["dataset"], ds.attrs["dataset_source"]]
        names = [v.decode() if isinstance(v, bytes) else v for v in names]
        assert names == ["moons-λ", "/tmp/données/mnist"]


def test_summary_table_has_one_row_per_run(moons):
    sw = fs.train.sweep(jax.random.key(0), moons, _grid(), progress=False)
    table = sw.format_table()
    assert len(table.splitlines()) == sw.num_runs + 1
    assert {r["hidden"] for r in sw.summary()} == {"4", "8"}


def test_branch_replica_reproduces_the_original_run_from_its_start():
    """Replica r of point m draws minibatches with fold_in(fold_in(key, m), r); run(k) uses
    fold_in(k, 0) for the initialisation and fold_in(k, 1) for the minibatches. So replica 1 of
    point 0, restarted from run(fold_in(K, 0))'s initial parameters, is that run step for step."""
    data = fs.data.load("moons", n=128, noise=0.1, seed=0)
    model = fs.models.mlp((2, 8, 2))
    cfg = fs.train.TrainConfig(steps=30, batch_size=16, learning_rate=0.1, num_checkpoints=2)
    key = jax.random.key(3)
    ref = fs.train.run(jax.random.fold_in(key, 0), model, data, cfg, progress=False)
    start = jax.tree.map(lambda a: a[None], ref.init_params)
    out = fs.train.branch(key, model, data, start, cfg, replicas=2, progress=False)
    np.testing.assert_array_equal(out.displacement[0, 1], ref.displacement)
    # the other replica saw other minibatches: same start, a different path
    assert not np.allclose(out.displacement[0, 0], ref.displacement)
    assert out.record_steps.tolist() == list(range(1, 31))
    assert not out.diverged.any()


def test_branch_rejects_bad_input():
    data = fs.data.load("moons", n=64, noise=0.1, seed=0)
    model = fs.models.mlp((2, 4, 2))
    cfg = fs.train.TrainConfig(steps=5, batch_size=8)
    w = jax.vmap(model.init)(jax.random.split(jax.random.key(0), 2))
    with pytest.raises(ValueError, match="replicas"):
        fs.train.branch(jax.random.key(0), model, data, w, cfg, replicas=0)
    with pytest.raises(ValueError, match="params"):
        fs.train.branch(
            jax.random.key(0), model, data, model.init(jax.random.key(0)), cfg, replicas=2
        )
    # as run and sweep: BatchNorm of a batch of one normalises every unit to its bias
    bn = fs.models.mlp((2, 4, 2), batch_norm=True)
    w_bn = jax.vmap(bn.init)(jax.random.split(jax.random.key(0), 2))
    with pytest.raises(ValueError, match="batch_size must be >= 2 with BatchNorm"):
        fs.train.branch(jax.random.key(0), bn, data, w_bn, cfg._replace(batch_size=1), replicas=2)


def _sgd_static(model, *, steps, batch_size):
    """The engine's static description of an unmasked SGD classification bucket."""
    return fs.train._engine.Static(
        model=model,
        task="classification",
        steps=steps,
        batch_size=batch_size,
        record_every=1,
        checkpoint_steps=(steps,),
        sampling="epoch",
        optimizers=("sgd",),
        masked=False,
    )


def test_branch_chunks_points_that_do_not_fit_together():
    """A memory cap that holds the replicas of two points (of five) runs three chunks through
    one program; the replicas are the same networks, so R(t) agrees with the one-chunk run to
    float32 rounding (XLA may round differently for another batch width; see fracsgd.parallel)."""
    data = fs.data.load("moons", n=128, noise=0.1, seed=0)
    model = fs.models.mlp((2, 8, 2))
    cfg = fs.train.TrainConfig(steps=20, batch_size=16, learning_rate=0.1)
    w = jax.vmap(model.init)(jax.random.split(jax.random.key(0), 5))
    full = fs.train.branch(jax.random.key(1), model, data, w, cfg, replicas=3, progress=False)
    static = _sgd_static(model, steps=20, batch_size=16)
    nb = data.x_train.nbytes + data.y_train.nbytes + data.x_test.nbytes + data.y_test.nbytes
    one = E.estimate_bytes(static, 3, 128, 2, nb)
    per_point = E.estimate_bytes(static, 6, 128, 2, nb) - one
    cap = one + per_point  # two points' replicas
    chunked = fs.train.branch(
        jax.random.key(1), model, data, w, cfg, replicas=3, memory_limit=cap, progress=False
    )
    np.testing.assert_allclose(chunked.displacement, full.displacement, rtol=1e-6)
    assert chunked.displacement.shape == (5, 3, 20)
    with pytest.raises(ValueError, match="memory"):
        fs.train.branch(
            jax.random.key(1), model, data, w, cfg, replicas=3, memory_limit=1000, progress=False
        )


def test_memory_model_counts_the_records_buffer():
    """The ``(N, T/k + 1, 3)`` float32 records stay on the device for the whole run: a long run
    of small networks needs them more than everything else."""
    model = fs.models.mlp((2, 16, 2))
    static = _sgd_static(model, steps=100, batch_size=8)
    long = static._replace(steps=100_000)
    extra = E.estimate_bytes(long, 512, 256, 2, 0) - E.estimate_bytes(static, 512, 256, 2, 0)
    assert extra == 12 * 512 * (100_000 - 100)
    assert E.estimate_bytes(long, 512, 256, 2, 0) > 512 * (100_000 + 1) * 3 * 4


def test_grid_values_are_canonical_and_select_takes_widths(moons):
    """Lists, NumPy arrays and NumPy scalars give the same grid as tuples of Python numbers (so
    the same sweep resumes); ``select`` maps widths to their label and compares learning rates
    in float32; a string learning rate is refused."""
    tuples = _grid(learning_rates=(0.05, 0.1), steps=5)
    lists = tuples._replace(
        learning_rates=np.array([0.05, 0.1]), seeds=list(tuples.seeds), hidden=[4, np.int64(8)]
    )
    a = fs.train.sweep(jax.random.key(0), moons, tuples, progress=False)
    b = fs.train.sweep(jax.random.key(0), moons, lists, progress=False)
    assert repr(a.grid) == repr(b.grid)
    np.testing.assert_array_equal(a.displacement, b.displacement)
    assert list(a.select(hidden=4)) == list(a.select(hidden="4")) == list(a.select(hidden=[4]))
    assert len(a.select(learning_rate=np.float32(0.05))) == len(a.select(learning_rate=0.05)) > 0
    with pytest.raises(ValueError, match="optimizer"):
        a.select(optimizer=1)
    with pytest.raises(ValueError, match="hidden"):
        a.select(hidden=True)  # a bool is no width
    assert list(a.select(hidden=np.array([4]))) == list(a.select(hidden="4"))
    with pytest.raises(ValueError, match="learning_rate"):
        fs.train.run(
            jax.random.key(0),
            fs.models.mlp((2, 4, 2)),
            moons,
            fs.train.TrainConfig(learning_rate="0.1", steps=5, num_checkpoints=2),
            progress=False,
        )
    with pytest.raises(ValueError, match="learning_rates"):
        fs.train.sweep(
            jax.random.key(0), moons, tuples._replace(learning_rates=("0.1",)), progress=False
        )


def test_run_index_must_be_an_integer(moons):
    sw = fs.train.sweep(jax.random.key(0), moons, _grid(steps=4, hidden=(4,)), progress=False)
    assert sw.result(np.int64(1)).config == sw.result(1).config
    # 1.0 raised NumPy's IndexError deep inside; True was taken as run 1
    for bad in (1.0, True, "1"):
        with pytest.raises(ValueError, match="run index"):
            sw.result(bad)


def test_batchnorm_needs_two_samples_per_batch(moons):
    """A batch of one has no variance: BatchNorm would normalise every unit to its shift."""
    with pytest.raises(ValueError, match="batch_size"):
        fs.train.run(
            jax.random.key(0),
            fs.models.mlp((2, 4, 2), batch_norm=True),
            moons,
            fs.train.TrainConfig(steps=5, batch_size=1, num_checkpoints=2),
            progress=False,
        )
    with pytest.raises(ValueError, match="batch_sizes"):
        fs.train.sweep(
            jax.random.key(0), moons, _grid(batch_norm=True, batch_sizes=(1, 16)), progress=False
        )


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_log_spaced_steps_are_distinct_increasing_and_end_at_steps(data):
    steps = data.draw(st.integers(1, 3000))
    num = data.draw(st.integers(1, steps))
    out = fs.train.log_spaced_steps(steps, num)
    assert len(out) == num and out[-1] == steps and out[0] == (1 if num > 1 else steps)
    assert all(a < b for a, b in itertools.pairwise(out))


def test_log_spaced_steps_closed_forms_and_dense_requests():
    assert fs.train.log_spaced_steps(10**6, 7) == tuple(10**k for k in range(7))
    # every step (once quadratic in steps: 20 s at 4 000); and nearly every step
    assert fs.train.log_spaced_steps(20_000, 20_000) == tuple(range(1, 20_001))
    dense = fs.train.log_spaced_steps(5000, 4000)
    assert len(set(dense)) == 4000 and dense[-1] == 5000
    # all but one step: the first step stays (a contiguous tail used to drop step 1 from
    # T = 5 000 on, and took 127 s for 900 000 of 10⁶ steps); the one left out is near the top,
    # where log-spacing is densest
    for steps in (5000, 10**6):
        out = fs.train.log_spaced_steps(steps, steps - 1)
        missing = sorted(set(range(1, steps + 1)) - set(out))
        assert out[0] == 1 and out[-1] == steps and len(missing) == 1 and missing[0] > steps / 2
    big = np.asarray(fs.train.log_spaced_steps(10**6, 9 * 10**5))
    assert big[0] == 1 and big[-1] == 10**6 and np.all(np.diff(big) > 0)
    # below the dense part the rounded log-spaced targets are kept: the first 100 of 900 000
    # targets 10^{6 i/(K−1)} all round to 1, so the steps start 1, 2, 3, …
    assert big[:5].tolist() == [1, 2, 3, 4, 5]


def test_saved_batch_norm_sweep_reproduces_its_displacement(moons, tmp_path):
    """sweep.nc flattens the whole pytree, BatchNorm running statistics included; its
    `trainable` mask lets R(t) be recomputed from the file (without it: 2.56 against 1.02)."""
    xr = pytest.importorskip("xarray")
    sw = fs.train.sweep(jax.random.key(0), moons, _grid(batch_norm=True), progress=False)
    sw.save(tmp_path / "bn.nc")
    with xr.open_dataset(tmp_path / "bn.nc") as ds:
        p, init, m = ds.checkpoint_params.values, ds.init_params.values, ds.trainable.values
        for i in range(sw.num_runs):
            d = np.nan_to_num(p[i] - init[i][None]) * m[i][None]
            r = np.sqrt(np.sum(d.astype(np.float64) ** 2, axis=1))
            np.testing.assert_allclose(r[-1], sw.displacement[i, -1], rtol=1e-5)
            assert int(m[i].sum()) == int(ds.num_params.values[i])


@pytest.mark.parametrize("batch_norm", [False, True])
def test_load_params_reads_a_saved_run_back_into_its_pytree(moons, tmp_path, batch_norm):
    """The file's NaN-padded flat rows go back into each run's own network: bitwise the
    checkpoints and initial parameters of the sweep (BatchNorm statistics included); a model
    of other widths, a run out of range and a file without parameters are named errors."""
    sw = fs.train.sweep(jax.random.key(0), moons, _grid(batch_norm=batch_norm), progress=False)
    path = tmp_path / "s.nc"
    sw.save(path)
    for i in range(sw.num_runs):
        h = int(sw.coords["hidden"][i])
        model = fs.models.mlp((2, h, 2), batch_norm=batch_norm)
        ck, init = fs.train.load_params(path, i, model)
        for a, b in zip(jax.tree.leaves(ck), jax.tree.leaves(sw.checkpoints[i]), strict=True):
            np.testing.assert_array_equal(a, b)
        for a, b in zip(jax.tree.leaves(init), jax.tree.leaves(sw.init_params[i]), strict=True):
            np.testing.assert_array_equal(a, b)
    narrow = fs.models.mlp((2, 4, 2), batch_norm=batch_norm)
    wide_run = int(np.flatnonzero(sw.coords["hidden"] == "8")[0])
    with pytest.raises(ValueError, match=rf"run {wide_run} \(hidden 8\) stores"):
        fs.train.load_params(path, wide_run, narrow)
    with pytest.raises(ValueError, match=r"run must be an integer in \[0, 8\)"):
        fs.train.load_params(path, 8, narrow)
    with pytest.raises(ValueError, match="model must be"):
        fs.train.load_params(path, 0, (2, 4, 2))
    sw.save(tmp_path / "bare.nc", checkpoints=False)
    with pytest.raises(ValueError, match="holds no parameters"):
        fs.train.load_params(tmp_path / "bare.nc", 0, narrow)


def test_mean_losses_do_not_overflow_where_the_mean_is_finite():
    """Per-sample losses of 8·10³⁶ over 1 000 rows (a diverging regression net): their sum
    overflows float32 (8·10³⁹), their mean does not. The engine sums values pre-scaled by a
    power of two, which leaves every rounding as it was (bitwise the same mean elsewhere)."""
    from fracsgd.train import _engine

    model = fs.models.deep_linear((1, 1))
    big = jnp.float32(4e18)
    params = jax.tree.map(lambda a: jnp.full_like(a, big), model.init(jax.random.key(0)))
    x = jnp.ones((1000, 1), jnp.float32)
    y = jnp.zeros((1000, 1), jnp.float32)
    loss, _ = np.asarray(_engine.evaluate(model, "regression", params, None, x, y))
    assert loss == pytest.approx(0.5 * 4e18**2, rel=1e-6)
    batch_loss = float(_engine._loss("regression", model.apply(params, x[:128]), y[:128]))
    assert batch_loss == pytest.approx(0.5 * 4e18**2, rel=1e-6)
    # ordinary values: bitwise the unscaled mean
    v = jnp.linspace(0.1, 3.0, 1000, dtype=jnp.float32)
    scale = _engine._mean_scale(1000)
    assert scale == 2.0**-10
    assert float(_engine._sum(v * scale) / 1000 / scale) == float(_engine._sum(v) / 1000)


def test_interval_mean_loss_does_not_overflow_where_the_mean_is_finite():
    """The recorded loss is the mean over an interval of steps: four minibatch means of
    1.6·10³⁸ sum to 6.5·10³⁸ (inf in float32) while their mean is finite. A regression net
    whose targets are 1.8·10¹⁹ away, trained with a learning rate too small to move it."""
    from fracsgd.data import make_dataset

    n = 16
    x = np.ones((n, 1), np.float32)
    y = np.full((n, 1), 1.8e19, np.float32)
    data = make_dataset(x, y, x[:4], y[:4], num_classes=0, name="far", source="test")
    cfg = fs.train.TrainConfig(
        steps=8, batch_size=4, learning_rate=1e-30, record_every=4, num_checkpoints=2
    )
    model = fs.models.deep_linear((1, 1))
    res = fs.train.run(jax.random.key(0), model, data, cfg, progress=False)
    w0 = float(jax.tree.leaves(res.init_params)[0].reshape(()))
    expected = 0.5 * (1.8e19 - w0) ** 2  # the weight moves by ~1e-11 of itself: constant
    assert not res.diverged
    loss = np.asarray(res.train_loss, np.float64)
    assert loss.shape == (2,) and np.all(np.isfinite(loss))
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    assert 4 * expected > float(np.finfo(np.float32).max)  # the plain interval sum overflows


def test_sweep_result_carries_checkpoints_final_params_and_config(moons, tmp_path):
    """The contract's fields on a SweepResult (per run, at true widths), the saved file's
    booleans and float64 wall time, and the selection of widths."""
    xr = pytest.importorskip("xarray")
    sw = fs.train.sweep(jax.random.key(0), moons, _grid(), progress=False)
    assert sw.config is sw.grid
    assert len(sw.checkpoints) == len(sw.final_params) == len(sw.init_params) == sw.num_runs
    for i in (0, sw.num_runs - 1):
        r = sw.result(i)
        jax.tree.map(np.testing.assert_array_equal, sw.checkpoints[i], r.checkpoints)
        jax.tree.map(np.testing.assert_array_equal, sw.final_params[i], r.final_params)
    path = tmp_path / "s.nc"
    sw.save(path)
    with xr.open_dataset(path) as ds:
        assert ds["diverged"].dtype == bool
        np.testing.assert_array_equal(ds["diverged"].values, sw.diverged)
        assert ds.attrs["wall_time_seconds"] == sw.wall_time  # float64, not float32
    with pytest.raises(ValueError, match="hidden widths are integers"):
        sw.select(hidden=(4.5,))
    with pytest.raises(ValueError, match="hidden widths are integers"):
        sw.select(hidden=np.array([4.7]))
    np.testing.assert_array_equal(sw.select(hidden=(4.0,)), sw.select(hidden="4"))


def test_grid_scalars_are_canonical_and_float32_duplicates_refused(moons, tmp_path):
    """NumPy scalars in the shared fields are the same grid (the resume fingerprint hashed
    their repr); learning rates equal in float32 train the same networks."""
    from fracsgd.train._api import _validate_grid

    def grid(**kw):
        return fs.train.Grid(hidden=(4,), batch_sizes=(8,), steps=4, num_checkpoints=2, **kw)

    plain = _validate_grid(grid(momentum=0.5), moons)[0]
    numpy = _validate_grid(
        grid(momentum=np.float64(0.5))._replace(
            steps=np.int64(4), max_padding_overhead=np.float32(2.0)
        ),
        moons,
    )[0]
    assert repr(numpy._replace(max_padding_overhead=None)) == repr(
        plain._replace(max_padding_overhead=None)
    )
    assert numpy.max_padding_overhead == 2.0
    d = tmp_path / "ck"
    fs.train.sweep(jax.random.key(0), moons, grid(momentum=0.5), checkpoint_dir=d, progress=False)
    again = fs.train.sweep(
        jax.random.key(0),
        moons,
        grid(momentum=np.float64(0.5))._replace(steps=np.int64(4)),
        checkpoint_dir=d,
        progress=False,
    )
    assert again.num_resumed == 1
    with pytest.raises(ValueError, match="equal in float32"):
        _validate_grid(grid(learning_rates=(0.1, np.float32(0.1))), moons)
    with pytest.raises(ValueError, match="equal in float32"):
        _validate_grid(grid(learning_rates=(0.1, 0.1 + 1e-12)), moons)


def test_branch_takes_a_jax_array_of_learning_rates(moons):
    model = fs.models.mlp((2, 4, 2))
    w = jax.vmap(model.init)(jax.random.split(jax.random.key(0), 2))
    cfg = fs.train.TrainConfig(steps=4, batch_size=8, learning_rate=0.1)
    out, ref = (
        fs.train.branch(
            jax.random.key(1), model, moons, w, cfg, replicas=2, learning_rates=lr, progress=False
        )
        for lr in (jnp.array([0.1, 0.2]), [0.1, 0.2])
    )
    np.testing.assert_array_equal(out.displacement, ref.displacement)


@pytest.mark.parametrize("sampling", ["epoch", "replacement"])
def test_training_does_not_depend_on_the_x64_flag(moons, sampling):
    """The engine trains in float32 and int32 whatever ``jax_enable_x64`` says, so the same key
    gives bitwise the same trajectory with the flag on (a process that also runs float64 LLC or
    FFPE code); the resume fingerprint does not record the flag, so it must not matter.
    Replacement sampling drew other minibatches under x64 (``randint``'s default dtype)."""
    model = fs.models.mlp((2, 5, 2))
    cfg = fs.train.TrainConfig(steps=12, batch_size=8, num_checkpoints=2, sampling=sampling)
    ref = fs.train.run(jax.random.key(0), model, moons, cfg, progress=False)
    with jax.enable_x64(True):
        res = fs.train.run(jax.random.key(0), model, moons, cfg, progress=False)
    np.testing.assert_array_equal(res.displacement, ref.displacement)
    np.testing.assert_array_equal(res.train_loss, ref.train_loss)


def test_unusable_checkpoint_dir_is_refused_before_training(moons, tmp_path):
    """A file where the directory should be (or on its path) used to surface as an OSError only
    when the first finished chunk was saved, after that chunk had trained."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    before = E.segment_program._cache_size()
    for where in (blocker, blocker / "sub"):
        with pytest.raises(ValueError, match="checkpoint_dir"):
            fs.train.sweep(
                jax.random.key(0), moons, _grid(steps=4), checkpoint_dir=where, progress=False
            )
    assert E.segment_program._cache_size() == before
    fresh = tmp_path / "a" / "b"
    sw = fs.train.sweep(
        jax.random.key(0), moons, _grid(steps=4), checkpoint_dir=fresh, progress=False
    )
    assert len(list(fresh.glob("sweep-b*.npz"))) == sw.num_programs  # one chunk per bucket


@pytest.mark.skipif(os.name != "posix", reason="stale temporaries are found with kill(pid, 0)")
def test_sweep_removes_a_dead_writers_temporary_chunk(moons, tmp_path):
    """A chunk file a killed process left half-written (its hidden temporary) is deleted when
    the next sweep opens the directory; a live process's is kept."""
    import subprocess
    import sys

    from fracsgd._io import _host

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # its pid names a process that no longer runs
    dead = f".sweep-b0-x.npz.~{_host()}~{gone.pid}~.a1b2c3d4.tmp"
    live = f".sweep-b0-x.npz.~{_host()}~{os.getpid()}~.a1b2c3d4.tmp"
    for name in (dead, live):
        (tmp_path / name).write_bytes(b"half")
    fs.train.sweep(
        jax.random.key(0), moons, _grid(steps=4), checkpoint_dir=tmp_path, progress=False
    )
    left = {p.name for p in tmp_path.iterdir()}
    assert live in left and dead not in left


def test_grid_hidden_takes_zero_d_integer_arrays(moons):
    """Grid.hidden takes 0-d integer arrays as widths, as mlp and width_mask do (they were
    refused as 'not a sequence'); float and bool arrays stay refused."""
    plain = fs.train.plan_sweep(moons, fs.train.Grid(hidden=(4, (3, 2)), batch_sizes=(32,)))
    arrays = fs.train.plan_sweep(
        moons,
        fs.train.Grid(hidden=(np.array(4), (jnp.array(3), np.int64(2))), batch_sizes=(32,)),
    )
    assert [b.runs for b in arrays] == [b.runs for b in plain]
    for bad in (np.array(4.0), jnp.array(True)):
        with pytest.raises(ValueError, match="hidden"):
            fs.train.plan_sweep(moons, fs.train.Grid(hidden=(bad,), batch_sizes=(32,)))
