"""The chunks of a reindex job: pending -> running -> done, each claimed by one index worker at a time.

The job's coordinator (workers/indexing.py) writes the plan: one row per chunk with its items and their
fingerprint. Any index worker, on any host, takes a chunk by a conditional update (recording `host:pid`),
beats while it makes it, and marks it done once the chunk file is in the shared store, only while the claim
is still its own. A chunk whose worker died (gone from this host, or silent for CIR_JOB_STALE_AFTER) is
taken back by the next claimant; one that killed CIR_JOB_MAX_ATTEMPTS workers fails its job. Nothing here
decides the job's own state except that last failure: the job state machine is cirweb/catalog/jobs.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from cirweb.catalog.jobs import reindex_job_give_up
from cirweb.catalog.models import ReindexChunk, ReindexJob
from cirweb.processes.liveness import claim_lost

Status = ReindexChunk.Status
# a chunk is worth working on only while its job may still use it
JOB_GOES_ON = Q(job__status__in=[ReindexJob.Status.QUEUED, ReindexJob.Status.RUNNING], job__cancel_requested=False)


@dataclass(frozen=True)
class PlannedChunk:
    number: int
    items: list[tuple[int, str]]  # (image id, stamp) in extraction order
    fingerprint: str


def reindex_chunks_plan(*, job_id: int, model: str, chunks: Sequence[PlannedChunk]) -> None:
    """Make the job's rows the plan `chunks`: a row already planned with the same items and encoder keeps
    its state (done, or being made by its worker); any other is (re)set to pending; extra rows go."""
    with transaction.atomic():
        rows = {row.number: row for row in ReindexChunk.objects.filter(job_id=job_id)}
        new = []
        for chunk in chunks:
            row = rows.get(chunk.number)
            if row is None:
                new.append(
                    ReindexChunk(
                        job_id=job_id,
                        number=chunk.number,
                        items=[list(item) for item in chunk.items],
                        fingerprint=chunk.fingerprint,
                        model=model,
                    )
                )
            elif (row.fingerprint, row.model) != (chunk.fingerprint, model):
                ReindexChunk.objects.filter(pk=row.pk).update(
                    items=[list(item) for item in chunk.items],
                    fingerprint=chunk.fingerprint,
                    model=model,
                    status=Status.PENDING,
                    worker="",
                    done=0,
                    skipped=0,
                )
        ReindexChunk.objects.bulk_create(new, batch_size=500)
        ReindexChunk.objects.filter(job_id=job_id, number__gte=len(chunks)).delete()


def _claim_lost(row: ReindexChunk) -> bool:
    return row.status == Status.RUNNING and claim_lost(
        row.worker, row.heartbeat, timedelta(seconds=settings.CIR_JOB_STALE_AFTER)
    )


def _claim(row: ReindexChunk, worker: str) -> ReindexChunk | None:
    if row.status == Status.PENDING:
        expected = Q(status=Status.PENDING)
    elif row.status == Status.RUNNING and (row.worker == worker or _claim_lost(row)):
        expected = Q(status=Status.RUNNING, worker=row.worker)
    else:
        return None
    retry = row.status == Status.RUNNING and row.worker == worker  # the same process again: not a death
    if row.status == Status.RUNNING and not retry and row.attempts >= settings.CIR_JOB_MAX_ATTEMPTS:
        reindex_job_give_up(
            job_id=row.job_id,
            error=f"chunk {row.number} stopped its worker {row.attempts} times (out of memory, or a crash on one of "
            "its images); the active version was left as it was",
        )
        return None
    taken = ReindexChunk.objects.filter(expected, JOB_GOES_ON, pk=row.pk, fingerprint=row.fingerprint).update(
        status=Status.RUNNING,
        worker=worker,
        heartbeat=timezone.now(),
        done=0,
        skipped=0,
        attempts=F("attempts") + (0 if retry else 1),
    )
    if not taken:
        return None
    row.refresh_from_db()
    return row


def reindex_chunk_claim(*, job_id: int, number: int, worker: str) -> ReindexChunk | None:
    """Take chunk `number` of a job that goes on (not finished, not cancelled) for `worker`: a pending one,
    or one whose worker died. None when there is nothing to do here."""
    row = ReindexChunk.objects.filter(job_id=job_id, number=number).first()
    return None if row is None else _claim(row, worker)


def reindex_chunk_next(*, job_id: int, worker: str) -> ReindexChunk | None:
    """The coordinator's next chunk: the last pending one (chunk tasks take them from the first, so the two
    rarely meet), else one whose worker died."""
    rows = list(ReindexChunk.objects.filter(job_id=job_id).exclude(status=Status.DONE))
    pending = sorted((r for r in rows if r.status == Status.PENDING), key=lambda r: -r.number)
    for row in [*pending, *(r for r in rows if _claim_lost(r))]:
        taken = _claim(row, worker)
        if taken is not None:
            return taken
    return None


def reindex_chunk_beat(*, chunk_id: int, worker: str, done: int, skipped: int) -> bool:
    """Record progress while `worker` holds the chunk and its job goes on; False: stop (the job was
    cancelled or ended, or the chunk was taken back)."""
    return bool(
        ReindexChunk.objects.filter(JOB_GOES_ON, pk=chunk_id, worker=worker, status=Status.RUNNING).update(
            heartbeat=timezone.now(), done=done, skipped=skipped
        )
    )


def reindex_chunk_done(*, chunk_id: int, worker: str, done: int, skipped: int, made_by: str = "") -> bool:
    """The chunk is in the shared store, put there by `worker` (which still held it), made by `made_by`
    (`worker` unless it found the file another had made)."""
    return bool(
        ReindexChunk.objects.filter(pk=chunk_id, worker=worker, status=Status.RUNNING).update(
            status=Status.DONE, worker=made_by or worker, heartbeat=timezone.now(), done=done, skipped=skipped
        )
    )


def reindex_chunk_found(*, chunk_id: int, made_by: str, done: int, skipped: int) -> bool:
    """A pending chunk whose file is already in the shared store (its maker died before saying so)."""
    return bool(
        ReindexChunk.objects.filter(pk=chunk_id, status=Status.PENDING).update(
            status=Status.DONE, worker=made_by, heartbeat=timezone.now(), done=done, skipped=skipped
        )
    )


def reindex_chunk_release(*, chunk_id: int, worker: str) -> None:
    """Give back a chunk this worker cannot make (another encoder here, an error): another will."""
    ReindexChunk.objects.filter(pk=chunk_id, worker=worker, status=Status.RUNNING).update(
        status=Status.PENDING, worker="", done=0, skipped=0
    )


def reindex_chunk_redo(*, chunk_id: int) -> None:
    """A done chunk whose file the store no longer holds as planned: it is made again."""
    ReindexChunk.objects.filter(pk=chunk_id, status=Status.DONE).update(
        status=Status.PENDING, worker="", done=0, skipped=0
    )
