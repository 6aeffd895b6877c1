"""Moved to :mod:`hpckit.io.storage_check`; this name stays an alias of it for one release."""

import sys

from hpckit.io import storage_check as _moved

sys.modules[__name__] = _moved
