"""File errors that are also the exception types coffea raises for the same case, so code written for
coffea (``skipbadfiles=(UprootMissTreeError, ArrowInvalid)``, ``except KeyError``) keeps working. Kept out
of ``hpckit.core.errors`` because they subclass uproot's and pyarrow's types (slow imports)."""

from __future__ import annotations

import uproot

from hpckit.core.errors import FileAccessError


class UprootMissTreeError(FileAccessError, uproot.KeyInFileError):
    """The tree (or RNTuple) named in the fileset is not in the file; coffea's name, a ``KeyError``."""


def _arrow_invalid() -> type:
    try:
        import pyarrow

        return pyarrow.ArrowInvalid
    except ImportError:  # pragma: no cover - pyarrow comes with awkward's parquet support
        return ValueError


class InvalidParquetError(FileAccessError, _arrow_invalid()):
    """Not a readable Parquet file; a ``pyarrow.ArrowInvalid``, as coffea raises."""
