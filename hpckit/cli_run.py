"""`hpckit run`: the local command (placeholder until the Runner lands)."""
