"""Moved to :mod:`hpckit.core.units`; this name stays an alias of it for one release."""

import sys

from hpckit.core import units as _moved

sys.modules[__name__] = _moved
