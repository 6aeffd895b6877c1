"""Plots in the field's style: the numbers drawn (error bar heights, stacked bar tops, step heights,
colour map cells) are read back from the matplotlib artists and compared with counts computed here
with numpy (not with hist), and the labels with what the storage and the axis say. No pixels compared."""

from __future__ import annotations

import json
import pickle
import re
import subprocess
import sys

import hist
import matplotlib
import numpy as np
import pytest
from conftest import EXAMPLES, REPO, reference_dimuon

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.container import ErrorbarContainer  # noqa: E402
from matplotlib.patches import StepPatch  # noqa: E402

from hpckit.report.plots import PlotError, data_datasets, draw, plot_histograms, y_label  # noqa: E402

EDGES = np.linspace(0, 100, 21)  # 5 GeV bins
RNG = np.random.default_rng(7)
SAMPLES = {"DY": RNG.normal(60, 15, 4000), "TT": RNG.uniform(0, 100, 1500), "Run2018A": RNG.normal(58, 16, 3000),
           "Run2018B": RNG.normal(62, 14, 800)}
DATA = ["Run2018A", "Run2018B"]


def _hist(storage: str = "Double", weights: dict | None = None) -> hist.Hist:
    h = hist.Hist.new.StrCat([], name="dataset", growth=True).Reg(20, 0, 100, name="m", label=r"$m_{\mu\mu}$ [GeV]")
    h = h.Weight() if storage == "Weight" else h.Double()
    for ds, x in SAMPLES.items():
        h.fill(dataset=ds, m=x, weight=(weights or {}).get(ds, 1.0))
    return h


def _counts(ds: str, weight: float = 1.0) -> np.ndarray:
    return np.histogram(SAMPLES[ds], bins=EDGES)[0] * weight


def _drawn(ax):
    steps = [p for p in ax.patches if isinstance(p, StepPatch)]
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    return steps, bars


def _errorbar_numbers(container: ErrorbarContainer) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, y of the markers and the drawn half-height of each vertical bar."""
    line, _, (vlines,) = container.lines
    x, y = (np.asarray(a) for a in line.get_data())
    heights = np.array([(seg[1, 1] - seg[0, 1]) / 2 for seg in vlines.get_segments()])
    return x, y, heights


def test_data_points_have_sqrt_n_bars_over_the_stacked_simulation():
    fig, ax = plt.subplots()
    kind = draw(ax, _hist(), data=DATA, name="mass")
    try:
        assert kind == "stack"
        steps, bars = _drawn(ax)
        data_n = _counts("Run2018A") + _counts("Run2018B")
        x, y, heights = _errorbar_numbers(bars[0])
        shown = data_n > 0
        np.testing.assert_allclose(y, data_n[shown])
        np.testing.assert_allclose(heights, np.sqrt(data_n[shown]))
        np.testing.assert_allclose(x, (0.5 * (EDGES[1:] + EDGES[:-1]))[shown])
        assert bars[0].get_label() == "Data"
        # the simulation: filled, stacked; the top of the stack is the sum of the simulated datasets
        assert len(steps) == 2 and all(s.get_fill() for s in steps)
        tops = [s.get_data().values for s in steps]
        np.testing.assert_allclose(tops[-1], _counts("DY") + _counts("TT"))
        np.testing.assert_allclose(steps[-1].get_data().baseline, tops[0])  # each layer sits on the one below
        assert {s.get_label() for s in steps} == {"DY", "TT"}
        assert ax.get_ylabel() == "Events / 5 GeV"
        assert ax.get_xlabel() == r"$m_{\mu\mu}$ [GeV]"
    finally:
        plt.close(fig)


def test_weighted_fill_says_sum_of_weights_and_uses_its_variance():
    w = {"DY": 0.5, "TT": 0.25, "Run2018A": 1.0, "Run2018B": 1.0}
    h = _hist("Weight", w)
    fig, ax = plt.subplots()
    try:
        draw(ax, h, data=["Run2018B"])
        steps, bars = _drawn(ax)
        n = _counts("Run2018B")
        _, y, heights = _errorbar_numbers(bars[0])
        np.testing.assert_allclose(heights, np.sqrt(n[n > 0]))  # weights 1: variance = N
        np.testing.assert_allclose(steps[-1].get_data().values, _counts("DY", 0.5) + _counts("TT", 0.25)
                                   + _counts("Run2018A"))
        assert ax.get_ylabel() == "Sum of weights / 5 GeV"
    finally:
        plt.close(fig)


def test_without_data_every_dataset_is_a_step():
    fig, ax = plt.subplots()
    try:
        assert draw(ax, _hist()) == "1d-datasets"
        steps, bars = _drawn(ax)
        assert not bars and len(steps) == 4 and not any(s.get_fill() for s in steps)
        for s in steps:
            np.testing.assert_allclose(s.get_data().values, _counts(s.get_label()))
            assert s.get_data().baseline == 0 or np.all(np.asarray(s.get_data().baseline) == 0)
    finally:
        plt.close(fig)


@pytest.mark.parametrize("axis,expected", [
    (hist.axis.Regular(10, 0, 5, label="pt (GeV)"), "Events / 0.5 GeV"),
    (hist.axis.Regular(4, 0, 2, name="eta"), "Events / 0.5"),
    (hist.axis.Variable([0, 1, 5, 20], label="x [cm]"), "Events / bin"),
])
def test_y_label_from_bin_width_and_unit(axis, expected):
    assert y_label(hist.Hist(axis), axis) == expected


def test_2d_colour_bar_is_labelled_and_cells_are_the_counts():
    x, y = RNG.uniform(0, 10, 500), RNG.uniform(-2, 2, 500)
    h = hist.Hist.new.Reg(5, 0, 10, name="pt", label="pt [GeV]").Reg(4, -2, 2, name="eta", label=r"$\eta$").Weight()
    h.fill(pt=x, eta=y)
    fig, ax = plt.subplots()
    try:
        assert draw(ax, h) == "2d"
        mesh = ax.collections[0]
        expected = np.histogram2d(x, y, bins=[np.linspace(0, 10, 6), np.linspace(-2, 2, 5)])[0]
        np.testing.assert_allclose(np.asarray(mesh.get_array()).reshape(4, 5), expected.T)
        cbar_ax = [a for a in fig.axes if a is not ax][0]
        assert cbar_ax.get_ylabel() == "Sum of weights"
        assert ax.get_xlabel() == "pt [GeV]" and ax.get_ylabel() == r"$\eta$"
    finally:
        plt.close(fig)


def test_three_dense_axes_are_refused_by_name():
    h = hist.Hist(hist.axis.Regular(2, 0, 1, name="a"), hist.axis.Regular(2, 0, 1, name="b"),
                  hist.axis.Regular(2, 0, 1, name="c"))
    fig, ax = plt.subplots()
    try:
        with pytest.raises(PlotError, match="'cube' has 3 dense axes"):
            draw(ax, h, name="cube")
    finally:
        plt.close(fig)


def test_files_png_per_histogram_split_per_category_and_one_pdf(tmp_path):
    out = {"mass": _hist(), "nested": {"flat": hist.Hist(hist.axis.Regular(3, 0, 3, name="n"))}}
    written = plot_histograms(out, tmp_path / "out", data=DATA, split=True)
    names = sorted(p.name for p in written)
    assert names == sorted(["out-mass.png", "out-mass-DY.png", "out-mass-TT.png", "out-mass-Run2018A.png",
                            "out-mass-Run2018B.png", "out-nested-flat.png", "out-plots.pdf"])
    for p in written:
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", p
    pdf = (tmp_path / "out-plots.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and len(re.findall(rb"/Type\s*/Page[^s]", pdf)) == 6  # one page per PNG


def test_data_datasets_from_fileset_metadata_and_option(tmp_path):
    fs = tmp_path / "fs.json"
    fs.write_text(json.dumps({
        "DY": {"files": {"a.root": "Events"}, "metadata": {"isData": False}},
        "SingleMu": {"files": {"b.root": "Events"}, "metadata": {"isData": True}},
        "Old": {"files": {"c.root": "Events"}, "metadata": {"is_mc": False}},
        "TT": {"files": {"d.root": "Events"}},
    }))
    assert data_datasets(fs) == ["SingleMu", "Old"]
    assert data_datasets(fs, ["TT"]) == ["TT", "SingleMu", "Old"]
    with pytest.raises(PlotError, match=r"--data names dataset\(s\) \['Nope'\]"):
        data_datasets(fs, ["Nope"])


def test_cli_run_draws_the_example_with_data_from_the_option(tmp_path):
    """`hpckit run --data DoubleMuon --plot-split`: the stack is the DY counts of the independent
    uproot computation, the points the DoubleMuon counts, and one PNG per dataset is written."""
    out = tmp_path / "out.pkl"
    r = subprocess.run([sys.executable, "-m", "hpckit", "run", str(EXAMPLES / "dimuon.py"), "--fileset",
                        str(EXAMPLES / "fileset.json"), "--executor", "iterative", "--no-status", "--output", str(out),
                        "--data", "DoubleMuon", "--plot-split"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    for name in ("out-mass.png", "out-mass-DYJetsToLL.png", "out-mass-DoubleMuon.png", "out-plots.pdf"):
        assert (tmp_path / name).stat().st_size > 1000, name
    ref = reference_dimuon()["mass"]
    fig, ax = plt.subplots()
    try:
        draw(ax, pickle.loads(out.read_bytes())["mass"], data=["DoubleMuon"])
        steps, bars = _drawn(ax)
        np.testing.assert_allclose(steps[-1].get_data().values, ref["DYJetsToLL"])
        _, y, heights = _errorbar_numbers(bars[0])
        n = ref["DoubleMuon"]
        np.testing.assert_allclose(y, n[n > 0])
        np.testing.assert_allclose(heights, np.sqrt(n[n > 0]))
        assert ax.get_ylabel() == "Events / 2 GeV"
    finally:
        plt.close(fig)
