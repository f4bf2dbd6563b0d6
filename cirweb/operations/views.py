"""The admin's Operations page (staff only, like the rest of the admin: cirweb/urls.py wraps both views in
`admin.site.admin_view`): the page, and the figures it polls every few seconds as JSON. The figures come from
the database (turns and their timings: `figures.turn_pulse`) and from what the metrics already read (queue
depth from Redis, workers answering a ping: cirweb/processes/metrics.py). The page draws them as SVG charts
with plain ES modules (static/cirweb/operations/), without an inline script or style."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import admin
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from cirweb import display
from cirweb.conversations import selectors
from cirweb.operations.figures import WINDOW_MINUTES, turn_pulse
from cirweb.processes.metrics import queue_depths, workers_by_kind

POLL_SECONDS = 5
FAILURES_SHOWN = 10
REQUEST_SHOWN = 80  # characters of a failed turn's request


@require_safe
def operations_page(request: HttpRequest) -> HttpResponse:
    context = {
        **admin.site.each_context(request),
        "title": "Operations",
        "figures_url": reverse("admin-operations-figures"),
        "poll_seconds": POLL_SECONDS,
        "window_minutes": WINDOW_MINUTES,
    }
    return TemplateResponse(request, "admin/operations.html", context)


@never_cache
@require_safe
def operations_figures(request: HttpRequest) -> JsonResponse:
    """Turns per minute, p50/p99 latency by minute and over the last minutes, queue depth (None: Redis did not
    answer), workers by kind, and the latest failures with their sentences."""
    now = timezone.now()
    since = now - timedelta(minutes=WINDOW_MINUTES)
    figures = turn_pulse(ended=selectors.turns_ended_since(since=since), now=now)
    failures = [
        {
            "turn": turn.pk,
            "when": display.moment(turn.finished),
            "code": turn.error_code,
            "error": turn.error,
            "request": turn.text if len(turn.text) <= REQUEST_SHOWN else turn.text[:REQUEST_SHOWN].rstrip() + "…",
            "url": reverse("admin:conversations_turn_change", args=[turn.pk]),
        }
        for turn in selectors.turns_failed_recent(since=since, limit=FAILURES_SHOWN)
    ]
    return JsonResponse(
        {
            **figures,
            "queues": queue_depths(),
            "workers": workers_by_kind(),
            "failures": failures,
            "read_at": timezone.localtime(now).strftime("%H:%M:%S"),
            "poll_seconds": POLL_SECONDS,
        }
    )
