"""hpckit.deploy: sites as validated data, rendered into dask-jobqueue, Parsl and TaskVine configs.

Never imports hpckit.processor or hpckit.events.
"""

from hpckit.deploy.artifacts import render_all, render_files
from hpckit.deploy.backends import BACKENDS
from hpckit.deploy.site import LoadedSite, Site, SiteError, list_sites, load_site

__all__ = ["BACKENDS", "LoadedSite", "Site", "SiteError", "list_sites", "load_site", "render_all", "render_files"]
