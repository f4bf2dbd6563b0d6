"""Reindexing a collection, shared by every index worker that can take a part: scan its source, plan the
extraction of what is new or changed as chunks, have them made, build a new index version from them beside
the active one, then switch in one update.

One coordinator per job (the job's task, `reindex_run`) holds the job's claim from start to end, with its
heartbeat, attempts and the sweep's resend exactly as the job state machine (cirweb/catalog/jobs.py) keeps
them. It writes the plan (cirweb/catalog/chunks.py), sends one chunk task per missing chunk for any index
worker on any host to take (workers/extraction.py), makes chunks itself from the end of the plan while the
tasks go from its beginning, takes back a chunk whose worker died, and, once every chunk file is in the
shared store, builds, publishes and activates the version: exactly one process can, the one holding the
claim. Chunks reach the store before their row says done, and one found there with the plan's fingerprint
is never made again, so a coordinator killed mid-job is succeeded (through the sweep) by one that
re-plans, keeps every chunk already made and sends tasks for the rest.

Why not a Celery chord: its callback fires only when every header task has returned a result, so a chunk
lost with its host (with Redis, redelivered only after the broker's visibility timeout, hours) or one that
failed stalls or drops the build, and cancel, attempts and the sweep would need a second owner besides the
job row. Here the chunk tasks are only invitations: the rows say what is done, and the coordinator, alive
or replaced, finishes whatever nobody else did. Its cost is one worker slot waiting, at the end, for the
last chunks of the others.

The active version is never touched until the new one is complete: a failure, a cancel or a killed worker
leaves search exactly as it was.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from pathlib import Path

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from tqdm import tqdm

from cirweb.catalog import chunks, jobs, selectors
from cirweb.catalog import services as catalog
from cirweb.catalog.models import IndexVersion, ReindexChunk, ReindexJob
from cirweb.files import storage
from cirweb.processes.faults import fault_point
from cirweb.processes.liveness import process_identity
from cirweb.processes.metrics import reindex_observed
from cirweb.transport import queueing
from cirweb.transport.protocol import reindex_group
from foundation.explained_error import ExplainedError, disk_full
from retrieval.extraction.features import ExtractionCancelled
from workers.building import Gathered, chunks_gather, previous_parts, version_build
from workers.extraction import chunk_make, chunks_plan
from workers.publish import publish
from workers.runtime import Models, runtime
from workers.sources import source_listing

log = logging.getLogger(__name__)
PROGRESS_EVERY = 0.5  # seconds between stored/published progress updates
WAIT_EVERY = 0.5  # seconds between looks at the chunks others are making, once none is left to take
MAX_REASONS = 500


def publish_job(job: ReindexJob) -> None:
    publish(reindex_group(job.pk), catalog.reindex_job_progress(job))
    reindex_observed(job_id=job.pk, done=job.done, total=job.total, per_second=job.images_per_second)


def _forget_chunks(job_id: int) -> None:
    """The job's chunk files, in the shared store and this host's cache: nobody resumes a finished job."""
    storage.shared_store().delete(storage.job_chunks_key(job_id=job_id))
    shutil.rmtree(Path(settings.CIR_CACHE_DIR) / storage.job_chunks_key(job_id=job_id), ignore_errors=True)


def _finish(job: ReindexJob, status: str, error: str = "") -> str:
    if not jobs.reindex_job_finish(job_id=job.pk, worker=job.worker, status=status, error=error):
        return "dropped: another worker holds this job now"
    _forget_chunks(job.pk)
    job.refresh_from_db()
    publish_job(job)
    return f"{status}: {error}" if error else status


class JobLost(Exception):
    """This process no longer holds the job (presumed dead and taken over): stop without writing."""


class Heartbeat:
    """Beats every few seconds on a thread while the job runs (a long index build shows no progress), and
    notices when the claim was taken away, so the extraction loop can stop."""

    def __init__(self, job_id: int, worker: str, every: float = 5.0) -> None:
        self.job_id, self.worker, self.every = job_id, worker, every
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"job-{job_id}-heartbeat", daemon=True)

    def _run(self) -> None:
        from django.db import connection

        try:
            while not self._stop.wait(self.every):
                try:
                    if not jobs.reindex_job_beat(job_id=self.job_id, worker=self.worker):
                        self.lost.set()
                        return
                except Exception as exc:  # the database blinked: the next beat tries again
                    log.warning("heartbeat of job %s: %s", self.job_id, exc)
        finally:
            connection.close()

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)


def _indexed_sources(version: IndexVersion | None) -> dict[str, tuple[int, int]] | None:
    """relpath -> (size, mtime_ns) of what `version` holds (None when there is nothing to compare with)."""
    if version is None:
        return None
    try:
        data = json.loads((storage.index_version_folder(path=version.path) / "sources.json").read_text())
    except (OSError, ValueError, ExplainedError):
        return None
    return {rel: (size, mtime) for rel, size, mtime in data.values()}


def _beat(job: ReindexJob, **progress: object) -> None:
    if not jobs.reindex_job_beat(job_id=job.pk, worker=job.worker, **progress):
        raise JobLost()


def reindex_run(job_id: int, *, show_progress: bool = False, dispatch: bool = False) -> str:
    """Run a reindex job as its coordinator; whatever happens, the job ends succeeded, failed or cancelled
    (never stuck running: if this process dies, the sweep gives the job to another one, which keeps the
    chunks already made). With `dispatch` (the index workers' task) a chunk task is sent for each chunk not
    made yet; without (a command run with no workers) this process makes every chunk."""
    job = jobs.reindex_job_claim(job_id=job_id, worker=process_identity())
    if job is None:
        return "skipped: finished, or running in another live process"
    if job.cancel_requested:
        return _finish(job, ReindexJob.Status.CANCELLED)
    try:
        with Heartbeat(job.pk, job.worker) as beat:
            return _run(job, beat, show_progress=show_progress, dispatch=dispatch)
    except JobLost:
        return "dropped: another worker took this job over"
    except SoftTimeLimitExceeded:
        return _finish(job, ReindexJob.Status.FAILED, "the job ran past its time limit and was stopped")
    except Exception as exc:  # the job must end readable whatever broke; the traceback goes to the log
        log.exception("reindex job %s failed", job.pk)
        return _finish(job, ReindexJob.Status.FAILED, _failure_sentence(exc))


def _failure_sentence(exc: Exception) -> str:
    """What the job page says of an error nobody foresaw; a full disk in words, with what to do about it."""
    full = disk_full(exc, writing="this reindex's files")
    if full is None:
        return f"unexpected error: {type(exc).__name__}: {exc}"
    return (
        f"{full} Nothing was activated: the active version keeps serving, and the partial files were removed. "
        "Free some space (or grow the disk), then reindex again."
    )


def _run(job: ReindexJob, beat: Heartbeat, *, show_progress: bool, dispatch: bool) -> str:
    """The job's steps: scan the source, plan and make the chunks of what is new or changed, build a new
    version from them and what the active version can keep, and switch to it."""
    collection, previous = job.collection, job.collection.active_version
    started = time.monotonic()
    try:
        listing, annotation_skips = source_listing(collection)
        models = runtime.models(catalog.collection_encoder(collection), catalog.collection_combiner(collection))
    except ExplainedError as exc:
        return _finish(job, ReindexJob.Status.FAILED, str(exc))
    indexed = _reusable_sources(job, previous, models)
    scan = catalog.collection_apply_scan(collection=collection, listing=listing, indexed=indexed)
    total = len(scan.extract_ids)
    _beat(job, added=scan.added, changed=scan.changed, deleted=scan.deleted, total=total)
    if indexed is not None and not scan.extract_ids and not scan.deleted_ids:
        _beat(job, version=previous)
        return _finish(job, ReindexJob.Status.SUCCEEDED)
    reused = chunks_plan(job.pk, scan.extract_ids, models)
    if reused:
        log.info("reindex job %s: %d chunks reused from an earlier attempt", job.pk, reused)
    progress = _JobProgress(job, beat, total, show_progress)
    try:
        gathered = _extract(job, models, progress, dispatch)
    except ExtractionCancelled:
        return _finish(job, ReindexJob.Status.CANCELLED)
    finally:
        progress.close()
    catalog.image_skip_reasons_set(reasons=gathered.skipped, read_ids=gathered.read_ids)
    parts, held = gathered.parts, None
    if indexed is not None and previous is not None:
        held = storage.index_version_hold(path=previous.path)  # this host's cache keeps it while it is read
        parts = [*previous_parts(held.folder, set(scan.deleted_ids) | set(scan.extract_ids)), *parts]
    try:
        if not sum(len(p.ids) for p in parts):
            return _finish(job, ReindexJob.Status.FAILED, "no image could be read, so there is nothing to index")
        written, key = version_build(
            job, parts, models, skipped=len(gathered.skipped), previous=held.folder if held is not None else None
        )
    finally:
        if held is not None:
            held.release()
    version = catalog.reindex_job_activate(
        job=job,
        worker=job.worker,
        version_fields={
            "number": written.meta.version,
            "path": key,
            "count": written.meta.count,
            "dim": written.meta.dim,
            "index_type": written.meta.index_type,
            "encoder": models.clip_spec,
            "combiner": models.combiner_spec,
            "build_seconds": time.monotonic() - started,
        },
        removed_ids=scan.removed_ids,
        done=total,
        total=total,
        skipped=len(gathered.skipped),
        eta_seconds=0,
        skipped_reasons=_skipped_reasons(gathered.skipped, annotation_skips),
    )
    if version is None:  # cancelled while writing, or taken over: the built version is nobody's
        storage.index_version_discard(path=key)
        if selectors.reindex_job_cancel_requested(job_id=job.pk):
            return _finish(job, ReindexJob.Status.CANCELLED)
        raise JobLost()
    _forget_chunks(job.pk)
    job.refresh_from_db()
    publish_job(job)
    return ReindexJob.Status.SUCCEEDED


def _reusable_sources(
    job: ReindexJob, previous: IndexVersion | None, models: Models
) -> dict[str, tuple[int, int]] | None:
    """What an incremental job may keep from the active version (None: extract everything again)."""
    if job.kind != ReindexJob.Kind.INCREMENTAL or previous is None:
        return None
    if (previous.encoder, previous.dim) != (models.clip_spec, models.encoder.dim):
        return None  # another encoder made the active version: its features cannot be reused
    return _indexed_sources(previous)


class _JobProgress:
    """The job's progress summed over its chunks, whoever makes them, stored and published at most every
    PROGRESS_EVERY seconds; and its stop conditions (a cancel request, a lost claim), checked as often."""

    def __init__(self, job: ReindexJob, beat: Heartbeat, total: int, show_progress: bool) -> None:
        self.job, self.beat, self.total = job, beat, total
        self.started = time.monotonic()
        self.baseline = selectors.reindex_chunks_progress(job_id=job.pk).done  # made before: not in the rate
        self.last_progress = self.last_cancel_check = 0.0
        self.bar = tqdm(total=total, unit="img", desc="reindexing", disable=not show_progress, initial=self.baseline)

    def tick(self, force: bool = False) -> None:
        now = time.monotonic()
        if now - self.last_progress < PROGRESS_EVERY and not force:
            return
        self.last_progress = now
        p = selectors.reindex_chunks_progress(job_id=self.job.pk)
        rate = (p.done - self.baseline) / (now - self.started) if now > self.started else 0.0
        eta = (self.total - p.done) / rate if rate > 0 else None
        _beat(self.job, done=p.done, total=self.total, skipped=p.skipped, images_per_second=rate, eta_seconds=eta)
        self.job.refresh_from_db()
        publish_job(self.job)
        self.bar.update(p.done - self.bar.n)

    def should_stop(self) -> bool:
        if self.beat.lost.is_set():
            raise JobLost()
        now = time.monotonic()
        if now - self.last_cancel_check < 0.5:
            return False
        self.last_cancel_check = now
        return selectors.reindex_job_cancel_requested(job_id=self.job.pk)

    def close(self) -> None:
        self.bar.close()


def _extract(job: ReindexJob, models: Models, progress: _JobProgress, dispatch: bool) -> Gathered:
    """Every chunk of the plan made, by the chunk tasks and by this process, then gathered from the shared
    store (a chunk the store does not hold as planned is made again)."""
    if dispatch:
        _dispatch(job)
    fault_point("reindex.planned")
    while True:
        _make_chunks(job, models, progress)
        gathered = chunks_gather(job.pk)
        if not gathered.redo:
            return gathered
        log.warning("reindex job %s: %d chunks missing from the shared store, made again", job.pk, gathered.redo)


def _dispatch(job: ReindexJob) -> None:
    """A chunk task for each chunk not made yet; a broker that is down leaves them all to this process."""
    pending = [row.number for row in selectors.reindex_chunks(job_id=job.pk) if row.status != ReindexChunk.Status.DONE]
    try:
        queueing.enqueue_reindex_chunks(job.pk, pending)
    except Exception as exc:
        log.warning("reindex job %s: chunk tasks not sent (%s); this worker makes every chunk", job.pk, exc)


def _make_chunks(job: ReindexJob, models: Models, progress: _JobProgress) -> None:
    """This process's share: pending chunks from the end of the plan (the tasks go from its beginning), then
    those whose worker died; returns when every chunk is made, whoever made it."""
    while True:
        if progress.should_stop():
            raise ExtractionCancelled(f"job {job.pk} was cancelled")
        chunk = chunks.reindex_chunk_next(job_id=job.pk, worker=job.worker)
        if chunk is not None:
            chunk_make(chunk, models, job.worker, also=progress.tick, stop=progress.should_stop)
            continue
        made = selectors.reindex_chunks_progress(job_id=job.pk)
        progress.tick(force=made.chunks_done == made.chunks)
        if made.chunks_done == made.chunks:
            return
        time.sleep(WAIT_EVERY)


def _skipped_reasons(reasons: dict[int, str], annotation_skips: dict[str, int]) -> dict[str, str]:
    """What the job page lists: annotation entries skipped by kind, then images by name (the first few)."""
    named = selectors.image_relpaths(ids=reasons)
    return {
        **{f"annotations: {why}": f"{n} entries skipped" for why, n in annotation_skips.items()},
        **{named.get(i, str(i)): r for i, r in list(reasons.items())[:MAX_REASONS]},
    }
