"""What a person sees at a wrong address, at another browser's conversation, and at /api/docs offline."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from tests.web.factories import make_collection

pytestmark = pytest.mark.django_db


def test_a_conversation_of_another_browser_says_so_and_links_home() -> None:
    mine, theirs = Client(), Client()
    collection = make_collection()
    created = mine.post("/api/conversations", {"collection": collection.slug}, content_type="application/json")
    url = f"/c/{created.json()['id']}"
    assert mine.get(url).status_code == 200

    page = theirs.get(url)

    assert page.status_code == 404
    body = page.content.decode()
    assert "This conversation does not exist, or is not yours." in body
    assert 'href="/"' in body and "Start a new conversation" in body
    assert "<!doctype html>" in body.lower()


def test_an_unknown_address_gets_the_friendly_page_without_internals() -> None:
    page = Client().get("/no/such/page")
    body = page.content.decode()
    assert page.status_code == 404
    assert "There is no page at this address." in body
    assert "Resolver404" not in body and "urlpatterns" not in body


def test_api_docs_work_offline_from_our_own_static_files() -> None:
    page = Client().get("/api/docs")
    assert page.status_code == 200
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.content.decode())
    assert any("swagger-ui-bundle.js" in s for s in sources)
    assert all(s.startswith("/") for s in sources), f"assets must come from this server: {sources}"


def test_the_favicon_is_served_to_get_and_head(client: Client) -> None:
    """Browsers ask every page for /favicon.ico: a 404 there is an error in every console (the admin's)."""
    got = client.get("/favicon.ico")
    assert got.status_code == 200 and got["Content-Type"] == "image/svg+xml" and b"<svg" in got.content
    assert client.head("/favicon.ico").status_code == 200
    assert client.post("/favicon.ico").status_code == 405


@pytest.mark.parametrize(("path", "json"), [("/", False), ("/api/conversations", True)])
def test_the_database_refusing_inside_middleware_is_a_503_sentence(settings: Any, path: str, json: bool) -> None:
    """A session saved after the view (SessionMiddleware), where no view can catch the error: 503 with the
    sentence and Retry-After, JSON under /api/ (it was Django's 500)."""
    make_collection("things")
    settings.SESSION_ENGINE = "tests.web.unsaved_sessions"
    client = Client(raise_request_exception=False)
    if json:  # a visitor's first API call stores the visitor in the session
        response = client.post(path, {"collection": "things"}, content_type="application/json")
    else:
        response = client.get(path)
    assert response.status_code == 503 and response["Retry-After"] == "5", response.status_code
    said = response.json()["detail"] if json else response.content.decode()
    assert "again" in said and "Traceback" not in said
