"""Bad input, systematically: SGLD samplers and the LLC (issue #7).

Correct results: Aoyagi's λ of a deep linear network lies in ``[0, d/2]`` (``d`` = number of
parameters; λ ≤ d/2 for every model, with equality for regular ones); a kernel step from a
finite state with a valid step size is finite; an LLC estimate at a NaN centre is never a
silent number: every chain is flagged ``diverged`` and ``llc_mean`` is NaN (the documented
contract). Everything else is a ``ValueError`` naming the argument.
"""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _fuzz import BAD_INTS, BAD_SCALARS, FAST, FEW, raises_naming
from hypothesis import given
from hypothesis import strategies as st

import fracsgd as fs

KEY = jax.random.key(0)
S = fs.sampling


def loss(w, batch):
    return 0.5 * jnp.sum(w**2) + 0.0 * jnp.sum(batch)


DATA = jnp.zeros((20, 1))
KW = dict(num_chains=2, num_draws=5, step_size=1e-3, localization=1.0, nbeta=10.0, batch_size=4)


@FAST
@given(
    widths=st.one_of(
        st.lists(st.integers(1, 6), min_size=2, max_size=4),
        st.lists(st.sampled_from([0, -1, 2.5, math.inf, math.nan, None, "3"]), min_size=1),
        st.sampled_from([None, "abc", 5]),
    ),
    rank=st.one_of(st.integers(0, 6), BAD_INTS, st.just(math.inf)),
)
def test_aoyagi_lambda_in_range_or_named_error(widths, rank):
    try:
        lam = fs.llc.aoyagi_lambda(widths, rank)
    except ValueError as err:
        assert str(err).split()[0] in ("widths", "rank"), str(err)
        return
    d = sum(a * b for a, b in itertools.pairwise(widths))
    assert 0 <= lam <= d / 2 + 1e-12  # λ ≤ d/2 for every model


@FAST
@given(
    step_size=st.one_of(st.floats(1e-4, 1.0), BAD_SCALARS),
    nbeta=st.one_of(st.floats(0.1, 10), BAD_SCALARS),
    localization=st.one_of(st.floats(0, 10), BAD_SCALARS),
    psgld=st.booleans(),
    alpha=st.one_of(st.just(0.99), st.sampled_from([1.0, 2.0, -0.1, math.nan, "a"])),
)
def test_sgld_kernels_finite_or_named_error(step_size, nbeta, localization, psgld, alpha):
    try:
        est = S.localized_gradient(loss, jnp.zeros(2), nbeta=nbeta, localization=localization)
        alg = S.psgld(est, step_size, alpha=alpha) if psgld else S.sgld(est, step_size)
        state, info = alg.step(KEY, alg.init(jnp.ones(2)), jnp.zeros(1))
    except ValueError as err:
        names = ("step_size", "nbeta", "localization", "alpha")
        assert str(err).split()[0] in names, str(err)
        return
    assert bool(jnp.all(jnp.isfinite(state.position))) and bool(jnp.isfinite(info.loss))


def test_sgld_kernel_arguments_are_named():
    est = S.localized_gradient(loss, jnp.zeros(2), nbeta=1.0, localization=1.0)
    step = S.sgld(est, 0.1).step
    raises_naming(lambda: step(0, S.init(jnp.ones(2)), jnp.zeros(1)), "key")
    raises_naming(lambda: step(KEY, S.init(jnp.ones(3)), jnp.zeros(1)), "position")
    raises_naming(lambda: step(KEY, S.init({"a": jnp.ones(2)}), jnp.zeros(1)), "position")
    raises_naming(lambda: step(KEY, S.init(jnp.ones(2, int)), jnp.zeros(1)), "position")
    masked = S.sgld(est, 0.1, mask=jnp.ones(3)).step
    raises_naming(lambda: masked(KEY, S.init(jnp.ones(2)), jnp.zeros(1)), "mask")
    raises_naming(
        lambda: S.localized_gradient(None, jnp.zeros(2), nbeta=1.0, localization=1.0), "loss_fn"
    )
    raises_naming(lambda: S.psgld(est, 0.1, delta=-1.0), "delta")


_INT_FIELDS = ("num_chains", "num_draws", "thinning", "batch_size")
_FLOAT_FIELDS = ("step_size", "localization", "nbeta")
# None is nbeta's default (an array nbeta is tested below)
_FLOAT_BAD = BAD_SCALARS.filter(lambda v: np.ndim(v) == 0 and v is not None)


@FAST
@given(
    field_bad=st.one_of(
        st.tuples(st.sampled_from(_INT_FIELDS), BAD_INTS),
        st.tuples(st.just("num_burnin"), st.sampled_from([-1, 1.5, None, "a", True])),
        st.tuples(st.sampled_from(_FLOAT_FIELDS), _FLOAT_BAD),
        st.tuples(st.just("sampler"), st.sampled_from(["psgld2", None, 1, ["sgld"]])),
    )
)
def test_estimate_settings_are_named(field_bad):
    field, bad = field_bad
    if field == "localization" and bad == 0:
        return  # γ = 0 is valid (no localisation)
    raises_naming(
        lambda: fs.llc.estimate(KEY, loss, jnp.zeros(2), DATA, **{**KW, field: bad}), field
    )


@FEW
@given(where=st.integers(0, 1), bad=st.sampled_from([math.nan, math.inf]))
def test_estimate_at_a_non_finite_centre_flags_every_chain(where, bad):
    centre = jnp.zeros(2).at[where].set(bad)  # one shape: one compiled program for all examples
    with pytest.warns(fs.llc.DivergedChainsWarning, match="all"):
        res = fs.llc.estimate(KEY, loss, centre, DATA, **KW)
    assert bool(np.all(res.diverged)) and math.isnan(res.llc_mean)


def test_trajectory_and_calibrate_arguments_are_named():
    ck = jnp.zeros((3, 2))
    tr = fs.llc.trajectory
    raises_naming(lambda: tr(KEY, loss, ck, [1, 10], DATA, **KW), "len(steps)")
    raises_naming(lambda: tr(KEY, loss, ck, ["a", "b", "c"], DATA, **KW), "steps")
    raises_naming(lambda: tr(KEY, loss, ck, [1, math.nan, 100], DATA, **KW), "steps")
    raises_naming(lambda: tr(KEY, loss, ck, [-3, -2, -1], DATA, **KW), "steps")
    for lf in ("a", None, np.ones(2), 0.0, math.nan):
        raises_naming(
            lambda lf=lf: tr(KEY, loss, ck, [1, 10, 100], DATA, late_fraction=lf, **KW),
            "late_fraction",
        )
    cal = dict(num_chains=2, num_draws=5, batch_size=4)
    c = fs.llc.calibrate
    raises_naming(
        lambda: c(KEY, loss, jnp.zeros(2), DATA, step_sizes=1e-3, localizations=(1.0,), **cal),
        "step_sizes",
    )
    raises_naming(
        lambda: c(
            KEY,
            loss,
            jnp.zeros(2),
            DATA,
            step_sizes=(1e-3,),
            localizations=(1.0,),
            nbetas=None,
            **cal,
        ),
        "nbetas",
    )
    raises_naming(lambda: fs.llc.time_average([1, 2, 3], [1, 2], 0), "steps")
    raises_naming(lambda: fs.llc.time_average([1, 2, 3], [1, 2, 3], math.nan), "start")
    raises_naming(lambda: fs.llc.aoyagi_lambda((2, 2), None), "rank")
    raises_naming(lambda: fs.llc.reduced_rank_lambda(-1, 2, 3), "m must be an integer")


# ---- inputs that used to escape as TypeError/IndexError (found by fuzzing, now refused by name)


def test_estimate_refuses_a_non_key():
    raises_naming(lambda: fs.llc.estimate(0, loss, jnp.zeros(2), DATA, **KW), "key")


def test_estimate_refuses_string_params():
    raises_naming(lambda: fs.llc.estimate(KEY, loss, "ab", DATA, **KW), "params")


def test_estimate_refuses_a_mask_of_another_structure():
    # named by the sampler kernel while the program is traced (fixed in fracsgd/sampling)
    raises_naming(
        lambda: fs.llc.estimate(KEY, loss, jnp.zeros(2), DATA, **KW, mask={"a": jnp.ones(2)}),
        "mask",
    )


@pytest.mark.parametrize("params", [jnp.zeros(()), jnp.zeros((0, 2))])
def test_estimate_many_needs_a_model_axis(params):
    raises_naming(lambda: fs.llc.estimate_many(KEY, loss, params, DATA, **KW), "params")


def test_estimate_refuses_an_integer_loss():
    raises_naming(lambda: fs.llc.estimate(KEY, lambda w, b: 1, jnp.zeros(2), DATA, **KW), "loss_fn")


def test_estimate_nbeta_array_is_named():
    raises_naming(
        lambda: fs.llc.estimate(KEY, loss, jnp.zeros(2), DATA, **{**KW, "nbeta": np.ones(2)}),
        "nbeta",
    )


def test_default_nbeta_of_one_sample_is_named():
    raises_naming(lambda: fs.llc.default_nbeta(1), "n")
