"""The page is the point: the web server (uvicorn) restarted while a turn is on its way. The page reconnects,
catches up, and shows the turn's results once, without spinning past 10 s."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.test_chat import ARTIFACTS, browser  # noqa: F401  (the Chromium fixture)
from tests.faults.conftest import SLUG, FaultStack, record

pytestmark = [pytest.mark.faults, pytest.mark.browser]


@pytest.fixture
def page(browser: Any, stack: FaultStack) -> Iterator[Any]:  # noqa: F811
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=stack.base_url)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.set_default_timeout(30_000)
    yield page
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "faults-web-restart.png"))
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def finished_turns(page: Any) -> int:
    return int(page.locator("article.turn .answer .meta").count())


def test_web_server_restarted_with_the_page_open(page: Any, stack: FaultStack) -> None:
    page.goto("/")
    page.select_option("#collection", SLUG)
    page.locator('#browse-grid img[alt="dev-15-0"]').click()
    page.fill("#composer-text", "make the circle red")
    page.keyboard.press("Enter")
    # locators, not wait_for_function: a string predicate is eval(), which the page's CSP forbids
    expect(page.locator("article.turn .answer .meta")).to_have_count(1)
    stack.faults(turn_claimed="sleep:3")  # the next turn is on its way while the server restarts
    page.locator("article.turn figure.card button.pick").first.click()
    page.fill("#composer-text", "make it larger")
    sent = time.monotonic()
    page.keyboard.press("Enter")
    expect(page.locator("article.turn[data-turn]")).to_have_count(2)
    stack.kill("web")
    time.sleep(0.5)
    stack.start("web")
    deadline = sent + 10
    while finished_turns(page) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    took = time.monotonic() - sent
    spinners = page.locator("article.turn .spinner").count()
    articles = page.locator("article.turn").count()
    cards = [page.locator("article.turn").nth(i).locator("figure.card").count() for i in range(articles)]
    record(
        "the web server killed and restarted with the page open, a turn on its way",
        page_shows_results_s=round(took, 1),
        lost=2 - finished_turns(page),
        duplicated=max(0, articles - 2) + sum(max(0, c - 24) for c in cards),
    )
    assert finished_turns(page) == 2 and spinners == 0, f"still spinning {took:.1f}s after sending"
    assert articles == 2 and cards == [24, 24], (articles, cards)
