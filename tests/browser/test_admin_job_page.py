"""The reindex job page follows the live status everywhere it shows it: the bar, the title and the fields
(rendered once as "queued", they must not keep saying so while the bar says the job is done)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import ARTIFACTS
from tests.integration.test_admin_jobs import Staff, new_collection
from tests.live import LiveServices

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def test_the_job_page_title_and_fields_follow_the_live_status(
    page: Any,
    live_services: LiveServices,
    shapes_world: Path,
    django_db_blocker: Any,
) -> None:
    """Through the watched page (any console error fails the test), the staff session's cookies given to it."""
    staff = Staff(live_services, django_db_blocker)
    collection = new_collection(django_db_blocker, "job-page-shapes", "shapes", shapes_world, "val")
    host = urlparse(live_services.base_url).hostname
    page.context.add_cookies(
        [{"name": c.name, "value": c.value or "", "domain": host, "path": "/"} for c in staff.http.cookies]
    )
    job = staff.reindex(collection, "full")
    page.goto(f"/admin/catalog/reindexjob/{job}/change/")
    expect(page.locator("#job-figures")).to_contain_text("succeeded", timeout=120_000)
    subtitle = page.locator("#content h2", has_text="reindex of job-page-shapes")
    expect(subtitle).to_contain_text("(succeeded)")  # rendered as "(queued)"
    assert "(succeeded)" in page.title() and "(queued)" not in page.title(), page.title()
    expect(page.locator(".field-live_status .readonly")).to_have_text("Succeeded")
    expect(page.locator(".field-live_done .readonly")).to_have_text("180")
    expect(page.locator(".breadcrumbs")).to_contain_text("(succeeded)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "admin-job-page.png"), full_page=True)
