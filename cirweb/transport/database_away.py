"""When the database is away (restarted, failed over, unreachable): one sentence for people, the same on a
websocket (`error` frame, code `unavailable`), from the HTTP API (503, JSON) and on a page (503), instead of a
closed socket or a server error. Every process reconnects by itself once it is back (Django's CONN_HEALTH_CHECKS
and close_old_connections, around each request, task and socket call), so the next try is answered.

A database that answers but refuses this once (a lock held too long) is `busy`, told apart by whether the
connection in use still works.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from channels.db import database_sync_to_async
from django.db import DEFAULT_DB_ALIAS, DatabaseError, InterfaceError, OperationalError, connections
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.deprecation import MiddlewareMixin

from cirweb.transport.protocol import error_frame

log = logging.getLogger(__name__)

AWAY = "The database is not answering right now; send that again in a moment."
BUSY = "The server is busy and could not take that; send it again."
RETRY_AFTER = 5  # seconds: a restart of the database takes a few
CLOSE_TRY_AGAIN_LATER = 1013  # RFC 6455's registry: the page reconnects, as after any close but 4403


def database_trouble(exc: BaseException) -> tuple[str, str] | None:
    """(code, sentence) when `exc` is the database being away (`unavailable`) or refusing for now (`busy`);
    None for any other error. Call it on the thread that met the error: connections belong to threads."""
    if isinstance(exc, InterfaceError):  # the connection was already closed under us
        return "unavailable", AWAY
    if not isinstance(exc, OperationalError):
        return None
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.connection is None or not connection.is_usable():  # could not connect, or the link is dead
        return "unavailable", AWAY
    return "busy", BUSY


def away_response(request: HttpRequest, trouble: tuple[str, str]) -> HttpResponse:
    """503 with the sentence and Retry-After: JSON `{"detail", "code"}` under /api/, a page elsewhere."""
    code, sentence = trouble
    if request.path.startswith("/api/"):
        response: HttpResponse = JsonResponse({"detail": sentence, "code": code}, status=503)
    else:
        page = f"<!doctype html><html lang=en><title>Unavailable</title><p>{sentence}</p></html>"
        response = HttpResponse(page, status=503)
    response["Retry-After"] = str(RETRY_AFTER)
    return response


class DatabaseAwayMiddleware(MiddlewareMixin):
    """A page whose view met the database away answers 503 with the sentence (the API says it in JSON: its
    own exception handler, cirweb/api/api.py). Middleware that meets it (a session saved, a user read) is
    answered by the 500 handler, `cirweb.pages.server_error`, the same way."""

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        trouble = database_trouble(exception)
        return None if trouble is None else away_response(request, trouble)


class DatabaseAwaySockets:
    """ASGI middleware around the websocket stack: a socket that cannot open because the database is away
    (its session and owner are read at the handshake) is accepted, told the sentence in an `error` frame and
    closed with 1013, "try again later", instead of failing its handshake. Once a socket is open its consumer
    answers each frame itself (cirweb/conversations/consumers.py)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        accepted = False

        async def watched_send(message: dict[str, Any]) -> None:
            nonlocal accepted
            accepted = accepted or message.get("type") in ("websocket.accept", "websocket.close")
            await send(message)

        try:
            await self.inner(scope, receive, watched_send)
        except DatabaseError as exc:
            trouble = await database_sync_to_async(database_trouble)(exc)
            if accepted or trouble is None:
                raise
            log.warning("socket %s told to come back later: %s", scope.get("path"), str(exc).splitlines()[0])
            frame = error_frame(*trouble)
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.send", "text": json.dumps(frame)})
            await send({"type": "websocket.close", "code": CLOSE_TRY_AGAIN_LATER})
