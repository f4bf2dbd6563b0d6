"""Celery workers: the glue that runs the engine (`retrieval`) over the database's state."""
