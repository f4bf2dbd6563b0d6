"""Files on this host and in the shared store: where the database's relative paths point, and the keys
of index versions, chunks and uploads."""
