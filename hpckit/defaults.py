"""Moved to :mod:`hpckit.core.defaults`; this name stays an alias of it for one release."""

import sys

from hpckit.core import defaults as _moved

sys.modules[__name__] = _moved
