"""Eq. 17's ``d_s = 2λH`` is a spectral dimension only with ``λ > 0`` and ``H > 0``: a negative
λ̂ (a checkpoint off a local minimum) times a negative ``H`` (a network that stopped moving) is
positive and was averaged, judged against the bound and tempered with as one. Found in a review
run (``fracsgd reproduce all --quick`` with an SGD learning rate of 20): network 2 had
λ_final = −14, H = −7.6e-7 and ``d_s_eq17_final`` = 2.1e-5 counted in the SGD table's d_s."""

import math

import numpy as np
import pytest

import fracsgd as fs
from fracsgd.experiments import mnist, moons


def _stages(llc_final: float, h: float = -0.1, flag_final: bool | None = None):
    """One synthetic MNIST network whose R(t) grows as t^h (default h = −0.1: H < 0), with λ̂ at
    four checkpoints, the last one ``llc_final`` and flagged when negative (or as
    ``flag_final`` says); λ̄ is 30 (the unflagged late one)."""
    flag_final = llc_final < 0 if flag_final is None else flag_final
    t = np.arange(1, 1001)
    ck = np.array([1, 10, 100, 1000])
    tr = {
        "record_steps": t,
        "checkpoint_steps": ck,
        "seed": np.array([0]),
        "hidden": np.array(["8"]),
        "num_params": np.array([100]),
        "optimizer": np.array(["sgd"]),
        "learning_rate": np.array([20.0]),
        "batch_size": np.array([32]),
        "diverged": np.array([False]),
        "metrics": np.full((1, ck.size, 4), 0.1),
        "displacement": (5.0 * t**h)[None],
        "grad_norm": np.ones((1, t.size)),
    }
    ll = {
        "llc": np.array([[50.0, 40.0, 30.0, llc_final]]),
        "llc_std": np.ones((1, ck.size)),
        "not_minimum": np.array([[False, False, False, flag_final]]),
        "chains_diverged": np.zeros((1, ck.size), int),
        "nbeta": np.asarray(100.0),
    }
    rng = np.random.default_rng(0)
    br = {
        "displacement": np.cumsum(rng.uniform(0, 1, (1, 8, 20)), axis=-1),
        "record_steps": np.arange(1, 21),
    }
    config = mnist.MnistConfig(steps=1000, record_every=1)
    return tr, ll, br, config


def test_a_negative_lambda_times_a_negative_H_gets_no_bound_verdict():
    (rec,) = mnist.analyse(*_stages(-5.0))
    assert rec["H"] < 0 and rec["lambda_final"] == -5.0 and rec["lambda_bar"] == 30.0
    assert math.isclose(rec["d_s_eq17_final"], 2 * -5.0 * rec["H"])  # the formula, recorded
    assert rec["d_s_eq17_final"] > 0
    # but no spectral dimension: no verdict, conclusive or not
    assert rec["bound_eq17_holds"] is None
    assert rec["bound_eq17_conclusive"] is None


def test_a_flagged_positive_lambda_gets_no_eq17_verdict_nor_a_place_in_the_table():
    """A positive λ_final flagged as off a local minimum estimates no λ: the final-λ column and
    λ̄ leave it out, and so do Eq. 17's verdict and average (2λH with it is no d_s)."""
    (flagged,) = mnist.analyse(*_stages(25.0, h=0.3, flag_final=True))
    (clean,) = mnist.analyse(*_stages(25.0, h=0.3, flag_final=False))
    assert flagged["H"] > 0 and flagged["d_s_eq17_final"] > 0
    assert flagged["bound_eq17_holds"] is None and flagged["bound_eq17_conclusive"] is None
    assert clean["bound_eq17_holds"] is not None
    from types import SimpleNamespace

    summary = fs.experiments.report.mnist_summary
    table = summary(SimpleNamespace(records=[flagged, {**clean, "network": 1}]))["table"]["sgd"]
    assert table["d_s_eq17_final"][2] == 1 and table["lambda_final"][2] == 1
    assert table["d_s_eq17_final"][0] == clean["d_s_eq17_final"]


def test_the_sgd_table_leaves_eq17_d_s_of_a_negative_lambda_and_H_out():
    recs = mnist.analyse(*_stages(-5.0))
    ok = {"llc_not_minimum": [False] * 4}  # their last checkpoints are local minima
    recs += [
        {**recs[0], **ok, "lambda_final": 10.0, "H": 0.3, "d_s_eq17_final": 6.0, "network": 1},
        {**recs[0], **ok, "lambda_final": 20.0, "H": 0.2, "d_s_eq17_final": 8.0, "network": 2},
    ]
    from types import SimpleNamespace

    table = fs.experiments.report.mnist_summary(SimpleNamespace(records=recs))["table"]["sgd"]
    mean, _, n = table["d_s_eq17_final"]
    assert (mean, n) == (7.0, 2)


@pytest.mark.parametrize("case", ["negative", "flagged"])
def test_the_moons_comparison_leaves_out_networks_with_negative_lambda_and_H(
    tmp_path, monkeypatch, case
):
    """Every H forced negative and every other λ̂ negative: those networks' 2λ̂H > 0 entered
    the clusters and their D_ξ (from 2λ/d_s = 1/H < 0) tempered the masses. ``flagged``:
    every λ̂ positive but flagged as off a local minimum (it estimates no λ), H positive."""
    fit_exponent, estimate_many = fs.diffusion.fit_exponent, fs.llc.estimate_many

    def negative_h(*a, **k):
        fit = fit_exponent(*a, **k)
        return fit._replace(H=-abs(fit.H) if case == "negative" else abs(fit.H))

    def negative_llc(*a, **k):
        res = estimate_many(*a, **k)
        lam = np.abs(np.asarray(res.llc_mean))
        if case == "flagged":
            return res._replace(llc_mean=lam, not_minimum=np.ones_like(res.not_minimum))
        lam[::2] *= -1
        return res._replace(llc_mean=lam)

    monkeypatch.setattr(fs.diffusion, "fit_exponent", negative_h)
    monkeypatch.setattr(fs.llc, "estimate_many", negative_llc)
    cfg = moons.MoonsConfig(
        n=100,
        hidden=(4,),
        networks=8,
        steps=100,
        batch_size=20,
        llc_chains=2,
        llc_draws=20,
        llc_burnin=0,
        posterior_chains=4,
        posterior_steps=40,
        posterior_burnin=20,
        posterior_thin=10,
        num_clusters=2,
        probe_points=4,
        xis=(0.5,),
    )
    study = moons.run(0, cfg, str(tmp_path), progress=False)
    assert sum(r["d_s_eq17_final"] > 0 for r in study.records) >= 4  # the even networks
    assert study.summary["networks_with_positive_d_s"] == 0
    assert study.comparison is None and "comparison_skipped" in study.summary
