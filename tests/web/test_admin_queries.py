"""The admin's lists cost a fixed number of queries, however many rows they show (no N+1)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from cirweb.catalog.models import Collection, Image, ReindexJob, Upload
from cirweb.conversations.models import Conversation, Feedback, Turn, TurnResult
from tests.web.factories import make_collection

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("boss", password="pw"))
    return client


def queries(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, url
    return len(captured)


def add_collection(i: int) -> Collection:
    collection = make_collection(f"c{i}", images=2)
    for status in ("failed", "succeeded"):
        ReindexJob.objects.create(collection=collection, kind="full", status=status, total=4, done=4)
    Upload.objects.create(file=f"u{i}.png", content_type="image/png", size=1, width=1, height=1, sha256=str(i))
    return collection


def add_turn(collection: Collection, results: int = 3) -> Turn:
    conversation = Conversation.objects.create(collection=collection, owner_visitor="v")
    turn = Turn.objects.create(conversation=conversation, text="make it red", status="done", latency_ms=12.5)
    images = list(Image.objects.filter(collection=collection))
    for rank in range(results):
        TurnResult.objects.create(turn=turn, rank=rank, image=images[rank % len(images)], score=1.0 - rank / 10)
    Feedback.objects.create(turn=turn, image=images[0], value="rejected")
    return turn


LISTS = [
    "/admin/catalog/collection/",
    "/admin/catalog/reindexjob/",
    "/admin/catalog/image/",
    "/admin/catalog/upload/",
    "/admin/conversations/conversation/",
    "/admin/conversations/turn/",
]


@pytest.mark.parametrize("url", LISTS)
def test_a_changelist_costs_the_same_for_two_rows_and_for_six(staff: Client, url: str) -> None:
    def grow(n: int) -> None:
        for i in range(Collection.objects.count(), n):
            add_turn(add_collection(i))

    grow(2)
    queries(staff, url)  # warm the per-process caches (content types, permissions)
    few = queries(staff, url)
    grow(6)
    assert queries(staff, url) == few


@pytest.mark.parametrize(
    "page",
    [
        lambda c, t: f"/admin/conversations/turn/{t.pk}/change/",
        lambda c, t: f"/admin/catalog/collection/{c.pk}/change/",
    ],
    ids=["turn-with-results", "collection-with-versions"],
)
def test_a_detail_page_costs_the_same_for_few_and_many_inline_rows(
    staff: Client, page: Callable[[Collection, Turn], str]
) -> None:
    small, large = add_collection(1), make_collection("big", images=8)
    few_turn, many_turn = add_turn(small, results=2), add_turn(large, results=8)
    for n, collection in ((2, small), (8, large)):
        for number in range(1, n + 1):
            collection.versions.create(
                number=number, path=f"v{number}", count=1, dim=8, index_type="flat", encoder="e", combiner="c"
            )
    queries(staff, page(small, few_turn))  # warm the per-process caches (content types, permissions)
    assert queries(staff, page(small, few_turn)) == queries(staff, page(large, many_turn))


def test_the_turn_page_rounds_latency_and_shows_timings_as_a_table(staff: Client) -> None:
    turn = add_turn(add_collection(1))
    Turn.objects.filter(pk=turn.pk).update(
        latency_ms=12.3456, timings_ms={"text": 9.123, "combine": 0.21, "search": 1.3, "total": 14.04}
    )
    page = staff.get(f"/admin/conversations/turn/{turn.pk}/change/").content.decode()
    assert "12 ms" in page and "12.3456" not in page
    assert '<table class="timings">' in page
    assert "<th scope='row'>text</th><td>9.1 ms</td>" in page
