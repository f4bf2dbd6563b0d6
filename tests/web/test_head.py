"""HEAD is answered wherever GET is (RFC 9110: a server that answers GET answers HEAD), with GET's status and
headers and no body: the pages, the pictures, the probes and the API."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.http import HttpResponseBase
from django.test import AsyncClient, Client

from tests.web.factories import make_collection, png_bytes

pytestmark = pytest.mark.django_db


def body(response: HttpResponseBase) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content  # type: ignore[attr-defined]


def test_every_get_address_answers_head_as_its_get() -> None:
    collection = make_collection()
    image = collection.images.first()
    assert image is not None
    client = Client()
    upload = client.post("/api/uploads", {"file": SimpleUploadedFile("x.png", png_bytes(), "image/png")}).json()
    conversation = client.post("/api/conversations", {"collection": collection.slug}, content_type="application/json")
    talk = conversation.json()["id"]
    addresses = [
        "/",
        f"/c/{talk}",
        f"/images/{image.pk}",
        f"/images/{image.pk}/thumb",
        f"/uploads/{upload['id']}",
        f"/uploads/{upload['id']}/thumb",
        "/livez",
        "/healthz",
        "/readyz",
        "/favicon.ico",
        "/api/csrf",
        "/api/collections",
        f"/api/collections/{collection.slug}/images",
        "/api/conversations",
        f"/api/conversations/{talk}",
        "/api/openapi.json",
        "/api/docs",
    ]
    for address in addresses:
        got, head = client.get(address), client.head(address)
        assert head.status_code == got.status_code != 405, (address, got.status_code, head.status_code)
        assert head["Content-Type"] == got["Content-Type"], address
        assert body(head) == b"", address


def test_head_is_still_refused_where_only_post_is_served() -> None:
    client = Client()
    assert client.head("/api/search").status_code == 405
    assert client.head("/api/uploads").status_code == 405
    assert client.get("/api/search").status_code == 405  # the API's own answer, unchanged


def test_the_openapi_schema_lists_each_operation_once() -> None:
    paths = Client().get("/api/openapi.json").json()["paths"]
    assert not [p for p, methods in paths.items() if "head" in methods]


@pytest.mark.asyncio
async def test_head_on_the_api_under_asgi_as_the_web_server_runs_it() -> None:
    head = await AsyncClient().head("/api/collections")
    assert head.status_code == 200 and head.content == b"" and head["Content-Type"].startswith("application/json")
