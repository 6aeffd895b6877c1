"""Files and storage: local, root:// and replica reads, outputs and their atomic writes, private
directories, the TLS files the engines use. Imports only hpckit.core."""
