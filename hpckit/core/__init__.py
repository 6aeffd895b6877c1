"""Values and errors both halves share (the Runner and the site kit): defaults, units, the error
types, optional extras and resource probes. Imports nothing else of hpckit."""
