"""`python manage.py prune`: delete what the data directory no longer needs (cirweb/catalog/retention.py)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from cirweb.catalog.retention import data_prune


class Command(BaseCommand):
    help = (
        "Delete expired uploads, stale thumbnails, index versions beyond the newest few (never the active one), "
        "chunk folders of finished reindex jobs, temporary version folders and expired sessions."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(data_prune().summary())
