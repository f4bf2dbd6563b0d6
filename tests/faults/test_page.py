"""The page is the point: the web server (uvicorn) restarted while a turn is on its way, or just as one is
sent. The page reconnects, catches up, and shows the turn's results once (or says the message was lost),
never spinning on."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import ARTIFACTS, browser  # noqa: F401  (the Chromium fixture)
from tests.browser.test_chat import refine_from
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
    page.locator('#browse-grid figure[data-name="dev-15-0"] button.pick').click()
    page.fill("#composer-text", "make the circle red")
    page.keyboard.press("Enter")
    # locators, not wait_for_function: a string predicate is eval(), which the page's CSP forbids
    expect(page.locator("article.turn .answer .meta")).to_have_count(1, timeout=30_000)
    stack.faults(turn_claimed="sleep:3")  # the next turn is on its way while the server restarts
    refine_from(page.locator("article.turn figure.card").first)
    page.fill("#composer-text", "make it larger")
    sent = time.monotonic()
    page.keyboard.press("Enter")
    # accepted (a turn id, not the "Sending…" placeholder): the server has it, and it is on its way
    expect(page.locator('article.turn[data-turn]:not([data-turn=""])')).to_have_count(2, timeout=30_000)
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


def test_a_turn_sent_as_the_web_server_dies_ends_in_results_or_a_sentence(page: Any, stack: FaultStack) -> None:
    """The frame may reach the server or die with it: either way the page must not keep "Sending…"."""
    page.goto("/")
    page.select_option("#collection", SLUG)
    page.locator('#browse-grid figure[data-name="dev-15-0"] button.pick').click()
    page.fill("#composer-text", "make the circle red")
    page.keyboard.press("Enter")
    done = page.locator("article.turn .answer .meta")
    expect(done).to_have_count(1, timeout=30_000)  # the conversation and its socket are up
    refine_from(page.locator("article.turn figure.card").first)
    page.fill("#composer-text", "make the circle green")
    page.keyboard.press("Enter")
    stack.kill("web")  # at once: the frame may or may not have been taken
    sent = time.monotonic()
    time.sleep(0.5)
    stack.start("web")
    lost = page.get_by_text("A message was lost while the connection dropped; please send it again.")
    while done.count() + lost.count() < 2 and time.monotonic() - sent < 20:
        time.sleep(0.2)
    took = time.monotonic() - sent
    record(
        "the web server killed just as a turn was sent (Chromium)",
        outcome="results" if done.count() == 2 else "lost, said so" if lost.count() else "spinning",
        page_settles_s=round(took, 1),
        duplicated=max(0, page.locator("article.turn").count() - 2),
    )
    assert done.count() + lost.count() == 2, f"still spinning {took:.1f}s after sending"
    assert page.get_by_text("Sending…").count() == 0 and page.locator("article.turn").count() <= 2
