"""Faiss indexes keyed by image id, and index versions on disk (written whole or from parts, loaded
memory-mapped)."""
