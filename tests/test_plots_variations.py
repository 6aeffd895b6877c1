"""Plots a physicist can trust: a variation axis is drawn at its nominal (never summed over), with --band
the envelope of its variations as a band; any other category axis is split or refused by name; the
cutflow is printed at the end of a run and shown in report.html. Numbers are read back from the drawn
artists and compared with numpy histograms of the samples (not with hist)."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import hist
import matplotlib
import numpy as np
import pytest
from conftest import DATA, REPO

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.container import ErrorbarContainer  # noqa: E402
from matplotlib.patches import StepPatch  # noqa: E402

from hpckit.analysis_tools import PackedSelection  # noqa: E402
from hpckit.report.cutflow import find_cutflows, format_cutflows  # noqa: E402
from hpckit.report.plots import PlotError, draw, figures  # noqa: E402

EDGES = np.linspace(0, 100, 21)
RNG = np.random.default_rng(11)
SAMPLES = {"DY": RNG.normal(60, 15, 3000), "TT": RNG.uniform(0, 100, 1000), "Run2018": RNG.normal(60, 16, 3500)}
SHIFTS = {"nominal": 1.0, "jesUp": 1.05, "jesDown": 0.95}  # each variation scales the simulated values


def _counts(x: np.ndarray) -> np.ndarray:
    return np.histogram(x, bins=EDGES)[0].astype(float)


def _syst_hist(axis_name: str = "syst", names: dict = SHIFTS) -> hist.Hist:
    h = (hist.Hist.new.StrCat([], name="dataset", growth=True).StrCat([], name=axis_name, growth=True)
         .Reg(20, 0, 100, name="m", label="m [GeV]").Double())
    for var, scale in names.items():
        for ds in ("DY", "TT"):
            h.fill(dataset=ds, **{axis_name: var}, m=SAMPLES[ds] * scale)
    first = next(iter(names))
    h.fill(dataset="Run2018", **{axis_name: first}, m=SAMPLES["Run2018"])  # data: the nominal only
    return h


def _mc_total(scale: float) -> np.ndarray:
    return _counts(SAMPLES["DY"] * scale) + _counts(SAMPLES["TT"] * scale)


def _steps(ax):
    steps = [p for p in ax.patches if isinstance(p, StepPatch) and p.get_gid() != "hpckit-band"]
    bands = [p for p in ax.patches if isinstance(p, StepPatch) and p.get_gid() == "hpckit-band"]
    return steps, bands


@pytest.fixture
def ax():
    fig, ax = plt.subplots()
    yield ax
    plt.close(fig)


def test_stack_is_the_nominal_and_band_the_envelope(ax):
    assert draw(ax, _syst_hist(), data=["Run2018"], name="mass", band=True) == "stack"
    steps, bands = _steps(ax)
    nominal = _mc_total(1.0)
    np.testing.assert_allclose(steps[-1].get_data().values, nominal)  # not the sum of 3 variations
    assert not np.allclose(steps[-1].get_data().values, sum(_mc_total(s) for s in SHIFTS.values()))
    totals = np.vstack([_mc_total(s) for s in SHIFTS.values()])
    assert len(bands) == 1
    np.testing.assert_allclose(bands[0].get_data().values, totals.max(axis=0))
    np.testing.assert_allclose(bands[0].get_data().baseline, totals.min(axis=0))
    bar = [c for c in ax.containers if isinstance(c, ErrorbarContainer)][0]
    y = np.asarray(bar.lines[0].get_data()[1])
    data = _counts(SAMPLES["Run2018"])
    np.testing.assert_allclose(y, data[data > 0])
    assert "syst: nominal" in ax.get_title(loc="right")


def test_without_band_only_the_nominal(ax):
    draw(ax, _syst_hist(), data=["Run2018"])
    steps, bands = _steps(ax)
    assert not bands and len(steps) == 2
    np.testing.assert_allclose(steps[-1].get_data().values, _mc_total(1.0))


def test_nominal_named_on_the_command_line(ax):
    names = {"central": 1.0, "up": 1.1, "down": 0.9}
    h = _syst_hist("variation", names)
    with pytest.raises(PlotError, match=r"variation axis 'variation' \(central, up, down\).*--nominal NAME"):
        draw(ax, h, data=["Run2018"], name="mass")
    with pytest.raises(PlotError, match=r"--nominal 'nope' is not one of them"):
        draw(ax, h, data=["Run2018"], name="mass", nominal="nope")
    draw(ax, h, data=["Run2018"], nominal="up")
    np.testing.assert_allclose(_steps(ax)[0][-1].get_data().values, _mc_total(1.1))


def test_one_dimensional_without_datasets(ax):
    h = hist.Hist.new.StrCat(["nominal", "up", "down"], name="Shift").Reg(20, 0, 100, name="m").Double()
    for var, scale in (("nominal", 1.0), ("up", 1.2), ("down", 0.8)):
        h.fill(Shift=var, m=SAMPLES["DY"] * scale)
    assert draw(ax, h, band=True) == "1d"
    (step,), (band,) = _steps(ax)
    np.testing.assert_allclose(step.get_data().values, _counts(SAMPLES["DY"]))
    stack = np.vstack([_counts(SAMPLES["DY"] * s) for s in (1.0, 1.2, 0.8)])
    np.testing.assert_allclose(band.get_data().values, stack.max(axis=0))
    np.testing.assert_allclose(band.get_data().baseline, stack.min(axis=0))


def test_other_category_axis_refused_by_name_or_split():
    h = (hist.Hist.new.StrCat(["DY"], name="dataset").StrCat(["SR", "CR"], name="region")
         .Reg(20, 0, 100, name="m").Double())
    h.fill(dataset="DY", region="SR", m=SAMPLES["DY"][:1000])
    h.fill(dataset="DY", region="CR", m=SAMPLES["DY"][1000:])
    fig, ax = plt.subplots()
    try:
        with pytest.raises(PlotError, match=r"category axis 'region' \(SR, CR\).*--plot-split"):
            draw(ax, h, name="m")
    finally:
        plt.close(fig)
    with pytest.warns(UserWarning, match="category axis 'region'"):
        assert [n for n, f in figures({"m": h}) if plt.close(f) or True] == []
    drawn = {}
    for name, fig in figures({"m": h}, split=True):
        drawn[name] = _steps(fig.axes[0])[0][0].get_data().values
        plt.close(fig)
    assert sorted(drawn) == ["m-CR", "m-SR"]
    np.testing.assert_allclose(drawn["m-SR"], _counts(SAMPLES["DY"][:1000]))
    np.testing.assert_allclose(drawn["m-CR"], _counts(SAMPLES["DY"][1000:]))


def test_cutflows_found_and_formatted():
    sel = PackedSelection()
    sel.add("two muons", np.array([True, True, False, True]))
    sel.add("opposite sign", np.array([True, False, False, True]))
    out = {"flow": sel.cutflow("two muons", "opposite sign"),
           "cutflow": {"DY": {"all": 40, "2mu": 12}, "TT": {"all": 10, "2mu": 3.25}},
           "mass": hist.Hist.new.Reg(2, 0, 1).Double()}
    tables = find_cutflows(out)
    assert [t["name"] for t in tables] == ["flow", "cutflow"]
    assert tables[0]["rows"] == [["initial", [4, 4]], ["two muons", [3, 3]], ["opposite sign", [2, 2]]]
    assert tables[1]["columns"] == ["DY", "TT"] and tables[1]["rows"][1] == ["2mu", [12, 3.25]]
    text = format_cutflows(tables)
    assert re.search(r"opposite sign\s+2\s+2", text) and re.search(r"2mu\s+12\s+3.25", text)


ANALYSIS = '''
import awkward as ak
import hist
from hpckit import processor


class SystProcessor(processor.ProcessorABC):
    def process(self, events):
        ds = events.metadata["dataset"]
        h = hist.Hist.new.StrCat([], name="dataset", growth=True).StrCat([], name="syst", growth=True).Reg(
            10, 0, 100, name="pt", label="pt [GeV]").Double()
        pt = ak.flatten(events.Muon.pt)
        for syst, scale in (("nominal", 1.0), ("up", 1.1), ("down", 0.9)):
            h.fill(dataset=ds, syst=syst, pt=pt * scale)
        return {"pt": h, "cutflow": {ds: {"all events": len(events), "muons": int(ak.sum(ak.num(events.Muon.pt)))}}}
'''


def test_cli_prints_the_cutflow_and_report_shows_it(tmp_path):
    """`hpckit run --band`: the cutflow (the data README's counts: 40 events and 18/84 muons) on stderr and
    in report.html; the histogram is drawn at its nominal with a band."""
    (tmp_path / "syst.py").write_text(textwrap.dedent(ANALYSIS))
    fileset = tmp_path / "fileset.json"
    fileset.write_text('{"DY": {"files": {"%s": "Events"}}, "DoubleMuon": {"files": {"%s": "Events"}}}'
                       % (DATA / "nano_dy.root", DATA / "nano_dimuon.root"))
    r = subprocess.run([sys.executable, "-m", "hpckit", "run", str(tmp_path / "syst.py"), "--fileset", str(fileset),
                        "--executor", "iterative", "--no-status", "--output", str(tmp_path / "out.pkl"), "--band"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    table = r"cutflow cutflow:\n\s+cut\s+DY\s+DoubleMuon\n\s+all events\s+40\s+40\n\s+muons\s+18\s+84"
    assert re.search(table, r.stderr), r.stderr
    assert (tmp_path / "out-pt.png").stat().st_size > 1000
    page = (tmp_path / "report.html").read_text()
    section = page.split('<section id="cutflow">', 1)[1].split("</section>", 1)[0]
    assert re.search(r"muons</td><td class=\"num\">18</td><td class=\"num\">84</td>", section), section
    assert "not plotted" not in r.stderr
