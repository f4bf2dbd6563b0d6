"""Per-visitor limits: one owner for every rule about how much one visitor (session or user) and one client
address may ask of the shared workers. Counters live in Django's cache on Redis through django-ratelimit
(https://django-ratelimit.readthedocs.io/), so every web process shares them.

- Turn frames (`turn.create`, `turn.more`) per minute: CIR_RATE_TURNS per visitor, CIR_ADDRESS_FACTOR
  times that per address (an office behind one address holds several visitors).
- Turns in flight (queued or running): at most CIR_TURNS_IN_FLIGHT per visitor, counted from the turns
  themselves, so the search queue never holds more of one visitor's turns than that.
- Fairness: a turn is enqueued with a priority equal to how many of its visitor's turns are already in
  flight (0 = the visitor's first), and the broker serves lower numbers first. Another visitor's first
  turn therefore waits behind the turn being computed, not behind a burst.
- Uploads per minute and upload bytes per day; `/api/search` and conversation creation per minute.

Past a limit, `RateLimited` carries a sentence and the seconds until a retry can succeed: the consumer sends
it as an `error` frame (code `rate_limited`, `retry_after`), the API as 429 with Retry-After.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone
from django_ratelimit.core import get_usage

from cirweb.processes.metrics import RATE_LIMITED
from cirweb.transport.owners import Owner
from cirweb.transport.protocol import error_frame

MAX_PRIORITY = 9  # the broker's priority steps are 0..9 (cirweb/celery_app.py)


class RateLimited(Exception):
    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.message, self.retry_after = message, max(1, int(retry_after))

    def frame(self, content: dict[str, Any] | None = None) -> dict[str, Any]:
        """The websocket protocol's error frame for this refusal of the frame `content`."""
        return error_frame("rate_limited", self.message, content, retry_after=self.retry_after)


def owner_key(owner: Owner | None) -> str | None:
    if owner is None:
        return None
    return f"user:{owner.user_id}" if owner.user_id is not None else f"visitor:{owner.visitor}"


def _scaled(rate: str, factor: int) -> str:
    count, _, period = rate.partition("/")
    return f"{int(count) * factor}/{period}"


def _hit(group: str, rate: str, key: str) -> None:
    usage = get_usage(None, group=group, key=lambda _group, _request: key, rate=rate, increment=True)
    if usage is not None and usage["should_limit"]:
        RATE_LIMITED.labels(group).inc()
        raise RateLimited(_sentence(group, rate), usage["time_left"])


WHAT = {
    "turns": "messages that start a search",
    "uploads": "uploads",
    "search": "searches",
    "conversations": "new conversations",
}


def _sentence(group: str, rate: str) -> str:
    count, _, period = rate.partition("/")
    unit = {"s": "second", "m": "minute", "h": "hour", "d": "day"}.get(period[-1:], period)
    return f"Too many {WHAT[group]}: the limit is {count} a {unit}. Wait a moment and try again."


def hit(group: str, *, owner: Owner | None, address: str | None) -> None:
    """Count one request of `group` for the visitor and their address; RateLimited past either limit."""
    rate = {
        "turns": settings.CIR_RATE_TURNS,
        "uploads": settings.CIR_RATE_UPLOADS,
        "search": settings.CIR_RATE_SEARCH,
        "conversations": settings.CIR_RATE_CONVERSATIONS,
    }[group]
    if (key := owner_key(owner)) is not None:
        _hit(group, rate, key)
    if address:
        _hit(group, _scaled(rate, settings.CIR_ADDRESS_FACTOR), f"address:{address}")


def turn_admit(*, owner: Owner) -> int:
    """The priority for a new turn of `owner` (how many of theirs are in flight), or RateLimited when they
    already have CIR_TURNS_IN_FLIGHT. Call it inside the transaction that creates the turn."""
    from cirweb.conversations.models import Turn  # the web's own models; imported late, as settings load first

    if not settings.RATELIMIT_ENABLE:
        return 0
    recent = timezone.now() - timedelta(seconds=settings.CIR_TURN_EXPIRES)  # older ones are failing anyway
    mine = {f"conversation__{k}": v for k, v in owner.filter_kwargs().items()}
    in_flight = Turn.objects.filter(status__in=Turn.PENDING, queued_at__gte=recent, **mine).count()
    if in_flight >= settings.CIR_TURNS_IN_FLIGHT:
        raise RateLimited(
            f"You already have {in_flight} searches running; the limit is {settings.CIR_TURNS_IN_FLIGHT}. "
            "Wait for their results and try again.",
            retry_after=2,
        )
    return min(in_flight, MAX_PRIORITY)


def upload_bytes(*, owner: Owner | None, address: str | None, size: int) -> None:
    """Count an upload's bytes against the visitor's and the address's daily allowance."""
    if not settings.RATELIMIT_ENABLE:
        return
    day = int(time.time() // 86400)
    limit = settings.CIR_UPLOAD_BYTES_PER_DAY
    keys = [(owner_key(owner), limit), (f"address:{address}" if address else None, limit * settings.CIR_ADDRESS_FACTOR)]
    for key, allowance in keys:
        if key is None:
            continue
        name = f"limits:upload-bytes:{day}:{key}"
        if _add(name, size, timeout=86400 + 60) > allowance:
            cache.decr(name, size)  # a refused upload does not count
            retry = 86400 - int(time.time() % 86400)
            raise RateLimited(
                f"You have uploaded {allowance // 2**20} MB today, the daily limit. Try again tomorrow.", retry
            )


@contextmanager
def search_slot(*, owner: Owner | None, address: str | None) -> Iterator[int]:
    """Hold one of the caller's CIR_TURNS_IN_FLIGHT places for a scripted search while it runs; yields the
    priority to enqueue it with (as `turn_admit`)."""
    key = f"limits:search-in-flight:{owner_key(owner) or f'address:{address}'}"
    held = _add(key, 1, timeout=settings.CIR_SEARCH_TIME_LIMIT + 60)
    try:
        if held > settings.CIR_TURNS_IN_FLIGHT and settings.RATELIMIT_ENABLE:
            raise RateLimited(
                f"You already have {held - 1} searches running; the limit is {settings.CIR_TURNS_IN_FLIGHT}.", 2
            )
        yield min(held - 1, MAX_PRIORITY)
    finally:
        cache.decr(key)


def _add(key: str, amount: int, timeout: int) -> int:
    """Atomically add `amount` to a counter in the cache, creating it (with `timeout`) when missing."""
    cache.add(key, 0, timeout=timeout)
    try:
        return int(cache.incr(key, amount))
    except ValueError:  # it expired between the two calls
        cache.set(key, amount, timeout=timeout)
        return amount


def address_of_request(request: Any) -> str | None:
    return request.META.get("REMOTE_ADDR") or None  # uvicorn sets it from X-Forwarded-For behind a trusted proxy


def address_of_scope(scope: dict[str, Any]) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None
