"""The Celery app, configured from Django settings. It lives in the project package, as cookiecutter-django
keeps it, so the web process (which enqueues by task name) and the workers (which define the tasks) both
import it without an arrow running from `cirweb` up to `workers`. Light on purpose: importing it loads no
torch, CLIP or Faiss; the tasks module, named here as a string, is imported only by worker processes.

Queues: "search" (turns: short, latency-bound) and "index" (reindexing: long, one at a time), so a long
reindex never delays a query. Docs: https://docs.celeryq.dev/en/stable/userguide/configuration.html
"""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import before_task_publish
from kombu import Queue

from foundation.log_lines import task_headers

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cirweb.settings")

SEARCH_QUEUE = "search"
INDEX_QUEUE = "index"

app = Celery("cirweb", include=["workers.tasks"])
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_queues=(Queue(SEARCH_QUEUE), Queue(INDEX_QUEUE)),
    task_default_queue=SEARCH_QUEUE,
    task_routes={
        "workers.tasks.search_turn": {"queue": SEARCH_QUEUE},
        "workers.tasks.search_query": {"queue": SEARCH_QUEUE},
        "workers.tasks.ping": {"queue": SEARCH_QUEUE},
        "workers.tasks.reindex_collection": {"queue": INDEX_QUEUE},
        "workers.tasks.extract_chunk": {"queue": INDEX_QUEUE},
        "workers.tasks.check_collection": {"queue": INDEX_QUEUE},
    },
    # A task is acknowledged after it ran, and re-queued if its worker process dies mid-way: tasks are
    # idempotent (a turn already answered is not answered twice; a reindex resumes from its chunks; a chunk
    # already made or being made by a live worker is not made again).
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_track_started=False,
    result_expires=3600,
    broker_connection_retry_on_startup=True,
    # With Redis, a message taken by a worker that vanished (machine lost) comes back after this long. It
    # must exceed the longest task (a reindex may run for hours), or a second worker would start the same
    # job while the first still runs; turns lost this way fail by expiry long before.
    # Priorities 0 (first) to 9, one Redis list each: a visitor's first turn in flight goes before another
    # visitor's third (cirweb/conversations/limits.py). https://docs.celeryq.dev/en/stable/userguide/routing.html#redis-message-priorities
    broker_transport_options={"visibility_timeout": 25 * 3600, "priority_steps": list(range(10))},
    worker_hijack_root_logger=False,
    worker_send_task_events=False,
)

# A task carries the log ids of whoever sent it (a turn's id and conversation: foundation/log_lines.py).
before_task_publish.connect(task_headers, weak=False)
