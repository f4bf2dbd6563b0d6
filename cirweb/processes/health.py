"""Health endpoints for probes and `serve`.

- `GET /livez`: the web process answers (no I/O): for a container's liveness probe.
- `GET /healthz` (and `/readyz`): 200 once the web process, the database, Redis and a search worker all
  answer; 503 saying which does not. The search worker is asked at most once per CIR_READY_CACHE_SECONDS
  by all web processes together (the answer is shared through the cache), so anonymous calls never put
  one task each on the search queue.

A 503 here is an answer, not a server error: `serve` and container probes ask until everything is up, so
every start says 503 a few times before a search worker answers. It is logged below ERROR, by this view
(Django's request logger would log every 5xx at ERROR): INFO while only the search worker is missing (a
start, or workers being replaced), WARNING when the database or Redis do not answer. A view that raises
still logs at ERROR, as anywhere else.
"""

from __future__ import annotations

import redis
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.utils.log import log_response
from django.views.decorators.http import require_safe

from cirweb.transport import queueing

WORKER_KEY = "health:search_worker"
ASKING_KEY = "health:search_worker:asking"


@require_safe
def livez(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


def search_worker_ready() -> bool:
    """The last answer of a search worker, asked again when it is older than CIR_READY_CACHE_SECONDS."""
    known = cache.get(WORKER_KEY)
    if known is not None:
        return bool(known)
    seconds = settings.CIR_READY_CACHE_SECONDS
    if not cache.add(ASKING_KEY, 1, timeout=seconds):  # someone else is asking right now
        return False
    answered = queueing.ping_search_worker(timeout=2.0)
    cache.set(WORKER_KEY, answered, timeout=seconds)
    return answered


@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    checks: dict[str, bool] = {"web": True}
    try:
        connection.ensure_connection()
        checks["database"] = True
    except Exception:
        checks["database"] = False
    try:
        checks["redis"] = bool(redis.Redis.from_url(settings.CIR_REDIS_URL, socket_timeout=1).ping())
    except redis.RedisError:
        checks["redis"] = False
    checks["search_worker"] = checks["redis"] and search_worker_ready()
    missing = [name for name, up in checks.items() if not up]
    response = JsonResponse({"ok": not missing, **checks}, status=503 if missing else 200)
    if missing:  # marks the response as logged, so Django's handler does not log it again at ERROR
        level = "info" if missing == ["search_worker"] else "warning"
        log_response(
            "Not ready, %s not answering: %s",
            ", ".join(missing),
            request.path,
            response=response,
            request=request,
            level=level,
        )
    return response
