"""What planning needs of a file (entries, uuid), read cheaply and in batches, wherever the engine runs it.

Planning a fileset needs each tree's entry count and the file's uuid, not its branches. A full TTree read
deserializes every branch's description (about half a millisecond a branch, a second for NanoAOD's 1,500),
which a tree's chunks pay again where they run; :func:`read_light` reads the TTree header up to
``fEntries`` with uproot's own ``Model_TTree_NumEntries`` (the model ``uproot.num_entries`` uses), 10x less
on a 14-branch file. Anything else (an RNTuple, cluster boundaries, a file that fails) falls back to the
full read, which also gives the usual error naming the file.

:class:`FileBatch` runs the per-file task over a list of files in one engine task, so tens of thousands of
small files cost a few hundred task round trips, not one each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# above this many files to plan, the metadata is read the light way: the open trees a full read leaves in
# the planning process (for forked workers to inherit) are only kept for the last few files anyway
LIGHT_ABOVE = 8


def read_light(filename: str, treename: str, uproot_options: dict) -> dict | None:
    """``{"numentries", "uuid"}`` of a local or remote TTree without reading its branches, or None when
    the object is not a TTree or cannot be read this way (the caller then does the full read)."""
    import uproot
    from uproot.models.TTree import Model_TTree_NumEntries

    from hpckit.events.reader import _open_file

    classes = {**uproot.classes, "TTree": Model_TTree_NumEntries}
    try:
        f = _open_file(filename, {**(uproot_options or {}), "custom_classes": classes})
    except Exception:  # noqa: BLE001 - the full read reports it, with its retries and message
        return None
    try:
        obj = f[treename]
        if not isinstance(obj, Model_TTree_NumEntries):
            return None
        entries = obj.member("fEntries")
        entries = int(entries[0] if isinstance(entries, tuple) else entries)
        return {"numentries": entries, "uuid": str(f.file.uuid)}
    except Exception:  # noqa: BLE001
        return None
    finally:
        try:
            f.close()
        except Exception:  # noqa: BLE001
            pass


@dataclass
class FileBatch:
    """``task`` (a ``FileMetaTask``) over several files in one engine task; results in order."""

    task: Any

    def __call__(self, specs: list) -> list[dict]:
        return [self.task(spec) for spec in specs]


def batch_size(n_files: int, workers: int, per_worker: int = 8, most: int = 256) -> int:
    """Files per planning task: about ``per_worker`` tasks per worker (for balance), at most ``most`` files
    a task (engines whose task starts a fresh interpreter want fewer, larger ones)."""
    return max(1, min(most, -(-n_files // max(1, per_worker * workers))))


def in_batches(specs: list, size: int) -> list[list]:
    return [specs[i : i + size] for i in range(0, len(specs), size)]
