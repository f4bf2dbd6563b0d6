"""JSON logs on real processes (issue 23, item 3): a stack of its own (a private Redis, its own database and data
directory, the web server and a search worker, CIR_LOG_FORMAT=json) answers a turn sent over the websocket; every
line either process wrote is one JSON object, and the turn's lines in the web's log and in the worker's share
its turn id and conversation id, from the consumer's acceptance to the worker's outcome after the publish."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cirweb.processes.devservers import redis_command, wait_for_port
from tests.integration.clients import Api
from tests.live import REPO, LiveServices, Process, celery_worker, free_port, wait_healthy, web_server

pytestmark = pytest.mark.integration
SLUG = "logs-shapes"


def manage(env: dict[str, str], *args: str) -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "manage.py"), *args], env=env, cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"


@pytest.fixture
def json_stack(tmp_path: Path, shapes_world: Path) -> Iterator[LiveServices]:
    logs = tmp_path / "logs"
    logs.mkdir()
    redis_port, web_port = free_port(), free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "CIR_TEST_DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "CIR_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "CIR_LOG_FORMAT": "json",
        "PYTHONUNBUFFERED": "1",
        "DJANGO_ALLOWED_HOSTS": "localhost,127.0.0.1",
    }
    redis = Process("redis", redis_command(redis_port, tmp_path / "redis"), logs / "redis.log")
    stack = LiveServices(f"http://127.0.0.1:{web_port}", f"ws://127.0.0.1:{web_port}", env)
    stack.processes = {"search": celery_worker("search", logs), "web": web_server(web_port, logs)}
    manage(env, "migrate", "--verbosity", "0")
    manage(
        env,
        "shell",
        "-c",
        "from cirweb.catalog.models import Collection; Collection.objects.create("
        f"slug={SLUG!r}, name='Logs', source='shapes', source_path={str(shapes_world)!r}, source_split='val')",
    )
    manage(env, "reindex", SLUG, "--inline")
    redis.start(env)
    try:
        assert wait_for_port(redis_port, 15), redis.tail()
        for process in stack.processes.values():
            process.start(env)
        wait_healthy(stack)
        yield stack
    finally:
        for process in stack.processes.values():
            process.stop()
        redis.stop()


def json_lines(process: Process) -> list[dict[str, Any]]:
    lines = [line for line in process.log.read_text(errors="replace").splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            pytest.fail(f"a line of the {process.name} log is not JSON: {line!r}")
    return parsed


def test_a_turns_lines_in_the_web_and_the_worker_share_its_ids(json_stack: LiveServices) -> None:
    api = Api(json_stack.base_url)
    conversation = api.conversation(SLUG)
    socket = api.socket(json_stack.ws_url, conversation["ws"])
    first_image = api.request("GET", f"/api/collections/{SLUG}/images").json()["images"][0]["id"]
    accepted, results = socket.turn("make it red", {"image": first_image})
    socket.close()
    assert results["type"] == "turn.results"
    ids = {"turn": accepted, "conversation": conversation["id"]}

    def of_the_turn(name: str) -> list[dict[str, Any]]:
        lines = json_lines(json_stack.processes[name])
        assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
        return [line for line in lines if line.get("turn") == ids["turn"]]

    web, worker = of_the_turn("web"), of_the_turn("search")
    assert web and worker, json_stack.logs()
    assert all(line["conversation"] == ids["conversation"] for line in web + worker)
    assert any(line["message"].startswith("turn accepted") for line in web)
    # the task's outcome line is written after the results were stored and published
    assert any(line["message"].startswith(f"turn {ids['turn']} done") for line in worker), worker
