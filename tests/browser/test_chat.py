"""The chat page in Debian's Chromium, driven by Playwright, against uvicorn + workers + Redis.

Screenshots of each scenario are kept under test-artifacts/browser/.
"""

from __future__ import annotations

import random
import re
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from retrieval.datasets.shapes import scene_diff
from retrieval.datasets.shapes_text import phrase_all
from tests.browser.conftest import assert_accessible, snap
from tests.live import LiveServices, ShapesCollection

pytestmark = pytest.mark.browser


def words(shapes: ShapesCollection, a: str, b: str) -> str:
    return phrase_all(scene_diff(shapes.scenes[a], shapes.scenes[b]), shapes.scenes[a], random.Random(1))


def start(page: Any, shapes: ShapesCollection) -> None:
    """Open the page on a new conversation over the test collection (other tests make collections too)."""
    page.goto("/")
    page.select_option("#collection", shapes.slug)
    page.wait_for_selector("#browse-grid img")


def pick_start(page: Any, name: str) -> None:
    """Choose the start picture named `name` (its file name, without the extension) as the reference."""
    page.locator(f'#browse-grid figure[data-name="{name}"] button.pick').click()


def refine_from(card: Any) -> None:
    """Refine from a result with the mouse: its "Refine" button shows over the picture on hover."""
    card.hover()
    card.locator("button.refine").click()


def send(page: Any, text: str) -> None:
    before = page.locator("article.turn .answer .meta").count()
    page.fill("#composer-text", text)
    page.keyboard.press("Enter")
    # locators, not wait_for_function: a string predicate is eval(), which the page's CSP forbids
    expect(page.locator("article.turn .answer .meta").nth(before)).to_be_attached(timeout=30_000)


def click_result(page: Any, turn_index: int, image_id: int | None) -> int:
    """Click a result of the turn-th turn: `image_id` when it is shown, else the first one. Returns its id."""
    cards = page.locator("article.turn").nth(turn_index).locator("figure.card")
    card = cards.and_(page.locator(f'figure.card[data-image="{image_id}"]')) if image_id else cards.first
    if card.count() == 0:
        card = cards.first
    chosen = int(card.first.get_attribute("data-image"))
    refine_from(card.first)
    return chosen


def test_three_turn_refinement_by_clicking_results(page: Any, shapes: ShapesCollection) -> None:
    start(page, shapes)
    pick_start(page, "dev-1-0")
    assert "dev-1-0" in page.locator("#reference-label").inner_text()
    send(page, words(shapes, "dev-1-0", "dev-1-1"))
    assert re.search(r"/c/[0-9a-f-]{36}$", page.url)
    snap(page, "chat-refine-1")
    references = [shapes.ids["dev-1-0"]]
    chosen = click_result(page, 0, shapes.ids["dev-1-1"])
    references.append(chosen)
    assert "turn 1" in page.locator("#reference-label").inner_text()
    names = {v: k for k, v in shapes.ids.items()}
    send(page, words(shapes, names[chosen], "dev-1-5"))
    chosen = click_result(page, 1, shapes.ids["dev-1-5"])
    references.append(chosen)
    send(page, words(shapes, names[chosen], "dev-1-2"))
    # no picture refined from, in this turn or an earlier one of the branch, comes back as a result (it was #1)
    for turn, earlier in ((1, references[:2]), (2, references)):
        shown = page.locator("article.turn").nth(turn).locator("figure.card")
        for image in earlier:
            expect(shown.and_(page.locator(f'figure.card[data-image="{image}"]'))).to_have_count(0)
    # the newest request at the top of the thread, its best result on screen; the page itself never scrolls
    thread_top = page.locator("#thread").bounding_box()["y"]
    assert 0 <= page.locator("article.turn").nth(2).bounding_box()["y"] - thread_top <= 20
    assert page.evaluate("document.scrollingElement.scrollTop") == 0
    page.mouse.move(0, 0)  # the picture for the README without a hovered result
    snap(page, "chat-three-turns", docs="chat.png")
    turns = page.locator("article.turn")
    assert turns.count() == 3
    for i in range(3):
        assert turns.nth(i).locator("figure.card").count() == 24
        assert "results" in turns.nth(i).locator(".meta").inner_text()
    # each turn's reference is the result clicked in the turn before
    second_ref = turns.nth(1).locator(".ask img").get_attribute("src")
    assert second_ref and second_ref.startswith("/images/")
    assert page.locator("#history li.current").count() == 1
    assert_accessible(page, "the chat page with three turns")


def test_start_from_an_upload(page: Any, shapes: ShapesCollection) -> None:
    start(page, shapes)
    picture = shapes.world / "dev" / "dev-2-0.png"
    page.set_input_files("#upload", str(picture))
    page.wait_for_selector("#reference:not([hidden])")
    assert "upload" in page.locator("#reference-label").inner_text()
    send(page, words(shapes, "dev-2-0", "dev-2-3"))
    snap(page, "chat-upload")
    ask = page.locator("article.turn .ask img").first
    assert ask.get_attribute("src").startswith("/uploads/")
    assert page.locator("article.turn figure.card").count() == 24


# while the web server restarts: the socket is refused, and so are the pictures that load lazily meanwhile
@pytest.mark.console_errors(r"WebSocket connection to .* failed|ERR_CONNECTION_REFUSED \S+/images/\d+/thumb")
def test_reload_resumes_and_a_dropped_socket_catches_up(
    page: Any, shapes: ShapesCollection, live_services: LiveServices
) -> None:
    start(page, shapes)
    pick_start(page, "dev-10-0")
    send(page, words(shapes, "dev-10-0", "dev-10-4"))
    url = page.url
    # pictures refused while the server is away are loaded again once the socket is back: made certain here
    # by refusing every thumbnail through the reload, before the server restarts
    broken = "[...document.images].filter(i => i.getAttribute('src') && i.complete && !i.naturalWidth).length"
    page.route("**/images/*/thumb", lambda route: route.abort("connectionrefused"))
    page.reload()
    page.wait_for_selector("article.turn figure.card")
    assert page.url == url and page.locator("article.turn").count() == 1
    time.sleep(1)
    assert page.evaluate(broken) > 0
    page.unroute("**/images/*/thumb")
    live_services.restart("web")  # the server drops every socket
    expect(page.locator("#connection")).to_have_text("", timeout=60_000)
    click_result(page, 0, None)
    send(page, "make it larger")
    assert page.locator("article.turn").count() == 2  # caught up, nothing duplicated
    deadline = time.monotonic() + 10  # pictures refused meanwhile are loaded again (the CSP forbids
    while page.evaluate(broken) and time.monotonic() < deadline:  # wait_for_function's eval)
        time.sleep(0.2)
    assert page.evaluate(broken) == 0
    page.go_back()
    expect(page.locator("article.turn")).to_have_count(0, timeout=30_000)
    page.go_forward()
    expect(page.locator("article.turn")).to_have_count(2, timeout=30_000)


def test_branch_from_the_first_turn(page: Any, shapes: ShapesCollection) -> None:
    start(page, shapes)
    pick_start(page, "dev-11-0")
    send(page, words(shapes, "dev-11-0", "dev-11-1"))
    click_result(page, 0, None)
    send(page, "make it smaller")
    click_result(page, 0, shapes.ids["dev-11-1"])  # back to turn 1: a new branch
    assert "new branch" in page.locator("#reference-label").inner_text()
    send(page, "remove the square")
    snap(page, "chat-branch")
    third = page.locator("article.turn").nth(2)
    assert "refining from turn 1" in third.locator(".branch").inner_text()


@pytest.mark.console_errors(r"status of 400 .*/api/uploads")  # the file that is not an image
def test_bad_input_is_refused_inline_and_html_stays_text(page: Any, shapes: ShapesCollection, tmp_path: Path) -> None:
    start(page, shapes)
    page.locator("#send").click()
    assert "Type what you are looking for" in page.locator("#composer-error").inner_text()
    assert page.locator("article.turn").count() == 0
    fake = tmp_path / "notes.png"
    fake.write_text("this is not an image")
    page.set_input_files("#upload", str(fake))
    page.wait_for_selector("#composer-error:not([hidden])")
    expect(page.locator("#composer-error")).to_contain_text("not an image", timeout=30_000)
    assert page.locator("#reference").is_hidden()
    send(page, "<b>bold</b> <img src=x onerror=alert(1)> circles")
    ask = page.locator("article.turn .words").first
    assert ask.inner_text() == "<b>bold</b> <img src=x onerror=alert(1)> circles"
    assert page.locator("article.turn .words b").count() == 0
    # the history is fetched again once the first turn arrives (it is named after it): wait for that fetch
    expect(page.locator("#history")).to_contain_text("<b>bold</b>", timeout=10_000)
    snap(page, "chat-bad-input")
    page.locator("article.turn figure.card button.pick").first.click()  # the picture opens the lightbox
    assert page.locator("#lightbox").is_visible()
    page.keyboard.press("Escape")
    assert page.locator("#lightbox").is_hidden()
