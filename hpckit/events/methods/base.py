"""The classes of coffea's record names in the base behaviour (``schema.behavior()``, ``methods.vector``),
set here when that behaviour is built so that they are importable by name: pickles (cloudpickle to a
distributed worker) then refer to them instead of copying them."""
