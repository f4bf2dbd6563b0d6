"""Progress frames from a worker (workers/publish.py `HeldProgress`), through the real Redis channel layer:
a turn answered quickly sends only its outcome; a slow one shows its latest stage, and nothing held back is
ever sent after the outcome."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from channels.layers import get_channel_layer
from django.conf import settings

from workers.publish import HeldProgress, publish

pytestmark = pytest.mark.asyncio


async def received(layer: Any, channel: str, seconds: float) -> list[tuple[Any, ...]]:
    """(turn, type, stage) of every message the channel gets within `seconds`."""
    frames: list[tuple[Any, ...]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (left := deadline - loop.time()) > 0:
        try:
            event = await asyncio.wait_for(layer.receive(channel), timeout=left)
        except TimeoutError:
            break
        frames.append((event["turn"], event["type"], event.get("stage")))
    return frames


def progress(turn: int, stage: str) -> dict[str, Any]:
    return {"type": "turn.progress", "turn": turn, "stage": stage}


async def test_a_fast_turn_sends_only_its_outcome_and_a_slow_one_its_latest_stage_first() -> None:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    group = f"progress-test.{uuid.uuid4().hex}"
    await layer.group_add(group, channel)

    fast = HeldProgress(group, after=0.5)
    fast.stage(progress(1, "encoding"))
    fast.close()  # answered within the half second: the held frame is never sent
    publish(group, {"type": "turn.results", "turn": 1})

    slow = HeldProgress(group, after=0.1)
    slow.stage(progress(2, "encoding"))
    slow.stage(progress(2, "searching"))  # replaces the one nobody saw yet
    await asyncio.sleep(0.4)
    slow.stage(progress(2, "ranking"))  # shown already: goes out at once
    slow.close()
    slow.stage(progress(2, "late"))  # after close: dropped
    publish(group, {"type": "turn.results", "turn": 2})

    assert await received(layer, channel, 1.5) == [
        (1, "turn.results", None),
        (2, "turn.progress", "searching"),
        (2, "turn.progress", "ranking"),
        (2, "turn.results", None),
    ]
    await layer.group_discard(group, channel)


async def test_a_group_send_reaches_every_socket_of_the_conversation_but_a_full_one() -> None:
    config = {**settings.CHANNEL_LAYERS["default"]["CONFIG"], "capacity": 10}
    layer = get_channel_layer()  # the configured class (cirweb/transport/channel_layer.py), on the real Redis
    sender, stalled = type(layer)(**config), type(layer)(**config)  # a worker's, and another web process's
    group = f"progress-test.{uuid.uuid4().hex}"
    channels = [await layer.new_channel() for _ in range(3)]
    full = await stalled.new_channel()  # its sockets stopped reading: the process's channel is at capacity
    for channel in [*channels, full]:
        await layer.group_add(group, channel)
    for n in range(10):
        await stalled.send(full, progress(n, "queued"))

    await sender.group_send(group, {"type": "turn.results", "turn": 7})

    for channel in channels:
        assert await received(layer, channel, 1.0) == [(7, "turn.results", None)]
    assert await received(stalled, full, 1.0) == [(n, "turn.progress", "queued") for n in range(10)]
    await sender.flush()
    await stalled.flush()
