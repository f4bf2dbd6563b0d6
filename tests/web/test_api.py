"""The HTTP contract: conversations, uploads, collections, images; ownership and CSRF on every route."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from cirweb.catalog.models import Upload
from cirweb.conversations import services
from cirweb.conversations.queries import TurnRejected
from tests.web.factories import make_collection, png_bytes, visitor

pytestmark = pytest.mark.django_db


def csrf_client() -> tuple[Client, str]:
    client = Client(enforce_csrf_checks=True)
    token = client.get("/api/csrf").json()["csrf_token"]
    return client, token


def test_conversation_lifecycle_and_ownership() -> None:
    collection = make_collection()
    client, token = csrf_client()
    created = client.post(
        "/api/conversations",
        {"collection": collection.slug},
        content_type="application/json",
        headers={"X-CSRFToken": token},
    )
    assert created.status_code == 201
    body = created.json()
    assert body["ws"] == f"/ws/conversations/{body['id']}/"
    detail = client.get(f"/api/conversations/{body['id']}").json()
    assert detail["collection"] == collection.slug and detail["turns"] == []
    assert client.get("/api/conversations").json()[0]["id"] == body["id"]
    renamed = client.patch(
        f"/api/conversations/{body['id']}",
        {"title": "<b>red</b> things"},
        content_type="application/json",
        headers={"X-CSRFToken": token},
    )
    assert renamed.json()["title"] == "<b>red</b> things"
    stranger = Client()
    assert stranger.get(f"/api/conversations/{body['id']}").status_code == 404
    assert stranger.get("/api/conversations/not-a-uuid").status_code == 404
    assert client.delete(f"/api/conversations/{body['id']}", headers={"X-CSRFToken": token}).status_code == 204
    assert client.get(f"/api/conversations/{body['id']}").status_code == 404


def test_csrf_is_required_once_a_session_cookie_is_sent() -> None:
    collection = make_collection()
    client = Client(enforce_csrf_checks=True)
    # a request without cookies carries no ambient credentials, so it cannot be forged: scripts need no token
    first = client.post("/api/conversations", {"collection": collection.slug}, content_type="application/json")
    assert first.status_code == 201 and "sessionid" in client.cookies
    refused = client.post("/api/conversations", {"collection": collection.slug}, content_type="application/json")
    assert refused.status_code == 403 and "X-CSRFToken" in refused.json()["detail"]


def test_unknown_collection_is_a_readable_404() -> None:
    make_collection("things")
    response = Client().post("/api/conversations", {"collection": "nope"}, content_type="application/json")
    assert response.status_code == 404 and "things" in response.json()["detail"]


def test_collections_list() -> None:
    make_collection("things", images=3)
    assert Client().get("/api/collections").json() == [
        {"slug": "things", "name": "Things", "images": 3, "active_version": None}
    ]


def test_one_picture_with_its_words_and_suggestions() -> None:
    """The chat page asks for a result's suggestions once it is the reference; a removed picture is a 404."""
    collection = make_collection("things", images=2)
    first, second = collection.images.order_by("pk")
    first.suggestions, first.description = ["make the star red"], "a blue star"
    first.save()
    body = Client().get(f"/api/images/{first.pk}").json()
    assert body["id"] == first.pk and body["suggestions"] == ["make the star red"] and body["alt"] == first.alt
    second.removed = True
    second.save()
    missing = Client().get(f"/api/images/{second.pk}")
    assert missing.status_code == 404 and str(second.pk) in missing.json()["detail"]
    assert Client().get("/api/images/999999").status_code == 404


@pytest.mark.parametrize(
    ("data", "status", "phrase"),
    [
        (b"", 400, "empty"),
        (b"MZ\x90\x00 this is an executable", 400, "not an image"),
        (png_bytes()[:80], 400, "corrupt"),
    ],
)
def test_bad_uploads_are_refused_with_a_reason(data: bytes, status: int, phrase: str) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = Client().post("/api/uploads", {"file": SimpleUploadedFile("x.png", data, "image/png")})
    assert response.status_code == status and phrase in response.json()["detail"]
    assert Upload.objects.count() == 0


def test_oversized_upload(settings: Any) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    settings.CIR_UPLOAD_MAX_BYTES = 1000
    response = Client().post("/api/uploads", {"file": SimpleUploadedFile("big.png", png_bytes(size=(400, 400)))})
    assert response.status_code == 413 and "limit" in response.json()["detail"]


@pytest.mark.asyncio
async def test_bodies_over_the_limit_are_refused_through_the_asgi_application(settings: Any) -> None:
    """The ASGI entry point answers 413 from Content-Length alone, and for a body that grows past the
    limit piece by piece, without the view ever running (the live test measures the server's memory)."""
    from channels.testing import ApplicationCommunicator

    from cirweb.asgi import application

    settings.CIR_UPLOAD_MAX_BYTES = 1000
    scope = {"type": "http", "method": "POST", "path": "/api/uploads", "query_string": b"", "http_version": "1.1",
             "headers": [(b"host", b"localhost"), (b"content-length", str(10 * 2**20).encode())]}  # fmt: skip
    declared = ApplicationCommunicator(application, scope)
    start = await declared.receive_output(5)  # answered before a byte of the body was sent
    body = await declared.receive_output(5)
    assert start["status"] == 413 and b"The request body is 10 MB; the limit is" in body["body"]

    streamed = ApplicationCommunicator(application, {**scope, "path": "/api/search", "headers": [(b"host", b"x")]})
    for _ in range(2):
        await streamed.send_input({"type": "http.request", "body": b"x" * 700_000, "more_body": True})
    start = await streamed.receive_output(5)
    assert start["status"] == 413 and b"too large" in (await streamed.receive_output(5))["body"]


def test_upload_is_stored_once_and_only_its_owner_sees_it() -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    client = Client()
    first = client.post("/api/uploads", {"file": SimpleUploadedFile("cat.png", png_bytes("teal"))})
    assert first.status_code == 201
    again = client.post("/api/uploads", {"file": SimpleUploadedFile("cat2.png", png_bytes("teal"))})
    assert again.json()["id"] == first.json()["id"]
    thumb = client.get(first.json()["thumb"])
    assert thumb.status_code == 200 and thumb["Content-Type"] == "image/jpeg"
    assert Client().get(first.json()["thumb"]).status_code == 404


def test_thumbnails_are_cached_with_an_etag() -> None:
    image = make_collection(images=1).images.first()
    client = Client()
    first = client.get(f"/images/{image.pk}/thumb")
    assert first.status_code == 200 and first["ETag"]
    assert client.get(f"/images/{image.pk}/thumb", headers={"If-None-Match": first["ETag"]}).status_code == 304
    assert client.get(f"/images/{image.pk}")["Content-Type"] == "image/png"
    assert client.get("/images/999999/thumb").status_code == 404


def test_openapi_schema_lists_the_contract() -> None:
    schema = Client().get("/api/openapi.json").json()
    assert {"/api/conversations", "/api/uploads", "/api/collections", "/api/search"} <= set(schema["paths"])
    assert Client().get("/api/docs").status_code == 200


def test_turn_service_refuses_foreign_rows() -> None:
    collection = make_collection()
    mine = services.conversation_create(owner=visitor("alice"), collection_slug=collection.slug)
    with pytest.raises(TurnRejected) as err:
        services.conversation_get(owner=visitor("bob"), conversation_id=mine.id)
    assert err.value.code == "not_found"


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that announces `width`x`height` pixels (its data is a stub: nothing decodes it this far)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


@pytest.mark.parametrize(("width", "height"), [(8000, 8000), (20000, 20000)])  # ours, then Pillow's bomb limit
def test_a_thumbnail_of_an_oversized_image_is_a_clear_422(width: int, height: int) -> None:
    collection = make_collection(images=1)
    image = collection.images.get()
    Path(image.path).write_bytes(png_header_only(width, height))
    response = Client().get(f"/images/{image.pk}/thumb")
    assert response.status_code == 422
    assert "megapixels" in response.content.decode()
