"""Real parts for integration and browser tests (fixtures made available by tests/conftest.py):
the Redis of the test settings, two `celery worker` processes (search and index queues) and the web
server (uvicorn, as `serve` runs it) on a free port, all sharing the test database file. Nothing is mocked.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from django.conf import settings

from cirweb.processes.webserver import web_command

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def database_url() -> str:
    from django.db import connection

    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = f"{db['USER']}:{db['PASSWORD']}@" if db["USER"] else ""
    return f"postgres://{auth}{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@dataclass
class Process:
    name: str
    command: list[str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str]) -> None:
        self.popen = subprocess.Popen(
            self.command,
            cwd=REPO,
            env=env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self, sig: int = signal.SIGTERM, wait: float = 15) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        os.killpg(self.popen.pid, sig)
        try:
            self.popen.wait(wait)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class LiveServices:
    base_url: str
    ws_url: str
    env: dict[str, str]
    processes: dict[str, Process] = field(default_factory=dict)

    def restart(self, name: str, sig: int = signal.SIGTERM) -> None:
        self.processes[name].stop(sig)
        self.processes[name].start(self.env)
        wait_healthy(self)

    def logs(self) -> str:
        return "\n".join(f"--- {n} ---\n{p.tail()}" for n, p in self.processes.items())


def celery_worker(queue: str, log_dir: Path, name: str = "") -> Process:
    """A worker of `queue`; `name` (default: the queue's) tells several workers of one queue apart."""
    name = name or queue
    return Process(
        name,
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "workers.app",
            "worker",
            "-Q",
            queue,
            "-n",
            f"{name}-test@%h",
            "--concurrency",
            "1",
            "--pool",
            "prefork",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel",
            "INFO",
            "--prefetch-multiplier",
            "1",
        ],
        log_dir / f"{name}.log",
    )


def sweeper(log_dir: Path) -> Process:
    return Process("sweep", [sys.executable, str(REPO / "manage.py"), "sweep"], log_dir / "sweep.log")


def web_server(port: int, log_dir: Path) -> Process:
    """The web server exactly as `manage.py serve` starts it (cirweb/processes/webserver.py)."""
    return Process("web", web_command(host="127.0.0.1", port=port), log_dir / "web.log")


def wait_healthy(live: LiveServices, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = requests.get(live.base_url + "/healthz", timeout=5)
            if last.status_code == 200:
                return
        except requests.RequestException as exc:
            last = exc
        time.sleep(0.5)
    raise RuntimeError(f"services did not become healthy: {getattr(last, 'text', last)}\n{live.logs()}")


@pytest.fixture(scope="session")
def live_services(django_db_blocker: Any) -> Iterator[LiveServices]:
    """Workers and the web server over the database the test process is configured with (a file under the
    throw-away CIR_DATA_DIR), migrated here. These tests talk to it through the product's own interfaces
    and read it outside any test transaction, as the processes they start do."""
    from django.core.management import call_command

    try:
        redis.Redis.from_url(settings.CIR_REDIS_URL, socket_timeout=2).flushdb()
    except redis.RedisError as exc:
        pytest.fail(f"integration tests need Redis at {settings.CIR_REDIS_URL} ({exc}); scripts/test starts one")
    port = free_port()
    log_dir = Path(settings.CIR_DATA_DIR) / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    with django_db_blocker.unblock():
        call_command("migrate", verbosity=0)
        db_url = database_url()
    env = {
        **os.environ,
        "CIR_TURN_EXPIRES": "15",  # short, so the test of a dead worker does not wait two minutes
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": db_url,
        "PYTHONUNBUFFERED": "1",
        "DJANGO_ALLOWED_HOSTS": "localhost,127.0.0.1",
    }
    live = LiveServices(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", env)
    live.processes = {
        "search": celery_worker("search", log_dir),
        "index": celery_worker("index", log_dir),
        "sweep": sweeper(log_dir),
        "web": web_server(port, log_dir),
    }
    for process in live.processes.values():
        process.start(env)
    try:
        wait_healthy(live)
        yield live
    finally:
        for process in live.processes.values():
            process.stop()


@dataclass
class ShapesCollection:
    slug: str
    world: Path
    split: str
    ids: dict[str, int]  # image name -> Image id
    scenes: dict[str, Any]


def create_collection(slug: str, world: Path, split: str) -> int:
    from cirweb.catalog.models import Collection
    from cirweb.catalog.services import reindex_job_start

    Collection.objects.filter(slug=slug).delete()
    collection = Collection.objects.create(
        slug=slug, name=slug.replace("-", " ").title(), source="shapes", source_path=str(world), source_split=split
    )
    return reindex_job_start(collection=collection, kind="full").pk


def wait_job(job_id: int, django_db_blocker: Any, seconds: float = 300) -> Any:
    from cirweb.catalog.models import ReindexJob

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with django_db_blocker.unblock():
            job = ReindexJob.objects.select_related("version").get(pk=job_id)
        if job.status in ReindexJob.FINISHED:
            return job
        time.sleep(0.2)
    raise AssertionError(f"reindex job {job_id} did not finish in {seconds}s")


@pytest.fixture(scope="session")
def shapes_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from retrieval.datasets.shapes_world import generate_world

    world = tmp_path_factory.mktemp("world")
    generate_world(world, 900, seed=11, show_progress=False, workers=1)
    return world


@pytest.fixture(scope="session")
def shapes(live_services: LiveServices, shapes_world: Path, django_db_blocker: Any) -> ShapesCollection:
    """The val split of a small held-out shapes world (180 images), indexed by the live index worker."""
    from cirweb.catalog.models import Image
    from retrieval.datasets.shapes_world import load_scenes

    with django_db_blocker.unblock():
        job_id = create_collection("shapes-test", shapes_world, "val")
    job = wait_job(job_id, django_db_blocker)
    assert job.status == "succeeded", f"{job.error}\n{live_services.logs()}"
    with django_db_blocker.unblock():
        ids = dict(Image.objects.filter(collection__slug="shapes-test").values_list("relpath", "pk"))
    return ShapesCollection("shapes-test", shapes_world, "val", ids, load_scenes(shapes_world, "val"))
