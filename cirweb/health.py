"""GET /healthz: 200 once the web process, Redis and a search worker all answer; 503 saying which does not."""

from __future__ import annotations

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from cirweb import queueing


@require_GET
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
    checks["search_worker"] = checks["redis"] and queueing.ping_search_worker(timeout=2.0)
    ok = all(checks.values())
    return JsonResponse({"ok": ok, **checks}, status=200 if ok else 503)
