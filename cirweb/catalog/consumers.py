"""Live progress of a reindexing job, for the admin's job page. Staff only."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from cirweb.catalog.models import ReindexJob
from cirweb.transport import protocol


class JobProgressConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        job_id = self.scope["url_route"]["kwargs"]["job_id"]
        if not await self._allowed(user, job_id):
            await self.close(code=protocol.CLOSE_REFUSED)
            return
        self.group = protocol.reindex_group(job_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        await self.send_json(protocol.error_frame("bad_message", "This socket only sends progress.", content))

    async def job_progress(self, event: dict[str, Any]) -> None:
        await self.send_json(event)

    @database_sync_to_async
    def _allowed(self, user: Any, job_id: int) -> bool:
        """Staff who may view reindexing jobs, for a job that exists (as the admin's own job page)."""
        if user is None or not (user.is_active and user.is_staff and user.has_perm("catalog.view_reindexjob")):
            return False
        return ReindexJob.objects.filter(pk=job_id).exists()
