"""What every browser test shares: Debian's Chromium driven by Playwright, pages that fail their test on any
browser console error or uncaught exception (a CSP refusal, a 404 for a script or an icon, a script error),
screenshots under test-artifacts/browser/, and axe-core's accessibility check injected into a page."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.live import LiveServices

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "browser"
CHROMIUM = os.environ.get("CIR_CHROMIUM", "/usr/bin/chromium")
AXE = REPO / "node_modules" / "axe-core" / "axe.min.js"  # package.json; scripts/setup runs `npm ci`
# Playwright's sync API runs an event loop in this thread; the ORM is only used before and after it.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")  # not longer: Playwright's sync API keeps an event loop running while it lives,
def browser() -> Iterator[Any]:  # and the suite's asyncio tests (run after a browser module) need none running
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"browser tests need Chromium at {CHROMIUM}: apt-get install -y chromium")
    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield chromium
        chromium.close()


class Watched:
    """A page's console errors and uncaught exceptions, collected as they happen."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))
        page.on("console", self._console)

    def _console(self, message: Any) -> None:
        if message.type == "error":
            where = message.location.get("url", "") if isinstance(message.location, dict) else ""
            self.errors.append(f"console: {message.text} {where}".strip())


def open_page(browser: Any, base_url: str, viewport: dict[str, int], **options: Any) -> tuple[Any, Any, Watched]:
    """A new context and page (the CSP stays on: anything the page does that it forbids is an error)."""
    context = browser.new_context(viewport=viewport, base_url=base_url, **options)
    page = context.new_page()
    page.set_default_timeout(30_000)
    return context, page, Watched(page)


def close_page(context: Any, page: Any, watched: Watched, request: pytest.FixtureRequest) -> None:
    """Close the page; fail the test on a console error, but for those its `console_errors` marker expects
    (a server restarted on purpose refuses the socket; a file refused on purpose answers 400)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{request.node.name}-final.png"))
    context.close()
    marker = request.node.get_closest_marker("console_errors")
    expected = re.compile(marker.args[0]) if marker else None
    errors = [e for e in watched.errors if not (expected and expected.search(e))]
    assert not errors, f"browser console errors on the page: {errors}"


@pytest.fixture
def page(browser: Any, live_services: LiveServices, request: pytest.FixtureRequest) -> Iterator[Any]:
    context, page, watched = open_page(browser, live_services.base_url, DESKTOP)
    yield page
    close_page(context, page, watched, request)


@pytest.fixture
def phone(browser: Any, live_services: LiveServices, request: pytest.FixtureRequest) -> Iterator[Any]:
    context, page, watched = open_page(
        browser, live_services.base_url, PHONE, is_mobile=True, has_touch=True, device_scale_factor=2
    )
    yield page
    close_page(context, page, watched, request)


def snap(page: Any, name: str, *, docs: str | None = None) -> None:
    """A screenshot once the pictures on screen have loaded (they load lazily), under test-artifacts/browser/.
    `docs`: with CIR_DOCS_SCREENSHOTS=1 in the environment, also written to docs/<docs> (the README's pictures)."""
    on_screen = "[...document.images].filter(i => i.getBoundingClientRect().top < innerHeight && i.offsetParent)"
    deadline = time.monotonic() + 10
    while not page.evaluate(f"{on_screen}.every(i => i.complete)") and time.monotonic() < deadline:
        time.sleep(0.1)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
    if docs and os.environ.get("CIR_DOCS_SCREENSHOTS") == "1":
        shutil.copyfile(ARTIFACTS / f"{name}.png", REPO / "docs" / docs)


def axe_violations(page: Any, *, impacts: tuple[str, ...] = ("serious", "critical")) -> list[dict[str, Any]]:
    """axe-core's violations of the page as it is now, of the given impacts: [{id, impact, help, targets}].
    Evaluated through the DevTools protocol, so the page's CSP (no inline scripts) does not block it."""
    if not AXE.is_file():
        pytest.fail(f"the accessibility checks need axe-core at {AXE}: run scripts/setup (it needs npm)")
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text())
    # preload: false: axe's CSSOM preload copies a stylesheet with an @import (the admin's forms.css) into a
    # <style> element, which the CSP refuses, and that refusal is a console error of the checker, not the page
    # (the preload serves one rule, css-orientation-lock)
    options = "{resultTypes: ['violations'], preload: false}"
    found = page.evaluate(f"async () => (await axe.run(document, {options})).violations")
    return [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "targets": [" ".join(map(str, n["target"])) for n in v["nodes"]][:5],
        }
        for v in found
        if v["impact"] in impacts
    ]


def assert_accessible(page: Any, where: str) -> None:
    """No serious or critical axe-core violation on the page."""
    violations = axe_violations(page)
    assert not violations, f"axe-core on {where}: " + json.dumps(violations, indent=1)
