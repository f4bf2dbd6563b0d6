"""Sending events to channel-layer groups from worker (sync) code. Consumers forward them to sockets."""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

log = logging.getLogger(__name__)


def publish(group: str, event: dict[str, Any]) -> None:
    """Best effort: a result is stored before it is published, so a lost message costs nothing a page
    reload (or the socket's catch-up on reconnect) cannot recover."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, event)
    except Exception:
        log.exception("could not publish %s to %s", event.get("type"), group)
