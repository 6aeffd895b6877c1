"""Moved to :mod:`hpckit.core.resources`; this name stays an alias of it for one release."""

import sys

from hpckit.core import resources as _moved

sys.modules[__name__] = _moved
