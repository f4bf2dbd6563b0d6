"""The chat page as a person meets it (issue 21), measured in Chromium: the start grid on the first screen,
settings behind one button, results large enough to judge with their actions on hover, a lightbox with the
full picture and its actions, one tab stop per result, suggestions that fit the collection, a counter with
the limit, requests shortened with a way to expand, rename and delete in the page, "Not this" with an undo
the server keeps, pictures described in words; on a desktop and on a phone, checked by axe-core.

Sizes are read from the page's layout (bounding boxes, in CSS pixels). Screenshots: test-artifacts/browser/chat-*.png
(CIR_DOCS_SCREENSHOTS=1 also refreshes the README's under docs/)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import assert_accessible, snap
from tests.browser.test_chat import pick_start, refine_from, send, start
from tests.browser.test_chat_rules import reject_the_first_result
from tests.live import LiveServices, ShapesCollection, wait_job

pytestmark = pytest.mark.browser

ROWS_ABOVE = """limit => new Set([...document.querySelectorAll('#browse-grid img')].map(i => i.getBoundingClientRect())
  .filter(r => r.top >= 0 && r.bottom <= limit).map(r => Math.round(r.top))).size"""
TAB_STOPS = """() => [...document.querySelectorAll('article.turn figure.card')].map(card =>
  [...card.querySelectorAll('a[href], button, input, select, textarea, [tabindex]')]
    .filter(e => e.tabIndex >= 0 && !e.disabled).length)"""
FOLDER_NAMES = ["red-sunset.png", "two_circles.png", "Blue Square.png", "a.b.c.png"]


def box(locator: Any) -> dict[str, float]:
    found = locator.bounding_box()
    assert found is not None, f"{locator} is not shown"
    return found


def first_screen(page: Any) -> dict[str, float]:
    """Where the empty page puts things: the blank band under the title bar, the title bar's height, and how
    many rows of start pictures are whole above the composer."""
    page.locator("#browse-grid img").nth(20).wait_for()
    topbar, title = box(page.locator(".topbar")), box(page.locator("#browse-title"))
    composer = box(page.locator("#composer"))
    return {
        "band": title["y"] - (topbar["y"] + topbar["height"]),
        "topbar": topbar["height"],
        "rows": page.evaluate(ROWS_ABOVE, composer["y"]),
    }


def text_limit(page: Any) -> int:
    return int(page.evaluate("JSON.parse(document.getElementById('boot').textContent).limits.text"))


def first_turn(page: Any, shapes: ShapesCollection, nth: int, text: str = "make it larger and red") -> Any:
    """A first turn from the nth picture of the start grid."""
    start(page, shapes)
    page.locator("#browse-grid button.pick").nth(nth).click()
    send(page, text)
    turn = page.locator("article.turn").first
    expect(turn.locator("figure.card")).to_have_count(24)
    return turn


def test_the_start_grid_fills_the_first_screen(page: Any, shapes: ShapesCollection) -> None:
    start(page, shapes)
    measured = first_screen(page)
    print("desktop first screen:", measured)
    assert measured["band"] <= 24, measured  # was 352 px of blank band (an empty thread)
    assert measured["topbar"] <= 64, measured  # was 131 px: title, then every setting on a row
    assert measured["rows"] >= 4, measured  # was 2 whole rows of 95 px pictures
    expect(page.locator("#settings")).to_be_hidden()
    snap(page, "chat-empty")
    assert_accessible(page, "the empty chat page")


def test_settings_are_one_button(page: Any, shapes: ShapesCollection) -> None:
    start(page, shapes)
    toggle = page.locator("#settings-toggle")
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(page.get_by_label("Words only")).to_be_hidden()
    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    page.get_by_label("Words only").check()
    page.get_by_label("Remember the conversation").uncheck()
    expect(page.locator("#settings-summary")).to_have_text("words only, memory off")  # what is in effect, closed
    snap(page, "chat-settings")
    page.keyboard.press("Escape")
    expect(page.locator("#settings")).to_be_hidden()
    expect(toggle).to_be_focused()


def test_results_are_large_with_actions_on_hover_and_scores_when_asked(page: Any, shapes: ShapesCollection) -> None:
    turn = first_turn(page, shapes, 6)
    cards = turn.locator("figure.card")
    hero, other = box(cards.nth(0).locator("img")), box(cards.nth(1).locator("img"))
    print("desktop result pictures:", hero["width"], other["width"])
    assert hero["width"] >= 280 and hero["height"] >= 280, hero  # was 93 px, like every other result
    assert other["width"] >= 140, other
    expect(cards.nth(0).locator(".score")).to_be_hidden()  # scores are out of sight...
    second = cards.nth(1)
    expect(second.locator("button.refine")).to_be_hidden()  # ...and so are the actions, until the pointer comes
    second.hover()
    for name in ("refine", "reject"):
        action = box(second.locator(f"button.{name}"))
        assert action["height"] >= 44 and action["width"] >= 44, (name, action)  # "Not this" was 14 px tall
    snap(page, "chat-results-hover")
    page.locator("#settings-toggle").click()
    page.get_by_label("Show match scores").check()  # ...unless asked for
    page.keyboard.press("Escape")
    expect(cards.nth(0).locator(".score")).to_be_visible()
    assert re.fullmatch(r"-?\d\.\d{3}", cards.nth(0).locator(".score").inner_text())


def test_one_tab_stop_per_result(page: Any, shapes: ShapesCollection) -> None:
    first_turn(page, shapes, 7)
    stops = page.evaluate(TAB_STOPS)
    assert stops == [1] * 24, stops  # was 3 per result (picture, Open, Not this)
    page.locator("#composer-text").focus()
    first = page.locator("article.turn figure.card").first.locator("button.pick")
    presses = 0
    while presses < 100 and not first.evaluate("node => node === document.activeElement"):
        page.keyboard.press("Shift+Tab")
        presses += 1
    print("Shift+Tab presses from the message box to result 1:", presses)
    assert presses <= 27, presses  # was 74: now the upload button, "More", and one stop per result


def test_the_lightbox_shows_the_full_picture_with_its_actions(page: Any, shapes: ShapesCollection) -> None:
    turn = first_turn(page, shapes, 8)
    cards = turn.locator("figure.card")
    images = [cards.nth(i).get_attribute("data-image") for i in range(4)]
    cards.nth(0).locator("button.pick").focus()
    page.keyboard.press("Enter")
    lightbox, picture = page.locator("#lightbox"), page.locator("#lightbox-img")
    expect(lightbox).to_be_visible()
    expect(picture).to_have_attribute("src", f"/images/{images[0]}")  # the full image, not the thumbnail
    expect(page.locator("#lightbox-refine")).to_be_focused()
    size = box(picture)
    print("desktop lightbox picture:", size["width"], size["height"])
    assert size["width"] >= 500 and size["height"] >= 500, size  # was the 128 px thumbnail's size
    page.keyboard.press("ArrowRight")
    expect(picture).to_have_attribute("src", f"/images/{images[1]}")
    page.locator("#lightbox-next").click()
    expect(picture).to_have_attribute("src", f"/images/{images[2]}")
    page.locator("#lightbox-prev").click()
    expect(picture).to_have_attribute("src", f"/images/{images[1]}")
    page.locator("#lightbox-reject").click()
    expect(cards.nth(1)).to_have_class(re.compile(r"\brejected\b"))
    expect(page.locator("#lightbox-reject")).to_have_text("Undo “Not this”")
    snap(page, "chat-lightbox", docs="chat-lightbox.png")
    assert_accessible(page, "the lightbox")
    page.keyboard.press("Escape")
    expect(lightbox).to_be_hidden()
    expect(cards.nth(1).locator("button.pick")).to_be_focused()  # back on the result shown last
    cards.nth(3).locator("button.pick").click()
    page.locator("#lightbox-refine").click()
    expect(lightbox).to_be_hidden()
    expect(page.locator("#reference-label")).to_contain_text("Result 4 of turn 1")
    expect(page.locator("#composer-text")).to_be_focused()


def test_suggestions_fit_the_collection(page: Any, shapes: ShapesCollection) -> None:
    start(page, shapes)
    box_ = page.locator("#composer-text")
    assert "person" not in (box_.get_attribute("placeholder") or "")  # was "…without the person"
    listed = page.request.get(f"/api/collections/{shapes.slug}/images?offset=0&limit=48").json()["images"]
    image = listed[0]
    pick_start(page, image["name"])
    chips = page.locator("#chips button.chip")
    expect(chips.first).to_be_visible()
    shown = chips.all_inner_texts()
    offered = image.get("suggestions") or []
    print("suggestions offered:", offered, "shown:", shown)
    if offered:  # the server's requests for this picture (shapes collections), else generic ones
        assert shown == offered[:4], (shown, offered)
    assert shown and not any("person" in s for s in shown), shown
    placeholder = box_.get_attribute("placeholder") or ""
    assert shown[0] in placeholder and "person" not in placeholder, placeholder
    snap(page, "chat-suggestions")
    chips.first.click()
    expect(box_).to_have_value(shown[0])
    expect(box_).to_be_focused()
    expect(page.locator("#counter")).to_have_text(f"{len(shown[0])} / {text_limit(page):,}")
    page.keyboard.press("Enter")
    expect(page.locator("article.turn figure.card")).to_have_count(24)
    # a result chosen as the reference brings its own suggestions (it had the general ones)
    conversation = page.url.rsplit("/", 1)[1]
    results = page.request.get(f"/api/conversations/{conversation}").json()["turns"][0]["results"]
    offers = {r["image"]: page.request.get(f"/api/images/{r['image']}").json()["suggestions"] for r in results}
    image_id = next((i for i, offered in offers.items() if offered), None)
    assert image_id is not None, "no result of a shapes turn has suggestions"
    card = page.locator(f'article.turn figure.card[data-image="{image_id}"]')
    card.hover()
    card.locator("button.refine").click()
    expect(chips.first).to_have_text(offers[image_id][0])
    assert chips.all_inner_texts() == offers[image_id][:4]


def test_the_counter_says_a_paste_is_too_long_before_sending(page: Any, shapes: ShapesCollection) -> None:
    start(page, shapes)
    limit = text_limit(page)
    counter = page.locator("#counter")
    expect(counter).to_have_text(f"0 / {limit:,}")
    page.locator("#composer-text").focus()
    page.keyboard.insert_text("a" * 5000)  # as a paste arrives
    assert len(page.locator("#composer-text").input_value()) == 5000  # was cut to 1,000 without a word
    expect(counter).to_have_text(f"5,000 / {limit:,} · {5000 - limit:,} too many")
    expect(page.locator("#composer-error")).to_contain_text(f"longer than the limit of {limit:,} characters")
    snap(page, "chat-counter")
    page.keyboard.press("Enter")
    expect(page.locator("#composer-error")).to_contain_text("This request has 5,000 characters")
    assert page.locator("article.turn").count() == 0 and "/c/" not in page.url  # nothing was sent
    page.keyboard.press("Control+a")
    page.keyboard.insert_text("make it red")
    expect(counter).to_have_text(f"11 / {limit:,}")
    expect(page.locator("#composer-error")).to_be_hidden()


def test_a_long_request_is_shortened_and_memory_survives_a_reload(page: Any, shapes: ShapesCollection) -> None:
    start(page, shapes)
    page.locator("#browse-grid button.pick").nth(10).click()
    limit = text_limit(page)
    text = ("make the circle red and move the small square to the left corner, " * 40)[:limit].strip()
    send(page, text)
    ask = page.locator("article.turn").first.locator(".ask")
    words = ask.locator(".words")
    short = box(words)["height"]
    assert short <= 80, short  # three lines, not the whole request
    button = ask.locator("button.expand")
    expect(button).to_have_text(f"Show all {len(text):,} characters")
    button.click()
    expect(button).to_have_attribute("aria-expanded", "true")
    expect(button).to_have_text("Show less")
    assert box(words)["height"] > 2 * short
    assert words.inner_text() == text
    refine_from(page.locator("article.turn figure.card").first)
    send(page, "make it smaller")
    memory = page.locator("article.turn").nth(1).locator(".memory-text")
    expect(memory).to_contain_text("remembering: ")
    said = memory.inner_text()
    assert len(said) < 200, said  # the earlier request shortened (it repeated all of its 1,000 characters)
    page.reload()
    expect(page.locator("article.turn").nth(1).locator(".memory-text")).to_have_text(said)  # from the turn's JSON
    snap(page, "chat-long-request")


def test_rename_and_delete_are_confirmed_in_the_page(page: Any, shapes: ShapesCollection) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    first_turn(page, shapes, 9, "make it red")
    expect(page.locator("#title")).not_to_have_text("New conversation")
    item = page.locator("#history li.current")
    item.get_by_role("button", name=re.compile("^Rename")).click()
    field = item.locator("input")
    expect(field).to_be_focused()
    field.fill("Red circles")
    page.keyboard.press("Enter")
    expect(page.locator("#history li.current a")).to_have_text("Red circles")
    expect(page.locator("#title")).to_have_text("Red circles")
    expect(item.get_by_role("button", name="Rename Red circles")).to_be_focused()
    item.get_by_role("button", name="Rename Red circles").click()
    field.fill("something else")
    page.keyboard.press("Escape")  # gives the rename up
    expect(page.locator("#history li.current a")).to_have_text("Red circles")
    item.get_by_role("button", name="Delete Red circles").click()
    expect(item.locator(".confirm")).to_contain_text("Delete “Red circles” and all its turns?")
    expect(item.get_by_role("button", name="Cancel")).to_be_focused()  # the safe choice first
    snap(page, "chat-delete-confirm")
    page.keyboard.press("Enter")  # Cancel
    expect(page.locator("#history li.current a")).to_have_text("Red circles")
    item.get_by_role("button", name="Delete Red circles").click()
    item.locator(".confirm").get_by_role("button", name="Delete").click()
    page.wait_for_url(re.compile(r"/$"))
    expect(page.locator("#history")).not_to_contain_text("Red circles")
    assert dialogs == [], dialogs  # was prompt() and confirm()


def test_not_this_has_an_undo_the_server_keeps(page: Any, shapes: ShapesCollection) -> None:
    first, image = reject_the_first_result(page, shapes)
    expect(first.locator("button.reject")).to_have_text("Undo")  # shown while it is rejected
    snap(page, "chat-not-this")
    first.locator("button.reject").click()  # Undo
    expect(first).not_to_have_class(re.compile(r"\brejected\b"))
    send(page, "a big red circle")  # a rejected picture never returns; this one was taken back
    second = page.locator("article.turn").nth(1)
    expect(second.locator(f'figure.card[data-image="{image}"]')).to_have_count(1)
    expect(page.locator("#composer-error")).to_be_hidden()
    page.reload()  # the server's record agrees
    expect(page.locator("article.turn").first.locator("figure.card").first).not_to_have_class(re.compile("rejected"))


@pytest.fixture(scope="module")
def folder(live_services: LiveServices, shapes_world: Path, tmp_path_factory: Any, django_db_blocker: Any) -> str:
    """A folder collection whose files have names and extensions, as people's folders do."""
    from cirweb.catalog.models import Collection
    from cirweb.catalog.services import reindex_job_start

    source = tmp_path_factory.mktemp("photos")
    for i, name in enumerate(FOLDER_NAMES):
        shutil.copyfile(shapes_world / "dev" / f"dev-{i}-0.png", source / name)
    with django_db_blocker.unblock():
        Collection.objects.filter(slug="photos-test").delete()
        collection = Collection.objects.create(
            slug="photos-test", name="Photos", source="folder", source_path=str(source)
        )
        job_id = reindex_job_start(collection=collection, kind="full").pk
    job = wait_job(job_id, django_db_blocker)
    assert job.status == "succeeded", f"{job.error}\n{live_services.logs()}"
    return "photos-test"


def test_pictures_are_described_in_words(page: Any, shapes: ShapesCollection, folder: str) -> None:
    page.goto("/")
    page.select_option("#collection", folder)
    expect(page.locator("#browse-grid img")).to_have_count(len(FOLDER_NAMES))
    alts = page.locator("#browse-grid img").evaluate_all("imgs => imgs.map(i => i.alt)")
    # a folder picture by its name without the extension (was "red-sunset.png")
    assert sorted(alts) == sorted(n.rsplit(".", 1)[0] for n in FOLDER_NAMES), alts
    listed = page.request.get(f"/api/collections/{shapes.slug}/images?offset=0&limit=48").json()["images"]
    page.select_option("#collection", shapes.slug)
    expect(page.locator("#browse-grid img")).to_have_count(48)
    for image in listed[:6]:  # a shapes picture by its scene, when the server describes it
        shown = page.locator(f'#browse-grid figure[data-name="{image["name"]}"] img').get_attribute("alt")
        assert shown == image["alt"] and shown != image["name"], (shown, image)  # was the file name
    pick_start(page, listed[0]["name"])
    send(page, "make it larger")
    conversation = page.url.rsplit("/", 1)[1]
    results = page.request.get(f"/api/conversations/{conversation}").json()["turns"][0]["results"]
    cards = page.locator("article.turn figure.card img")
    for rank, result in enumerate(results[:6]):
        assert cards.nth(rank).get_attribute("alt") == (result.get("alt") or f"Result {rank + 1} of turn 1")


def test_the_phone_layout(phone: Any, shapes: ShapesCollection) -> None:
    start(phone, shapes)
    measured = first_screen(phone)
    print("phone first screen:", measured)
    assert measured["topbar"] <= 64, measured  # the settings bar was 208 of 844 px
    assert measured["band"] <= 24, measured
    assert measured["rows"] >= 4, measured  # was 1 whole row above the composer
    snap(phone, "chat-phone-empty")
    assert_accessible(phone, "the empty chat page on a phone")
    phone.locator("#settings-toggle").tap()
    expect(phone.get_by_label("Words only")).to_be_visible()
    snap(phone, "chat-phone-settings")
    phone.locator("#settings-toggle").tap()
    expect(phone.locator("#settings")).to_be_hidden()

    phone.locator("#browse-grid button.pick").nth(11).click()
    send(phone, "make it larger and red")
    cards = phone.locator("article.turn figure.card")
    expect(cards).to_have_count(24)
    hero, other = box(cards.nth(0).locator("img")), box(cards.nth(1).locator("img"))
    print("phone result pictures:", hero["width"], other["width"])
    assert hero["width"] >= 330, hero  # was 104 px
    assert other["width"] >= 100, other
    snap(phone, "chat-phone-results", docs="chat-phone.png")
    assert_accessible(phone, "a turn on a phone")
    cards.nth(1).locator("button.pick").tap()  # a tap opens the lightbox, where the actions are
    picture = box(phone.locator("#lightbox-img"))
    assert picture["width"] >= 330, picture
    for action in ("#lightbox-refine", "#lightbox-reject", "#lightbox-prev", "#lightbox-next"):
        assert box(phone.locator(action))["height"] >= 44, action
    snap(phone, "chat-phone-lightbox")
    phone.locator("#lightbox-refine").tap()
    expect(phone.locator("#reference-label")).to_contain_text("Result 2 of turn 1")
    expect(phone.locator("#chips button.chip").first).to_be_visible()
    snap(phone, "chat-phone-refine")
