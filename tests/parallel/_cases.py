"""The small problems shared by the parallel tests and their subprocesses (so that the parent's
single-device reference and the children's sharded runs compute exactly the same thing)."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np

import fracsgd as fs

SWEEP_FIELDS = (
    "displacement",
    "train_loss",
    "grad_norm",
    "train_loss_full",
    "train_accuracy",
    "test_loss",
    "test_accuracy",
    "diverged_step",
)
LLC_FIELDS = (
    "llc_mean",
    "llc_std",
    "llc_per_chain",
    "loss_trace",
    "init_loss",
    "diverged",
    "below_init_fraction",
    "grad_noise_ratio",
    "distance",
)


def data():
    return fs.data.load("moons", n=96, noise=0.2, seed=0)


def grid(**kw):
    """Two buckets (a width-masked one with Adam and SGD, and a deeper one), 10 networks each —
    not a multiple of 4 or 8, so sharding pads."""
    base = dict(
        hidden=(4, 6, (3, 3)),
        seeds=(0, 1, 2, 3, 4),
        learning_rates=(0.05,),
        optimizers=("sgd", "adam"),
        batch_sizes=(16,),
        steps=24,
        num_checkpoints=3,
        max_padding_overhead=4.0,
    )
    base.update(kw)
    return fs.train.Grid(**base)


def sweep_arrays(sw) -> dict[str, np.ndarray]:
    """Every number of a sweep: series, metrics and each run's unpadded parameters."""
    out = {f: np.asarray(getattr(sw, f)) for f in SWEEP_FIELDS}
    for i in range(sw.num_runs):
        r = sw.result(i)
        for j, leaf in enumerate(jax.tree.leaves((r.checkpoints, r.init_params))):
            out[f"params/{i}/{j}"] = np.asarray(leaf)
    return out


def _loss(w, batch):
    x, y = batch
    h = jnp.tanh(x @ w["a"]) @ w["b"]
    return jnp.mean(jnp.square(h - y))


def llc_data():
    x = jax.random.normal(jax.random.key(5), (120, 3))
    return x, x @ jnp.asarray([1.0, -2.0, 0.5])


def llc_params():
    return {
        "a": 0.3 * jax.random.normal(jax.random.key(1), (3, 3, 4)),
        "b": 0.3 * jax.random.normal(jax.random.key(2), (3, 4)),
    }


def full_loss_bytes() -> int:
    """The memory model's bytes for one model's full-data loss (see ``llc._estimate._run``)."""
    from fracsgd.llc._estimate import _activation_bytes, _tree_bytes

    one = jax.tree.map(lambda a: a[0], llc_params())
    return _tree_bytes(one) + 3 * _activation_bytes(_loss, one, llc_data())


def llc(**kw):
    """``estimate_many`` for 3 centres × 5 chains of a small tanh regression."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fs.llc.NotAMinimumWarning)
        return fs.llc.estimate_many(
            jax.random.key(0),
            _loss,
            llc_params(),
            llc_data(),
            num_chains=5,
            num_draws=20,
            num_burnin=4,
            step_size=1e-4,
            localization=10.0,
            nbeta=50.0,
            batch_size=16,
            **kw,
        )


#: equal to one device's to float32 rounding, not bitwise: with fewer centres than devices each
#: device takes a share of a centre's 16 gradient batches and the sums are added over devices
NOISE_RATIO = "minibatch_noise_ratio"


def llc_arrays(res) -> dict[str, np.ndarray]:
    return {f: np.asarray(getattr(res, f)) for f in (*LLC_FIELDS, NOISE_RATIO)}


CALIBRATION_FIELDS = ("llc_mean", "llc_std", "rhat", "ess", "below_init_fraction")


def calibration(**kw):
    """``calibrate`` at the first centre: 2 × 2 settings × 3 chains = 12 rows, epoch batches
    (whose cycle walk is a data-dependent ``while`` loop inside every step)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fs.llc.NotAMinimumWarning)
        return fs.llc.calibrate(
            jax.random.key(3),
            _loss,
            jax.tree.map(lambda a: a[0], llc_params()),
            llc_data(),
            step_sizes=(1e-4, 3e-4),
            localizations=(1.0, 10.0),
            nbetas=(50.0,),
            num_chains=3,
            num_draws=20,
            batch_size=16,
            sampling="epoch",
            **kw,
        )


def calibration_arrays(cal) -> dict[str, np.ndarray]:
    out = {f: np.asarray(getattr(cal, f)) for f in CALIBRATION_FIELDS}
    out["init_loss"] = np.asarray(cal.results.init_loss)
    out[NOISE_RATIO] = np.asarray(cal.minibatch_noise_ratio)
    return out


def sgld_program_text(mesh) -> str:
    """The compiled SGLD program of :func:`calibration` on ``mesh``, as XLA's HLO text."""
    from fracsgd.llc import _estimate

    texts: list[str] = []
    compiled = _estimate._compiled_common

    def capture(static, *args, **kw):
        texts.append(compiled.lower(static, *args, **kw).compile().as_text())
        return compiled(static, *args, **kw)

    _estimate._compiled_common = capture
    try:
        calibration(mesh=mesh)
    finally:
        _estimate._compiled_common = compiled
    return "\n".join(texts)


def resumable_sweep(directory, **kw):
    """A checkpointed sweep of 12 networks in 4 chunks of 3."""
    g = grid(hidden=(4, 6), optimizers=("sgd",), seeds=(0, 1, 2, 3, 4, 5), steps=40)
    g = g._replace(memory_limit=cap_for(g, 3))
    return fs.train.sweep(
        jax.random.key(0), data(), g, progress=False, checkpoint_dir=directory, **kw
    )


def cap_for(g, k: int) -> int:
    """A memory cap that holds ``k`` networks of the first bucket of ``g`` (and the data)."""
    b = fs.train.plan_sweep(data(), g)[0]
    per = fs.train.estimate_bytes(b.static, 1, data().num_train, data().num_features, 0)
    return b.estimated_bytes - (b.chunk_size - k) * per


def assert_same_numbers(got: dict, ref: dict, prefix: str) -> None:
    """LLC or calibration arrays of a sharded run against one device's: bitwise, the
    minibatch noise ratio to float32 rounding (see :data:`NOISE_RATIO`)."""
    for name, want in ref.items():
        have, msg = got[f"{prefix}/{name}"], f"{prefix}/{name}"
        if name == NOISE_RATIO:
            np.testing.assert_allclose(have, want, rtol=1e-5, err_msg=msg)
            assert np.isfinite(have).all() and (have > 0).all(), msg
        else:
            np.testing.assert_array_equal(have, want, err_msg=msg)
