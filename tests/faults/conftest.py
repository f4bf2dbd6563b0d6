"""The fault suite's own stack: a Redis it owns (no persistence, so a restart loses everything, as in
production without persistence), its own SQLite database and data directory, a search worker, an index
worker, the sweep and the web server, all real processes started with the helpers of tests/live.py. Its own, so that
killing and restarting parts never disturbs the other suites' services (which may run in the same session).

Faults are injected by killing processes from the test, and at named points inside the workers through the
faults file (cirweb/processes/faults.py), which only the test settings enable."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from cirweb.processes.devservers import redis_command, wait_for_port
from tests.live import REPO, LiveServices, Process, celery_worker, free_port, sweeper, wait_healthy, web_server

ARTIFACTS = REPO / "test-artifacts" / "faults"
SLUG = "faults-shapes"


@dataclass
class FaultStack(LiveServices):
    root: Path = Path()
    db_path: Path = Path()
    redis_port: int = 0

    def faults(self, **points: str) -> None:
        """Arm named fault points (cirweb/processes/faults.py) in every process of the stack; none: disarm all."""
        self.env_faults_file.write_text(json.dumps({k.replace("_", "."): v for k, v in points.items()}))
        for fired in self.root.glob("faults.json.*.fired"):
            fired.unlink()

    @property
    def env_faults_file(self) -> Path:
        return Path(self.env["CIR_TEST_FAULTS_FILE"])

    def sql(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        """Read the stack's database directly (the test process's own Django uses another one); `?` marks
        the arguments, on SQLite as on PostgreSQL."""
        url = self.env["DATABASE_URL"]
        if url.startswith("postgres"):
            import psycopg

            with psycopg.connect(url.replace("postgres://", "postgresql://", 1), connect_timeout=10) as conn:
                return conn.execute(query.replace("?", "%s"), args).fetchall()  # type: ignore[arg-type]
        with sqlite3.connect(self.db_path, timeout=10) as conn:
            return conn.execute(query, args).fetchall()

    def manage(self, *args: str, timeout: float = 180) -> str:
        done = subprocess.run(
            [sys.executable, str(REPO / "manage.py"), *args],
            env=self.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def pool_children(self, name: str) -> list[int]:
        """Pids of the Celery pool processes under the main process of worker `name`."""
        popen = self.processes[name].popen
        assert popen is not None
        out = subprocess.run(["pgrep", "-P", str(popen.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def kill(self, name: str) -> None:
        """SIGKILL a process and everything it started (a crash, an OOM kill of the whole container)."""
        self.processes[name].stop(signal.SIGKILL)

    def start(self, name: str) -> None:
        self.processes[name].start(self.env)
        if name == "redis":
            assert wait_for_port(self.redis_port, 15), self.processes["redis"].tail()


def record(fault: str, **figures: Any) -> None:
    """One row of the closing table (README "Faults"), kept under test-artifacts/faults/."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with (ARTIFACTS / "table.jsonl").open("a") as out:
        out.write(json.dumps({"fault": fault, **figures}) + "\n")
    print(f"\nFAULT {fault}: {figures}")


def stack_up(root: Path, world: Path, database_url: str = "", settings: dict[str, str] | None = None) -> FaultStack:
    """A whole stack under `root` (its data, logs and Redis) on the database `database_url` (default: a SQLite
    file under `root`), migrated, with the collection SLUG indexed and every process started, its environment
    with `settings` on top; the caller stops them (`stack_down`)."""
    data, logs = root / "data", root / "logs"
    data.mkdir()
    logs.mkdir()
    redis_port, web_port = free_port(), free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "CIR_TEST_DATA_DIR": str(data),
        "DATABASE_URL": database_url or f"sqlite:///{root / 'db.sqlite3'}",
        "CIR_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "CIR_TEST_FAULTS_FILE": str(root / "faults.json"),
        "CIR_TURN_EXPIRES": "60",
        "CIR_REINDEX_CHUNK": "40",
        "CIR_SWEEP_EVERY": "1",
        "CIR_TURNS_IN_FLIGHT": "20",  # these tests queue several turns of one visitor on purpose
        "PYTHONUNBUFFERED": "1",
        "DJANGO_ALLOWED_HOSTS": "localhost,127.0.0.1",
        **(settings or {}),
    }
    stack = FaultStack(
        f"http://127.0.0.1:{web_port}", f"ws://127.0.0.1:{web_port}", env, root=root, db_path=root / "db.sqlite3"
    )
    stack.redis_port = redis_port
    stack.faults()
    stack.processes = {
        "redis": Process("redis", redis_command(redis_port, root / "redis"), logs / "redis.log"),
        "search": celery_worker("search", logs),
        "index": celery_worker("index", logs),
        "sweep": sweeper(logs),
        "web": web_server(web_port, logs),
    }
    stack.manage("migrate", "--verbosity", "0")
    stack.manage(
        "shell",
        "-c",
        "from cirweb.catalog.models import Collection; Collection.objects.create("
        f"slug={SLUG!r}, name='Faults', source='shapes', source_path={str(world)!r}, source_split='val')",
    )
    stack.manage("reindex", SLUG, "--inline")
    try:
        for process in stack.processes.values():
            stack.start(process.name)
        wait_healthy(stack)
    except BaseException:
        stack_down(stack)
        raise
    return stack


def stack_down(stack: FaultStack) -> None:
    for process in reversed(stack.processes.values()):
        process.stop()


@pytest.fixture(scope="session")
def fault_stack(tmp_path_factory: pytest.TempPathFactory, shapes_world: Path) -> Iterator[FaultStack]:
    stack = stack_up(tmp_path_factory.mktemp("faults"), shapes_world)
    try:
        yield stack
    finally:
        stack_down(stack)


@pytest.fixture
def stack(fault_stack: FaultStack) -> Iterator[FaultStack]:
    """The stack with no fault armed, every process running, and Redis answering."""
    fault_stack.faults()
    for process in fault_stack.processes.values():
        if process.popen is None or process.popen.poll() is not None:
            fault_stack.start(process.name)
    redis.Redis(port=fault_stack.redis_port, socket_timeout=2).ping()
    wait_healthy(fault_stack)
    yield fault_stack
    fault_stack.faults()


def ids_of(stack: FaultStack) -> dict[str, int]:
    rows = stack.sql(
        "select relpath, catalog_image.id from catalog_image join catalog_collection c on c.id = collection_id "
        "where c.slug = ?",
        SLUG,
    )
    return dict(rows)


def wait_for(condition: Any, seconds: float, every: float = 0.2) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"not within {seconds}s")
