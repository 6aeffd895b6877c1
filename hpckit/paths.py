"""Moved to :mod:`hpckit.io.paths`; this name stays an alias of it for one release."""

import sys

from hpckit.io import paths as _moved

sys.modules[__name__] = _moved
