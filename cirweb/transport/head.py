"""HEAD on the HTTP API: its GET without the body (RFC 9110, 9.3.2), for probes, link checkers and caches.

Our function views say `require_safe`; django-ninja answers only the methods an operation names, and naming
HEAD beside GET on each endpoint would list every GET twice in the OpenAPI schema. So a HEAD under the API's
prefix runs as the GET it stands for; the server (uvicorn, and Django's test client) sends no body for a
HEAD request whatever the view wrote, and the headers stay those of the GET.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest
from django.urls import reverse
from django.utils.decorators import sync_and_async_middleware


@functools.cache
def api_prefix() -> str:
    """Where the API is mounted ("/api/"), from the URLconf."""
    return str(reverse("api:api-root"))


def _as_get(request: HttpRequest) -> bool:
    if request.method == "HEAD" and request.path.startswith(api_prefix()):
        request.method = "GET"
        return True
    return False


@sync_and_async_middleware
def api_head_as_get(get_response: Callable[[HttpRequest], Any]) -> Callable[[HttpRequest], Any]:
    if iscoroutinefunction(get_response):

        async def respond_async(request: HttpRequest) -> Any:
            flipped = _as_get(request)
            try:
                return await get_response(request)
            finally:
                if flipped:
                    request.method = "HEAD"

        markcoroutinefunction(respond_async)
        return respond_async

    def respond(request: HttpRequest) -> Any:
        flipped = _as_get(request)
        try:
            return get_response(request)
        finally:
            if flipped:
                request.method = "HEAD"

    return respond
