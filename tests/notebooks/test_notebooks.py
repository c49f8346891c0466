"""The notebooks in ``notebooks/`` are stored without outputs and run top to bottom.

Each notebook's code cells are executed in order in a fresh namespace, in its quick setting
(``FRACSGD_NOTEBOOK_QUICK=1``) and with matplotlib's non-interactive Agg backend, so no Jupyter
kernel is needed. The notebooks contain ``assert`` statements of the mathematics they show (the
LLC estimate against Aoyagi's value, exponents and the bound, mass conservation and the
Mittag-Leffler relaxation of the fractional Fokker–Planck equation), so running them is a test.
"""

from __future__ import annotations

import json
import pathlib

import jax
import matplotlib
import pytest

matplotlib.use("Agg")

import matplotlib.pyplot as plt

NOTEBOOK_DIR = pathlib.Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))


def _load(path: pathlib.Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _code_cells(nb: dict) -> list[str]:
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


def test_the_three_notebooks_exist():
    names = [p.name for p in NOTEBOOKS]
    assert names == [
        "01_llc_deep_linear.ipynb",
        "02_trajectories_and_dimensions.ipynb",
        "03_ffpe_singular_potential.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_without_outputs(path):
    nb = _load(path)
    assert nb["nbformat"] == 4
    cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert cells, "a notebook without code"
    for i, cell in enumerate(cells):
        assert cell["outputs"] == [], f"code cell {i} of {path.name} has stored outputs"
        assert cell["execution_count"] is None, f"code cell {i} of {path.name} was executed"
    for src in _code_cells(nb):
        for line in src.splitlines():
            assert not line.lstrip().startswith(("%", "!")), f"IPython magic in {path.name}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_runs_top_to_bottom(path, monkeypatch):
    monkeypatch.setenv("FRACSGD_NOTEBOOK_QUICK", "1")
    # A notebook may switch on float64 for the whole session; restore the flag afterwards so
    # that the rest of the test suite runs in its default precision.
    x64 = bool(jax.config.jax_enable_x64)
    ns: dict = {"__name__": "__main__"}
    try:
        for i, src in enumerate(_code_cells(_load(path))):
            exec(compile(src, f"{path.name}[cell {i}]", "exec"), ns)
    finally:
        jax.config.update("jax_enable_x64", x64)
        plt.close("all")
    assert ns["QUICK"] is True
