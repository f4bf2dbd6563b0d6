"""Faults with real processes: every accepted turn comes back exactly once, jobs end, the page never spins.

Each test injects one fault into the fault stack (tests/faults/conftest.py), then counts what the sockets
received: `lost` turns (no outcome at all), `duplicated` ones (an outcome twice on one socket), and
`failed` ones (an outcome, but a sentence instead of results). Figures go to test-artifacts/faults/.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections import Counter
from typing import Any

import pytest
import redis

from tests.faults.conftest import SLUG, FaultStack, ids_of, record, wait_for
from tests.integration.clients import Api, Socket

pytestmark = pytest.mark.faults


class Outcomes:
    """Reads a socket and tallies turn outcomes per (turn, offset)."""

    def __init__(self, ws: Socket) -> None:
        self.ws = ws
        self.seen: Counter[tuple[int, int]] = Counter()
        self.failed: dict[int, str] = {}
        self.at: dict[int, float] = {}
        self.frames: list[dict[str, Any]] = []

    def send(self, text: str, image: int, client_id: str, **extra: Any) -> int:
        self.ws.send(
            {"type": "turn.create", "client_id": client_id, "text": text, "reference": {"image": image}, **extra}
        )
        answer = self.read_until(lambda f: f["type"] in ("turn.accepted", "error") and f.get("client_id") == client_id)
        assert answer["type"] == "turn.accepted", f"turn refused: {answer}"
        return int(answer["turn"])

    def read_until(self, match: Any, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            frame = self.ws.receive(max(0.05, deadline - time.monotonic()))
            self._tally(frame)
            if match(frame):
                return frame

    def _tally(self, frame: dict[str, Any]) -> None:
        self.frames.append(frame)
        if frame["type"] == "turn.results":
            self.seen[(frame["turn"], frame["offset"])] += 1
            self.at.setdefault(frame["turn"], time.monotonic())
        elif frame["type"] == "turn.failed":
            self.seen[(frame["turn"], -1)] += 1
            self.failed[frame["turn"]] = frame["error"]
            self.at.setdefault(frame["turn"], time.monotonic())

    def wait(self, turns: list[int], timeout: float, settle: float = 3.0) -> dict[str, int]:
        """Read until every turn has an outcome (or `timeout`), then `settle` seconds more for duplicates."""
        deadline = time.monotonic() + timeout
        while any(t not in self.at for t in turns) and time.monotonic() < deadline:
            try:
                self._tally(self.ws.receive(max(0.05, deadline - time.monotonic())))
            except TimeoutError:
                break
        end = time.monotonic() + settle
        while time.monotonic() < end:
            try:
                self._tally(self.ws.receive(max(0.05, end - time.monotonic())))
            except TimeoutError:
                break
        return {
            "lost": sum(t not in self.at for t in turns),
            "duplicated": sum(n - 1 for key, n in self.seen.items() if key[0] in turns and n > 1),
            "failed": sum(t in self.failed for t in turns),
        }


def open_socket(stack: FaultStack) -> tuple[Api, dict[str, Any], Outcomes]:
    api = Api(stack.base_url)
    conversation = api.conversation(SLUG)
    return api, conversation, Outcomes(api.socket(stack.ws_url, conversation["ws"]))


def stored_statuses(api: Api, conversation: dict[str, Any]) -> Counter[str]:
    turns = api.request("GET", f"/api/conversations/{conversation['id']}").json()["turns"]
    return Counter(t["status"] for t in turns)


def test_search_worker_pool_child_then_main_process_killed_mid_turn(stack: FaultStack) -> None:
    ids = ids_of(stack)
    api, conversation, out = open_socket(stack)
    stack.faults(turn_claimed="sleep:1.5")  # each turn is mid-way for 1.5 s: room to kill it there
    for victim in ("pool child", "main process"):
        turns = [out.send(f"make it red {victim} {i}", ids[f"dev-{i}-0"], f"{victim}-{i}") for i in range(5)]
        in_flight = out.read_until(lambda f: f["type"] == "turn.progress" and f.get("stage") == "encoding")["turn"]
        killed = time.monotonic()
        if victim == "pool child":
            for pid in stack.pool_children("search"):  # the main process stays and forks a new child
                os.kill(pid, signal.SIGKILL)
        else:
            stack.kill("search")
            time.sleep(1.0)  # what a supervisor does: start it again
            stack.start("search")
        counts = out.wait(turns, timeout=90)
        record(
            f"SIGKILL search worker {victim} mid-turn (5 turns of 1.5 s queued)",
            killed_turn_back_s=round(out.at.get(in_flight, killed) - killed, 1),
            all_back_s=round(max(out.at.get(t, killed) for t in turns) - killed, 1),
            **counts,
        )
        assert counts == {"lost": 0, "duplicated": 0, "failed": 0}, (counts, out.failed, stack.logs())
    assert stored_statuses(api, conversation) == {"done": 10}
    out.ws.close()


def test_worker_killed_after_commit_before_publish(stack: FaultStack) -> None:
    ids = ids_of(stack)
    api, conversation, out = open_socket(stack)
    second_tab = Outcomes(api.socket(stack.ws_url, conversation["ws"]))  # every open socket gets it
    stack.faults(turn_committed="kill-once")
    sent = time.monotonic()
    turn = out.send("make the circle blue", ids["dev-20-0"], "commit-then-die")
    counts = out.wait([turn], timeout=30)
    assert second_tab.wait([turn], timeout=10) == {"lost": 0, "duplicated": 0, "failed": 0}
    second_tab.ws.close()
    took = out.at[turn] - sent if turn in out.at else None
    record("search worker killed after its commit, before its publish", recover_s=took and round(took, 1), **counts)
    assert counts == {"lost": 0, "duplicated": 0, "failed": 0}, (counts, stack.logs())
    assert took is not None and took < 5.0, f"results reached the socket after {took:.1f}s"
    assert stack.root.joinpath("faults.json.turn.committed.fired").exists(), "the fault never fired"
    later = out.send("make it smaller", ids["dev-21-0"], "after")  # the worker's replacement answers
    assert out.wait([later], timeout=60) == {"lost": 0, "duplicated": 0, "failed": 0}
    assert stored_statuses(api, conversation) == {"done": 2}
    out.ws.close()


def test_redis_restarted_and_flushed_mid_conversation(stack: FaultStack) -> None:
    ids = ids_of(stack)
    api, conversation, out = open_socket(stack)
    first = out.send("make it green", ids["dev-10-0"], "before")
    assert out.wait([first], timeout=30, settle=0)["lost"] == 0
    # a turn in flight when Redis goes away: its publish is lost, its result is in the database
    stack.faults(turn_claimed="sleep:2")
    during = out.send("make it red", ids["dev-11-0"], "during")
    out.read_until(lambda f: f["type"] == "turn.progress" and f.get("stage") == "encoding")
    stack.kill("redis")
    down = time.monotonic()
    time.sleep(1.0)
    stack.start("redis")
    stack.faults()
    counts = out.wait([during], timeout=30, settle=0)
    back = round(out.at[during] - down, 1) if during in out.at else None
    record("Redis stopped and started (empty) mid-turn", recover_s=back, **counts)
    assert counts == {"lost": 0, "duplicated": 0, "failed": 0}, (counts, stack.logs())
    # the same socket goes on: a new turn comes back; a new socket is accepted
    t0 = time.monotonic()
    after = out.send("make it blue", ids["dev-12-0"], "after-restart")
    counts = out.wait([after], timeout=30)
    record(
        "turn sent on the open socket right after the Redis restart", recover_s=round(out.at[after] - t0, 1), **counts
    )
    assert counts == {"lost": 0, "duplicated": 0, "failed": 0}, (counts, stack.logs())
    other = api.socket(stack.ws_url, conversation["ws"])
    other.close()
    # flushed (what a restart does to group memberships): the next turn still reaches the socket
    redis.Redis(port=stack.redis_port, socket_timeout=5).flushall()
    t0 = time.monotonic()
    flushed = out.send("make it yellow", ids["dev-13-0"], "after-flush")
    counts = out.wait([flushed], timeout=30)
    took = out.at[flushed] - t0
    record("Redis flushed, then a turn on the open socket", recover_s=round(took, 1), **counts)
    assert counts == {"lost": 0, "duplicated": 0, "failed": 0} and took < 10, (counts, took)
    assert stored_statuses(api, conversation) == {"done": 4}
    out.ws.close()


def test_index_worker_killed_mid_reindex_resumes_and_the_old_version_serves(stack: FaultStack) -> None:
    ids = ids_of(stack)
    (active_before,) = stack.sql("select active_version_id from catalog_collection where slug = ?", SLUG)[0]
    count_versions = (
        "select count(*) from catalog_indexversion v join catalog_collection c on c.id = v.collection_id "
        "where c.slug = ?"
    )
    (versions_before,) = stack.sql(count_versions, SLUG)[0]  # other tests of the stack may have built some
    (serving,) = stack.sql("select number from catalog_indexversion where id = ?", active_before)[0]
    stack.faults(reindex_progress="sleep:0.7")  # each batch: slow enough to be killed half-way
    stack.manage("reindex", SLUG)  # queued for the index worker
    (job,) = stack.sql("select max(id) from catalog_reindexjob")[0]
    wait_for(lambda: stack.sql("select done from catalog_reindexjob where id = ?", job)[0][0] >= 80, 120)
    chunks = "select number, status, worker, attempts from catalog_reindexchunk where job_id = ?"
    made_before = {n: worker for n, status, worker, _ in stack.sql(chunks, job) if status == "done"}
    stack.kill("index")
    (status_at_kill,) = stack.sql("select status from catalog_reindexjob where id = ?", job)[0]
    assert status_at_kill == "running", f"the job ended ({status_at_kill}) before its worker could be killed"
    killed = time.monotonic()
    api, conversation, out = open_socket(stack)
    turns = [out.send("make it red", ids[f"dev-{14 + i}-0"], f"while-down-{i}") for i in range(3)]
    assert out.wait(turns, timeout=30, settle=0) == {"lost": 0, "duplicated": 0, "failed": 0}
    assert stack.sql(count_versions, SLUG)[0][0] == versions_before, "a half-built version was registered"
    detail = api.request("GET", f"/api/conversations/{conversation['id']}").json()
    assert {t["index_version"] for t in detail["turns"]} == {serving}, "the old version did not serve meanwhile"
    stack.faults()
    time.sleep(1.0)
    stack.start("index")
    status, attempts, error = wait_for(
        lambda: next(
            (
                r
                for r in stack.sql("select status, attempts, error from catalog_reindexjob where id = ?", job)
                if r[0] in ("succeeded", "failed", "cancelled")
            ),
            None,
        ),
        180,
    )
    ended = time.monotonic() - killed
    log = stack.processes["index"].log.read_text(errors="replace")
    found = re.search(rf"reindex job {job}: (\d+) chunks reused", log)
    reused = int(found.group(1)) if found else 0
    record(
        "SIGKILL index worker mid-reindex",
        job_end_s=round(ended, 1),
        status=status,
        attempts=attempts,
        chunks_reused=reused,
        lost=0,
        duplicated=0,
    )
    assert status == "succeeded", (error, stack.logs())
    assert attempts == 2 and reused >= 1, log[-3000:]  # resumed from what the killed worker wrote
    after = {n: (worker, tries) for n, _, worker, tries in stack.sql(chunks, job)}
    assert made_before and all(after[n] == (w, 1) for n, w in made_before.items()), (made_before, after)
    (active_after,) = stack.sql("select active_version_id from catalog_collection where slug = ?", SLUG)[0]
    assert active_after != active_before
    out.ws.close()
