"""PostgreSQL restarted mid-conversation on an idle stack, with real processes: a stack of its own on a
PostgreSQL server the test owns (tests/faults/private_postgres.py; never the machine's), stopped with a fast
shutdown (every session ended at once) and started again. While it is away a turn sent on an open socket gets
an `error` frame with a sentence and the socket stays open (no close code 1011), and HTTP answers 503 with a
sentence; once it is back, the next turn on the same socket is answered and a new socket opens.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from websockets.typing import Origin

from tests.faults.conftest import FaultStack, ids_of, record, stack_down, stack_up
from tests.faults.private_postgres import PrivatePostgres, private_postgres, remove
from tests.faults.test_faults import Outcomes, open_socket
from tests.live import free_port, wait_healthy

pytestmark = pytest.mark.faults
AWAY = "The database is not answering right now; send that again in a moment."


@pytest.fixture(scope="module")
def pg_stack(
    tmp_path_factory: pytest.TempPathFactory, shapes_world: Path
) -> Iterator[tuple[FaultStack, PrivatePostgres]]:
    server = private_postgres(free_port())
    try:
        stack = stack_up(tmp_path_factory.mktemp("pg-faults"), shapes_world, server.url)
        try:
            yield stack, server
        finally:
            stack_down(stack)
    finally:
        remove(server)


def turn_frame(image: int, client_id: str) -> dict[str, Any]:
    return {"type": "turn.create", "client_id": client_id, "text": "make it red", "reference": {"image": image}}


def test_postgres_restarted_mid_conversation_on_an_idle_stack(pg_stack: tuple[FaultStack, PrivatePostgres]) -> None:
    stack, server = pg_stack
    images = sorted(ids_of(stack).values())
    api, conversation, out = open_socket(stack)
    first = out.send("make it green", images[0], "before")
    assert out.wait([first], timeout=60, settle=0) == {"lost": 0, "duplicated": 0, "failed": 0}

    cookie = "; ".join(f"{c.name}={c.value}" for c in api.http.cookies)
    server.stop()
    stopped = time.monotonic()
    # the open socket: a turn gets a sentence, and the socket stays open for the next frame
    out.ws.send(turn_frame(images[1], "while-away"))
    answer = out.read_until(lambda f: f.get("client_id") == "while-away", timeout=30)
    assert answer["type"] == "error" and answer["code"] == "unavailable", answer
    assert answer["error"] == AWAY
    # HTTP: a 503 with the sentence, for the API and for pages
    detail = api.request("GET", f"/api/conversations/{conversation['id']}")
    assert detail.status_code == 503 and detail.json() == {"detail": AWAY, "code": "unavailable"}, detail.text
    page = api.request("GET", f"/c/{conversation['id']}")
    assert page.status_code == 503 and AWAY in page.text, page.text[:500]
    # a socket opened meanwhile is told the same, and closed with "try again later" (the page reconnects)
    with connect(
        stack.ws_url + conversation["ws"], additional_headers={"Cookie": cookie}, origin=Origin(stack.base_url)
    ) as ws:
        told = json.loads(ws.recv(timeout=30))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=30)
    assert told == {"type": "error", "code": "unavailable", "error": AWAY}, told
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013, closed.value
    time.sleep(3)  # the socket's reconcile rounds meet the missing database meanwhile
    out.ws.send(turn_frame(images[1], "still-away"))
    again = out.read_until(lambda f: f.get("client_id") == "still-away", timeout=30)
    assert again["type"] == "error" and again["code"] == "unavailable", again
    away_s = time.monotonic() - stopped

    server.start()
    back = time.monotonic()
    after = out.send("make it blue", images[2], "after")  # the same socket, at once
    counts = out.wait([after], timeout=60, settle=0.5)
    answered_s = out.at[after] - back if after in out.at else None
    assert counts == {"lost": 0, "duplicated": 0, "failed": 0}, (counts, stack.logs())
    wait_healthy(stack, 30)
    fresh = Outcomes(api.socket(stack.ws_url, conversation["ws"]))
    later = fresh.send("make it smaller", images[3], "new-socket")
    assert fresh.wait([later], timeout=60, settle=0) == {"lost": 0, "duplicated": 0, "failed": 0}
    died = [name for name, p in stack.processes.items() if p.popen is None or p.popen.poll() is not None]
    assert not died, f"processes that did not live through the restart: {died}\n{stack.logs()}"
    statuses = [t["status"] for t in api.request("GET", f"/api/conversations/{conversation['id']}").json()["turns"]]
    assert sorted(statuses) == ["done"] * 3, statuses  # the turns sent while away were never taken
    record(
        "PostgreSQL stopped (fast shutdown) and started again, idle stack",
        away_s=round(away_s, 1),
        next_turn_answered_s=answered_s and round(answered_s, 1),
        lost=0,
        duplicated=0,
    )
    out.ws.close()
    fresh.ws.close()
