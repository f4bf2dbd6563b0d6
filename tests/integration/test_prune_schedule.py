"""The periodic prune: the sweep process (started here as `serve` and compose start it) prunes the data
directory every CIR_PRUNE_EVERY seconds, beside its sweeps."""

from __future__ import annotations

import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from tests.live import LiveServices, sweeper

pytestmark = pytest.mark.integration


def test_the_sweep_process_prunes_on_its_schedule(
    live_services: LiveServices, django_db_blocker: Any, tmp_path: Path
) -> None:
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

    pruning = sweeper(tmp_path)  # a second sweep process is harmless: every change it makes is conditional
    pruning.start({**live_services.env, "CIR_PRUNE_EVERY": "2"})
    try:

        def session_left() -> bool:
            with django_db_blocker.unblock():
                return Session.objects.filter(session_key=store.session_key).exists()

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (killed.exists() or session_left()):  # a prune runs a while
            time.sleep(0.5)
        assert not killed.exists(), f"prune did not run\n{pruning.tail()}\n{live_services.logs()}"
        assert not session_left(), f"prune left the expired session\n{pruning.tail()}"
    finally:
        pruning.stop()
