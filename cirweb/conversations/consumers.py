"""The conversation websocket (the protocol is in ARCHITECTURE.md). Thin: parse, call one service, reply.

Only the conversation's owner may connect. Every message is validated; a bad one gets an `error` frame and
the socket stays open. Group events from the search worker (`turn.progress`, `turn.results`,
`turn.failed`) are forwarded unchanged.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from cirweb.conversations import services
from cirweb.conversations.models import Conversation, Turn
from cirweb.owners import Owner, owner_from

MAX_FRAME = 64 * 1024
REFUSED = 4403  # close code: not the owner (or no such conversation)


class ConversationConsumer(AsyncJsonWebsocketConsumer):
    conversation: Conversation
    owner: Owner

    async def connect(self) -> None:
        found = await self._load(self.scope["url_route"]["kwargs"]["conversation_id"])
        if found is None:
            # accepted first so the close code reaches the browser (a refused handshake is only "1006")
            await self.accept()
            await self.close(code=REFUSED)
            return
        self.owner, self.conversation = found
        self.watchers: set[asyncio.Task[None]] = set()
        await self.channel_layer.group_add(self.conversation.group_name, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "conversation"):
            await self.channel_layer.group_discard(self.conversation.group_name, self.channel_name)
        for task in getattr(self, "watchers", ()):
            task.cancel()

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
        handler = handlers.get(content.get("type"))  # type: ignore[arg-type]
        if handler is None:
            return await self.error(
                "bad_message",
                f"Unknown message type {content.get('type')!r}; expected one of {', '.join(handlers)}.",
                content,
            )
        try:
            await handler(content)
        except services.TurnRejected as exc:
            await self.error(exc.code, exc.message, content)

    async def error(self, code: str, message: str, content: dict[str, Any] | None = None) -> None:
        frame: dict[str, Any] = {"type": "error", "code": code, "error": message}
        if content and isinstance(content.get("client_id"), str | int):
            frame["client_id"] = content["client_id"]
        await self.send_json(frame)

    async def on_turn_create(self, msg: dict[str, Any]) -> None:
        turn = await self._turn_create(msg)
        await self.send_json({"type": "turn.accepted", "turn": turn.pk, "client_id": turn.client_id})
        await self.send_json({"type": "turn.progress", "turn": turn.pk, "stage": "queued"})
        self._watch(turn.pk)

    async def on_turn_more(self, msg: dict[str, Any]) -> None:
        turn = await self._turn_more(msg.get("turn"))
        await self.send_json({"type": "turn.progress", "turn": turn.pk, "stage": "queued"})
        self._watch(turn.pk)

    async def on_feedback(self, msg: dict[str, Any]) -> None:
        await self._feedback(msg)  # the protocol has no acknowledgement frame; errors come as `error`

    # -- group events from the worker: forwarded as they are --------------------------------------------

    async def turn_progress(self, event: dict[str, Any]) -> None:
        await self.send_json(event)

    async def turn_results(self, event: dict[str, Any]) -> None:
        await self.send_json(event)

    async def turn_failed(self, event: dict[str, Any]) -> None:
        await self.send_json(event)

    # -- a turn nobody answers fails with a message instead of waiting forever ------------------------

    def _watch(self, turn_id: int) -> None:
        task = asyncio.create_task(self._expire_later(turn_id))
        self.watchers.add(task)
        task.add_done_callback(self.watchers.discard)

    async def _expire_later(self, turn_id: int) -> None:
        await asyncio.sleep(settings.CIR_TURN_EXPIRES + 1)
        failed = await self._expire(turn_id)
        if failed is not None:
            await self.send_json(
                {"type": "turn.failed", "turn": turn_id, "code": failed.error_code, "error": failed.error}
            )

    # -- database, each touch in its own small sync helper ----------------------------------------------

    @database_sync_to_async
    def _load(self, conversation_id: str) -> tuple[Owner, Conversation] | None:
        owner = owner_from(self.scope.get("session"), self.scope.get("user"), create=False)
        if owner is None:
            return None
        try:
            return owner, services.conversation_get(owner=owner, conversation_id=conversation_id)
        except services.TurnRejected:
            return None

    @database_sync_to_async
    def _turn_create(self, msg: dict[str, Any]) -> Turn:
        return services.turn_create(
            conversation=self.conversation,
            owner=self.owner,
            text=msg.get("text", ""),
            reference=msg.get("reference"),
            parent=msg.get("parent"),
            mode=msg.get("mode", "combiner"),
            k=msg.get("k", 24),
            exclude_seen=msg.get("exclude_seen", True),
            client_id=msg.get("client_id", ""),
            memory=msg.get("memory", False),
        )

    @database_sync_to_async
    def _turn_more(self, turn_id: Any) -> Turn:
        return services.turn_more(turn=services.turn_get(conversation=self.conversation, turn_id=turn_id))

    @database_sync_to_async
    def _feedback(self, msg: dict[str, Any]) -> Any:
        turn = services.turn_get(conversation=self.conversation, turn_id=msg.get("turn"))
        return services.feedback_set(turn=turn, image_id=msg.get("image"), value=msg.get("value"))

    @database_sync_to_async
    def _expire(self, turn_id: int) -> Turn | None:
        services.turn_expire_stale(conversation=self.conversation)
        return Turn.objects.filter(pk=turn_id, status=Turn.Status.FAILED).first()
