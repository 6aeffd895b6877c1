"""hpckit: one processor, any executor, any site."""

__version__ = "0.1.0"


def cluster(site: str, *args, **kwargs):  # noqa: ANN201 - kept light: importing hpckit starts nothing
    """A site's workers that stay up for several runs; see :func:`hpckit.launch.cluster.cluster`."""
    from hpckit.launch.cluster import cluster as _cluster

    return _cluster(site, *args, **kwargs)
