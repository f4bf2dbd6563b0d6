"""The conversation websocket: owner-only, every message validated, the socket always stays usable."""

from __future__ import annotations

from typing import Any

import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.contrib.sessions.backends.db import SessionStore
from django.db import connection, connections

from cirweb.asgi import application
from cirweb.catalog.models import Upload
from cirweb.conversations import services
from cirweb.conversations.models import Turn
from cirweb.transport.owners import VISITOR_KEY
from cirweb.transport.protocol import conversation_group, results_frame
from cirweb.transport.socket_database import socket_database
from tests.web.factories import make_collection, visitor

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]
IN_MEMORY = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@pytest.fixture(autouse=True)
def in_memory_layer(settings: Any) -> None:
    settings.CHANNEL_LAYERS = IN_MEMORY


def session_for(visitor_id: str) -> str:
    store = SessionStore()
    store[VISITOR_KEY] = visitor_id
    store.create()
    return str(store.session_key)


async def connect(conversation_id: Any, visitor_id: str) -> WebsocketCommunicator:
    cookie = f"sessionid={await session_key(visitor_id)}".encode()
    communicator = WebsocketCommunicator(
        application,
        f"/ws/conversations/{conversation_id}/",
        headers=[(b"origin", b"http://localhost"), (b"host", b"localhost"), (b"cookie", cookie)],
    )
    return communicator


async def session_key(visitor_id: str) -> str:
    from channels.db import database_sync_to_async

    return await database_sync_to_async(session_for)(visitor_id)


@pytest.fixture
def conversation() -> Any:
    collection = make_collection()
    return services.conversation_create(owner=visitor("alice"), collection_slug=collection.slug)


async def test_only_the_owner_may_connect(conversation: Any) -> None:
    for refused in (
        await connect(conversation.id, "mallory"),
        await connect("00000000-0000-0000-0000-000000000000", "alice"),
    ):
        await refused.connect()  # accepted only to say why: closed at once with 4403
        assert await refused.receive_output(timeout=5) == {"type": "websocket.close", "code": 4403}
    owner = await connect(conversation.id, "alice")
    assert (await owner.connect())[0] is True
    await owner.disconnect()


async def test_bad_messages_get_error_frames_and_the_socket_stays_usable(conversation: Any) -> None:
    from channels.db import database_sync_to_async

    ws = await connect(conversation.id, "alice")
    await ws.connect()
    image = await database_sync_to_async(lambda: conversation.collection.images.first())()
    other = await database_sync_to_async(lambda: make_collection("elsewhere", 1).images.first())()
    upload = await database_sync_to_async(
        lambda: Upload.objects.create(
            file="x.png",
            content_type="image/png",
            size=1,
            width=1,
            height=1,
            sha256="0" * 64,
            owner_visitor="alice",
            deleted=True,
        )
    )()
    cases = [
        ("{not json", "bad_message"),
        ('["a list"]', "bad_message"),
        ('{"type": "turn.destroy"}', "bad_message"),
        ('{"type": "turn.create", "text": "x", "reference": {"image": "7"}}', "bad_message"),
        ('{"type": "turn.create", "text": "", "reference": null}', "empty_query"),
        ('{"type": "turn.create", "text": "' + "x" * 1001 + '", "reference": null}', "text_too_long"),
        ('{"type": "turn.create", "text": "red", "reference": null, "k": 0}', "bad_k"),
        ('{"type": "turn.create", "text": "red", "reference": null, "k": 1000}', "bad_k"),
        (f'{{"type": "turn.create", "text": "red", "reference": {{"image": {other.pk}}}}}', "reference_missing"),
        (f'{{"type": "turn.create", "text": "red", "reference": {{"upload": {upload.pk}}}}}', "reference_missing"),
        ('{"type": "turn.create", "text": "red", "reference": null, "parent": 999999}', "not_found"),
        ('{"type": "turn.more", "turn": 999999}', "not_found"),
        ('{"type": "feedback", "turn": 1, "image": 1, "value": "love"}', "not_found"),
    ]
    for text, code in cases:
        await ws.send_to(text_data=text)
        frame = await ws.receive_json_from(timeout=5)
        assert frame["type"] == "error" and frame["code"] == code, (text[:60], frame)
        assert frame["error"] and "Traceback" not in frame["error"]
    assert await database_sync_to_async(Turn.objects.count)() == 0  # nothing half-written
    await ws.send_json_to(
        {
            "type": "turn.create",
            "client_id": "c1",
            "text": "make it <b>blue</b>",
            "reference": {"image": image.pk},
            "mode": "combiner",
            "k": 12,
        }
    )
    accepted = await ws.receive_json_from(timeout=5)
    assert accepted["type"] == "turn.accepted" and accepted["client_id"] == "c1"
    assert (await ws.receive_json_from(timeout=5)) == {
        "type": "turn.progress",
        "turn": accepted["turn"],
        "stage": "queued",
    }
    turn = await database_sync_to_async(Turn.objects.get)(pk=accepted["turn"])
    assert turn.status == "queued" and turn.text == "make it <b>blue</b>" and turn.k == 12
    await ws.disconnect()


async def test_worker_events_are_forwarded_unchanged(conversation: Any) -> None:
    ws = await connect(conversation.id, "alice")
    await ws.connect()
    event = {
        "type": "turn.results",
        "turn": 5,
        "offset": 0,
        "results": [{"image": 1, "score": 0.5, "thumb": "/images/1/thumb", "url": "/images/1"}],
        "timings_ms": {"total": 3.0},
    }
    await get_channel_layer().group_send(conversation_group(conversation.pk), event)
    assert await ws.receive_json_from(timeout=5) == event
    await ws.disconnect()


async def test_job_progress_channel_is_for_staff_only() -> None:
    from channels.db import database_sync_to_async
    from django.contrib.auth.models import Permission, User

    from cirweb.catalog.models import ReindexJob

    def setup() -> tuple[int, str, str]:
        job = ReindexJob.objects.create(collection=make_collection())
        keys = []
        for name, staff in (("plain", False), ("staffer", True)):
            user = User.objects.create_user(name, password="x", is_staff=staff)
            user.user_permissions.add(Permission.objects.get(codename="view_reindexjob"))
            store = SessionStore()
            store["_auth_user_id"] = str(user.pk)
            store["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
            store["_auth_user_hash"] = user.get_session_auth_hash()
            store.create()
            keys.append(str(store.session_key))
        return job.pk, keys[0], keys[1]

    job_id, plain, staffer = await database_sync_to_async(setup)()
    for key, allowed in ((None, False), (plain, False), (staffer, True)):
        headers = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
        if key:
            headers.append((b"cookie", f"sessionid={key}".encode()))
        ws = WebsocketCommunicator(application, f"/ws/admin/jobs/{job_id}/", headers=headers)
        connected, _ = await ws.connect()
        assert connected is allowed
        if connected:
            await get_channel_layer().group_send(f"reindex.{job_id}", {"type": "job.progress", "done": 3})
            assert (await ws.receive_json_from(timeout=5))["done"] == 3
            await ws.disconnect()


async def expect_error(ws: WebsocketCommunicator, text: str, code: str) -> dict[str, Any]:
    await ws.send_to(text_data=text)
    frame = await ws.receive_json_from(timeout=5)
    assert frame["type"] == "error" and frame["code"] == code, (text[:60], frame)
    assert frame["error"] and "Traceback" not in frame["error"]
    return frame


async def test_malformed_frames_of_every_shape_get_an_error_and_never_close_the_socket(conversation: Any) -> None:
    ws = await connect(conversation.id, "alice")
    await ws.connect()
    for text in (
        '{"type": []}',
        '{"type": {"a": 1}}',
        '{"type": null}',
        '{"type": 7}',
        '{"type": "' + "x" * 5000 + '"}',
        '{"type": "turn.create", "text": "red\\u0000", "reference": null}',
        '{"type": "turn.create", "text": "red", "reference": null, "client_id": "a\\u0000"}',
        '{"type": "turn.create", "text": "red", "reference": [], "mode": []}',
        '{"type": "turn.more", "turn": {"a": 1}}',
        '{"type": "feedback", "turn": [], "image": {}, "value": []}',
    ):
        await expect_error(ws, text, "bad_message")
    await ws.send_to(bytes_data=b"\x00\x01")
    assert (await ws.receive_json_from(timeout=5))["code"] == "bad_message"
    # still usable: a good turn is accepted
    await ws.send_json_to({"type": "turn.create", "client_id": "ok", "text": "red", "reference": None})
    assert (await ws.receive_json_from(timeout=5))["type"] == "turn.accepted"
    await ws.disconnect()


async def test_a_conversation_deleted_in_another_tab_gets_a_sentence(conversation: Any) -> None:
    from channels.db import database_sync_to_async

    ws = await connect(conversation.id, "alice")
    await ws.connect()
    await database_sync_to_async(services.conversation_delete)(conversation=conversation)
    frame = await expect_error(
        ws, '{"type": "turn.create", "client_id": "c9", "text": "red", "reference": null}', "not_found"
    )
    assert "deleted" in frame["error"] and frame["client_id"] == "c9"
    await expect_error(ws, '{"type": "turn.more", "turn": 1}', "not_found")  # and it still answers
    await ws.disconnect()


async def test_a_database_lock_timeout_is_answered_and_the_socket_stays_usable(
    conversation: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.db import OperationalError

    real = services.turn_create

    def locked(**kwargs: Any) -> Any:
        raise OperationalError("database is locked")

    ws = await connect(conversation.id, "alice")
    await ws.connect()
    monkeypatch.setattr(services, "turn_create", locked)
    frame = await expect_error(ws, '{"type": "turn.create", "text": "red", "reference": null}', "busy")
    assert "send it again" in frame["error"]
    monkeypatch.setattr(services, "turn_create", real)
    await ws.send_json_to({"type": "turn.create", "client_id": "again", "text": "red", "reference": None})
    assert (await ws.receive_json_from(timeout=5))["type"] == "turn.accepted"
    await ws.disconnect()


async def test_an_outcome_whose_publish_was_lost_arrives_once_and_late_progress_is_dropped(
    conversation: Any, settings: Any
) -> None:
    """The worker stored the results but its publish never came: the socket finds them in the database; the
    publish arriving afterwards is not sent twice, and a late progress frame does not bring back a spinner."""
    from channels.db import database_sync_to_async

    from cirweb.conversations import states
    from cirweb.processes.liveness import process_identity

    settings.CIR_SOCKET_RECONCILE_EVERY = 0.2
    ws = await connect(conversation.id, "alice")
    await ws.connect()
    await ws.send_json_to({"type": "turn.create", "client_id": "c1", "text": "red", "reference": None})
    turn_id = (await ws.receive_json_from(timeout=5))["turn"]
    assert (await ws.receive_json_from(timeout=5))["stage"] == "queued"

    def answer() -> list[tuple[int, float]]:
        turn = states.turn_claim(turn_id=turn_id, worker=process_identity())
        assert turn is not None
        ranked = [(i, 0.9 - i / 100) for i in conversation.collection.images.values_list("pk", flat=True)]
        assert states.turn_complete(turn=turn, ranked=ranked, timings_ms={"total": 2.0}, version_id=None)
        return ranked

    ranked = await database_sync_to_async(answer)()
    frame = await ws.receive_json_from(timeout=5)  # no publish at all: found by the reconciler
    assert frame["type"] == "turn.results" and frame["turn"] == turn_id and frame["offset"] == 0
    assert [r["image"] for r in frame["results"]] == [i for i, _ in ranked]
    assert [r["alt"] for r in frame["results"]] == ["img0", "img1", "img2"]  # in words, as the worker sends them
    layer = get_channel_layer()
    await layer.group_send(
        conversation_group(conversation.pk),
        {"type": "turn.progress", "turn": turn_id, "stage": "searching", "offset": 0},
    )
    await layer.group_send(
        conversation_group(conversation.pk),
        results_frame(turn_id=turn_id, offset=0, ranked=ranked, alts={}, timings_ms={}),
    )
    assert await ws.receive_nothing(timeout=1.0)
    await ws.disconnect()


async def test_the_sockets_keep_their_database_connection_where_the_web_process_keeps_none(monkeypatch: Any) -> None:
    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", 0)  # as in the web process

    @socket_database
    def opened(fresh: bool) -> Any:
        if fresh:
            connection.close()  # opened again below, under the web process's setting
        connection.ensure_connection()
        return connection.connection

    first = await opened(True)
    assert await opened(False) is first


async def test_a_feedback_frame_takes_not_this_back_with_none_and_refuses_other_values(conversation: Any) -> None:
    from channels.db import database_sync_to_async

    from cirweb.conversations.models import Feedback, TurnResult

    def shown() -> tuple[int, int]:
        image = conversation.collection.images.first()
        turn = services.turn_create(conversation=conversation, owner=visitor("alice"), text="red", reference=None)
        TurnResult.objects.create(turn=turn, rank=0, image=image, score=0.5)
        return turn.pk, image.pk

    def said() -> list[str]:
        return list(Feedback.objects.values_list("value", flat=True))

    turn_id, image_id = await database_sync_to_async(shown)()
    ws = await connect(conversation.id, "alice")
    await ws.connect()
    frame = {"type": "feedback", "turn": turn_id, "image": image_id}
    await ws.send_json_to({**frame, "value": "rejected"})
    assert await ws.receive_nothing(timeout=0.5) and await database_sync_to_async(said)() == ["rejected"]
    await ws.send_json_to({**frame, "value": "none"})
    assert await ws.receive_nothing(timeout=0.5) and await database_sync_to_async(said)() == []
    await ws.send_json_to({**frame, "value": "undo", "client_id": "f1"})
    refused = await ws.receive_json_from(timeout=5)
    assert refused["code"] == "bad_message" and refused["client_id"] == "f1" and "'none'" in refused["error"]
    await ws.disconnect()
