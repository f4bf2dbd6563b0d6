"""A reindex shared by two index workers (the fault stack's, and a second one started here): both make
chunks, the version is the one a single process builds, and a chunk whose worker is killed is made by the
other. Who made each chunk is read from the job's chunk rows (their `worker` once done)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from retrieval.index.versions import LoadedVersion, load_version
from tests.faults.conftest import SLUG, FaultStack, ids_of, record, wait_for
from tests.integration.clients import Api
from tests.live import Process, celery_worker

pytestmark = pytest.mark.faults


@pytest.fixture
def second_worker(stack: FaultStack) -> Iterator[Process]:
    """A second index worker, not started yet (`start_second`); stopped and forgotten afterwards."""
    worker = celery_worker("index", stack.processes["index"].log.parent, name="index2")
    stack.processes["index2"] = worker
    yield worker
    worker.stop()
    del stack.processes["index2"]


def start_second(stack: FaultStack, worker: Process) -> None:
    before = worker.log.read_text(errors="replace").count("index2-test@") if worker.log.exists() else 0
    stack.start("index2")
    wait_for(lambda: worker.log.read_text(errors="replace").count("index2-test@") > before, 90)


@pytest.fixture(scope="module")
def one_process_build(fault_stack: FaultStack) -> dict[str, Any]:
    """A version built by one process alone (`reindex --inline`: no chunk task sent), and the answer to a
    query while it is active."""
    fault_stack.faults()
    fault_stack.manage("reindex", SLUG, "--inline")
    _, key = latest_version(fault_stack)
    return {"version": load_version(store_folder(fault_stack, key)), "answer": query(fault_stack)}


def latest_version(stack: FaultStack) -> tuple[int, str]:
    rows = stack.sql(
        "select v.number, v.path from catalog_indexversion v join catalog_collection c on c.id = v.collection_id "
        "where c.slug = ? and c.active_version_id = v.id",
        SLUG,
    )
    return rows[0]


def store_folder(stack: FaultStack, key: str) -> Path:
    return stack.root / "data" / "store" / key


def query(stack: FaultStack) -> list[tuple[int, float]]:
    reference = ids_of(stack)["dev-3-0"]
    body = {"collection": SLUG, "reference": {"image": reference}, "text": "make it red", "mode": "combiner", "k": 24}
    answer = Api(stack.base_url).request("POST", "/api/search", json=body)
    assert answer.status_code == 200, answer.text
    return [(r["image"], r["score"]) for r in answer.json()["results"]]


def start_job(stack: FaultStack) -> int:
    stack.manage("reindex", SLUG)  # queued for the index workers
    return int(stack.sql("select max(id) from catalog_reindexjob")[0][0])


def wait_job(stack: FaultStack, job: int) -> tuple[str, int, str]:
    return wait_for(
        lambda: next(
            (
                r
                for r in stack.sql("select status, attempts, error from catalog_reindexjob where id = ?", job)
                if r[0] in ("succeeded", "failed", "cancelled")
            ),
            None,
        ),
        240,
    )


def chunk_rows(stack: FaultStack, job: int) -> list[tuple[int, str, str, int]]:
    return stack.sql("select number, status, worker, attempts from catalog_reindexchunk where job_id = ?", job)


def worker_of(stack: FaultStack, identity: str) -> str:
    """Which worker ("index" or "index2") the pool process `host:pid` belongs to."""
    pid = int(identity.rpartition(":")[2])
    return next((name for name in ("index", "index2") if pid in stack.pool_children(name)), f"gone ({identity})")


def assert_same_as_one_process(built: LoadedVersion, one: dict[str, Any], answer: list[tuple[int, float]]) -> None:
    reference: LoadedVersion = one["version"]
    np.testing.assert_array_equal(built.ids, reference.ids)
    np.testing.assert_allclose(built.features, reference.features, atol=1e-5)
    queries = np.array(reference.features[:20], np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    assert (built.index.search(queries, 10)[1] == reference.index.search(queries, 10)[1]).all()
    assert [i for i, _ in answer] == [i for i, _ in one["answer"]]
    np.testing.assert_allclose([s for _, s in answer], [s for _, s in one["answer"]], atol=1e-4)


def test_two_index_workers_share_a_reindex_and_build_what_one_process_builds(
    stack: FaultStack, second_worker: Process, one_process_build: dict[str, Any]
) -> None:
    start_second(stack, second_worker)
    stack.faults(reindex_progress="sleep:0.5")  # chunks long enough for both workers to take some
    started = time.monotonic()
    job = start_job(stack)
    status, _, error = wait_job(stack, job)
    assert status == "succeeded", (error, stack.logs())
    rows = chunk_rows(stack, job)
    makers = {number: worker_of(stack, worker) for number, _, worker, _ in rows}
    record(
        "reindex shared by two index workers",
        job_s=round(time.monotonic() - started, 1),
        chunks=len(rows),
        by_index=sum(m == "index" for m in makers.values()),
        by_index2=sum(m == "index2" for m in makers.values()),
    )
    assert {status for _, status, _, _ in rows} == {"done"} and len(rows) == 5  # 180 images, chunks of 40
    assert set(makers.values()) == {"index", "index2"}, (makers, stack.logs())
    stack.faults()
    _, key = latest_version(stack)
    assert_same_as_one_process(load_version(store_folder(stack, key)), one_process_build, query(stack))
    assert not store_folder(stack, f"jobs/{job}").exists(), "the job's chunk files outlived it"


def test_a_killed_chunk_workers_chunk_is_made_by_the_other(
    stack: FaultStack, second_worker: Process, one_process_build: dict[str, Any]
) -> None:
    # the coordinator waits after sending the chunk tasks, so the second worker (started once the job is
    # taken) finds chunks to take; every chunk is slow enough to be killed mid-way
    stack.faults(reindex_planned="sleep:25", reindex_progress="sleep:2")
    job = start_job(stack)  # only the stack's index worker runs: it coordinates
    coordinator = wait_for(
        lambda: stack.sql("select worker from catalog_reindexjob where id = ? and status = 'running'", job), 60
    )[0][0]
    assert worker_of(stack, coordinator) == "index"
    start_second(stack, second_worker)

    def chunk_of_index2() -> tuple[int, str] | None:
        for number, status, worker, _ in chunk_rows(stack, job):
            if status == "running" and worker_of(stack, worker) == "index2":
                return number, worker
        return None

    number, victim = wait_for(chunk_of_index2, 90)
    stack.kill("index2")
    killed = time.monotonic()
    status, attempts, error = wait_job(stack, job)
    assert status == "succeeded", (error, stack.logs())
    rows = {n: (s, w, a) for n, s, w, a in chunk_rows(stack, job)}
    record(
        "SIGKILL the second index worker mid-chunk",
        job_end_s=round(time.monotonic() - killed, 1),
        chunk_attempts=rows[number][2],
        job_attempts=attempts,
    )
    assert rows[number][1] == coordinator and rows[number][1] != victim, rows  # made again by the other worker
    assert rows[number][2] == 2 and attempts == 1, (rows, attempts)  # the chunk was retried, not the job
    stack.faults()
    _, key = latest_version(stack)
    assert_same_as_one_process(load_version(store_folder(stack, key)), one_process_build, query(stack))


def test_cancel_stops_the_chunks_of_both_workers(stack: FaultStack, second_worker: Process) -> None:
    (active_before,) = stack.sql("select active_version_id from catalog_collection where slug = ?", SLUG)[0]
    start_second(stack, second_worker)
    stack.faults(reindex_progress="sleep:2")
    job = start_job(stack)

    def making() -> set[str]:
        return {worker_of(stack, w) for _, status, w, _ in chunk_rows(stack, job) if status == "running"}

    wait_for(lambda: making() == {"index", "index2"}, 90)
    cancel = "from cirweb.catalog.models import ReindexJob; from cirweb.catalog.services import reindex_job_cancel; "
    stack.manage("shell", "-c", cancel + f"reindex_job_cancel(job=ReindexJob.objects.get(pk={job}))")
    cancelled = time.monotonic()
    status, _, error = wait_job(stack, job)
    assert status == "cancelled", (error, stack.logs())
    wait_for(lambda: not making(), 30)  # each worker stopped its chunk and gave it back
    record("reindex cancelled while two workers make chunks", all_stopped_s=round(time.monotonic() - cancelled, 1))
    (active_after,) = stack.sql("select active_version_id from catalog_collection where slug = ?", SLUG)[0]
    assert active_after == active_before
