"""GET /metrics: Prometheus text of every process of the host, to the local machine and the configured
addresses only; what the processes record shows up in it."""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import pytest
from django.test import Client

from cirweb.conversations import limits
from cirweb.processes import metrics
from tests.web.factories import visitor

pytestmark = pytest.mark.django_db


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = rf"^{re.escape(name)}(?:\{{{re.escape(wanted)}\}})? ([0-9.e+-]+)$" if wanted else rf"^{name} (\S+)$"
    found = re.search(pattern, text, re.M)
    return float(found.group(1)) if found else 0.0


def scrape(client: Client, address: str = "127.0.0.1") -> str:
    answer = client.get("/metrics", REMOTE_ADDR=address)
    assert answer.status_code == 200 and answer["Content-Type"].startswith("text/plain")
    return answer.content.decode()


def test_only_this_machine_and_the_allowed_addresses_may_read_the_metrics(client: Client, settings: object) -> None:
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 404  # the public: nothing there
    scrape(client, "127.0.0.1")
    scrape(client, "::1")
    settings.CIR_METRICS_ALLOWED = ["10.0.0.0/8"]  # type: ignore[attr-defined]
    scrape(client, "10.2.3.4")
    assert client.get("/metrics", REMOTE_ADDR="11.2.3.4").status_code == 404
    assert client.head("/metrics").status_code == 200
    assert client.post("/metrics").status_code == 405


def test_what_the_processes_record_is_in_the_scrape(client: Client) -> None:
    before = scrape(client)
    metrics.turn_observed(outcome="done", timings_ms={"total": 12.0, "search": 1.5, "queue_wait": 3.0}, end_to_end=0.05)
    metrics.turn_observed(outcome="failed")
    metrics.reindex_observed(job_id=987, done=40, total=100, per_second=12.5)
    after = scrape(client)
    for stage in ("total", "search", "queue_wait", "end_to_end"):
        count = "cirweb_turn_seconds_count"
        assert sample(after, count, stage=stage) == sample(before, count, stage=stage) + 1, stage
    assert (
        sample(after, "cirweb_turns_total", outcome="done") == sample(before, "cirweb_turns_total", outcome="done") + 1
    )
    assert sample(after, "cirweb_turns_total", outcome="failed") >= 1
    assert sample(after, "cirweb_reindex_images_done", job="987") == 40
    assert sample(after, "cirweb_reindex_images_per_second", job="987") == 12.5
    assert "cirweb_queue_depth" in after and "cirweb_workers" in after  # read at scrape time


def test_a_refusal_past_a_limit_is_counted(client: Client, settings: object) -> None:
    settings.CIR_RATE_CONVERSATIONS = "1/m"  # type: ignore[attr-defined]
    before = sample(scrape(client), "cirweb_rate_limited_total", group="conversations")
    owner = visitor(f"metrics-counted-{uuid.uuid4().hex[:8]}")  # a new visitor: the cache outlives a run
    limits.hit("conversations", owner=owner, address=None)
    with pytest.raises(limits.RateLimited):
        limits.hit("conversations", owner=owner, address=None)
    assert sample(scrape(client), "cirweb_rate_limited_total", group="conversations") == before + 1


def test_serve_forgets_the_metrics_of_processes_that_are_gone_and_keeps_the_living(tmp_path: Path) -> None:
    import subprocess

    gone = subprocess.Popen(["true"])
    gone.wait()
    for name in (f"counter_{gone.pid}.db", f"gauge_livesum_{gone.pid}.db", f"counter_{os.getpid()}.db"):
        (tmp_path / name).write_bytes(b"")
    metrics.metrics_reset(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"counter_{os.getpid()}.db"]
