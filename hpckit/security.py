"""Moved to :mod:`hpckit.io.tls`; this name stays an alias of it for one release."""

import sys

from hpckit.io import tls as _moved

sys.modules[__name__] = _moved
