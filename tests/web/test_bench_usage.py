"""`bench_pipeline` tells what limits the rate by how busy each process of `serve` was: the accounting follows
a process's whole tree (Celery's pool children, threads) and names each by its role."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from cirweb.processes.core_budget import beside_text, core_budget
from cirweb.processes.load_client import settled, usage_by_role

BURN = "import time\nend = time.process_time() + 1.5\nwhile time.process_time() < end: pass\n"
# The parent starts the burner marked as a web process, as `serve` starts uvicorn; the mark is assembled so
# that the parent's own command line does not carry it.
PARENT = (
    "import subprocess, sys; subprocess.run([sys.executable, '-c', sys.argv[1], 'cirweb.processes.' + 'webserver'])"
)


@pytest.mark.skipif(not os.path.exists("/proc/self/schedstat"), reason="reads Linux's /proc")
def test_usage_counts_descendants_by_role() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT, BURN], start_new_session=True)
    try:
        time.sleep(0.5)
        before = usage_by_role(parent.pid)
        time.sleep(0.4)
        after = usage_by_role(parent.pid)
    finally:
        parent.wait(10)
    assert set(after) == {"web", "other"}  # the burner and its parent
    used = after["web"][0] - before["web"][0]
    assert 0.2 <= used <= 0.5, (before, after)
    assert usage_by_role(parent.pid) == {}  # gone: nothing left to count


def test_the_cores_allow_their_count_over_the_cpu_of_one_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    """100 turns that cost 20 ms of search, 4 of web and 1 of Redis (the client's 3 are not the product's):
    2 cores allow 2 / 0.025 s = 80 turns a second; 60 measured is 0.75 of it."""
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    budget = core_budget({"search": 2.0, "web": 0.4, "redis": 0.1, "client": 0.3}, 100, 60.0)
    assert budget["cpu_ms_per_turn"] == {"client": 3.0, "redis": 1.0, "search": 20.0, "web": 4.0}
    assert budget["cpu_ms_per_turn_product"] == 25.0
    assert (budget["cores"], budget["turns_per_second_allowed"], budget["share_of_allowed"]) == (2, 80.0, 0.75)
    assert core_budget({}, 0, 0.0)["share_of_allowed"] is None  # nothing counted: no ceiling to compare with


def test_the_in_process_turn_is_shown_with_each_levels_gap_to_it() -> None:
    turn = {"arch": "RN50x4", "count": 100000, "total_p50_ms": 14.1, "text_p50_ms": 8.3, "combine_p50_ms": 3.5}
    turn |= {"search_p50_ms": 1.5, "naive_p50_ms": 188.7}
    rows = [{"concurrency": 1, "e2e_ms": {"p50": 32.3}}, {"concurrency": 32, "e2e_ms": {"p50": 652.4}}]
    text = beside_text(turn, rows)
    assert "(RN50x4, 100,000 images): turn p50 14.1 ms" in text and "1: +18.2 ms, 32: +638.3 ms" in text


@pytest.mark.skipif(not os.path.exists("/proc/self/schedstat"), reason="reads Linux's /proc")
def test_measuring_starts_once_the_served_processes_are_idle() -> None:
    """A worker still loading its models after the server answers would charge its start-up to the first
    level's turns: `settled` waits out a process tree that burns CPU, and returns at once for an idle one."""
    burning = subprocess.Popen([sys.executable, "-c", PARENT, BURN], start_new_session=True)
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(20)"], start_new_session=True)
    try:
        time.sleep(0.3)
        started = time.monotonic()
        settled(burning.pid, longest=15)
        assert time.monotonic() - started >= 0.8 and burning.wait(3) == 0  # it waited for the burn to end
        started = time.monotonic()
        settled(idle.pid, longest=15)
        assert time.monotonic() - started < 5
    finally:
        idle.kill()
        idle.wait(5)
