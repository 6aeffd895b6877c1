"""Moved to :mod:`hpckit.core.errors`; this name stays an alias of it for one release."""

import sys

from hpckit.core import errors as _moved

sys.modules[__name__] = _moved
