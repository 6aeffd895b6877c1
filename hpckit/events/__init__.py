"""Events from ROOT files: NanoAOD collections from flat branches, read lazily column by column."""

from hpckit.events.behavior import CoffeaMethodMissing
from hpckit.events.factory import NanoEventsArray, make_events
from hpckit.events.nanoevents import NanoEventsFactory
from hpckit.events.schema import BaseSchema, NanoAODSchema, PFNanoAODSchema, ScoutingNanoAODSchema
from hpckit.events.show import install as _install_show

_install_show()  # printing lazy events shows values (hpckit.events.show)

__all__ = ["BaseSchema", "CoffeaMethodMissing", "NanoAODSchema", "NanoEventsArray", "NanoEventsFactory",
           "PFNanoAODSchema", "ScoutingNanoAODSchema", "make_events"]
