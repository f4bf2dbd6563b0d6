"""What the server promises every client, seen in the page: a picture rejected with "Not this" never comes back
while it stays rejected (even with "hide results already shown" off); the icon and HEAD answer as GET does."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.test_chat import send, start
from tests.live import ShapesCollection

pytestmark = pytest.mark.browser


def reject_the_first_result(page: Any, shapes: ShapesCollection) -> tuple[Any, str]:
    """A words-only turn without memory (the same words then give the same results) and without hiding what
    was shown (so only a rejection can hide a picture), and "Not this" on its first result: that card and its
    picture's id."""
    start(page, shapes)
    page.locator("#settings-toggle").click()
    page.get_by_label("Words only").check()
    page.get_by_label("Remember the conversation").uncheck()
    page.get_by_label(re.compile("Hide results already shown")).uncheck()
    page.keyboard.press("Escape")
    send(page, "a big red circle")
    first = page.locator("article.turn").first.locator("figure.card").first
    image = first.get_attribute("data-image")
    first.hover()
    first.locator("button.reject").click()
    expect(first).to_have_class(re.compile(r"\brejected\b"))
    return first, image


def test_a_rejected_picture_never_comes_back(page: Any, shapes: ShapesCollection) -> None:
    _, image = reject_the_first_result(page, shapes)
    send(page, "a big red circle")
    again = page.locator("article.turn").nth(1).locator("figure.card")
    expect(again).to_have_count(24)
    expect(again.and_(page.locator(f'figure.card[data-image="{image}"]'))).to_have_count(0)


def test_the_icon_and_head_answer(page: Any, shapes: ShapesCollection) -> None:
    start(page, shapes)
    icon = page.request.get("/favicon.ico")
    assert icon.ok and icon.headers["content-type"].startswith("image/"), icon.status  # was a 404
    picture = next(iter(shapes.ids.values()))
    for path in (f"/images/{picture}", f"/images/{picture}/thumb", "/", f"/api/images/{picture}"):
        head, get = page.request.head(path), page.request.get(path)
        assert head.status == get.status == 200, (path, head.status, get.status)  # HEAD /images/1 was 405
        assert head.body() == b""
