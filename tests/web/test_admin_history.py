"""The query history as staff read it: whether memory was on and what it used (page, filter, CSV), long
requests folded, turns per day counting turns, numbers rounded, thumbnails in a strip, and no inline style
anywhere in the admin's HTML (the Content-Security-Policy refuses it: one console error per attribute)."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from cirweb.catalog.models import Collection, IndexVersion, ReindexJob
from cirweb.conversations.models import Conversation, Feedback, Turn, TurnResult
from tests.web.factories import make_collection

pytestmark = pytest.mark.django_db

SUMMARY = "remembering: earlier 'make it red'; pushed away 2 rejected images"
LONG = "a red circle with thin blue stripes, " * 140  # ~5,000 characters, as a pasted request


@pytest.fixture
def staff() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("boss", password="pw"))
    return client


def conversation(collection: Collection) -> Conversation:
    return Conversation.objects.create(collection=collection, owner_visitor="visitor-1")


def answered(talk: Conversation, text: str = "make it red", **fields: Any) -> Turn:
    turn = Turn.objects.create(conversation=talk, text=text, status="done", **fields)
    for rank, image in enumerate(talk.collection.images.all()[:5]):
        TurnResult.objects.create(turn=turn, rank=rank, image=image, score=0.81234567 - rank / 100)
    return turn


def export(client: Client, turns: list[Turn]) -> list[dict[str, str]]:
    response = client.post(
        "/admin/conversations/turn/", {"action": "export_csv", "_selected_action": [t.pk for t in turns]}
    )
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_memory_is_on_the_turn_page_in_the_list_its_filter_and_the_csv(staff: Client) -> None:
    talk = conversation(make_collection(images=5))
    remembered = answered(talk, "now without stripes", memory=True, memory_summary=SUMMARY)
    plain = answered(talk, "a blue square", memory=False)

    page = staff.get(f"/admin/conversations/turn/{remembered.pk}/change/").content.decode()
    assert "Memory used" in page and SUMMARY.replace("'", "&#x27;") in page
    assert re.search(r'field-memory\b.*?alt="True"', page, re.S)

    listing = staff.get("/admin/conversations/turn/").content.decode()
    assert 'column-memory"' in listing and "?memory=on" in listing and "?memory=off" in listing
    on = staff.get("/admin/conversations/turn/?memory=on").content.decode()
    off = staff.get("/admin/conversations/turn/?memory=off").content.decode()
    assert "now without stripes" in on and "a blue square" not in on
    assert "a blue square" in off and "now without stripes" not in off

    rows = {row["turn"]: row for row in export(staff, [remembered, plain])}
    assert rows[str(remembered.pk)]["memory"] == "on" and rows[str(remembered.pk)]["memory_summary"] == SUMMARY
    assert rows[str(plain.pk)]["memory"] == "off" and rows[str(plain.pk)]["memory_summary"] == ""


def test_a_long_request_is_shown_shortened_with_a_way_to_expand(staff: Client) -> None:
    talk = conversation(make_collection(images=5))
    turn = answered(talk, LONG, memory=True, memory_summary="remembering: " + LONG)
    short = answered(talk, "make it red")
    for url in (
        "/admin/conversations/turn/",
        f"/admin/conversations/turn/{turn.pk}/change/",
        f"/admin/conversations/conversation/{talk.pk}/change/",
    ):
        page = staff.get(url).content.decode()
        folds = re.findall(r'<details class="folded"><summary>(.*?)</summary>', page, re.S)
        assert folds, url
        assert all(len(re.sub(r"<[^>]+>", "", f)) < 400 for f in folds), url  # the summary is the short part
        assert LONG.strip() in page, f"{url}: the whole request, one click away"
    assert f">{short.text}<" in staff.get("/admin/conversations/turn/").content.decode()  # short: as it is


def test_turns_per_day_counts_turns_not_their_feedback(staff: Client) -> None:
    talk = conversation(make_collection(images=5))
    images = list(talk.collection.images.all())
    turns = [answered(talk, f"turn {i}", latency_ms=10.0 * (i + 1)) for i in range(12)]
    for turn in turns[:4]:  # rejections and a choice on the fast turns: 7 feedback rows in all
        Feedback.objects.create(turn=turn, image=images[1], value="rejected")
    for turn in turns[:2]:
        Feedback.objects.create(turn=turn, image=images[2], value="rejected")
    Feedback.objects.create(turn=turns[0], image=images[3], value="chosen")
    Turn.objects.filter(pk=turns[0].pk).update(created=timezone.now() - timedelta(days=1))

    page = staff.get("/admin/conversations/turn/").content.decode()

    per_day = re.findall(r"<tr><td>[A-Z][a-z]{2} \d+</td><td>(\d+)</td></tr>", page)
    assert sorted(map(int, per_day)) == [1, 11], per_day
    assert "65 ms" in page  # the median of 10..120 ms, each turn once
    assert re.search(r"<td class=\"field-rejected\">2</td>", page)  # turns[0]: its 2 rejections, not its choice


def test_numbers_are_rounded_for_people_everywhere_the_admin_shows_them(staff: Client) -> None:
    collection = make_collection(images=5)
    IndexVersion.objects.create(
        collection=collection,
        number=1,
        path="v1",
        count=5,
        dim=8,
        index_type="flat",
        encoder="e",
        combiner="c",
        build_seconds=38.35459382099998,
    )
    talk = conversation(collection)
    turn = answered(talk, latency_ms=95.66512, timings_ms={"text": 9.123456, "total": 95.66512})
    pages = {
        "collection": staff.get(f"/admin/catalog/collection/{collection.pk}/change/").content.decode(),
        "turns": staff.get("/admin/conversations/turn/").content.decode(),
        "turn": staff.get(f"/admin/conversations/turn/{turn.pk}/change/").content.decode(),
        "conversation": staff.get(f"/admin/conversations/conversation/{talk.pk}/change/").content.decode(),
    }
    assert re.search(r'field-build_time">\s*(<p>)?38\.4<', pages["collection"]), "Build seconds 38.4"
    for name in ("turns", "turn", "conversation"):
        assert "96 ms" in pages[name], name
    assert "0.812" in pages["turn"]
    for name, page in pages.items():
        shown = re.sub(r"<[^>]+>", " ", page)  # what a person reads, not attributes
        assert not re.search(r"\d\.\d{4,}", shown), (name, re.findall(r"\S*\d\.\d{4,}\S*", shown)[:3])


def test_top_five_results_are_one_horizontal_strip(staff: Client) -> None:
    answered(conversation(make_collection(images=5)))
    page = staff.get("/admin/conversations/turn/").content.decode()
    strip = re.search(r'<div class="thumb-strip">(.*?)</div>', page, re.S)
    assert strip and strip.group(1).count("<img") == 5
    assert "/static/cirweb/admin.css" in page  # where .thumb-strip is laid out in a row (display: flex)


def test_no_inline_style_attribute_on_any_admin_page(staff: Client) -> None:
    collection = make_collection(images=5)
    IndexVersion.objects.create(
        collection=collection, number=1, path="v1", count=5, dim=8, index_type="flat", encoder="e", combiner="c"
    )
    job = ReindexJob.objects.create(collection=collection, kind="full", status="running", total=5, done=2)
    talk = conversation(collection)
    image = collection.images.first()
    turn = answered(talk, LONG, memory=True, memory_summary=SUMMARY, reference_image=image, chosen_image=image)
    urls = [
        "/admin/",
        "/admin/catalog/collection/",
        f"/admin/catalog/collection/{collection.pk}/change/",
        "/admin/catalog/reindexjob/",
        f"/admin/catalog/reindexjob/{job.pk}/change/",
        "/admin/catalog/image/",
        "/admin/conversations/conversation/",
        f"/admin/conversations/conversation/{talk.pk}/change/",
        "/admin/conversations/turn/",
        f"/admin/conversations/turn/{turn.pk}/change/",
    ]
    for url in urls:
        response = staff.get(url)
        assert response.status_code == 200, url
        styles = re.findall(r"<[^>]*\sstyle=[^>]*>", response.content.decode())
        assert not styles, (url, styles[:3])
