"""Bad input, systematically: the command line (issue #7).

Allowed outcomes: exit code 2 with exactly one ``fracsgd…: error:`` line on stderr naming the
argument, or — for valid arguments — the start of training (stubbed here to raise ``Started``, so
nothing is trained). ``reproduce`` is driven only with settings refused before any training.
Settings that used to crash or slip through validation are kept as regression cases.
"""

from unittest import mock

import pytest
from _fuzz import FEW, Started, stop_training
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fracsgd.cli import main
from fracsgd.experiments import mnist, moons
from fracsgd.train import _api

# capsys is read (and so reset) inside every example
CLI = settings(
    FEW, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


def _cli(argv, capsys):
    """``(exit code or 'started', error lines on stderr)``."""
    with (
        mock.patch.object(_api, "_train_bucket", stop_training),
        mock.patch.object(mnist, "run", stop_training),
        mock.patch.object(moons, "run", stop_training),
    ):
        try:
            rc = main(argv)
        except SystemExit as exc:  # argparse exits itself
            rc = exc.code
        except Started:
            rc = "started"
    err = capsys.readouterr().err
    return rc, [ln for ln in err.splitlines() if ln.startswith("fracsgd") and "error" in ln]


def _refused(argv, capsys, needle):
    rc, lines = _cli(argv, capsys)
    assert rc == 2, (argv, rc)
    assert len(lines) == 1 and needle in lines[0], (argv, lines)


_SWEEP_FLAGS = {
    "--steps": st.sampled_from(["0", "-3", "x", "1.5", ""]),
    "--seeds": st.sampled_from(["0", "-1", "a"]),
    "--learning-rates": st.sampled_from(["nan", "inf", "-1", "0", "x"]),
    "--batch-sizes": st.sampled_from(["0", "-1", "100000", "b"]),
    "--hidden": st.sampled_from(["0", "a-b", "-", "", "1e3", "8--8", "-8"]),
    "--optimizers": st.sampled_from(["lbfgs", "SGD", ""]),
    "--data-dir": st.sampled_from(["/nonexistent/fracsgd"]),
}
_NEEDLE = {
    "--steps": "steps",
    "--seeds": "seeds",
    "--learning-rates": "learning",
    "--batch-sizes": "batch",
    "--hidden": "hidden",
    "--optimizers": "optimizer",
    "--data-dir": "MNIST directory",
}


@CLI
@given(flag_value=st.one_of(*(st.tuples(st.just(f), s) for f, s in _SWEEP_FLAGS.items())))
def test_sweep_argument_errors_give_one_line_and_code_2(capsys, flag_value):
    flag, value = flag_value
    _refused(
        ["sweep", "--quick", "--no-progress", "--out", "/nonexistent/x", flag, value],
        capsys,
        _NEEDLE[flag],
    )


_REPRODUCE_BAD = [
    ("mnist.steps=-3", "steps"),
    ("mnist.hidden=((0,),)", "hidden"),
    ("moons.xis=()", "xis"),
    ("mnist.nope=1", "nope"),
    ("mnist.steps=abc", "mnist.steps"),
    ("mnist.xi=1e400", "xi"),
    ("moons.noise=None", "noise"),
    ("mnist.sgd_learning_rates=(None,)", "sgd_learning_rates"),
    ("nomod.steps=1", "study"),
    ("mnist.steps", "STUDY.FIELD=VALUE"),
    ("moons.steps=1", "record_every"),
    ("mnist.late_fraction=0", "late_fraction"),
    ("mnist.replicas=2", "replicas"),
    ("moons.posterior_burnin=10**9", "cannot read"),
]


@CLI
@given(case=st.sampled_from(_REPRODUCE_BAD), study=st.sampled_from(["all", "mnist", "moons"]))
def test_reproduce_setting_errors_give_one_line_and_code_2(capsys, case, study):
    setting, needle = case
    if (
        study != "all"
        and setting.split(".")[0] in ("mnist", "moons")
        and not setting.startswith(study)
    ):
        needle = "study"  # a setting of the other study is refused by name
    _refused(
        ["reproduce", study, "--quick", "--out", "/nonexistent/x", "--set", setting], capsys, needle
    )


def test_reproduce_bad_study_gives_one_line(capsys):
    _refused(["reproduce", "bogus"], capsys, "study")


# ---- settings that used to crash or slip through validation (found by fuzzing, now refused)

_XFAIL_REPRODUCE = [
    ("mnist.hidden=((None,),)", "TypeError from int(None) in mnist.validate"),
    ("mnist.hidden=5", "TypeError: 'int' object is not iterable in mnist.validate"),
    ("mnist.hidden=(('a',),)", "ValueError 'invalid literal for int()' does not name hidden"),
    (
        "mnist.hidden=((1.5,),)",
        "mnist.validate accepts a width 1.5 (int(1.5) > 0); training starts",
    ),
    ("mnist.llc_burnin=None", "TypeError from int(None) in mnist.validate"),
    ("mnist.llc_burnin=1.5", "mnist.validate accepts a fractional llc_burnin"),
    ("mnist.seeds=5", "mnist.validate accepts a non-sequence seeds"),
    ("mnist.seeds=(-1,)", "mnist.validate does not check seed values"),
    ("mnist.batch_norm='yes'", "mnist.validate accepts a non-bool batch_norm"),
    ("mnist.sgd_learning_rates=5", "TypeError: 'int' object is not iterable"),
    ("mnist.batch_sizes=5", "TypeError: 'int' object is not iterable"),
    ("moons.xis=(None,)", "TypeError from float(None) in moons.validate"),
    ("moons.xis=5", "TypeError: 'int' object is not iterable in moons.validate"),
    ("moons.xis=('a',)", "ValueError from float('a') does not name xis"),
    ("moons.hidden=5", "TypeError: 'int' object is not iterable in moons.validate"),
    ("moons.hidden=(None,)", "TypeError from int(None) in moons.validate"),
    ("moons.hidden=(1.5,)", "moons.validate accepts a width 1.5; training starts"),
    ("moons.data_seed=-1", "moons.validate does not check data_seed"),
]


@pytest.mark.parametrize(
    "setting",
    [pytest.param(s, id=r) for s, r in _XFAIL_REPRODUCE],
)
def test_reproduce_settings_refused_by_name(capsys, setting):
    field = setting.split("=")[0].split(".")[1]
    _refused(
        ["reproduce", "all", "--quick", "--out", "/nonexistent/x", "--set", setting], capsys, field
    )


def test_sweep_huge_master_seed_is_named(capsys):
    _refused(["sweep", "--quick", "--no-progress", "--seed", str(2**70)], capsys, "seed")


def test_sweep_huge_width_is_named(capsys):
    _refused(["sweep", "--quick", "--no-progress", "--hidden", "9" * 23], capsys, "hidden")


def test_sweep_huge_number_of_seeds_is_refused_before_building_the_grid(capsys):
    _refused(["sweep", "--quick", "--no-progress", "--seeds", "1000000000"], capsys, "seeds")
