"""Log lines of every process: text for people or one JSON object a line for a log collector (CIR_LOG_FORMAT),
and on every line of a turn its turn id and conversation id, wherever the line is written (issue 23, item 3).

The ids live in a context variable: the websocket consumer binds its conversation when it connects (each socket
is a task of its own, so every line it writes carries it) and the turn once the turn exists; the database
thread the consumer calls runs in a copy of that context, so the send of the turn's task does too. The send
copies the ids into the task message's headers (`task_headers`, connected to Celery's `before_task_publish`
in cirweb/celery_app.py); the worker binds them again before the task runs and forgets them after it
(workers/app.py), and the worker's publisher carries them to the thread that publishes the results
(workers/publish.py). A logging filter on the one handler puts them on every record.

On the bottom floor (standard library only): the settings build the logging configuration from
`logging_config` before Django is set up, and every floor above may write lines with ids.
"""

from __future__ import annotations

import json
import logging
import logging.config
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

FORMATS = ("text", "json")
FIELDS = ("turn", "conversation")  # the ids a line may carry, in the order a text line shows them
HEADER = "cir_log_ids"  # the Celery message header that carries them to the worker

_ids: ContextVar[Mapping[str, Any] | None] = ContextVar("cir_log_ids", default=None)


def _bound() -> Mapping[str, Any]:
    return _ids.get() or {}


def log_ids() -> dict[str, Any]:
    """The ids bound in this context (a copy)."""
    return dict(_bound())


def log_ids_bind(**ids: Any) -> None:
    """Add ids to this context until it ends (a socket's task, a worker's task: see `log_ids_clear`). Unknown
    names are refused: a misspelt one would never show."""
    unknown = set(ids) - set(FIELDS)
    if unknown:
        raise ValueError(f"log ids are {', '.join(FIELDS)}; not {', '.join(sorted(unknown))}")
    _ids.set({**_bound(), **{name: value for name, value in ids.items() if value is not None}})


def log_ids_clear() -> None:
    """Forget every id (a worker process between two tasks)."""
    _ids.set({})


@contextmanager
def log_context(**ids: Any) -> Iterator[None]:
    """Lines written inside carry these ids too; the ids before are back afterwards."""
    token = _ids.set(_ids.get())
    try:
        log_ids_bind(**ids)
        yield
    finally:
        _ids.reset(token)


def task_headers(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Celery's `before_task_publish`: the sender's ids travel in the task message."""
    ids = log_ids()
    if ids and headers is not None:
        headers[HEADER] = ids


def task_ids(request: Any) -> dict[str, Any]:
    """The ids a task message carried (its request's headers), to bind in the worker."""
    ids = request.get(HEADER) if request is not None else None
    return {name: ids[name] for name in FIELDS if name in ids} if isinstance(ids, dict) else {}


class LogIds(logging.Filter):
    """Puts the context's ids on every record: `record.turn`, `record.conversation` (None when unbound) and
    `record.ids`, the text format's tail (" turn=42 conversation=…", or "")."""

    def filter(self, record: logging.LogRecord) -> bool:
        ids = _bound()
        for name in FIELDS:
            setattr(record, name, ids.get(name))
        record.ids = "".join(f" {name}={ids[name]}" for name in FIELDS if name in ids)
        return True


class JsonLines(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, process, message, the ids when bound, and
    the traceback as one string when there is one. Never more than one line, whatever the message holds."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "process": f"{record.processName}:{record.process}",
            "message": record.getMessage(),
        }
        for name in FIELDS:
            if getattr(record, name, None) is not None:
                line[name] = getattr(record, name)
        if record.exc_info:
            line["error"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        elif record.stack_info:
            line["error"] = record.stack_info
        return json.dumps(line, default=str, ensure_ascii=False)


def log_format_check(value: str) -> str:
    """CIR_LOG_FORMAT's value, or a sentence saying which ones there are."""
    chosen = value.strip().lower() or "text"
    if chosen not in FORMATS:
        raise ValueError(
            f"CIR_LOG_FORMAT={value!r} is not a log format: use 'text' (lines for people, the default) or "
            "'json' (one JSON object a line, for a log collector)."
        )
    return chosen


def logging_apply(config: dict[str, Any]) -> None:
    """Django's LOGGING_CONFIG: the configuration, and Python's warnings written as log lines too (a JSON log
    has no room for a warning's own lines of text)."""
    logging.config.dictConfig(config)
    logging.captureWarnings(True)


def logging_config(*, level: str, log_format: str) -> dict[str, Any]:
    """Django's LOGGING (also given to uvicorn and to Celery, so every process writes the same lines)."""
    formatters = {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s%(ids)s"},
        "json": {"()": f"{__name__}.JsonLines"},
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"ids": {"()": f"{__name__}.LogIds"}},
        "formatters": {log_format: formatters[log_format]},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": log_format, "filters": ["ids"]}},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "django.channels.server": {"level": "WARNING"},
            "daphne": {"level": "WARNING"},
            # one line per health-check ping is noise; turns and jobs log their own outcome
            "celery.app.trace": {"level": "WARNING"},
            "celery.worker.strategy": {"level": "WARNING"},
            "celery.worker.request": {"level": "WARNING"},
        },
    }
