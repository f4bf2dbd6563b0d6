"""The chat page for keyboard, screen-reader and phone users: focus survives "Not this" and "More", a new
result touches only its own turn, the live region speaks only of the new results, and the history is a
drawer on a phone. Same live stack and Content-Security-Policy as test_chat.py."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import snap
from tests.browser.test_chat import refine_from, send, start
from tests.live import ShapesCollection

pytestmark = pytest.mark.browser


def first_turn(page: Any, shapes: ShapesCollection, nth: int) -> Any:
    """A first turn from the nth picture of the starting grid."""
    start(page, shapes)
    page.locator("#browse-grid img").nth(nth).click()
    send(page, "make it larger and red")
    return page.locator("article.turn").first


def test_not_this_and_more_keep_the_keyboard(page: Any, shapes: ShapesCollection) -> None:
    turn = first_turn(page, shapes, 3)
    third = turn.locator("figure.card").nth(2)
    picture = third.locator("button.pick")  # the result's one tab stop
    picture.focus()
    page.keyboard.press("x")  # "Not this", from the keyboard
    expect(third).to_have_class(re.compile(r"\brejected\b"))
    expect(third.locator("button.reject")).to_have_text("Undo")
    expect(picture).to_be_focused()  # the same result, not the page
    expect(picture).to_have_attribute("aria-label", re.compile("marked “Not this”"))

    more = turn.locator(".meta button.more")
    more.focus()
    page.keyboard.press("Enter")
    expect(turn.locator("figure.card")).to_have_count(48, timeout=30_000)
    # the keyboard goes on to the first new result, where reading continues
    expect(turn.locator("figure.card").nth(24).locator("button.pick")).to_be_focused()
    expect(page.locator("#announcer")).to_have_text("Turn 1: 24 more results.")
    expect(third.locator("button.reject")).to_have_text("Undo")  # the earlier cards were kept, not redrawn
    snap(page, "chat-keyboard-more")


def test_a_result_replaces_only_its_own_turn(page: Any, shapes: ShapesCollection) -> None:
    turn = first_turn(page, shapes, 4)
    expect(page.locator("#announcer")).to_have_text("Turn 1: 24 results.")
    # a mark that only survives if the element is kept (a redraw makes new elements without it)
    turn.evaluate("node => { node.cirMark = 'kept'; }")
    turn.locator("figure.card").first.evaluate("node => { node.cirMark = 'kept'; }")
    refine_from(turn.locator("figure.card").first)
    send(page, "make it larger")
    second = page.locator("article.turn").nth(1)
    expect(second.locator("figure.card")).to_have_count(24)
    assert turn.evaluate("node => node.cirMark") == "kept"
    assert turn.locator("figure.card").first.evaluate("node => node.cirMark") == "kept"
    # the live region speaks of the new turn's results only, not of the thread
    expect(page.locator("#announcer")).to_have_text("Turn 2: 24 results.")
    assert page.locator("#thread").get_attribute("aria-live") is None
    # a change to the second turn leaves the first alone too
    second.evaluate("node => { node.cirMark = 'second'; }")
    second.locator("figure.card").first.hover()
    second.locator("figure.card").first.get_by_role("button", name=re.compile("^Not this")).click()
    expect(second.locator("figure.card").first).to_have_class(re.compile(r"\brejected\b"))
    assert second.evaluate("node => node.cirMark") == "second"
    assert turn.evaluate("node => node.cirMark") == "kept"
    snap(page, "chat-desktop")


def test_history_is_a_drawer_on_a_phone(phone: Any, shapes: ShapesCollection) -> None:
    first_turn(phone, shapes, 5)
    # the conversation is named after its first turn a moment after it is accepted
    expect(phone.locator("#title")).not_to_have_text("New conversation")
    title = phone.locator("#title").inner_text()
    snap(phone, "chat-phone")
    toggle = phone.locator("#history-toggle")
    sidebar = phone.locator("#sidebar")
    expect(sidebar).to_be_hidden()
    expect(toggle).to_be_visible()
    expect(toggle).to_have_attribute("aria-expanded", "false")

    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(sidebar).to_be_visible()
    expect(phone.locator("#new-conversation")).to_be_focused()  # focus goes into the drawer
    expect(sidebar.locator("#history li.current a")).to_have_text(title)
    snap(phone, "chat-phone-drawer")
    phone.keyboard.press("Escape")
    expect(sidebar).to_be_hidden()
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(toggle).to_be_focused()  # and comes back to the button

    toggle.click()
    phone.locator("#drawer-close").click()
    expect(sidebar).to_be_hidden()
    toggle.click()
    sidebar.locator("#history li.current a").click()  # the conversation is reachable from the drawer
    expect(phone.locator("article.turn figure.card").first).to_be_visible()
