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
from collections.abc import Callable
from typing import Any

from channels.layers import get_channel_layer

from foundation.log_lines import log_context, log_ids

log = logging.getLogger(__name__)


class Publisher:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        # (group, event, the sender's log ids: the publish's lines carry the turn's, on this thread too)
        self._queue: asyncio.Queue[tuple[str, dict[str, Any], dict[str, Any]]] | None = None
        self._pid = 0
        self._last_warning = 0.0
        self._drainer: asyncio.Task[None] | None = None
        self.muted = False  # nothing can listen (no channel layer server yet): events are dropped unsent

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
            group, event, ids = await self._queue.get()
            with log_context(**ids):
                try:
                    if layer is not None:
                        await layer.group_send(group, event)
                    log.debug("published %s to %s", event.get("type"), group)
                except Exception as exc:  # Redis down: the stored row is the record; say so, at most once a minute
                    if time.monotonic() - self._last_warning > 60:
                        self._last_warning = time.monotonic()
                        log.warning("could not publish %s to %s: %s", event.get("type"), group, exc)
                finally:
                    self._queue.task_done()

    def publish(self, group: str, event: dict[str, Any]) -> None:
        """Queue `event` for `group`; returns at once. Best effort: results are stored before they are
        published, so a lost message costs nothing a reload or the socket's catch-up cannot recover."""
        if self.muted:
            return
        loop = self._running_loop()
        queue = self._queue
        assert queue is not None
        loop.call_soon_threadsafe(queue.put_nowait, (group, event, log_ids()))

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            loop = self._loop if self._pid == os.getpid() else None  # a forked child starts its own
            if loop is None or not loop.is_running():
                loop = self._start()
        return loop

    def later(self, delay: float, callback: Callable[[], None]) -> None:
        """Run `callback` on the publisher's thread in `delay` seconds (it may call `put_now`)."""
        loop = self._running_loop()
        loop.call_soon_threadsafe(loop.call_later, delay, callback)

    def put_now(self, group: str, event: dict[str, Any], ids: dict[str, Any]) -> None:
        """Queue `event` from the publisher's own thread (a `later` callback): in order with `publish`; `ids`:
        the log ids of whoever held it back."""
        assert self._queue is not None
        self._queue.put_nowait((group, event, ids))

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


class HeldProgress:
    """One turn's progress frames, held back `after` seconds from its claim. A turn answered sooner sends
    only its outcome: each progress frame costs a channel-layer round trip here and a websocket send in the
    web process, on the same cores as the turns. A turn still running then shows the stage it is at, and
    each later stage goes out at once. `close()` before publishing the outcome: nothing held is sent after
    it, so a progress frame never follows its turn's results."""

    def __init__(self, group: str, after: float) -> None:
        self.group = group
        self._lock = threading.Lock()
        self._held: dict[str, Any] | None = None
        self._shown = self._closed = False
        self._ids = log_ids()  # the turn's, for the frame the publisher's thread sends later
        publisher.later(after, self._release)

    def stage(self, event: dict[str, Any]) -> None:
        with self._lock:
            if self._closed:
                return
            if not self._shown:
                self._held = event  # the latest stage replaces an earlier one nobody saw
                return
        publish(self.group, event)

    def close(self) -> None:
        with self._lock:
            self._closed = True

    def _release(self) -> None:  # on the publisher's thread
        with self._lock:
            if self._closed:
                return
            self._shown = True
            if self._held is not None:
                publisher.put_now(self.group, self._held, self._ids)
