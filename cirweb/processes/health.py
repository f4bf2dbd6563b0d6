"""Health endpoints for probes and `serve`.

- `GET /livez`: the web process answers (no I/O): for a container's liveness probe.
- `GET /healthz` (and `/readyz`): 200 once the web process, the database, Redis and a search worker all
  answer; 503 saying which does not. The search worker is asked at most once per CIR_READY_CACHE_SECONDS
  by all web processes together (the answer is shared through the cache), so anonymous calls never put
  one task each on the search queue.
"""

from __future__ import annotations

import redis
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, JsonResponse
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
    ok = all(checks.values())
    return JsonResponse({"ok": ok, **checks}, status=200 if ok else 503)
