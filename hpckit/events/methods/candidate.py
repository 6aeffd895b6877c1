"""coffea's ``methods.candidate.behavior``: every coffea record name (LorentzVector, PtEtaPhiMCandidate, ...) as a
vector Lorentz vector, with sums between any two of them."""

from hpckit.events.behavior import base_behavior

behavior = base_behavior()

# coffea's mixin classes by name (the array classes of this behaviour), for isinstance checks
globals().update({name: behavior["*", name] for name in ("Candidate", "PtEtaPhiMCandidate", "PtEtaPhiECandidate")})
