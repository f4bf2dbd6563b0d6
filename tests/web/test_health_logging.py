"""/healthz's 503 while the product starts is logged below ERROR; a real server error still logs at ERROR."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import redis
from django.test import Client

from cirweb.processes import health

pytestmark = pytest.mark.django_db


class Answering:
    def ping(self) -> bool:
        return True


class Silent:
    def ping(self) -> bool:
        raise redis.ConnectionError("connection refused")


def request_log(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "django.request"]


def test_a_start_before_a_search_worker_answers_is_logged_at_info(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(redis.Redis, "from_url", lambda *a, **k: Answering())
    monkeypatch.setattr(health, "search_worker_ready", lambda: False)
    with caplog.at_level(logging.DEBUG):
        response = Client().get("/healthz")
    assert response.status_code == 503 and response.json()["search_worker"] is False
    records = request_log(caplog)
    assert [r.levelno for r in records] == [logging.INFO], [(r.levelname, r.getMessage()) for r in records]
    assert "search_worker" in records[0].getMessage()


def test_redis_not_answering_is_a_warning_not_an_error(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(redis.Redis, "from_url", lambda *a, **k: Silent())
    with caplog.at_level(logging.DEBUG):
        assert Client().get("/healthz").status_code == 503
    assert [r.levelno for r in request_log(caplog)] == [logging.WARNING]


def test_a_server_error_in_the_probe_still_logs_at_error(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug, not a missing worker")

    monkeypatch.setattr(redis.Redis, "from_url", broken)
    with caplog.at_level(logging.DEBUG):
        assert Client(raise_request_exception=False).get("/healthz").status_code == 500
    assert logging.ERROR in [r.levelno for r in request_log(caplog)]
