"""The worker side's name for the Celery app (`celery -A workers.app worker ...`): the app itself is defined
in `cirweb/celery_app.py`, which the web process also imports to enqueue by task name.

Here too what only a worker does with its log lines: the product's format rather than Celery's, and the log
ids a task message carries (a turn's id and conversation, foundation/log_lines.py) bound while it runs."""

from __future__ import annotations

from typing import Any

from celery.signals import celeryd_init, setup_logging, task_postrun, task_prerun

from cirweb.celery_app import INDEX_QUEUE, SEARCH_QUEUE, app
from foundation.log_lines import log_ids_bind, log_ids_clear, task_ids

__all__ = ["INDEX_QUEUE", "SEARCH_QUEUE", "app"]


@setup_logging.connect
def _logging_as_django(**_: Any) -> None:
    """The settings' LOGGING (CIR_LOG_FORMAT, CIR_LOG_LEVEL) rather than Celery's own handlers and format."""
    from django.conf import settings
    from django.utils.log import configure_logging

    configure_logging(settings.LOGGING_CONFIG, settings.LOGGING)  # Python's warnings too (LOGGING_CONFIG)


@celeryd_init.connect
def _lines_from_the_start(instance: Any = None, **_: Any) -> None:
    """Before the worker writes anything (its warning about running as root comes before Celery's own logging
    setup): the product's format. And no start banner in JSON: many lines of plain text, where every line must
    be one JSON object."""
    from django.conf import settings

    _logging_as_django()
    if settings.CIR_LOG_FORMAT == "json" and instance is not None:
        instance.quiet = True


@task_prerun.connect
def _ids_bind(task: Any = None, **_: Any) -> None:
    log_ids_clear()  # a pool process runs task after task: nothing of the last one's
    log_ids_bind(**task_ids(getattr(task, "request", None)))


@task_postrun.connect
def _ids_forget(**_: Any) -> None:
    log_ids_clear()
