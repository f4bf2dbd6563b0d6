"""Sending events to channel-layer groups from worker (sync) code. Consumers forward them to sockets."""

from __future__ import annotations

import logging
import time
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

log = logging.getLogger(__name__)
_last_warning = 0.0


def publish(group: str, event: dict[str, Any]) -> None:
    """Best effort: a result is stored before it is published, so a lost message costs nothing a page
    reload (or the socket's catch-up on reconnect) cannot recover."""
    layer = get_channel_layer()
    if layer is None:
        return
    global _last_warning
    try:
        async_to_sync(layer.group_send)(group, event)
    except Exception as exc:  # Redis down: the stored row is the record; say so, at most once a minute
        if time.monotonic() - _last_warning > 60:
            _last_warning = time.monotonic()
            log.warning("could not publish %s to %s: %s", event.get("type"), group, exc)
