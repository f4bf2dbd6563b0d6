"""Log lines (issue 23, item 3): the JSON format parses line by line, the text format shows a turn's ids, a bad
CIR_LOG_FORMAT stops the process with a sentence, and a turn sent from the websocket carries its ids in the task
message that the worker binds them from."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from celery.signals import before_task_publish
from channels.db import database_sync_to_async

from cirweb.conversations import services
from foundation.log_lines import (
    HEADER,
    JsonLines,
    LogIds,
    log_context,
    log_format_check,
    log_ids,
    log_ids_bind,
    log_ids_clear,
    logging_config,
    task_headers,
    task_ids,
)
from tests.web.factories import make_collection, visitor
from tests.web.test_consumer import IN_MEMORY, connect


@pytest.fixture
def lines(request: pytest.FixtureRequest) -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger writing through the product's handler setup (the ids filter) with the format asked."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(LogIds())
    config = logging_config(level="INFO", log_format=getattr(request, "param", "json"))
    formatter = config["formatters"]
    handler.setFormatter(JsonLines() if "json" in formatter else logging.Formatter(formatter["text"]["format"]))
    logger = logging.getLogger(f"tests.log_lines.{request.node.name}")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield logger, out
    finally:
        logger.removeHandler(handler)
        log_ids_clear()


def test_json_lines_parse_and_carry_the_ids_of_the_context(lines: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = lines
    logger.info("before any turn")
    with log_context(turn=42, conversation="c0ffee"):
        logger.warning("two\nlines of message")
        try:
            raise RuntimeError("the database blinked")
        except RuntimeError:
            logger.exception("failed")
    logger.info("after")
    parsed = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(parsed) == 4  # a message with a newline, and a traceback, stay one line each
    assert "turn" not in parsed[0] and "turn" not in parsed[3]
    assert parsed[1]["message"] == "two\nlines of message" and parsed[1]["level"] == "WARNING"
    assert (parsed[1]["turn"], parsed[1]["conversation"]) == (42, "c0ffee")
    assert "RuntimeError: the database blinked" in parsed[2]["error"] and parsed[2]["turn"] == 42
    assert {"time", "logger", "process"} <= set(parsed[0])


@pytest.mark.parametrize("lines", ["text"], indirect=True)
def test_text_lines_end_with_the_ids(lines: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = lines
    with log_context(conversation="c0ffee"):
        with log_context(turn=7):
            logger.info("turn accepted")
        logger.info("socket line")
    first, second = out.getvalue().splitlines()
    assert first.endswith("turn accepted turn=7 conversation=c0ffee")
    assert second.endswith("socket line conversation=c0ffee")


def test_a_bad_log_format_is_refused_with_a_sentence() -> None:
    assert log_format_check("JSON") == "json" and log_format_check("") == "text"
    with pytest.raises(ValueError, match="use 'text'"):
        log_format_check("xml")
    with pytest.raises(ValueError, match="log ids are turn, conversation"):
        log_ids_bind(trun=1)
    env = {"CIR_LOG_FORMAT": "xml", "DJANGO_SETTINGS_MODULE": "cirweb.settings"}
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env={**__import__("os").environ, **env},
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    assert "CIR_LOG_FORMAT='xml' is not a log format: use 'text'" in done.stderr


def test_the_ids_travel_in_the_task_headers_and_back() -> None:
    headers: dict[str, Any] = {}
    task_headers(headers=headers)
    assert HEADER not in headers  # nothing bound: nothing sent
    with log_context(turn=3, conversation="abc"):
        task_headers(headers=headers)
    assert headers[HEADER] == {"turn": 3, "conversation": "abc"}
    assert task_ids({**headers, "other": 1}) == {"turn": 3, "conversation": "abc"}
    assert task_ids({}) == {} and task_ids(None) == {} and log_ids() == {}


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_turn_from_the_socket_sends_its_task_with_its_ids_and_logs_them(settings: Any) -> None:
    settings.CHANNEL_LAYERS = IN_MEMORY
    conversation = await database_sync_to_async(
        lambda: services.conversation_create(owner=visitor("alice"), collection_slug=make_collection().slug)
    )()
    sent: list[dict[str, Any]] = []

    def capture(headers: dict[str, Any] | None = None, **_: Any) -> None:
        sent.append(dict(headers or {}))

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(LogIds())
    handler.setFormatter(JsonLines())
    consumer_log = logging.getLogger("cirweb.conversations.consumers")
    consumer_log.addHandler(handler)
    before_task_publish.connect(capture, weak=False)  # after the product's own receiver: sees what it added
    try:
        ws = await connect(conversation.id, "alice")
        await ws.connect()
        image = await database_sync_to_async(lambda: conversation.collection.images.first())()
        await ws.send_json_to({"type": "turn.create", "text": "make it red", "reference": {"image": image.pk}})
        accepted = await ws.receive_json_from(timeout=10)
        await ws.disconnect()
    finally:
        before_task_publish.disconnect(capture)
        consumer_log.removeHandler(handler)
    ids = {"turn": accepted["turn"], "conversation": str(conversation.id)}
    assert [h[HEADER] for h in sent if h.get("task") == "workers.tasks.search_turn"] == [ids]
    accepted_lines = [json.loads(line) for line in out.getvalue().splitlines() if "turn accepted" in line]
    assert [{k: line[k] for k in ids} for line in accepted_lines] == [ids]


def test_serve_writes_each_childs_line_as_one_json_object_naming_it() -> None:
    from workers.supervisor import json_line

    own = json.loads(json_line("search", '{"level": "INFO", "message": "turn 1 done", "turn": 1}'))
    assert own == {"level": "INFO", "message": "turn 1 done", "turn": 1, "service": "search"}
    redis = json.loads(json_line("redis", "* Ready to accept connections"))
    assert redis["message"] == "* Ready to accept connections" and redis["service"] == "redis"
    assert {"time", "level", "logger"} <= set(redis)
