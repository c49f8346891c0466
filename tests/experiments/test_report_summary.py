"""The MNIST report's summary table (fracsgd.experiments.report.mnist_summary)."""

from types import SimpleNamespace

import numpy as np
import pytest

import fracsgd as fs
from fracsgd.experiments import report


def _record(d_s_return, d_s_eq17=2.0, optimizer="sgd"):
    return {
        "diverged": False,
        "optimizer": optimizer,
        "d_s_eq17_final": d_s_eq17,
        "d_s_return": d_s_return,
        "lambda_final": 10.0,
        "lambda_bar": 9.0,
        "H": 0.3,
        "test_accuracy": 0.9,
        "bound_eq17_holds": True,
        "bound_return_holds": None if not d_s_return > 0 else True,
        "llc_not_minimum": [False],
    }


def test_the_d_s_columns_average_positive_values_only():
    """A d_s ≤ 0 is no spectral dimension and gets no verdict: the quick MNIST report averaged
    one −0.267 into "4.25 ± 2.8" over 12 networks."""
    recs = [_record(4.0), _record(6.0), _record(-0.267), _record(float("nan"), d_s_eq17=-1.0)]
    table = report.mnist_summary(SimpleNamespace(records=recs))["table"]["sgd"]
    assert table["networks"] == 4
    mean, std, n = table["d_s_return"]
    assert (mean, n) == (5.0, 2) and std == pytest.approx(np.std([4.0, 6.0], ddof=1))
    assert table["d_s_eq17_final"][:1] == (2.0,) and table["d_s_eq17_final"][2] == 3


def test_final_lambda_leaves_out_networks_whose_last_checkpoint_is_not_a_minimum():
    """λ̄ already left flagged checkpoints out; the table's final λ averaged a flagged −3.0 in."""
    recs = [_record(4.0), _record(4.0), _record(4.0)]
    recs[1] = {**recs[1], "lambda_final": 14.0}
    recs[2] = {**recs[2], "lambda_final": -3.0, "llc_not_minimum": [False, True]}
    table = report.mnist_summary(SimpleNamespace(records=recs))["table"]["sgd"]
    assert table["lambda_final"][0] == pytest.approx(12.0) and table["lambda_final"][2] == 2
    # a flag at an earlier checkpoint does not matter for the final λ
    recs[2]["llc_not_minimum"] = [True, False]
    assert (
        report.mnist_summary(SimpleNamespace(records=recs))["table"]["sgd"]["lambda_final"][2] == 3
    )


def test_the_displacement_figure_of_a_study_without_sgd_draws_the_adam_networks(
    tmp_path, monkeypatch
):
    """``mnist.sgd_learning_rates=()`` skips SGD; the displacement figure drew SGD networks
    only and came out empty."""
    t = np.arange(1.0, 101.0)
    recs = [
        {
            **_record(4.0, optimizer="adam"),
            "network": i,
            "hidden": h,
            "num_params": 100 * (i + 1),
            "learning_rate": 1e-3,
            "batch_size": 32,
            "total_displacement": 1.0,
            "fit_window": [10.0, 100.0],
        }
        for i, h in enumerate(("8", "16"))
    ]
    study = SimpleNamespace(records=recs, record_steps=t, displacement=np.stack([t**0.3, t**0.4]))
    drawn = {}

    def save(fig, path):
        drawn[path.name] = [len(ax.lines) for ax in fig.axes]
        import matplotlib.pyplot as plt

        plt.close(fig)
        return path.name

    monkeypatch.setattr(report, "_save", save)
    report.mnist_figures(study, tmp_path)
    assert drawn["mnist_displacement.png"][0] == 4  # two R(t) curves and their two late fits


def test_the_dashed_late_fit_of_the_displacement_figure_is_the_least_squares_line(
    tmp_path, monkeypatch
):
    """The dashed "late fit" had the fitted slope but started at R(t_start): on a curved R(t)
    (a quick run's 784-16-10 network, H = 0.50 on [90, 1500], r² 0.95) it ended 31 % below the
    fitted line. It must be exp(c) t^H with the least-squares c over the fit window."""
    t = np.arange(1.0, 1001.0)
    R = t**0.3 * (1 + 0.3 * np.sin(np.log(t)))  # not a power law: the anchors differ
    window = [50.0, 1000.0]
    fit = fs.diffusion.fit_exponent(t, R, window=tuple(window))
    rec = {
        **_record(4.0),
        "network": 0,
        "hidden": "8",
        "num_params": 100,
        "learning_rate": 0.1,
        "batch_size": 32,
        "total_displacement": float(R[-1]),
        "H": fit.H,
        "fit_window": window,
    }
    study = SimpleNamespace(records=[rec], record_steps=t, displacement=R[None])
    drawn = {}

    def save(fig, path):
        drawn[path.name] = [np.asarray(line.get_xydata()) for line in fig.axes[0].lines]
        import matplotlib.pyplot as plt

        plt.close(fig)
        return path.name

    monkeypatch.setattr(report, "_save", save)
    report.mnist_figures(study, tmp_path)
    _, dashed = drawn["mnist_displacement.png"]
    np.testing.assert_allclose(
        dashed[:, 1], np.exp(fit.intercept) * dashed[:, 0] ** fit.H, rtol=1e-9
    )


def test_diverged_networks_are_left_out_of_the_figures_as_of_the_table(tmp_path, monkeypatch):
    """The table excluded diverged networks but the figures drew them: a network that
    diverged keeps the finite H fitted before it did and stood in the H histogram and the
    scatter plots as a trained one."""
    t = np.arange(1.0, 101.0)
    base = {
        "hidden": "8",
        "num_params": 100,
        "learning_rate": 0.1,
        "batch_size": 32,
        "total_displacement": 1.0,
        "fit_window": [10.0, 100.0],
    }
    recs = [
        {**_record(4.0), **base, "network": 0, "H": 0.3},
        {**_record(4.0), **base, "network": 1, "H": 0.45, "diverged": True},
    ]
    study = SimpleNamespace(records=recs, record_steps=t, displacement=np.stack([t**0.3, t]))
    drawn = {}

    def save(fig, path):
        drawn[path.name] = fig
        return path.name

    monkeypatch.setattr(report, "_save", save)
    report.mnist_figures(study, tmp_path)
    hist = drawn["mnist_exponent_hist.png"].axes[0]
    assert "sgd (n=1)" in hist.get_legend_handles_labels()[1]
    scatter = drawn["mnist_llc_vs_ds.png"].axes[0].collections[0]
    assert len(scatter.get_offsets()) == 1
    import matplotlib.pyplot as plt

    plt.close("all")
