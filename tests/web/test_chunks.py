"""The chunk state machine of a shared reindex (cirweb/catalog/chunks.py): one claimant per chunk, taken back
from dead or silent workers, kept across a re-plan when its items are the same, stopped by a cancel."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from cirweb.catalog import chunks, selectors
from cirweb.catalog.chunks import PlannedChunk
from cirweb.catalog.models import ReindexChunk, ReindexJob
from cirweb.processes.liveness import process_identity
from tests.web.factories import make_collection
from tests.web.test_states import dead_worker

pytestmark = pytest.mark.django_db
ALIVE_ELSEWHERE = "another-host:7"  # another host: alive as long as it beats


def planned(*fingerprints: str, size: int = 4) -> list[PlannedChunk]:
    return [
        PlannedChunk(n, [(n * size + i, "10:20:model") for i in range(size)], fp) for n, fp in enumerate(fingerprints)
    ]


@pytest.fixture
def job() -> ReindexJob:
    job = ReindexJob.objects.create(collection=make_collection("chunked"), status=ReindexJob.Status.RUNNING)
    chunks.reindex_chunks_plan(job_id=job.pk, model="m1", chunks=planned("a", "b", "c"))
    return job


def row(job: ReindexJob, number: int) -> ReindexChunk:
    return ReindexChunk.objects.get(job=job, number=number)


def test_a_chunk_has_one_claimant_and_only_it_says_done(job: ReindexJob) -> None:
    me = process_identity()
    first = chunks.reindex_chunk_claim(job_id=job.pk, number=0, worker=ALIVE_ELSEWHERE)
    assert first is not None and first.attempts == 1
    assert chunks.reindex_chunk_claim(job_id=job.pk, number=0, worker=me) is None  # alive: not taken over
    nxt = chunks.reindex_chunk_next(job_id=job.pk, worker=me)
    assert nxt is not None and nxt.number == 2  # the coordinator takes from the end
    assert not chunks.reindex_chunk_done(chunk_id=first.pk, worker=me, done=4, skipped=0)
    assert chunks.reindex_chunk_beat(chunk_id=first.pk, worker=ALIVE_ELSEWHERE, done=2, skipped=1)
    assert chunks.reindex_chunk_done(chunk_id=first.pk, worker=ALIVE_ELSEWHERE, done=4, skipped=1)
    assert chunks.reindex_chunk_claim(job_id=job.pk, number=0, worker=me) is None  # done is done
    progress = selectors.reindex_chunks_progress(job_id=job.pk)
    assert (progress.chunks, progress.chunks_done, progress.done, progress.skipped) == (3, 1, 4, 1)


def test_a_dead_or_silent_workers_chunk_is_taken_back(job: ReindexJob, settings: Any) -> None:
    me = process_identity()
    assert chunks.reindex_chunk_claim(job_id=job.pk, number=1, worker=dead_worker()) is not None
    assert chunks.reindex_chunk_claim(job_id=job.pk, number=2, worker=ALIVE_ELSEWHERE) is not None
    assert chunks.reindex_chunk_claim(job_id=job.pk, number=0, worker=ALIVE_ELSEWHERE) is not None
    taken = chunks.reindex_chunk_next(job_id=job.pk, worker=me)
    assert taken is not None and taken.number == 1 and taken.attempts == 2  # gone from this host
    assert chunks.reindex_chunk_next(job_id=job.pk, worker=me) is None  # the others still beat
    silent = timezone.now() - timedelta(seconds=settings.CIR_JOB_STALE_AFTER + 1)
    ReindexChunk.objects.filter(job=job, number=2).update(heartbeat=silent)
    again = chunks.reindex_chunk_next(job_id=job.pk, worker=me)
    assert again is not None and again.number == 2 and again.worker == me
    assert not chunks.reindex_chunk_beat(chunk_id=again.pk, worker=ALIVE_ELSEWHERE, done=1, skipped=0)


def test_a_chunk_that_keeps_killing_its_workers_fails_the_job(job: ReindexJob, settings: Any) -> None:
    chunks.reindex_chunk_claim(job_id=job.pk, number=0, worker=dead_worker())
    ReindexChunk.objects.filter(job=job, number=0).update(attempts=settings.CIR_JOB_MAX_ATTEMPTS)
    assert chunks.reindex_chunk_claim(job_id=job.pk, number=0, worker=process_identity()) is None
    job.refresh_from_db()
    assert job.status == "failed" and "chunk 0 stopped its worker 3 times" in job.error


def test_a_replan_keeps_chunks_of_the_same_items_and_resets_the_others(job: ReindexJob) -> None:
    made = chunks.reindex_chunk_claim(job_id=job.pk, number=0, worker=ALIVE_ELSEWHERE)
    assert made is not None
    chunks.reindex_chunk_done(chunk_id=made.pk, worker=ALIVE_ELSEWHERE, done=4, skipped=0)
    chunks.reindex_chunk_claim(job_id=job.pk, number=1, worker=ALIVE_ELSEWHERE)
    chunks.reindex_chunks_plan(job_id=job.pk, model="m1", chunks=planned("a", "B"))
    assert (row(job, 0).status, row(job, 0).worker) == ("done", ALIVE_ELSEWHERE)
    assert (row(job, 1).status, row(job, 1).fingerprint, row(job, 1).worker) == ("pending", "B", "")
    assert not ReindexChunk.objects.filter(job=job, number=2).exists()
    assert not chunks.reindex_chunk_done(chunk_id=row(job, 1).pk, worker=ALIVE_ELSEWHERE, done=4, skipped=0)
    chunks.reindex_chunks_plan(job_id=job.pk, model="m2", chunks=planned("a", "B"))  # another encoder
    assert row(job, 0).status == "pending"


def test_a_cancel_stops_every_chunk_and_no_new_one_starts(job: ReindexJob) -> None:
    taken = chunks.reindex_chunk_claim(job_id=job.pk, number=0, worker=ALIVE_ELSEWHERE)
    assert taken is not None
    ReindexJob.objects.filter(pk=job.pk).update(cancel_requested=True)
    assert not chunks.reindex_chunk_beat(chunk_id=taken.pk, worker=ALIVE_ELSEWHERE, done=1, skipped=0)
    assert chunks.reindex_chunk_claim(job_id=job.pk, number=1, worker=ALIVE_ELSEWHERE) is None
    assert chunks.reindex_chunk_next(job_id=job.pk, worker=process_identity()) is None


def test_a_chunk_found_in_the_store_is_done_by_its_maker(job: ReindexJob) -> None:
    assert chunks.reindex_chunk_found(chunk_id=row(job, 1).pk, made_by="host-b:12", done=4, skipped=2)
    assert (row(job, 1).status, row(job, 1).worker, row(job, 1).skipped) == ("done", "host-b:12", 2)
    assert not chunks.reindex_chunk_found(chunk_id=row(job, 1).pk, made_by="host-c:1", done=4, skipped=0)
