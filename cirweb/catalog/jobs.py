"""The reindex job state machine: queued -> running -> succeeded | failed | cancelled.

A worker claims a job (recording `host:pid`), beats while it runs, and writes progress and the outcome only
while the claim is still its own: two workers never build one version, and a worker that lost its job
(taken over after it was presumed dead) stops at its next beat. The sweep (workers/sweep.py, the one owner
of expiry) takes back a job whose worker died, sends again a job whose message was lost, and fails a job
that killed its worker CIR_JOB_MAX_ATTEMPTS times or that no worker took within CIR_JOB_QUEUED_EXPIRES.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from cirweb.catalog.models import ReindexJob
from cirweb.processes.liveness import claim_lost
from cirweb.transport import queueing

log = logging.getLogger(__name__)


def reindex_job_send(*, job_id: int) -> None:
    """Send the job's task; a broker that is down leaves it queued for the sweep to send again."""
    try:
        queueing.enqueue_reindex(job_id)
    except Exception as exc:
        log.warning("could not send reindex job %s to the workers (the sweep will): %s", job_id, exc)
        return
    ReindexJob.objects.filter(pk=job_id, status=ReindexJob.Status.QUEUED).update(sent_at=timezone.now())


def reindex_job_claim_lost(job: ReindexJob) -> bool:
    """A running job whose worker process is gone, or silent for CIR_JOB_STALE_AFTER (another host)."""
    grace = timedelta(seconds=settings.CIR_JOB_STALE_AFTER)
    return job.status == ReindexJob.Status.RUNNING and claim_lost(job.worker, job.heartbeat or job.started, grace)


def reindex_job_give_up(*, job_id: int, error: str) -> bool:
    """Fail an unfinished job whoever holds it: its work keeps killing the workers that take it."""
    return bool(
        ReindexJob.objects.filter(pk=job_id)
        .exclude(status__in=ReindexJob.FINISHED)
        .update(status=ReindexJob.Status.FAILED, error=error, finished=timezone.now())
    )


def _too_many_attempts(job_id: int, attempts: int) -> str:
    message = (
        f"its worker stopped {attempts} times while running it (out of memory, or a crash); "
        "the active version was left as it was"
    )
    reindex_job_give_up(job_id=job_id, error=message)
    return message


def reindex_job_claim(*, job_id: int, worker: str) -> ReindexJob | None:
    """Take the job for `worker`: a queued one, or a running one whose worker is gone (resumed from its
    chunks). None when there is nothing to do here (finished, or alive in another process)."""
    job = ReindexJob.objects.select_related("collection__active_version").filter(pk=job_id).first()
    if job is None or job.status in ReindexJob.FINISHED:
        return None
    if job.status == ReindexJob.Status.QUEUED:
        expected = Q(status=ReindexJob.Status.QUEUED)
    elif job.worker == worker or reindex_job_claim_lost(job):  # a retry here, or a worker that died
        expected = Q(status=ReindexJob.Status.RUNNING, worker=job.worker)
    else:
        return None
    retry = job.worker == worker  # not a death: it does not count as an attempt
    if not retry and job.attempts >= settings.CIR_JOB_MAX_ATTEMPTS:
        _too_many_attempts(job.pk, job.attempts)
        return None
    now = timezone.now()
    taken = ReindexJob.objects.filter(expected, pk=job_id).update(
        status=ReindexJob.Status.RUNNING,
        worker=worker,
        heartbeat=now,
        started=job.started or now,
        attempts=F("attempts") + (0 if retry else 1),
    )
    if not taken:
        return None
    job.refresh_from_db()
    return job


def reindex_job_beat(*, job_id: int, worker: str, **progress: Any) -> bool:
    """Record a sign of life (and progress) while `worker` holds the job; False when it no longer does."""
    return bool(
        ReindexJob.objects.filter(pk=job_id, worker=worker, status=ReindexJob.Status.RUNNING).update(
            heartbeat=timezone.now(), **progress
        )
    )


def reindex_job_finish(*, job_id: int, worker: str, status: str, error: str = "") -> bool:
    """End the job as failed or cancelled, if `worker` still holds it."""
    return bool(
        ReindexJob.objects.filter(pk=job_id, worker=worker)
        .exclude(status__in=ReindexJob.FINISHED)
        .update(status=status, error=error, finished=timezone.now())
    )


@dataclass
class JobSweep:
    released: int = 0
    resent: int = 0
    failed: int = 0


def reindex_job_sweep() -> JobSweep:
    report = JobSweep()
    for job in ReindexJob.objects.filter(status=ReindexJob.Status.RUNNING):
        if not reindex_job_claim_lost(job):
            continue
        if job.attempts >= settings.CIR_JOB_MAX_ATTEMPTS:
            report.failed += bool(_too_many_attempts(job.pk, job.attempts))
            continue
        if ReindexJob.objects.filter(pk=job.pk, status=ReindexJob.Status.RUNNING, worker=job.worker).update(
            status=ReindexJob.Status.QUEUED, sent_at=None
        ):
            report.released += 1
            report.resent += 1
            reindex_job_send(job_id=job.pk)
    now = timezone.now()
    expired = ReindexJob.objects.filter(
        status=ReindexJob.Status.QUEUED,
        attempts=0,
        created__lt=now - timedelta(seconds=settings.CIR_JOB_QUEUED_EXPIRES),
    )
    report.failed += (
        0
        if not expired.exists()
        else expired.update(
            status=ReindexJob.Status.FAILED,
            finished=now,
            error=f"no index worker took it within {settings.CIR_JOB_QUEUED_EXPIRES // 60} minutes; is one running?",
        )
    )
    never_sent = Q(sent_at__isnull=True, created__lt=now - timedelta(seconds=2))
    lost = Q(sent_at__lt=now - timedelta(seconds=settings.CIR_JOB_RESEND_AFTER))
    for pk in ReindexJob.objects.filter(never_sent | lost, status=ReindexJob.Status.QUEUED).values_list(
        "pk", flat=True
    ):
        reindex_job_send(job_id=pk)
        report.resent += 1
    return report
