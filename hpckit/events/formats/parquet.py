"""Parquet inputs (coffea's ``format="parquet"``, or a file named ``*.parquet``): the columns play the
branches, the row groups the baskets."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import numpy as np

from hpckit.core.errors import FileAccessError
from hpckit.events.formats.base import InputFormat
from hpckit.events.opentree import BranchInfo, OpenTree

class _CountingFile:
    """A binary file that counts the bytes read through it (``metrics["bytesread"]`` for Parquet)."""

    def __init__(self, raw: Any):
        self.raw, self.num_requested_bytes, self.closed = raw, 0, False

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.num_requested_bytes += len(data)
        return data

    def readinto(self, buf: Any) -> int:
        n = self.raw.readinto(buf)
        self.num_requested_bytes += n or 0
        return n

    def seek(self, pos: int, whence: int = 0) -> int:
        return self.raw.seek(pos, whence)

    def tell(self) -> int:
        return self.raw.tell()

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True
        if self.raw is not None:
            self.raw.close()

    @property
    def size(self) -> int:
        here = self.raw.tell()
        end = self.raw.seek(0, os.SEEK_END)
        self.raw.seek(here)
        return end


def _storage(arrow_type: Any) -> Any:
    """The plain Arrow type under an extension type (awkward's, once awkward is imported, wraps every
    column of a Parquet file written by ``ak.to_parquet(extensionarray=True)``)."""
    import pyarrow as pa

    while isinstance(arrow_type, pa.ExtensionType):
        arrow_type = arrow_type.storage_type
    return arrow_type


def _arrow_kind(arrow_type: Any) -> tuple[str, np.dtype] | None:
    import pyarrow as pa

    arrow_type = _storage(arrow_type)
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        inner = _storage(arrow_type.value_type)
        if pa.types.is_boolean(inner) or pa.types.is_integer(inner) or pa.types.is_floating(inner):
            return "jagged", np.dtype(inner.to_pandas_dtype())
        return None
    if pa.types.is_boolean(arrow_type) or pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type):
        return "flat", np.dtype(arrow_type.to_pandas_dtype())
    return None


class ParquetTree(OpenTree):
    """A Parquet file's columns as branches; storage units are its row groups. ``file`` is the counting
    file, ``tree`` the ``pyarrow.parquet.ParquetFile``."""

    format_name = "Parquet"

    @property
    def bytes_requested(self) -> int:
        return int(self.file.num_requested_bytes)

    @property
    def requests(self) -> int:
        return 0  # pyarrow reads through the counting file; requests are not counted for Parquet

    def _describe(self) -> dict[str, BranchInfo]:
        out = {}
        for field in self.tree.schema_arrow:
            kind = _arrow_kind(field.type)
            if kind is not None:
                out[field.name] = BranchInfo(field.name, *kind)
        return out

    def open_again(self) -> OpenTree:
        return open_parquet(self.filename, self.treename)

    def cluster_starts(self) -> list[int]:
        md = self.tree.metadata
        sizes = [md.row_group(i).num_rows for i in range(md.num_row_groups)]
        return [0, *np.cumsum(sizes, dtype=np.int64).tolist()] if sizes else [0, 0]

    def _entry_offsets(self, branch: str) -> np.ndarray:
        return np.asarray(self.cluster_starts(), dtype=np.int64)

    def _read_column(self, branch: str, info: BranchInfo, start: int, stop: int) -> Any:
        import awkward as ak

        bounds = self.cluster_starts()
        groups = [i for i in range(len(bounds) - 1) if bounds[i] < stop and bounds[i + 1] > start]
        table = self.tree.read_row_groups(groups, columns=[branch], use_threads=False)
        first = bounds[groups[0]] if groups else 0
        column = table.column(0).slice(start - first, stop - start)
        arr = _not_nullable(ak.from_arrow(column, highlevel=True))
        if info.kind == "flat":
            return np.asarray(ak.to_numpy(arr), dtype=info.dtype)
        return ak.values_astype(arr, info.dtype)


def _not_nullable(arr: Any) -> Any:
    """Parquet columns written by pyarrow are nullable: as NanoAOD branches, none is missing (an empty list
    or 0 where one would be), so the reader gets plain lists and numbers."""
    import awkward as ak

    if ak.to_layout(arr).is_option:
        arr = ak.fill_none(arr, [] if arr.ndim > 1 else 0, axis=0)
    if arr.ndim > 1 and ak.to_layout(arr).content.is_option:
        arr = ak.fill_none(arr, 0, axis=1)
    return arr


def _parquet_error(filename: str, err: BaseException) -> FileAccessError:
    from hpckit.events.format_errors import InvalidParquetError

    return InvalidParquetError(f"{filename} is not a readable Parquet file: {err}", filename, err)


def open_parquet(filename: str, treename: str = "", storage_options: dict | None = None,
                 fileobj: Any = None, parquet_file: Any = None) -> ParquetTree:
    """Open a Parquet file (local path or any fsspec URL, with fsspec ``storage_options``, or an open binary
    file ``fileobj`` named ``filename``); the tree name plays no part, as in coffea."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError("reading Parquet needs pyarrow; install it with: pip install 'hpckit[parquet]'") from None

    from hpckit.core.errors import FileNotFound

    if parquet_file is not None:  # the caller's open pyarrow.parquet.ParquetFile: its reads are not counted
        return _parquet_tree(filename, treename, _CountingFile(None), parquet_file)
    try:
        if fileobj is not None:
            raw = fileobj
        elif "://" in filename or storage_options:
            import fsspec

            raw = fsspec.open(filename, "rb", **(storage_options or {})).open()
        else:
            raw = open(filename, "rb")  # noqa: SIM115 - kept open with the tree, closed by the cache
    except FileNotFoundError as err:
        raise FileNotFound(f"file not found: {filename}", filename, err) from err
    except Exception as err:  # noqa: BLE001
        raise FileAccessError(f"cannot open {filename}: {type(err).__name__}: {err}", filename, err) from err
    counting = _CountingFile(raw)
    try:
        pf = pq.ParquetFile(counting)
    except Exception as err:  # noqa: BLE001
        counting.close()
        raise _parquet_error(filename, err) from err
    return _parquet_tree(filename, treename, counting, pf)


def _parquet_tree(filename: str, treename: str, counting: _CountingFile, pf: Any) -> ParquetTree:
    md = pf.metadata
    # Parquet has no file uuid: a digest of the footer (schema, row groups, sizes, statistics) stands in
    footer = repr((md.num_rows, md.num_row_groups, md.serialized_size, str(pf.schema_arrow),
                   [md.row_group(i).total_byte_size for i in range(md.num_row_groups)],
                   counting.size if counting.raw is not None else None))
    uuid = hashlib.sha1(footer.encode()).hexdigest()[:32]
    return ParquetTree(filename, treename, counting, pf, uuid, int(md.num_rows))


FORMAT = InputFormat(name="Parquet", called="a Parquet file", option="parquet", tree_class=ParquetTree,
                     suffixes=(".parquet", ".parq", ".pq"), open=open_parquet)
