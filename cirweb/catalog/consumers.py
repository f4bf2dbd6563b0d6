"""Live progress of a reindexing job, for the admin's job page. Staff only."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from cirweb.catalog.models import ReindexJob


class JobProgressConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        job_id = self.scope["url_route"]["kwargs"]["job_id"]
        if not (user is not None and user.is_active and user.is_staff) or not await self._exists(job_id):
            await self.close(code=4403)
            return
        self.group = f"reindex.{job_id}"
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        await self.send_json({"type": "error", "code": "bad_message", "error": "This socket only sends progress."})

    async def job_progress(self, event: dict[str, Any]) -> None:
        await self.send_json(event)

    @database_sync_to_async
    def _exists(self, job_id: int) -> bool:
        return ReindexJob.objects.filter(pk=job_id).exists()
