"""Enqueueing work for the workers, by task name through the light Celery app (never importing the tasks,
which would load the engine into the web process)."""

from __future__ import annotations

from functools import cache
from typing import Any

import redis

from cirweb.celery_app import INDEX_QUEUE, SEARCH_QUEUE, app


def enqueue_search_turn(turn_id: int, priority: int = 0) -> None:
    # No broker expiry: the sweep (workers/sweep.py) is the one owner of a turn's expiry, and a message that
    # comes after the turn was failed finds nothing to claim. `priority` (0 first): how many of its visitor's
    # turns were already in flight (conversations/limits.py), so one visitor's burst waits behind others' first turns.
    # `ignore_result`: the outcome is the turn row, so no result is stored in Redis by the worker, and the web
    # process does not subscribe to one per turn (Celery's Redis backend otherwise does, on every send).
    app.send_task(
        "workers.tasks.search_turn", args=[turn_id], queue=SEARCH_QUEUE, priority=priority, ignore_result=True
    )


def enqueue_reindex(job_id: int) -> None:
    app.send_task("workers.tasks.reindex_collection", args=[job_id], queue=INDEX_QUEUE)


def enqueue_reindex_chunks(job_id: int, numbers: list[int]) -> None:
    """One task per chunk of a job, for any index worker to take (workers/extraction.py)."""
    for number in numbers:
        app.send_task("workers.tasks.extract_chunk", args=[job_id, number], queue=INDEX_QUEUE)


def search_now(payload: dict[str, Any], timeout: float, priority: int = 0) -> Any:
    """Run a stateless query on a search worker and wait for its answer (the scripting API)."""
    result = app.send_task(
        "workers.tasks.search_query", args=[payload], queue=SEARCH_QUEUE, expires=timeout, priority=priority
    )
    try:
        return result.get(timeout=timeout, propagate=True)
    finally:
        result.forget()


def ping_search_worker(timeout: float = 2.0) -> bool:
    """True when a search worker answers a trivial task within `timeout` seconds."""
    result = app.send_task("workers.tasks.ping", queue=SEARCH_QUEUE, expires=timeout)
    try:
        return result.get(timeout=timeout) == "pong"
    except Exception:
        return False
    finally:
        result.forget()


@cache
def _broker_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def broker_identity() -> str | None:
    """The running broker's identity: a Redis server's `run_id`, new each time the server starts. None when the
    broker is not Redis or does not answer. A new identity means the messages it held are gone (Redis without
    persistence), so the sweep sends queued turns again at once (cirweb/conversations/states.py)."""
    url = str(app.conf.broker_url or "")
    if not url.startswith(("redis://", "rediss://")):
        return None
    try:
        return str(_broker_client(url).info("server")["run_id"])
    except (redis.RedisError, OSError, KeyError):
        return None
