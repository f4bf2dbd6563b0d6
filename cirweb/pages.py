"""The pages a person meets when something is missing or broken: a sentence and a way home, never Django's
bare "Not Found"."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """404: the reason we raised (e.g. a conversation that belongs to another browser), when it is a sentence
    of ours; Django's own resolver errors carry no sentence and get the general one."""
    reason = exception.args[0] if exception is not None and exception.args else ""
    context = {"reason": reason if isinstance(reason, str) and reason.endswith(".") else ""}
    return render(request, "404.html", context, status=404)
