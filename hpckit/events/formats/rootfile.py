"""What TTrees and RNTuples share: the ROOT file under them, opened by uproot (memory-mapped when local)."""

from __future__ import annotations

from typing import Any

import uproot

from hpckit.core.errors import FileAccessError, FileNotFound
from hpckit.events.opentree import OpenTree
from hpckit.io import storage


def open_root_file(filename: str, uproot_options: dict | None) -> Any:
    """``uproot.open`` of a local path, file:// or root:// URL; failures are FileAccessErrors naming it
    (``permanent`` when retrying cannot help: not found, a directory, refused)."""
    options = dict(uproot_options or {})
    path = storage.local_path(filename)
    if path is not None:
        options.pop("timeout", None)
        if "handler" not in options:
            # local files: memory-mapped, which is fast and can be shared with forked workers
            options["handler"] = uproot.source.file.MemmapSource
    else:
        path = filename
        storage.configure_xrootd_client(options.get("timeout"))
    try:
        return uproot.open(path, **options)
    except Exception as err:  # noqa: BLE001
        message, permanent = storage.describe_error(filename, err)
        kind = FileNotFound if message.startswith("file not found") else FileAccessError
        failure = kind(message, filename, err)
        failure.permanent = permanent
        raise failure from err


class RootTree(OpenTree):
    """An object of a ROOT file (``file`` is uproot's ReadOnlyDirectory): its bytes are counted by uproot's
    source."""

    @property
    def bytes_requested(self) -> int:
        return int(getattr(self.file.file.source, "num_requested_bytes", 0))

    @property
    def requests(self) -> int:
        return int(getattr(self.file.file.source, "num_requests", 0))

    def open_again(self) -> OpenTree:
        options = dict(self.options or {})
        f = open_root_file(self.filename, options)
        try:
            obj = f[self.treename]
            return type(self)(self.filename, self.treename, f, obj, str(f.file.uuid), int(obj.num_entries))
        except Exception as err:  # noqa: BLE001
            f.close()
            raise FileAccessError(f"cannot reopen tree {self.treename!r} of {self.filename}: {err}", self.filename,
                                  err) from err
