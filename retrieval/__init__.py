"""The composed-image-retrieval engine: CLIP, the CLIP4Cir Combiner, Faiss indexes, datasets, training.

Imports no Django and no Celery; usable from a notebook. See ../ARCHITECTURE.md ("retrieval").
"""
