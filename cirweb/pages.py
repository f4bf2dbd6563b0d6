"""The pages a person meets when something is missing or broken: a sentence and a way home, never Django's
bare "Not Found"."""

from __future__ import annotations

import sys
from pathlib import Path

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views import defaults
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_safe

from cirweb.transport.database_away import away_response, database_trouble

FAVICON = Path(__file__).resolve().parent / "conversations" / "static" / "cirweb" / "favicon.svg"


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """404: the reason we raised (e.g. a conversation that belongs to another browser), when it is a sentence
    of ours; Django's own resolver errors carry no sentence and get the general one."""
    reason = exception.args[0] if exception is not None and exception.args else ""
    context = {"reason": reason if isinstance(reason, str) and reason.endswith(".") else ""}
    return render(request, "404.html", context, status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    """500, but for the database away where no view could catch it (a middleware saving the session or
    reading the user): 503 with the sentence and Retry-After, as a view's own database error gets. Django
    calls this inside its handling of the exception, so the exception is the one being handled."""
    exception = sys.exc_info()[1]
    trouble = database_trouble(exception) if exception is not None else None
    return away_response(request, trouble) if trouble is not None else defaults.server_error(request)


@require_safe
@cache_control(public=True, max_age=86400)
def favicon(request: HttpRequest) -> HttpResponse:
    """/favicon.ico, which browsers ask for on every page without a <link rel="icon"> (the admin's): the
    house's icon (an SVG, which browsers take at that address too) instead of a 404 in every console."""
    return HttpResponse(FAVICON.read_bytes(), content_type="image/svg+xml")
