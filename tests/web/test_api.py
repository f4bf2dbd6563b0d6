"""The HTTP contract: conversations, uploads, collections, images; ownership and CSRF on every route."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from cirweb.catalog.models import Upload
from cirweb.conversations import services
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


def test_an_upload_too_large_is_refused_before_it_is_read(settings: Any) -> None:
    import numpy as np
    from django.core.files.uploadedfile import SimpleUploadedFile
    from PIL import Image as PILImage

    settings.CIR_UPLOAD_MAX_BYTES = 1000
    noise = np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)
    buffer = __import__("io").BytesIO()
    PILImage.fromarray(noise).save(buffer, "PNG")
    assert len(buffer.getvalue()) > 1000 + 64 * 1024
    response = Client().post("/api/uploads", {"file": SimpleUploadedFile("big.png", buffer.getvalue())})
    assert response.status_code == 413 and "the limit is" in response.json()["detail"]


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
    with pytest.raises(services.TurnRejected) as err:
        services.conversation_get(owner=visitor("bob"), conversation_id=mine.id)
    assert err.value.code == "not_found"
