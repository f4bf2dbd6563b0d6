"""One query validator: the websocket's `turn.create` and `POST /api/search` refuse the same bad queries with
the same code and the same sentence, because both call `queries.query_validate`."""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.contrib.sessions.backends.db import SessionStore
from django.test import Client

from cirweb.asgi import application
from cirweb.catalog.models import Upload
from cirweb.conversations import services
from cirweb.conversations.models import Turn
from cirweb.transport.owners import VISITOR_KEY
from tests.web.factories import make_collection, visitor

pytestmark = pytest.mark.django_db(transaction=True)

BAD_QUERIES: list[tuple[str, dict[str, Any], str]] = [
    ("empty", {"text": "   ", "reference": None}, "empty_query"),
    ("nul byte", {"text": "red\x00car", "reference": None}, "bad_message"),
    ("nul byte only", {"text": "\x00", "reference": None}, "bad_message"),
    ("too long", {"text": "x" * 1001, "reference": None}, "text_too_long"),
    ("unknown mode", {"text": "red", "reference": None, "mode": "magic"}, "bad_message"),
    ("mode case", {"text": "red", "reference": None, "mode": "TEXT"}, "bad_message"),
    ("k zero", {"text": "red", "reference": None, "k": 0}, "bad_k"),
    ("k negative", {"text": "red", "reference": None, "k": -3}, "bad_k"),
    ("k over max", {"text": "red", "reference": None, "k": 10_000}, "bad_k"),
    ("reference kind", {"text": "red", "reference": {"video": 1}}, "bad_message"),
    ("reference zero", {"text": "red", "reference": {"image": 0}}, "bad_message"),
    ("reference two", {"text": "red", "reference": {"image": 1, "upload": 1}}, "bad_message"),
    ("image elsewhere", {"text": "red", "reference": "OTHER_IMAGE"}, "reference_missing"),
    ("image unknown", {"text": "red", "reference": {"image": 987_654}}, "reference_missing"),
    ("upload deleted", {"text": "red", "reference": "DELETED_UPLOAD"}, "reference_missing"),
]


@pytest.fixture(autouse=True)
def in_memory_layer(settings: Any) -> None:
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


def session_cookie(visitor_id: str) -> bytes:
    store = SessionStore()
    store[VISITOR_KEY] = visitor_id
    store.create()
    return f"sessionid={store.session_key}".encode()


async def websocket_answer(conversation_id: Any, cookie: bytes, query: dict[str, Any]) -> dict[str, Any]:
    ws = WebsocketCommunicator(
        application,
        f"/ws/conversations/{conversation_id}/",
        headers=[(b"origin", b"http://localhost"), (b"host", b"localhost"), (b"cookie", cookie)],
    )
    assert (await ws.connect())[0] is True
    await ws.send_json_to({"type": "turn.create", **query})
    frame = await ws.receive_json_from(timeout=5)
    await ws.disconnect()
    return frame


@pytest.mark.parametrize(("case", "query", "code"), BAD_QUERIES, ids=[c for c, _, _ in BAD_QUERIES])
def test_websocket_and_api_refuse_the_same_query_in_the_same_words(case: str, query: dict[str, Any], code: str) -> None:
    collection = make_collection()
    other_image = make_collection("elsewhere", 1).images.get()
    deleted = Upload.objects.create(
        file="x.png", content_type="image/png", size=1, width=1, height=1, sha256="0" * 64, deleted=True
    )
    query = dict(query)
    if query["reference"] == "OTHER_IMAGE":
        query["reference"] = {"image": other_image.pk}
    elif query["reference"] == "DELETED_UPLOAD":
        query["reference"] = {"upload": deleted.pk}
    conversation = services.conversation_create(owner=visitor("alice"), collection_slug=collection.slug)

    frame = async_to_sync(websocket_answer)(conversation.id, session_cookie("alice"), query)
    response = Client().post(
        "/api/search", json.dumps({"collection": collection.slug, **query}), content_type="application/json"
    )

    assert frame["type"] == "error" and frame["code"] == code, frame
    assert response.status_code == 400, response.content
    assert response.json() == {"detail": frame["error"], "code": code}
    assert "Traceback" not in frame["error"]
    assert Turn.objects.count() == 0  # nothing was stored for a refused query


def test_both_entry_points_run_a_text_only_query_as_text() -> None:
    """The accepted side of the same rule: words without a reference run as a text search on both paths."""
    from cirweb.conversations import shaping
    from cirweb.conversations.queries import query_validate

    collection = make_collection()
    query = query_validate(collection_id=collection.pk, owner=None, text=" red ", reference=None, mode="combiner", k=5)
    payload = shaping.search_payload(collection, None, " red ", "combiner", 5, None)
    conversation = services.conversation_create(owner=visitor("alice"), collection_slug=collection.slug)
    turn = services.turn_create(conversation=conversation, owner=visitor("alice"), text=" red ", reference=None, k=5)
    assert (query.text, query.mode) == (payload["text"], payload["mode"]) == (turn.text, turn.mode) == ("red", "text")
