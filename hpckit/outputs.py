"""Moved to :mod:`hpckit.io.outputs`; this name stays an alias of it for one release."""

import sys

from hpckit.io import outputs as _moved

sys.modules[__name__] = _moved
