"""The admin's Operations page (issue 23, item 2): staff only like the rest of the admin, linked from the admin
index, and its figures right for made-up turns: turns per minute, p50/p99 latency, failures with their sentences,
queue depth and workers as the metrics read them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from cirweb.conversations import services
from cirweb.conversations.models import Conversation, Turn
from cirweb.operations import views as operations_views
from cirweb.operations.figures import percentile, turn_pulse
from tests.web.factories import make_collection, visitor

FIGURES = "/admin/operations/figures"
PAGE = "/admin/operations/"


def client_of(username: str, *, staff: bool) -> Client:
    user = User.objects.create_user(username, password="pw-" + username, is_staff=staff)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def readings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Queue depth and workers as the metrics code reads them (Redis, a ping), fixed for these tests."""
    monkeypatch.setattr(operations_views, "queue_depths", lambda: {"search": 3, "index": 1})
    monkeypatch.setattr(operations_views, "workers_by_kind", lambda: {"search": 2, "index": 1})


@pytest.mark.django_db
@pytest.mark.parametrize("path", [PAGE, FIGURES])
def test_only_staff_may_see_the_page_or_its_figures(path: str, readings: None) -> None:
    for refused in (Client(), client_of("visitor", staff=False)):
        response = refused.get(path)
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    assert client_of("staff", staff=True).get(path).status_code == 200


@pytest.mark.django_db
def test_the_admin_index_links_the_page_and_the_page_loads_its_module_without_inline_code() -> None:
    staff = client_of("staff", staff=True)
    index = staff.get("/admin/").content.decode()
    assert f'href="{PAGE}"' in index and ">Operations<" in index
    page = staff.get(PAGE).content.decode()
    assert 'type="module" src="/static/cirweb/operations/main.js"' in page
    assert f'data-figures="{FIGURES}"' in page
    assert "style=" not in page and "<script>" not in page  # the CSP refuses both


def ended(conversation: Conversation, finished: datetime, status: str, latency_ms: float | None, **extra: Any) -> Turn:
    queued = finished - timedelta(milliseconds=latency_ms or 500)
    return Turn.objects.create(
        conversation=conversation,
        text=extra.pop("text", "make it red"),
        status=status,
        queued_at=queued,
        finished=finished,
        latency_ms=latency_ms,
        **extra,
    )


@pytest.mark.django_db
def test_the_figures_of_made_up_turns(readings: None) -> None:
    conversation = services.conversation_create(owner=visitor("alice"), collection_slug=make_collection().slug)
    now = timezone.now()
    earlier, lately = now - timedelta(minutes=10), now - timedelta(minutes=1)
    for ms in (100, 200, 300, 400, 10_000):
        ended(conversation, earlier, "done", ms)
    ended(
        conversation,
        earlier,
        "failed",
        None,
        error_code="timeout",
        error="No search worker answered within 120 seconds. Try again.",
        text="the same but blue " * 10,
    )
    for ms in (50.4, 60.6):
        ended(conversation, lately, "done", ms)
    ended(conversation, now - timedelta(minutes=45), "done", 5)  # before the window
    Turn.objects.create(conversation=conversation, text="still waiting", status="queued")  # not ended

    figures = client_of("staff", staff=True).get(FIGURES).json()
    minutes = {m["label"]: m for m in figures["minutes"]}
    assert len(figures["minutes"]) == figures["window_minutes"] == 30 and figures["minutes"][-1]["partial"]
    at_ten = minutes[timezone.localtime(earlier).strftime("%H:%M")]
    assert (at_ten["done"], at_ten["failed"], at_ten["p50_ms"], at_ten["p99_ms"]) == (5, 1, 300, 10_000)
    at_one = minutes[timezone.localtime(lately).strftime("%H:%M")]
    assert (at_one["done"], at_one["p50_ms"], at_one["p99_ms"]) == (2, 50, 61)  # whole milliseconds
    assert sum(m["done"] + m["failed"] for m in figures["minutes"]) == 8
    assert figures["recent"] == {
        "minutes": 5,
        "turns_per_minute": 0.4,
        "done": 2,
        "failed": 0,
        "p50_ms": 50,
        "p99_ms": 61,
    }
    assert figures["queues"] == {"search": 3, "index": 1} and figures["workers"] == {"search": 2, "index": 1}
    (failure,) = figures["failures"]
    assert failure["code"] == "timeout" and failure["error"].startswith("No search worker answered within 120")
    assert failure["request"].endswith("…") and len(failure["request"]) <= 81
    assert failure["url"] == f"/admin/conversations/turn/{failure['turn']}/change/"


def test_the_percentiles_are_latencies_some_turn_had() -> None:
    assert percentile([], 0.5) is None
    assert percentile([7.0], 0.99) == 7.0
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 0.5), percentile(values, 0.99), percentile(values, 1.0)) == (50.0, 99.0, 100.0)


def test_a_pulse_has_one_entry_a_minute_and_the_current_one_last() -> None:
    now = datetime(2026, 5, 4, 12, 30, 20, tzinfo=UTC)
    rows = [
        (datetime(2026, 5, 4, 12, 30, 5, tzinfo=UTC), "done", 80.0),
        (datetime(2026, 5, 4, 12, 1, 0, tzinfo=UTC), "failed", None),  # the window's first minute
        (datetime(2026, 5, 4, 12, 0, 59, tzinfo=UTC), "done", 1.0),  # just before it
    ]
    pulse = turn_pulse(ended=rows, now=now, window=30)
    assert [m["label"] for m in pulse["minutes"]][:1] == ["12:01"] and pulse["minutes"][-1]["label"] == "12:30"
    assert pulse["minutes"][0]["failed"] == 1 and pulse["minutes"][0]["p50_ms"] is None
    assert pulse["minutes"][-1]["done"] == 1 and pulse["minutes"][-1]["partial"]
    assert sum(m["done"] for m in pulse["minutes"]) == 1
    assert pulse["recent"]["turns_per_minute"] == 0.2
