"""The Operations page in Chromium (issue 23, item 2), against the live stack: reached from the admin index, it
fills its headline figures and draws its SVG charts from the polled figures (a turn just answered by the real
worker among them, the worker answering, a failure with its sentence), with no console error (the CSP refuses
inline scripts and styles) and no serious or critical axe-core violation. Screenshot:
test-artifacts/browser/admin-operations.png."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from tests.browser.conftest import assert_accessible, snap
from tests.browser.test_admin import sign_in
from tests.integration.clients import Api
from tests.live import LiveServices, ShapesCollection

pytestmark = [pytest.mark.browser, pytest.mark.integration]
SENTENCE = "No search worker answered within 60 seconds. Try again."


def a_failed_turn(django_db_blocker: Any, slug: str) -> int:
    """A turn that failed with a sentence, as the sweep leaves one that nobody answered."""
    from cirweb.conversations import services
    from cirweb.conversations.models import Turn
    from tests.web.factories import visitor

    with django_db_blocker.unblock():
        conversation = services.conversation_create(owner=visitor("ops-browser"), collection_slug=slug)
        turn = Turn.objects.create(
            conversation=conversation,
            text="the same but green",
            status=Turn.Status.FAILED,
            error_code="timeout",
            error=SENTENCE,
            finished=timezone.now(),
        )
    return int(turn.pk)


def test_the_operations_page_draws_the_pipeline_live(
    page: Any, live_services: LiveServices, shapes: ShapesCollection, django_db_blocker: Any
) -> None:
    api = Api(live_services.base_url)
    socket = api.socket(live_services.ws_url, api.conversation(shapes.slug)["ws"])
    _, results = socket.turn("make it red", {"image": next(iter(shapes.ids.values()))})
    socket.close()
    assert results["type"] == "turn.results"
    failed = a_failed_turn(django_db_blocker, shapes.slug)

    sign_in(page, django_db_blocker)
    page.get_by_role("link", name="Operations", exact=True).click()
    expect(page.locator("h1")).to_have_text("Operations")
    expect(page.locator("#ops-status")).to_contain_text("Read at")
    expect(page.locator("#ops-workers")).to_contain_text("search 1")
    expect(page.locator("#ops-queued")).to_contain_text("search ")
    assert float(page.locator("#ops-rate").inner_text()) > 0
    expect(page.locator("#ops-p50")).to_have_text(re.compile(r"^(\d+ ms|\d+\.\d s)$"))  # rounded for people
    assert page.locator("#ops-turns rect.ops-done").count() >= 1
    assert page.locator("#ops-latency path.ops-p50").count() + page.locator("#ops-latency circle.ops-p50").count() >= 1
    label = page.locator("#ops-turns").get_attribute("aria-label") or ""
    assert label.startswith("Turns per minute over the last 30 minutes")
    row = page.locator("#ops-failures tr", has_text=SENTENCE)
    expect(row).to_have_count(1)
    expect(row.get_by_role("link", name=f"turn {failed}")).to_have_attribute(
        "href", f"/admin/conversations/turn/{failed}/change/"
    )
    # the next poll adds a sample: queue depth and workers become lines since the page opened
    expect(page.locator("#ops-queues circle.ops-search")).to_have_count(2, timeout=15_000)
    expect(page.locator("#ops-queues path.ops-search")).to_have_count(1)
    expect(page.locator("#ops-workers-chart circle.ops-search")).to_have_count(2)
    assert_accessible(page, "the Operations page")
    snap(page, "admin-operations")
