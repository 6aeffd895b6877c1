"""hpckit: one processor, any executor, any site."""

__version__ = "0.1.0"
