"""The conversation websocket (the protocol is in ARCHITECTURE.md). Thin: parse, call one service, reply.

Only the conversation's owner may connect. Every frame gets an answer: a bad one an `error` frame, and the
socket stays open whatever the frame or the database did. Worker events (`turn.progress`, `turn.results`,
`turn.failed`) are forwarded as they come; since a publish can be lost (a worker killed between its commit
and its publish, Redis restarted or flushed), the socket also reconciles with the database every
CIR_SOCKET_RECONCILE_EVERY seconds: it sends the outcome of every turn of the conversation that ended
since it connected and that it has not sent yet, and joins its group again (a Redis restart forgets it).
Each outcome goes out once per socket, whichever path brings it first.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from cirweb.conversations import limits, selectors, services
from cirweb.conversations.models import Conversation, Turn
from cirweb.conversations.queries import TurnRejected
from cirweb.processes.metrics import SOCKETS
from cirweb.transport import protocol
from cirweb.transport.database_away import BUSY, database_trouble
from cirweb.transport.owners import Owner, owner_from
from cirweb.transport.socket_database import socket_database
from foundation.log_lines import log_context, log_ids_bind

log = logging.getLogger(__name__)
MAX_FRAME = 64 * 1024
OVERLAP = timedelta(seconds=10)  # a turn's `finished` is stamped before its commit becomes visible


class ConversationConsumer(AsyncJsonWebsocketConsumer):
    conversation: Conversation
    owner: Owner
    watermark: datetime

    async def connect(self) -> None:
        found = await self._load(self.scope["url_route"]["kwargs"]["conversation_id"])
        if found is None:
            # accepted first so the close code reaches the browser (a refused handshake is only "1006")
            await self.accept()
            await self.close(code=protocol.CLOSE_REFUSED)
            return
        self.owner, self.conversation = found
        log_ids_bind(conversation=str(self.conversation.pk))  # on every line of this socket (its own task)
        self.sent: set[tuple[int, int]] = set()  # outcomes sent on this socket: (turn, offset or -1)
        self.connected_at = self.watermark = timezone.now()
        await self._join()
        await self.accept()
        SOCKETS.inc()
        self.reconciler = asyncio.create_task(self._reconcile_forever())

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "reconciler"):
            self.reconciler.cancel()
            SOCKETS.dec()  # the reconciler starts with the count: one decrement per counted socket
        if hasattr(self, "conversation"):
            try:
                await self.channel_layer.group_discard(
                    protocol.conversation_group(self.conversation.pk), self.channel_name
                )
            except Exception as exc:  # Redis is gone: the membership expires with it
                log.info("group_discard failed: %s", exc)

    # -- the channel layer may restart under us: keep receiving, rejoin ----------------------------------

    @property
    def channel_receive(self) -> Callable[[], Awaitable[dict[str, Any]]]:
        return self._receive_from_layer

    @channel_receive.setter
    def channel_receive(self, receive: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        self._layer_receive = receive  # set by channels; wrapped so a Redis restart never ends the socket

    async def _receive_from_layer(self) -> dict[str, Any]:
        while True:
            try:
                return await self._layer_receive()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("channel layer receive failed (%s); retrying", exc)
                await asyncio.sleep(1)

    async def _join(self) -> None:
        try:
            await self.channel_layer.group_add(protocol.conversation_group(self.conversation.pk), self.channel_name)
        except Exception as exc:  # the reconciler joins again, and catches up from the database meanwhile
            log.warning("group_add failed (%s); will retry", exc)

    async def _reconcile_forever(self) -> None:
        while True:
            await asyncio.sleep(settings.CIR_SOCKET_RECONCILE_EVERY)
            try:
                await self._join()
                await self.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database blinked: the next round catches up
                log.warning("reconcile failed: %s", exc)

    async def reconcile(self) -> None:
        """Send every outcome of this conversation that ended since the last round and is not sent yet."""
        started = timezone.now()
        since = max(self.connected_at, self.watermark - OVERLAP)  # earlier ones: the page's catch-up over HTTP
        frames = await self._outcomes(since, frozenset(self.sent))
        for frame in frames:
            await self._send_outcome(frame)
        self.watermark = started

    async def _send_outcome(self, frame: dict[str, Any]) -> None:
        key = protocol.outcome_key(frame)
        if key is None or key in self.sent:
            return
        self.sent.add(key)  # marked before the await: the other path cannot send it meanwhile
        await self.send_json(frame)

    # -- frames from the browser -----------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        if text_data is None:
            return await self.error("bad_message", "Send JSON text frames, not binary ones.")
        if len(text_data) > MAX_FRAME:
            return await self.error("bad_message", f"Messages are limited to {MAX_FRAME // 1024} KB.")
        try:
            content = json.loads(text_data)
        except ValueError:
            return await self.error("bad_message", "That message is not valid JSON.")
        if not isinstance(content, dict):
            return await self.error("bad_message", "A message must be a JSON object with a 'type'.")
        await self.receive_json(content)

    async def receive_json(self, content: dict[str, Any], **kwargs: Any) -> None:
        handlers = {"turn.create": self.on_turn_create, "turn.more": self.on_turn_more, "feedback": self.on_feedback}
        kind = content.get("type")
        handler = handlers.get(kind) if isinstance(kind, str) else None
        if handler is None:
            shown = kind if isinstance(kind, str) and len(kind) < 40 else type(kind).__name__
            return await self.error(
                "bad_message", f"Unknown message type {shown!r}; expected one of {', '.join(handlers)}.", content
            )
        try:
            await handler(content)
        except TurnRejected as exc:
            await self.error(exc.code, exc.message, content)
        except limits.RateLimited as exc:  # [limits] the socket stays open
            await self.send_json(exc.frame(content))
        except DatabaseError as exc:  # a lock timeout, a conversation deleted meanwhile, the database away
            log.warning("database error on %s: %s", kind, exc)
            code, sentence = await self._database_error_told(exc)
            await self.error(code, sentence, content)
        except Exception:
            log.exception("unexpected error on %s", kind)
            await self.error("internal", "Something went wrong on our side; send that again.", content)

    async def error(self, code: str, message: str, content: dict[str, Any] | None = None) -> None:
        await self.send_json(protocol.error_frame(code, message, content))

    async def on_turn_create(self, msg: dict[str, Any]) -> None:
        turn = await self._turn_create(msg)
        with log_context(turn=turn.pk):
            log.info("turn accepted: mode %s, k %s", turn.mode, turn.k)
        await self.send_json(protocol.accepted_frame(turn_id=turn.pk, client_id=turn.client_id))
        await self.send_json(protocol.progress_frame(turn_id=turn.pk, stage="queued"))

    async def on_turn_more(self, msg: dict[str, Any]) -> None:
        turn = await self._turn_more(msg.get("turn"))
        with log_context(turn=turn.pk):
            log.info("turn accepted: page %s", turn.pages)
        await self.send_json({"type": "turn.progress", "turn": turn.pk, "stage": "queued"})

    async def on_feedback(self, msg: dict[str, Any]) -> None:
        await self._feedback(msg)  # the protocol has no acknowledgement frame; errors come as `error`

    # -- group events from the worker: forwarded, each outcome once ------------------------------------

    async def turn_progress(self, event: dict[str, Any]) -> None:
        offset = event.pop("offset", None)
        if (event["turn"], -1) in self.sent or (offset is not None and (event["turn"], offset) in self.sent):
            return  # a late progress frame must not take a finished turn back to a spinner
        await self.send_json(event)

    async def turn_results(self, event: dict[str, Any]) -> None:
        await self._send_outcome(event)

    async def turn_failed(self, event: dict[str, Any]) -> None:
        await self._send_outcome(event)

    # -- database, each touch in its own small sync helper ----------------------------------------------

    @socket_database
    def _load(self, conversation_id: str) -> tuple[Owner, Conversation] | None:
        owner = owner_from(self.scope.get("session"), self.scope.get("user"), create=False)
        if owner is None:
            return None
        try:
            return owner, services.conversation_get(owner=owner, conversation_id=conversation_id)
        except TurnRejected:
            return None

    @socket_database
    def _database_error_told(self, exc: DatabaseError) -> tuple[str, str]:
        """(code, sentence) for a frame that met `exc`: the database away, the conversation deleted, or busy."""
        code, sentence = database_trouble(exc) or ("busy", BUSY)
        if code == "unavailable":
            return code, sentence
        try:
            if not Conversation.objects.filter(pk=self.conversation.pk).exists():
                return "not_found", "This conversation was deleted (in another tab?)."
        except DatabaseError:
            pass  # cannot tell: the busy message is the honest one
        return code, sentence

    @socket_database
    def _outcomes(self, since: datetime, sent: frozenset[tuple[int, int]]) -> list[dict[str, Any]]:
        return selectors.turn_outcomes_since(conversation_id=self.conversation.pk, since=since, skip=sent)

    def _count_turn_frame(self) -> None:
        """[limits] Turn frames per minute, visitor and address: counted in the same thread hop as the
        service call it guards (each hop costs about a millisecond on the path from Enter to results)."""
        limits.hit("turns", owner=self.owner, address=limits.address_of_scope(self.scope))

    @socket_database
    def _turn_create(self, msg: dict[str, Any]) -> Turn:
        self._count_turn_frame()
        return services.turn_create(
            conversation=self.conversation,
            owner=self.owner,
            text=msg.get("text", ""),
            reference=msg.get("reference"),
            parent=msg.get("parent"),
            mode=msg.get("mode", protocol.DEFAULT_MODE),
            k=msg.get("k", protocol.DEFAULT_K),
            exclude_seen=msg.get("exclude_seen", True),
            client_id=msg.get("client_id", ""),
            memory=msg.get("memory", False),
        )

    @socket_database
    def _turn_more(self, turn_id: Any) -> Turn:
        self._count_turn_frame()
        return services.turn_more(turn=services.turn_get(conversation=self.conversation, turn_id=turn_id))

    @socket_database
    def _feedback(self, msg: dict[str, Any]) -> Any:
        turn = services.turn_get(conversation=self.conversation, turn_id=msg.get("turn"))
        return services.feedback_set(turn=turn, image_id=msg.get("image"), value=msg.get("value"))
