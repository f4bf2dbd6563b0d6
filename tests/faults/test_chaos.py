"""Chaos under load (issue 23): visitors at a person's pace (tests/faults/chaos_visitors.py) while, one after
another, the search worker is SIGKILLed, the index worker is SIGKILLed mid-reindex, the web server is
SIGKILLed, and Redis and PostgreSQL (a server the test owns, tests/faults/private_postgres.py) are restarted;
each killed process is started again a second later, as a supervisor would. Asserted: every turn of every
visitor is in the database exactly once and answered, none came twice on one socket, every turn waiting on
the server during a fault reached its page within 10 s of the fault's end, and the reindex job ended. The
table it prints (and appends to test-artifacts/faults/table.jsonl) is the README's "Chaos under load".

`CIR_CHAOS_VISITORS` (default 100) sets the visitors; each sends 10 turns."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.chaos_visitors import Visitor, pending_at, seen_between
from tests.faults.conftest import ARTIFACTS, SLUG, FaultStack, ids_of, record, stack_down, stack_up, wait_for
from tests.faults.private_postgres import PrivatePostgres, private_postgres, remove
from tests.live import free_port, wait_healthy

pytestmark = [pytest.mark.faults, pytest.mark.slow]
VISITORS, TURNS = int(os.environ.get("CIR_CHAOS_VISITORS", "100")), 10
PACE = (10.0, 18.0)  # seconds between a turn's outcome and the next: 100 visitors send about 7 turns a second
# seconds the load may take before the visitors are stopped: 240 cut two turns of the slowest visitor short on a
# clean clone's run (998 of 1,000 sent); they finish as soon as they are done, so a longer budget costs a calm run
# nothing
LOAD_BUDGET = 360.0
SETTLE = 10.0  # after each fault's end, before the next fault: the window the pages have to catch up
CATCH_UP = 10.0
ENDED = ("succeeded", "failed", "cancelled")


@pytest.fixture(scope="module")
def chaos_stack(
    tmp_path_factory: pytest.TempPathFactory, shapes_world: Path
) -> Iterator[tuple[FaultStack, PrivatePostgres]]:
    server = private_postgres(free_port())
    try:
        # the visitors all come from this machine's address: the visitor limits would refuse them, not the faults
        settings = {"CIR_RATELIMIT_ENABLE": "0", "CIR_TURN_EXPIRES": "120"}
        stack = stack_up(tmp_path_factory.mktemp("chaos"), shapes_world, server.url, settings)
        try:
            yield stack, server
        finally:
            stack_down(stack)
    finally:
        remove(server)


def ready_count(stack: FaultStack, name: str) -> int:
    return stack.processes[name].log.read_text(errors="replace").count(" ready.")


def restart_worker(stack: FaultStack, name: str) -> tuple[float, float]:
    """SIGKILL worker `name`, start it a second later; the moments of the kill and of its "ready" again."""
    before = ready_count(stack, name)
    killed = time.monotonic()
    stack.kill(name)
    time.sleep(1.0)
    stack.start(name)
    wait_for(lambda: ready_count(stack, name) > before, 90)
    return killed, time.monotonic()


def kill_search(stack: FaultStack, server: PrivatePostgres, notes: dict[str, Any]) -> tuple[float, float]:
    return restart_worker(stack, "search")


def kill_index_mid_reindex(stack: FaultStack, server: PrivatePostgres, notes: dict[str, Any]) -> tuple[float, float]:
    stack.faults(reindex_progress="sleep:0.7")  # each batch slow enough to kill the worker half-way
    stack.manage("reindex", SLUG)
    (job,) = stack.sql("select max(id) from catalog_reindexjob")[0]
    notes["job"] = job
    wait_for(lambda: stack.sql("select done from catalog_reindexjob where id = ?", job)[0][0] >= 40, 120)
    (notes["job_status_at_kill"],) = stack.sql("select status from catalog_reindexjob where id = ?", job)[0]
    stack.faults()
    notes["killed_at"] = time.time()  # the job's end is read from its row, stamped by the wall clock
    return restart_worker(stack, "index")


def kill_web(stack: FaultStack, server: PrivatePostgres, notes: dict[str, Any]) -> tuple[float, float]:
    killed = time.monotonic()
    stack.kill("web")
    time.sleep(1.0)
    stack.start("web")
    wait_healthy(stack, 60)
    return killed, time.monotonic()


def restart_redis(stack: FaultStack, server: PrivatePostgres, notes: dict[str, Any]) -> tuple[float, float]:
    killed = time.monotonic()
    stack.kill("redis")
    time.sleep(1.0)
    stack.start("redis")
    return killed, time.monotonic()


def restart_postgres(stack: FaultStack, server: PrivatePostgres, notes: dict[str, Any]) -> tuple[float, float]:
    stopping = time.monotonic()
    server.stop()
    time.sleep(3.0)
    server.start()
    return stopping, time.monotonic()


# each returns the fault's start (the kill, the stop) and its end (the process answering again)
FAULTS: list[tuple[str, Callable[[FaultStack, PrivatePostgres, dict[str, Any]], tuple[float, float]]]] = [
    ("search worker SIGKILLed, started 1 s later", kill_search),
    ("index worker SIGKILLed mid-reindex, started 1 s later", kill_index_mid_reindex),
    ("web server SIGKILLed, started 1 s later", kill_web),
    ("Redis stopped, started 1 s later (empty)", restart_redis),
    ("PostgreSQL stopped (fast shutdown), started 3 s later", restart_postgres),
]


def test_chaos_under_load_every_turn_once_every_page_catches_up(
    chaos_stack: tuple[FaultStack, PrivatePostgres],
) -> None:
    stack, server = chaos_stack
    images = sorted(ids_of(stack).values())
    stop = threading.Event()
    visitors = [Visitor(n, stack.base_url, stack.ws_url, SLUG, images) for n in range(VISITORS)]
    threads = [threading.Thread(target=v.run, args=(TURNS, PACE, 150.0, stop), daemon=True) for v in visitors]
    began = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(15)  # every visitor has arrived and sent a turn
    windows: list[tuple[str, float, float]] = []
    notes: dict[str, Any] = {}
    for name, fault in FAULTS:
        start, end = fault(stack, server, notes)
        windows.append((name, start, end))
        time.sleep(SETTLE)
    for t in threads:  # a visitor's 10 turns take 100-200 s at this pace, faults and a slow machine included
        t.join(timeout=max(1.0, LOAD_BUDGET - (time.monotonic() - began)))
    stop.set()
    load_s = time.monotonic() - began

    job = notes["job"]
    status, error, finished = wait_for(
        lambda: next(iter(r for r in stack.sql("select status, error, finished from catalog_reindexjob where id = ?",
                                                job) if r[0] in ENDED), None),
        120,
    )  # fmt: skip
    job_end_s = finished.timestamp() - notes["killed_at"]
    asks = [a for v in visitors for a in v.asks]
    stored = stack.sql(
        "select client_id, count(*), min(status), max(status) from conversations_turn "
        "where client_id like ? group by client_id",
        "v%",
    )
    copies = {cid: n for cid, n, _, _ in stored}
    statuses = {cid: (low, high) for cid, _, low, high in stored}
    expected = {f"v{n}-{i}" for n in range(VISITORS) for i in range(TURNS)}
    lost = sorted(expected - copies.keys()) + [a.client_id for a in asks if a.outcome is None]
    duplicated = {cid: n for cid, n in copies.items() if n > 1}
    on_socket = sum(v.duplicated for v in visitors)
    failed = {cid: s for cid, s in statuses.items() if s != ("done", "done")}
    rows = []
    for name, start, end in windows:
        waiting = pending_at(visitors, start, end)
        back = [a.at - end for a in waiting if a.at is not None]
        rows.append(
            {
                "fault": name,
                "down_s": round(end - start, 1),
                "turns_waiting": len(waiting),
                "via_http": sum(a.via == "http" for a in waiting),
                "users_saw": dict(seen_between(visitors, start, end + SETTLE)),
                "back_after_s": round(max(back), 1) if back else None,
                "not_back_in_10s": sum(a.at is None or a.at - end > CATCH_UP for a in waiting),
                "lost": sum(a.outcome is None or a.client_id not in copies for a in waiting),
                "duplicated": sum(copies.get(a.client_id, 0) > 1 for a in waiting),
                "failed": sum(a.client_id in failed for a in waiting),
            }
        )
    table = [
        "| fault | down (kill to answering), s | turns waiting | what users saw | back after (last turn) "
        "| not back in 10 s | lost | duplicated |",
        "|---|---|---|---|---|---|---|---|",
    ] + [
        f"| {r['fault']} | {r['down_s']} | {r['turns_waiting']} ({r['via_http']} read over HTTP) | "
        f"{', '.join(f'{k} x{n}' for k, n in sorted(r['users_saw'].items())) or 'nothing'} | "
        f"{r['back_after_s']} s | {r['not_back_in_10s']} | {r['lost']} | {r['duplicated']} |"
        for r in rows
    ]
    summary = (
        f"{VISITORS} visitors x {TURNS} turns in {load_s:.0f} s: {len(asks)} sent, lost {len(lost)}, duplicated "
        f"{len(duplicated)} in the database and {on_socket} on a socket, failed {len(failed)}, resent after the "
        f"server lost the frame {sum(a.sends > 1 for a in asks)}; reindex job {job} {status} {job_end_s:.1f} s "
        f"after its worker was killed (status at the kill: {notes['job_status_at_kill']})"
    )
    print("\n" + "\n".join(table) + "\n" + summary)
    shutil.copytree(stack.root / "logs", ARTIFACTS / "chaos-logs", dirs_exist_ok=True)  # what each process said
    for r in rows:
        record(f"chaos: {r['fault']}", **{k: v for k, v in r.items() if k != "fault"})
    record("chaos: the whole load", summary=summary)

    assert len(asks) == VISITORS * TURNS, f"visitors did not finish: {len(asks)} turns sent\n{stack.logs()}"
    assert not lost and not duplicated and not on_socket, (lost[:10], duplicated, on_socket)
    assert not failed, failed
    assert all(r["turns_waiting"] > 0 for r in rows), "a fault met no load"
    assert all(r["not_back_in_10s"] == 0 for r in rows), rows
    assert status == "succeeded" or (status == "failed" and error), (status, error)
