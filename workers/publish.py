"""Sending events to channel-layer groups from worker (sync) code. Consumers forward them to sockets.

`async_to_sync(group_send)` would open a new event loop, and with it a new Redis connection, for every
event (about 9 ms each, measured). Instead each worker process keeps one loop on a background thread with
one channel layer, and events go through a queue sent in order: publishing costs the caller microseconds
and a turn's progress frames can never overtake its results.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from typing import Any

from channels.layers import get_channel_layer

log = logging.getLogger(__name__)


class Publisher:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[tuple[str, dict[str, Any]]] | None = None
        self._pid = 0
        self._last_warning = 0.0
        self._drainer: asyncio.Task[None] | None = None

    def _start(self) -> asyncio.AbstractEventLoop:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop, self._queue = loop, asyncio.Queue()
            self._drainer = loop.create_task(self._drain())
            ready.set()
            loop.run_forever()

        threading.Thread(target=run, name="publisher", daemon=True).start()
        ready.wait(5)
        self._pid = os.getpid()
        assert self._loop is not None
        return self._loop

    async def _drain(self) -> None:
        layer = get_channel_layer()
        assert self._queue is not None
        while True:
            group, event = await self._queue.get()
            try:
                if layer is not None:
                    await layer.group_send(group, event)
            except Exception as exc:  # Redis down: the stored row is the record; say so, at most once a minute
                if time.monotonic() - self._last_warning > 60:
                    self._last_warning = time.monotonic()
                    log.warning("could not publish %s to %s: %s", event.get("type"), group, exc)
            finally:
                self._queue.task_done()

    def publish(self, group: str, event: dict[str, Any]) -> None:
        """Queue `event` for `group`; returns at once. Best effort: results are stored before they are
        published, so a lost message costs nothing a reload or the socket's catch-up cannot recover."""
        with self._lock:
            loop = self._loop if self._pid == os.getpid() else None  # a forked child starts its own
            if loop is None or not loop.is_running():
                loop = self._start()
        queue = self._queue
        assert queue is not None
        loop.call_soon_threadsafe(queue.put_nowait, (group, event))

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until every queued event has been sent (for commands that exit right after publishing)."""
        if self._loop is None or self._queue is None or self._pid != os.getpid():
            return
        future = asyncio.run_coroutine_threadsafe(self._queue.join(), self._loop)
        try:
            future.result(timeout)
        except Exception:
            future.cancel()


publisher = Publisher()
publish = publisher.publish
