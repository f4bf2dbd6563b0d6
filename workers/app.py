"""The worker side's name for the Celery app (`celery -A workers.app worker ...`): the app itself is defined
in `cirweb/celery_app.py`, which the web process also imports to enqueue by task name."""

from cirweb.celery_app import INDEX_QUEUE, SEARCH_QUEUE, app

__all__ = ["INDEX_QUEUE", "SEARCH_QUEUE", "app"]
