"""Events from ROOT files: NanoAOD collections from flat branches, read lazily column by column."""

from hpckit.events.factory import NanoEventsArray, make_events
from hpckit.events.schema import BaseSchema, NanoAODSchema

__all__ = ["BaseSchema", "NanoAODSchema", "NanoEventsArray", "make_events"]
