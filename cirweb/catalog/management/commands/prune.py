"""`python manage.py prune`: delete what the data directory no longer needs (cirweb/catalog/retention.py)."""

from __future__ import annotations

from typing import Any

from cirweb.catalog.retention import data_prune
from cirweb.processes.commandline import DocumentedCommand


class Command(DocumentedCommand):
    help = (
        "Delete expired uploads, stale thumbnails, index versions beyond the newest few (never the active one), "
        "chunk folders of finished reindex jobs, temporary version folders and expired sessions."
    )
    example = "python manage.py prune"

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(data_prune().summary())
