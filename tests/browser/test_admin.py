"""The admin as staff meet it in Chromium: the index, a collection page with its Reindex box, a reindex job's
page while it runs and once it has ended (every field filled live, without a reload), the turn list and a
turn's page. Every page: no console error (a CSP refusal of an inline style is one; the `page` fixture fails
the test on any) and no serious or critical axe-core violation. Screenshots: test-artifacts/browser/admin-*.png.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import ARTIFACTS, assert_accessible, snap
from tests.integration.test_admin_jobs import new_collection
from tests.live import LiveServices, ShapesCollection

pytestmark = [pytest.mark.browser, pytest.mark.integration]

PASSWORD = "admin-pass-21"
LONG_REQUEST = "the same scene but with every circle red and every square a little larger, please; " * 30


def sign_in(page: Any, django_db_blocker: Any, username: str = "curator") -> None:
    """Through the admin's own login form, as a person would."""
    from django.contrib.auth.models import User

    with django_db_blocker.unblock():
        User.objects.filter(username=username).delete()
        User.objects.create_superuser(username, password=PASSWORD)
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("#site-name")).to_be_visible()


def field(page: Any, key: str) -> Any:
    return page.locator(f".field-{key} .readonly")


def test_the_admin_index_and_a_collection_page_with_its_reindex_box(
    page: Any, shapes: ShapesCollection, django_db_blocker: Any
) -> None:
    from cirweb.catalog.models import Collection

    sign_in(page, django_db_blocker)
    assert_accessible(page, "the admin index")
    snap(page, "admin-index")

    with django_db_blocker.unblock():
        collection = Collection.objects.get(slug=shapes.slug)
    page.goto(f"/admin/catalog/collection/{collection.pk}/change/")
    box = page.locator("form.reindex-box")
    expect(box.get_by_role("button", name="Reindex (incremental)")).to_be_visible()
    expect(box.get_by_role("button", name="Reindex (full)")).to_be_visible()
    build = page.locator("td.field-build_time").first.inner_text().strip()
    assert re.fullmatch(r"\d+\.\d", build), f"Build seconds shown as {build!r}"
    assert_accessible(page, "a collection page")
    snap(page, "admin-collection")


def test_the_job_page_fills_every_field_live_while_it_runs_and_at_the_end(
    page: Any, live_services: LiveServices, shapes_world: Path, django_db_blocker: Any
) -> None:
    from cirweb.catalog.jobs import reindex_job_send
    from cirweb.catalog.models import Collection
    from cirweb.catalog.services import reindex_job_start

    sign_in(page, django_db_blocker)
    collection_id = new_collection(django_db_blocker, "admin-live-fields", "shapes", shapes_world, "val")
    with django_db_blocker.unblock():
        collection = Collection.objects.get(pk=collection_id)
        job = reindex_job_start(collection=collection, kind="full", enqueue=False)  # sent once the page is open
    page.goto(f"/admin/catalog/reindexjob/{job.pk}/change/")
    for key in ("live_started", "live_worker", "live_version", "live_finished"):
        expect(field(page, key)).to_have_text("-")  # rendered while queued
    expect(field(page, "live_attempts")).to_have_text("0")
    assert_accessible(page, "a queued job's page")

    with django_db_blocker.unblock():
        reindex_job_send(job_id=job.pk)

    # while it runs: who runs it, since when, how many tries; no reload
    expect(field(page, "live_worker")).to_have_text(re.compile(r".+:\d+"), timeout=60_000)
    expect(field(page, "live_started")).not_to_have_text("-")
    expect(field(page, "live_attempts")).to_have_text("1")
    page.screenshot(path=str(ARTIFACTS / "admin-job-running.png"), full_page=True)

    expect(page.locator("#job-figures")).to_contain_text("succeeded", timeout=180_000)
    expect(field(page, "live_status")).to_have_text("Succeeded")
    expect(field(page, "live_version")).to_have_text("v1")
    expect(field(page, "live_finished")).not_to_have_text("-")
    expect(field(page, "live_eta_seconds")).to_have_text("-")
    expect(field(page, "live_done")).to_have_text("180")
    assert "(succeeded)" in page.title()
    assert_accessible(page, "a finished job's page")
    page.screenshot(path=str(ARTIFACTS / "admin-job-done.png"), full_page=True)  # every field, top to bottom


def test_the_reindex_button_starts_a_job_and_its_page_follows_it_to_the_end(
    page: Any, live_services: LiveServices, shapes_world: Path, django_db_blocker: Any
) -> None:
    sign_in(page, django_db_blocker)
    collection_id = new_collection(django_db_blocker, "admin-button", "shapes", shapes_world, "val")
    page.goto(f"/admin/catalog/collection/{collection_id}/change/")
    page.get_by_role("button", name="Reindex (full)").click()
    expect(page).to_have_url(re.compile(r"/admin/catalog/reindexjob/\d+/change/$"))
    expect(page.locator("#job-figures")).to_contain_text("succeeded", timeout=180_000)
    expect(field(page, "live_version")).to_have_text("v1")
    expect(field(page, "live_worker")).not_to_have_text("-")
    snap(page, "admin-reindex-button")


def make_history(shapes: ShapesCollection, django_db_blocker: Any) -> tuple[int, int, int]:
    """A conversation of two answered turns on the test collection: one plain, one with memory on and a
    long pasted request. Returns (collection id, the long turn's id, how many turns the collection has)."""
    from cirweb.catalog.models import Collection, Image
    from cirweb.conversations.models import Conversation, Feedback, Turn, TurnResult

    with django_db_blocker.unblock():
        collection = Collection.objects.get(slug=shapes.slug)
        images = list(Image.objects.filter(collection=collection).order_by("pk")[:8])
        talk = Conversation.objects.create(collection=collection, owner_visitor="admin-browser-test")
        first = Turn.objects.create(
            conversation=talk, text="a red circle", status="done", latency_ms=95.665, reference_image=images[0]
        )
        second = Turn.objects.create(
            conversation=talk,
            parent=first,
            text=LONG_REQUEST,
            status="done",
            latency_ms=38.35459382099998,
            memory=True,
            memory_summary="remembering: a red circle; pushed away 1 rejected image",
            reference_image=images[1],
            timings_ms={"text": 9.123456, "search": 1.3333, "total": 38.35459382099998},
        )
        for turn in (first, second):
            for rank, image in enumerate(images[2:8]):
                TurnResult.objects.create(turn=turn, rank=rank, image=image, score=0.81234567 - rank / 100)
        Turn.objects.filter(pk=first.pk).update(chosen_image=images[1])
        Feedback.objects.create(turn=first, image=images[3], value="rejected")
        Feedback.objects.create(turn=first, image=images[4], value="rejected")
        count = Turn.objects.filter(conversation__collection=collection).count()
    return collection.pk, second.pk, count


def test_the_turn_list_and_a_turn_page(page: Any, shapes: ShapesCollection, django_db_blocker: Any) -> None:
    collection_id, long_turn, count = make_history(shapes, django_db_blocker)
    sign_in(page, django_db_blocker)
    page.goto(f"/admin/conversations/turn/?conversation__collection__id__exact={collection_id}")
    expect(page.locator("#result_list")).to_be_visible()

    per_day = [int(n) for n in page.locator(".turn-figures tbody td:nth-child(2)").all_inner_texts()]
    assert sum(per_day) == count, f"turns per day {per_day} for {count} turns"
    expect(page.locator("#changelist-filter")).to_contain_text("memory")
    row = page.locator("#result_list tbody tr", has=page.locator(f'a[href*="/turn/{long_turn}/change/"]'))
    thumbs = row.locator(".thumb-strip img")
    expect(thumbs).to_have_count(5)
    for i in range(5):  # loaded (no 404: that would be a console error too)
        expect(thumbs.nth(i)).not_to_have_js_property("naturalWidth", 0)
    boxes = [thumbs.nth(i).bounding_box() for i in range(5)]
    assert len({round(b["y"]) for b in boxes}) == 1, f"Top 5 not in one row: {boxes}"
    assert [b["x"] for b in boxes] == sorted(b["x"] for b in boxes)
    assert row.bounding_box()["height"] < 120, "a row of the list stays about one thumbnail high"
    assert "38 ms" in row.inner_text() and "38.35" not in row.inner_text()
    folded = row.locator("details.folded")
    expect(folded.locator(".folded-text")).not_to_be_visible()
    folded.locator("summary").click()
    expect(folded.locator(".folded-text")).to_be_visible()
    assert_accessible(page, "the turn list")
    snap(page, "admin-turns")

    page.goto(f"/admin/conversations/turn/{long_turn}/change/")
    expect(page.locator(".field-memory_used")).to_contain_text("remembering: a red circle")
    expect(page.locator(".field-memory img")).to_have_attribute("alt", "True")
    expect(page.locator(".field-latency .readonly")).to_have_text("38 ms")
    expect(page.locator(".field-request_text details.folded")).to_be_visible()
    assert "0.812" in page.locator("#content").inner_text()
    assert not re.search(r"\d\.\d{4,}", page.locator("#content").inner_text())
    assert_accessible(page, "a turn's page")
    page.screenshot(path=str(ARTIFACTS / "admin-turn.png"), full_page=True)  # its results and timings too

    from cirweb.conversations.models import Turn

    with django_db_blocker.unblock():
        talk = Turn.objects.get(pk=long_turn).conversation_id
    page.goto(f"/admin/conversations/conversation/{talk}/change/")  # the conversation's page: its turns inline
    expect(page.locator("#content")).to_contain_text("a red circle")
    assert_accessible(page, "a conversation's page")
    page.screenshot(path=str(ARTIFACTS / "admin-conversation.png"), full_page=True)
