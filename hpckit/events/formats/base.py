"""What the registry knows of one input format."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class InputFormat:
    """One input format: the class that reads it (an :class:`~hpckit.events.opentree.OpenTree`) and how a
    file is found to be one.

    ``option``: the Runner's ``format=`` that selects it (``"root"``: the objects of a ROOT file, told
    apart per file by ``root_classes``, uproot's class names); ``suffixes``: file names that are this format
    whatever the option; ``open(filename, treename)``: for formats that are not objects of a ROOT file.
    ``called``: its name with an article, for messages.
    """

    name: str
    called: str
    option: str
    tree_class: type
    root_classes: tuple[str, ...] = ()
    suffixes: tuple[str, ...] = ()
    open: Callable[..., Any] | None = None

    def claims_file(self, filename: str, option: str) -> bool:
        """This format opens ``filename`` itself (not through uproot's ROOT file)."""
        if self.open is None:
            return False
        return option == self.option or filename.split("?", 1)[0].lower().endswith(self.suffixes)

    def claims_object(self, classname: str) -> bool:
        return any(classname.startswith(c) or c in classname for c in self.root_classes)
