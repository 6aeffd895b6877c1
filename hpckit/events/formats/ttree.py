"""TTree (and TNtuple) inputs: the branches of a flat NanoAOD-style tree, read basket by basket."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import uproot

from hpckit.events.formats.base import InputFormat
from hpckit.events.formats.rootfile import RootTree
from hpckit.events.opentree import BranchInfo

_DESCRIBED: "OrderedDict[tuple, dict[str, BranchInfo]]" = OrderedDict()


class TTreeFile(RootTree):
    """A TTree's branches; storage units are its baskets. Remote files coalesce reads (see OpenTree)."""

    format_name = "TTree"
    coalesces_remote_reads = True

    def _describe(self) -> dict[str, BranchInfo]:
        return describe_branches(self.tree)

    def _entry_offsets(self, branch: str) -> np.ndarray:
        return np.asarray(self.tree[branch].entry_offsets, dtype=np.int64)

    def cluster_starts(self) -> list[int]:
        return [int(c) for c in self.tree.common_entry_offsets()]

    def _read_column(self, branch: str, info: BranchInfo, start: int, stop: int) -> Any:
        lib = "np" if info.kind == "flat" else "ak"
        return self.tree[branch].array(entry_start=start, entry_stop=stop, library=lib, array_cache=None)

    def _read_many(self, names: list[str], start: int, stop: int) -> dict[str, Any]:
        try:
            got = self.tree.arrays(names, entry_start=start, entry_stop=stop, library="ak", how=dict, array_cache=None)
            import awkward as ak

            return {n: ak.to_numpy(got[n]) if self.branches[n].kind == "flat" else got[n] for n in names}
        except Exception as err:  # noqa: BLE001 - any failure here is a problem with the file
            raise self.read_error(f"branches {names}", start, stop, err) from err


def _layout_signature(tree: Any) -> tuple | None:
    """What decides the branches' interpretations (names, leaf types, counters, fixed lengths), read from
    the metadata already in memory: files of one dataset share it, so they are described once."""
    sig = []
    for name, branch in tree.iteritems(recursive=False):
        if not type(branch).__name__.startswith("Model_TBranch_v"):
            return None  # object branches (TBranchElement, ...): no shortcut
        leaves = branch.member("fLeaves")
        if len(leaves) != 1:
            return None
        leaf = leaves[0]
        count = leaf.member("fLeafCount")
        sig.append((name, leaf.classname, None if count is None else count.member("fName"), leaf.member("fLen")))
    return tuple(sig)


def describe_branches(tree: Any) -> dict[str, BranchInfo]:
    """Name -> BranchInfo of the branches a schema can use; cached per branch layout, because uproot's
    interpretation of every branch costs ~7 ms per 100 branches and NanoAOD files come in thousands."""
    sig = _layout_signature(tree)
    if sig is None:
        return _describe_branches(tree)
    hit = _DESCRIBED.get(sig)
    if hit is None:
        hit = _DESCRIBED[sig] = _describe_branches(tree)
        while len(_DESCRIBED) > 16:
            _DESCRIBED.popitem(last=False)
    return hit


def _describe_branches(tree: Any) -> dict[str, BranchInfo]:
    out: dict[str, BranchInfo] = {}
    for name, branch in tree.iteritems(recursive=False):
        interp = branch.interpretation
        if isinstance(interp, uproot.interpretation.numerical.AsDtype):
            if interp.to_dtype.shape != ():  # fixed-size arrays per entry: not NanoAOD, skip
                continue
            out[name] = BranchInfo(name, "flat", np.dtype(interp.to_dtype))
        elif isinstance(interp, uproot.interpretation.jagged.AsJagged) and isinstance(
            interp.content, uproot.interpretation.numerical.AsDtype
        ):
            if interp.content.to_dtype.shape != ():
                continue
            out[name] = BranchInfo(name, "jagged", np.dtype(interp.content.to_dtype))
    return out


FORMAT = InputFormat(name="TTree", called="a TTree", option="root", tree_class=TTreeFile,
                     root_classes=("TTree", "TNtuple"))
