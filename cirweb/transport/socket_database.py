"""`socket_database`: Channels' `database_sync_to_async` for the websocket consumers, on one thread of their own
that keeps its database connection from one call to the next.

The web process otherwise closes its connections after each use (settings.CONN_MAX_AGE is 0 there: under
ASGI every HTTP request runs on a thread of its own, and a connection kept there would be left behind with
the thread). So every websocket frame opened one: a SQLite connection loads the schema first (about 1.5 ms
of the one thread all sockets share), a PostgreSQL one costs a connect and authentication round trip. The
consumers' calls run here instead, on a single thread that lives as long as the process, like a worker's: its
connection is kept for SOCKET_CONNECTION_MAX_AGE seconds, and Django's own checks still close it when a call
left it broken or inside a transaction.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import SyncToAsync
from django.db import close_old_connections, connections

SOCKET_CONNECTION_MAX_AGE = 600.0  # seconds, as a worker's (settings.CONN_MAX_AGE outside the web process)

_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="socket-database")
_kept: dict[str, tuple[Any, float]] = {}  # alias -> (the DB-API connection kept, when it is to be closed)


def _connections_check() -> None:
    """Django's `close_old_connections` with this thread's own age limit in place of CONN_MAX_AGE."""
    now = time.monotonic()
    for connection in connections.all(initialized_only=True):
        if connection.connection is None:
            continue
        kept = _kept.get(connection.alias)
        if kept is None or kept[0] is not connection.connection:  # opened since the last check
            kept = _kept[connection.alias] = (connection.connection, now + SOCKET_CONNECTION_MAX_AGE)
        connection.close_at = kept[1]
    close_old_connections()


class SocketDatabaseCall(SyncToAsync):
    def thread_handler(self, loop: Any, *args: Any, **kwargs: Any) -> Any:
        _connections_check()
        try:
            return super().thread_handler(loop, *args, **kwargs)
        finally:
            _connections_check()


def socket_database(func: Callable[..., Any]) -> Any:
    """Decorate a consumer's database helper (a method or a function): awaitable, run on the socket thread."""
    return SocketDatabaseCall(func, thread_sensitive=False, executor=_thread)
