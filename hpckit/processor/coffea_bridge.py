"""``Runner(schema=<a coffea schema class>)``: coffea builds the chunk's events (its behaviours, its
cross-references) from the file hpckit already has open, so a processor that needs something only
coffea has still gets hpckit's chunking, open-file reuse, executors and deployment. Imported only when
such a schema is passed: hpckit never requires coffea."""

from __future__ import annotations

from typing import Any


class _AccessLog:
    """What ``make_events``' reader offers the Runner: the columns read (coffea's access log)."""

    def __init__(self) -> None:
        self.log: list[str] = []

    @property
    def columns(self) -> set[str]:
        return {str(getattr(entry, "branch", entry)) for entry in self.log}


def coffea_events(tree: Any, item: Any, schema: type) -> tuple[Any, _AccessLog]:
    """Events of ``item`` made by coffea's ``NanoEventsFactory`` (virtual mode) over hpckit's open file."""
    from coffea.nanoevents import NanoEventsFactory

    access = _AccessLog()
    common = dict(
        mode="virtual",
        entry_start=item.entrystart,
        entry_stop=item.entrystop,
        schemaclass=schema,
        metadata=item.metadata(),
        access_log=access.log,
    )
    if getattr(tree, "format_name", "TTree") == "Parquet":
        tree.file.seek(0)
        factory = NanoEventsFactory.from_parquet(tree.tree, **common)
    else:
        factory = NanoEventsFactory.from_root(tree.file, treepath=tree.treename, **common)
    return factory.events(), access
