"""The periodic prune: Celery beat (started here as `serve` and compose start it) sends `workers.tasks.prune`
to the index queue, and the live index worker deletes what is no longer needed."""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from tests.live import LiveServices, Process

pytestmark = pytest.mark.integration


def test_beat_runs_prune_on_its_schedule(live_services: LiveServices, django_db_blocker: Any, tmp_path: Path) -> None:
    from django.contrib.sessions.backends.db import SessionStore
    from django.contrib.sessions.models import Session
    from django.utils import timezone

    from cirweb.catalog.models import Collection

    with django_db_blocker.unblock():
        Collection.objects.filter(slug="pruned").delete()
        Collection.objects.create(slug="pruned", name="Pruned", source="folder", source_path=str(tmp_path))
        store = SessionStore()
        store.create()
        Session.objects.filter(session_key=store.session_key).update(expire_date=timezone.now() - timedelta(days=1))
    root = Path(settings.CIR_COLLECTIONS_DIR) / "pruned"
    root.mkdir(parents=True, exist_ok=True)
    killed = Path(tempfile.mkdtemp(prefix=".v1-", dir=root))  # a version writer killed mid-way

    beat = Process(
        "beat",
        [sys.executable, "-m", "celery", "-A", "workers.app", "beat", "--schedule", str(tmp_path / "beat-schedule")],
        tmp_path / "beat.log",
    )
    beat.start({**live_services.env, "CIR_PRUNE_EVERY": "2"})
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and killed.exists():
            time.sleep(0.5)
        assert not killed.exists(), f"prune did not run\n{beat.tail()}\n{live_services.logs()}"
        with django_db_blocker.unblock():
            assert not Session.objects.filter(session_key=store.session_key).exists()
    finally:
        beat.stop()
