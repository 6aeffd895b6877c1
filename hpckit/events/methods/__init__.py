"""coffea's ``nanoevents.methods`` spellings: ``from hpckit.events.methods import candidate, vector``
then ``ak.zip({...}, with_name="PtEtaPhiMCandidate", behavior=candidate.behavior)``."""
