"""Two hosts on one machine (issue 13): each with its own data directory, cache and mount point of the
images, sharing one broker (a private Redis), one database and one shared store.

- host A runs the web server, the sweep and an index worker; host B runs an index worker;
- a reindex queued from A is made by both index workers (the job's chunk rows say who made each chunk);
  the worker that built the version has it in its host's cache;
- the only search worker is then started on the other host, whose cache never held the version: a turn
  asked on A is answered there, from the version fetched from the store into that host's cache;
- the same collection rebuilt by one process alone (`reindex --inline`) holds the same features and answers
  the same results.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from cirweb.processes.devservers import redis_command, wait_for_port
from retrieval.datasets.shapes_world import generate_world
from tests.integration.clients import Api
from tests.live import REPO, LiveServices, Process, celery_worker, free_port, sweeper, web_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHUNK = 12  # images per chunk: the val split of the world below makes about ten


class Deployment:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.shared = root / "shared"
        self.redis_port = free_port()
        self.processes: dict[str, Process] = {}
        self.envs: dict[str, dict[str, str]] = {}

    def host_env(self, name: str, images: Path, models: Path) -> dict[str, str]:
        """A host: its own data directory and cache, the images and models wherever it mounts them; the
        broker, the database and the store shared."""
        data = self.root / name
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CIR_", "DJANGO_", "DATABASE_URL"))}
        env.update(
            DJANGO_SETTINGS_MODULE="cirweb.settings",
            DJANGO_ALLOWED_HOSTS="localhost,127.0.0.1",
            DJANGO_SECRET_KEY="two-hosts-test",  # every web host of one deployment signs with the same key
            DATABASE_URL=f"sqlite:///{self.shared / 'cirweb.sqlite3'}",
            CIR_REDIS_URL=f"redis://127.0.0.1:{self.redis_port}/0",
            CIR_STORE_URL=str(self.shared / "store"),
            CIR_DATA_DIR=str(data),
            CIR_CACHE_DIR=str(data / "cache"),
            CIR_SOURCE_ROOTS=str(images),
            CIR_MODEL_ROOTS=str(models),
            CIR_CLIP_MODEL=str(models / "shapes-clip.pt"),
            CIR_COMBINER=str(models / "shapes-combiner.pt"),
            CIR_REINDEX_CHUNK=str(CHUNK),
            CIR_RATELIMIT_ENABLE="0",
            PYTHONUNBUFFERED="1",
        )
        self.envs[name] = env
        return env

    def start(self, name: str, process: Process, host: str) -> Process:
        self.processes[name] = process
        process.start(self.envs[host])
        return process

    def manage(self, host: str, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, str(REPO / "manage.py"), *args],
            cwd=REPO,
            env=self.envs[host],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def sql(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.shared / "cirweb.sqlite3", timeout=30) as db:
            return db.execute(query, args).fetchall()

    def pool(self, name: str) -> set[int]:
        popen = self.processes[name].popen
        assert popen is not None
        out = subprocess.run(["pgrep", "-P", str(popen.pid)], capture_output=True, text=True).stdout
        return {int(p) for p in out.split()}

    def logs(self) -> str:
        return "\n".join(f"--- {n} ---\n{p.tail()}" for n, p in self.processes.items())

    def stop(self) -> None:
        for process in self.processes.values():
            process.stop()


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    deployment = Deployment(tmp_path)
    deployment.shared.mkdir()
    redis = Process("redis", redis_command(deployment.redis_port, deployment.shared), deployment.shared / "redis.out")
    deployment.processes["redis"] = redis
    redis.start(dict(os.environ))
    assert wait_for_port(deployment.redis_port), redis.tail()
    try:
        yield deployment
    finally:
        deployment.stop()


def wait(predicate: Any, seconds: float, what: str, deployment: Deployment) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.3)
    raise AssertionError(f"{what} did not happen in {seconds}s\n{deployment.logs()}")


def finished_job(deployment: Deployment, job: int) -> tuple[str, str] | None:
    rows = deployment.sql("select status, error from catalog_reindexjob where id = ?", job)
    return rows[0] if rows and rows[0][0] in ("succeeded", "failed", "cancelled") else None


def active_version(deployment: Deployment) -> tuple[int, str]:
    return deployment.sql(
        "select v.number, v.path from catalog_indexversion v join catalog_collection c on c.active_version_id = v.id"
        " where c.slug = 'shapes'"
    )[0]


def api_up(base_url: str) -> bool:
    try:
        return requests.get(base_url + "/livez", timeout=5).status_code == 200
    except requests.RequestException:
        return False


def search(api: Api, reference: int) -> list[tuple[int, float]]:
    body = {"collection": "shapes", "reference": {"image": reference}, "text": "make it red", "k": 20}
    answer = api.request("POST", "/api/search", json=body)
    assert answer.status_code == 200, answer.text
    return [(r["image"], r["score"]) for r in answer.json()["results"]]


CREATE = """
from cirweb.catalog.admin import CollectionForm
form = CollectionForm(data={"name": "Shapes", "slug": "shapes", "source": "shapes", "source_path": %r,
                            "source_split": "val", "encoder": "", "combiner": ""})
assert form.is_valid(), form.errors
form.save()
"""


def test_two_hosts_share_a_reindex_and_a_new_host_answers_from_an_empty_cache(deployment: Deployment) -> None:
    root = deployment.root
    models_a, models_b = root / "a" / "models", root / "b" / "opt" / "cirweb-models"
    for models in (models_a, models_b):  # each host has its own copy of the weights, at its own path
        models.mkdir(parents=True)
        for name in ("shapes-clip.pt", "shapes-combiner.pt", "manifest.json"):
            shutil.copy2(REPO / "models" / "shapes" / name, models / name)
    generate_world(root / "a" / "worlds" / "shapes", 600, seed=5, show_progress=False, workers=1)
    shutil.copytree(root / "a" / "worlds", root / "b" / "mnt" / "images")  # the same images, mounted elsewhere
    deployment.host_env("a", root / "a" / "worlds", models_a)
    deployment.host_env("b", root / "b" / "mnt" / "images", models_b)

    deployment.manage("a", "migrate", "--verbosity", "0")
    deployment.manage("a", "shell", "-c", CREATE % str(root / "a" / "worlds" / "shapes"))
    port = free_port()
    web = deployment.start("web", web_server(port, root / "a"), "a")
    deployment.start("sweep", sweeper(root / "a"), "a")
    index_a = deployment.start("index-a", celery_worker("index", root / "a", name="index-a"), "a")
    index_b = deployment.start("index-b", celery_worker("index", root / "b", name="index-b"), "b")
    for worker in (index_a, index_b):  # both listen before the job is queued
        wait(lambda w=worker: "ready." in w.tail(200), 120, f"{worker.log} ready", deployment)
    live = LiveServices(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", deployment.envs["a"], {"web": web})
    wait(lambda: api_up(live.base_url), 120, "the web server", deployment)  # /healthz waits for a search worker

    deployment.manage("a", "reindex", "shapes")  # queued, for whichever index workers take it
    job = int(deployment.sql("select max(id) from catalog_reindexjob")[0][0])
    status, error = wait(lambda: finished_job(deployment, job), 300, "the shared reindex", deployment)
    assert status == "succeeded", (error, deployment.logs())
    pools = {"a": deployment.pool("index-a"), "b": deployment.pool("index-b")}
    makers = {
        number: next((host for host, pids in pools.items() if int(worker.rpartition(":")[2]) in pids), worker)
        for number, worker in deployment.sql("select number, worker from catalog_reindexchunk where job_id = ?", job)
    }
    assert len(makers) >= 8 and set(makers.values()) == {"a", "b"}, (makers, deployment.logs())
    number, key = active_version(deployment)
    assert key == f"collections/shapes/v{number}"  # a key of the shared store, not a path of either host

    builders = [host for host in ("a", "b") if (root / host / "cache" / key).exists()]
    assert len(builders) == 1, builders  # the host whose worker built the version has it in its cache
    other = "b" if builders == ["a"] else "a"
    searcher = deployment.start("search", celery_worker("search", root / other, name=f"search-{other}"), other)
    wait(lambda: "ready." in searcher.tail(200), 120, "the search worker ready", deployment)
    cache = root / other / "cache"
    assert not (cache / key).exists()  # the search worker's host has never held this version
    api = Api(live.base_url)
    reference = api.request("GET", "/api/collections/shapes/images").json()["images"][5]["id"]
    conversation = api.conversation("shapes")
    ws = api.socket(live.ws_url, conversation["ws"])
    _, turn = ws.turn("make the circle red", {"image": reference}, exclude_seen=False)
    ws.close()
    assert turn["results"] and (cache / key / "index.faiss").is_file()  # fetched from the store into its cache
    shared_build = search(api, reference)
    shared_features = np.load(cache / key / "features.npy")

    deployment.manage("a", "reindex", "shapes", "--inline")  # the same collection, built by one process alone
    number_one, key_one = active_version(deployment)
    assert number_one == number + 1
    one_process = search(api, reference)  # the same search worker, now on version number + 1
    assert [i for i, _ in one_process] == [i for i, _ in shared_build]
    np.testing.assert_allclose([s for _, s in one_process], [s for _, s in shared_build], atol=1e-5)
    np.testing.assert_allclose(np.load(cache / key_one / "features.npy"), shared_features, atol=1e-5)
    np.testing.assert_array_equal(np.load(cache / key_one / "ids.npy"), np.load(cache / key / "ids.npy"))
    for database in deployment.shared.glob("cirweb.sqlite3*"):
        for host in ("a", "b"):
            assert str(root / host).encode() not in database.read_bytes(), f"the database names a path of {host}"
