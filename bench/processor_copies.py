"""What isolating chunks costs: hpckit's per-chunk processor copy (hpckit.processor.isolate) against
coffea's way (unpickle the whole processor for every chunk), for three processors.

    python bench/processor_copies.py

Both figures are medians of 5 timings of many copies, taken in the same process and run (so they are
comparable under the same load). The load average is printed beside them.
"""

from __future__ import annotations

import os
import statistics
import sys
import timeit
from pathlib import Path

import awkward as ak
import hist

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from dimuon import DimuonProcessor  # noqa: E402

from hpckit import processor  # noqa: E402
from hpckit.processor.isolate import ProcessorCopies  # noqa: E402
from hpckit.processor.serialize import dump_processor, load_processor  # noqa: E402


class TutorialOutput(processor.ProcessorABC):
    """The old tutorial pattern: a dict with a 20-bin histogram and counters made in __init__."""

    def __init__(self):
        self.output = {"n": 0, "pt": hist.Hist.new.Reg(20, 0, 200, name="pt").Double(), "cutflow": {"all": 0}}

    def process(self, events):
        self.output["pt"].fill(ak.flatten(events.Muon.pt))
        return self.output


class BigHistogram(TutorialOutput):
    """The same with a 100,000-bin 3-D histogram in __init__."""

    def __init__(self):
        super().__init__()
        big = hist.Hist.new.Reg(100, 0, 1, name="a").Reg(100, 0, 1, name="b").Reg(10, 0, 1, name="c")
        self.output["big"] = big.Double()


def _per_call(fn, number: int) -> float:
    return statistics.median(timeit.repeat(fn, number=number, repeat=5)) / number


def main() -> None:
    print(f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'processor':18s} {'hpckit copy':>12s} {'coffea unpickle':>16s}")
    for cls, number in ((DimuonProcessor, 2000), (TutorialOutput, 500), (BigHistogram, 20)):
        copies = ProcessorCopies(cls())
        blob = dump_processor(cls())
        ours = _per_call(copies.fresh, number)
        theirs = _per_call(lambda: load_processor(blob), number)
        print(f"{cls.__name__:18s} {ours * 1e6:10.1f} us {theirs * 1e6:14.1f} us")
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
