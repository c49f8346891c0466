"""fracsgd.llc.step_size_bias: the largest curvature by power iteration and the discretisation
bias it predicts, against closed forms and against the sampler itself."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fracsgd as fs

DUMMY = jnp.zeros((500, 1))


def _quadratic(a):
    a = jnp.asarray(a, jnp.float32)
    return lambda w, batch: 0.5 * jnp.sum(a * w**2) + 0.0 * jnp.sum(batch)


def test_curvature_x_and_bias_have_their_closed_forms():
    a = np.linspace(0.5, 6.0, 12)
    r = fs.llc.step_size_bias(
        jax.random.key(0),
        _quadratic(a),
        jnp.zeros(12),
        DUMMY,
        step_size=2e-4,
        localization=30.0,
        nbeta=200.0,
        num_iterations=200,
    )
    assert r.curvature == pytest.approx(6.0, rel=1e-3)  # eigenvalue gap 0.5/6: 200 steps
    x = 2e-4 * (200.0 * 6.0 + 30.0) / 4
    assert r.x == pytest.approx(x, rel=1e-3) and r.bias == pytest.approx(x / (1 - x), rel=1e-3)
    assert r.nbeta == 200.0 and not r.not_minimum
    default = fs.llc.step_size_bias(
        jax.random.key(0), _quadratic(a), jnp.zeros(12), DUMMY, step_size=1e-4, localization=0.0
    )
    assert default.nbeta == pytest.approx(500 / math.log(500))  # n / log n


@pytest.mark.parametrize("localization", [0.0, 50.0])
def test_predicted_bias_is_what_sgld_reads(localization):
    """U = nβ ½ a w² + ½ γ w² at x = ε(nβ a + γ)/4 = 0.2: the chains' λ̂ is (nβ a / 2k)(1 + bias),
    k = nβ a + γ, against the continuous target nβ a / 2k (a 25 % excess, so a wrong prediction
    cannot pass the 3 % band)."""
    nbeta, a = 100.0, 1.0
    k = nbeta * a + localization
    eps = 4 * 0.2 / k
    loss = _quadratic([a])
    pred = fs.llc.step_size_bias(
        jax.random.key(1),
        loss,
        jnp.zeros(1),
        DUMMY,
        step_size=eps,
        localization=localization,
        nbeta=nbeta,
    )
    assert pred.x == pytest.approx(0.2, rel=1e-5)
    res = fs.llc.estimate(
        jax.random.key(2),
        loss,
        jnp.zeros(1),
        DUMMY,
        num_chains=64,
        num_draws=4000,
        num_burnin=200,
        step_size=eps,
        localization=localization,
        nbeta=nbeta,
        batch_size=1,
    )
    target = nbeta * a / (2 * k)
    # 64 chains × 4 000 draws: the mean is known to 0.4 % (the chains' spread; two keys read
    # 0.998 and 0.999 of the prediction)
    assert res.llc_mean == pytest.approx(target * (1 + pred.bias), rel=0.03)
    assert res.llc_mean > target * 1.15  # the excess is real


def test_mask_leaves_out_padded_entries():
    loss = _quadratic([1.0, 2.0, 50.0])
    mask = jnp.array([1.0, 1.0, 0.0])
    r = fs.llc.step_size_bias(
        jax.random.key(0),
        loss,
        jnp.zeros(3),
        DUMMY,
        step_size=1e-4,
        localization=0.0,
        nbeta=10.0,
        mask=mask,
        num_iterations=200,
    )
    assert r.curvature == pytest.approx(2.0, rel=1e-3)


def test_a_saddle_is_flagged_and_its_largest_eigenvalue_reported():
    r = fs.llc.step_size_bias(
        jax.random.key(0),
        _quadratic([-10.0, 1.0, 0.5]),
        jnp.zeros(3),
        DUMMY,
        step_size=1e-3,
        localization=0.0,
        nbeta=10.0,
        num_iterations=200,
    )
    assert r.not_minimum and r.curvature == pytest.approx(1.0, rel=1e-3)


def test_x_at_least_one_is_divergence():
    r = fs.llc.step_size_bias(
        jax.random.key(0),
        _quadratic([2.0]),
        jnp.zeros(1),
        DUMMY,
        step_size=0.05,
        localization=0.0,
        nbeta=40.0,
    )
    assert r.x == pytest.approx(1.0, rel=1e-5) and r.bias == math.inf


def test_a_pytree_of_parameters_and_the_full_data_in_chunks():
    """A loss that reads the data: L_n = mean ½ (x·w)² has Hessian mean x xᵀ, whose top
    eigenvalue is known; 10 000 rows are read in chunks."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10_000, 3)) * np.array([1.0, 2.0, 0.5])
    hess = x.T @ x / len(x)
    params = {"w": jnp.zeros(2), "b": jnp.zeros(())}

    def loss(p, batch):
        w = jnp.concatenate([p["w"], p["b"][None]])
        return 0.5 * jnp.mean((batch @ w) ** 2)

    r = fs.llc.step_size_bias(
        jax.random.key(3),
        loss,
        params,
        jnp.asarray(x, jnp.float32),
        step_size=1e-5,
        localization=1.0,
        num_iterations=100,
    )
    assert r.curvature == pytest.approx(np.linalg.eigvalsh(hess)[-1], rel=1e-3)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"step_size": 0.0}, "step_size"),
        ({"localization": -1.0}, "localization"),
        ({"num_iterations": 0}, "num_iterations"),
        ({"nbeta": -2.0}, "nbeta"),
        ({"mask": jnp.zeros(2)}, "mask"),
        ({"mask": jnp.ones(5)}, "mask"),
    ],
)
def test_bad_input_is_named(kwargs, name):
    args = {"step_size": 1e-4, "localization": 1.0} | kwargs
    with pytest.raises(ValueError, match=name):
        fs.llc.step_size_bias(
            jax.random.key(0), _quadratic([1.0, 2.0]), jnp.zeros(2), DUMMY, **args
        )
    with pytest.raises(ValueError, match="key"):
        fs.llc.step_size_bias(
            jax.random.PRNGKey(0),
            _quadratic([1.0, 2.0]),
            jnp.zeros(2),
            DUMMY,
            step_size=1e-4,
            localization=1.0,
        )


def test_the_batch_rule_for_nbeta_is_not_read_as_n_over_log_n():
    """Found by a review: ``nbeta="batch/log batch"`` (devinterp's ``B/log B``) silently gave
    ``n/log n``, the default, because the rule was resolved with the batch size set to ``n``
    (the function has no batch size). It is refused by name; ``batch_nbeta(B)`` is the number."""
    loss = _quadratic([1.0, 2.0])
    kw = {"step_size": 1e-4, "localization": 1.0}
    with pytest.raises(ValueError, match=r"nbeta='batch/log batch'.*batch_nbeta"):
        fs.llc.step_size_bias(
            jax.random.key(0), loss, jnp.zeros(2), DUMMY, nbeta="batch/log batch", **kw
        )
    r = fs.llc.step_size_bias(
        jax.random.key(0), loss, jnp.zeros(2), DUMMY, nbeta=fs.llc.batch_nbeta(16), **kw
    )
    assert r.nbeta == pytest.approx(16 / math.log(16))
    n = DUMMY.shape[0]
    r = fs.llc.step_size_bias(jax.random.key(0), loss, jnp.zeros(2), DUMMY, nbeta="n/log n", **kw)
    assert r.nbeta == pytest.approx(n / math.log(n))


def test_under_jit_it_says_it_runs_on_the_host():
    loss = _quadratic([1.0, 2.0])

    def traced(w):
        return fs.llc.step_size_bias(
            jax.random.key(0), loss, w, DUMMY, step_size=1e-4, localization=1.0
        ).curvature

    with pytest.raises(ValueError, match="runs on the host"):
        jax.jit(traced)(jnp.zeros(2))
