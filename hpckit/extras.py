"""Moved to :mod:`hpckit.core.extras`; this name stays an alias of it for one release."""

import sys

from hpckit.core import extras as _moved

sys.modules[__name__] = _moved
