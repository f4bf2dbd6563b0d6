"""Per-visitor limits: past each one, an error frame (socket open) or a 429 with Retry-After, in words."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from cirweb.conversations import services
from tests.web.factories import make_collection, png_bytes, visitor
from tests.web.test_consumer import connect


def fresh() -> str:
    """Counters live in Redis across runs: every test is a new visitor at a new address."""
    return uuid.uuid4().hex


def client_at(address: str) -> Client:
    return Client(REMOTE_ADDR=address)


def new_address() -> str:
    n = uuid.uuid4().int
    return f"10.{n % 250}.{(n >> 8) % 250}.{(n >> 16) % 250 + 1}"


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_turn_flood_meets_the_in_flight_limit_then_the_rate_and_the_socket_stays_open(settings: Any) -> None:
    from channels.db import database_sync_to_async

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.CIR_RATE_TURNS = "6/m"
    settings.CIR_TURNS_IN_FLIGHT = 3
    name = fresh()
    conversation = await database_sync_to_async(
        lambda: services.conversation_create(owner=visitor(name), collection_slug=make_collection(name[:8]).slug)
    )()
    ws = await connect(conversation.id, name)
    await ws.connect()
    answers = []
    for i in range(10):  # no worker runs here: every accepted turn stays in flight
        await ws.send_json_to({"type": "turn.create", "client_id": f"c{i}", "text": "red circle", "reference": None})
        frame = await ws.receive_json_from(timeout=5)
        if frame["type"] == "turn.accepted":
            await ws.receive_json_from(timeout=5)  # its "queued" progress frame
        answers.append(frame)
    kinds = [(a["type"], a.get("code")) for a in answers]
    assert kinds[:3] == [("turn.accepted", None)] * 3
    assert kinds[3:] == [("error", "rate_limited")] * 7
    assert "already have 3 searches running" in answers[3]["error"] and answers[3]["client_id"] == "c3"
    assert "the limit is 6 a minute" in answers[6]["error"]  # frames 7 on: over the per-minute rate
    assert all(isinstance(a["retry_after"], int) and a["retry_after"] >= 1 for a in answers[3:])
    await ws.send_json_to({"type": "feedback", "turn": 0, "image": 1, "value": "chosen"})
    assert (await ws.receive_json_from(timeout=5))["code"] == "not_found"  # still answered
    await ws.disconnect()


@pytest.mark.django_db
def test_uploads_per_minute_and_bytes_per_day(settings: Any) -> None:
    settings.CIR_RATE_UPLOADS = "2/m"
    client = client_at(new_address())
    for colour in ("red", "green"):
        assert client.post("/api/uploads", {"file": SimpleUploadedFile("a.png", png_bytes(colour))}).status_code == 201
    refused = client.post("/api/uploads", {"file": SimpleUploadedFile("a.png", png_bytes("blue"))})
    assert refused.status_code == 429 and int(refused["Retry-After"]) >= 1
    assert "Too many uploads: the limit is 2 a minute" in refused.json()["detail"]

    settings.CIR_RATE_UPLOADS = "100/m"
    one = len(png_bytes("red"))
    settings.CIR_UPLOAD_BYTES_PER_DAY = one * 2 + 10
    client = client_at(new_address())
    for colour in ("red", "green"):
        assert client.post("/api/uploads", {"file": SimpleUploadedFile("a.png", png_bytes(colour))}).status_code == 201
    refused = client.post("/api/uploads", {"file": SimpleUploadedFile("a.png", png_bytes("blue"))})
    assert refused.status_code == 429 and "daily limit" in refused.json()["detail"]
    assert int(refused["Retry-After"]) > 0


@pytest.mark.django_db
def test_the_address_limit_holds_several_visitors_but_not_a_crowd(settings: Any) -> None:
    make_collection("crowd")
    settings.CIR_RATE_CONVERSATIONS = "1/m"
    settings.CIR_ADDRESS_FACTOR = 3
    address = new_address()
    statuses = [
        client_at(address).post("/api/conversations", {"collection": "crowd"}, content_type="application/json")
        for _ in range(5)
    ]  # five visitors (each Client its own session) behind one address
    assert [s.status_code for s in statuses] == [201, 201, 201, 429, 429]
    assert "Too many new conversations" in statuses[3].json()["detail"]
    same = client_at(new_address())
    assert same.post("/api/conversations", {"collection": "crowd"}, content_type="application/json").status_code == 201
    again = same.post("/api/conversations", {"collection": "crowd"}, content_type="application/json")
    assert again.status_code == 429 and again["Retry-After"]  # the visitor's own limit


@pytest.mark.django_db
def test_scripted_search_is_limited_before_it_reaches_a_worker(settings: Any) -> None:
    make_collection("scripted")
    settings.CIR_RATE_SEARCH = "0/m"
    response = client_at(new_address()).post(
        "/api/search", {"collection": "scripted", "text": "red"}, content_type="application/json"
    )
    assert response.status_code == 429 and "Too many searches" in response.json()["detail"]
