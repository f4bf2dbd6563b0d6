"""Reindexing a collection: scan its source, extract features of what is new or changed (chunked and
resumable), build a new index version beside the active one, then switch in one update.

The active version is never touched until the new one is complete: a failure, a cancel or a killed worker
leaves search exactly as it was. A job redelivered after its worker died resumes from its written chunks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from numpy.typing import NDArray

from cirweb import storage
from cirweb.catalog import jobs, selectors
from cirweb.catalog import services as catalog
from cirweb.catalog.models import IndexVersion, ReindexJob
from cirweb.faults import fault_point
from cirweb.liveness import process_identity
from retrieval.errors import RetrievalError
from retrieval.features import ExtractionCancelled, ExtractionResult, Item, Progress, extract_features
from retrieval.store import IndexVersion as WrittenVersion
from retrieval.store import load_version, version_numbers, write_version
from workers.publish import publish
from workers.runtime import Models, runtime
from workers.sources import source_listing

log = logging.getLogger(__name__)
PROGRESS_EVERY = 0.5  # seconds between stored/published progress updates
MAX_REASONS = 500


def job_group(job_id: int) -> str:
    return f"reindex.{job_id}"


def publish_job(job: ReindexJob) -> None:
    publish(job_group(job.pk), catalog.reindex_job_progress(job))


def _finish(job: ReindexJob, status: str, error: str = "") -> str:
    if not jobs.reindex_job_finish(job_id=job.pk, worker=job.worker, status=status, error=error):
        return "dropped: another worker holds this job now"
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
    except (OSError, ValueError, RetrievalError):
        return None
    return {rel: (size, mtime) for rel, size, mtime in data.values()}


def _beat(job: ReindexJob, **progress: object) -> None:
    if not jobs.reindex_job_beat(job_id=job.pk, worker=job.worker, **progress):
        raise JobLost()


def models_identity(models: Models) -> str:
    """The encoder that made a feature: its spec, and for a checkpoint file its size and mtime."""
    spec = models.clip_spec
    try:
        stat = os.stat(spec)
        spec = f"{spec}@{stat.st_size}:{stat.st_mtime_ns}"
    except OSError:
        pass
    return hashlib.sha1(f"{spec}\0{models.encoder.dim}".encode()).hexdigest()[:12]


def reindex_run(job_id: int, *, show_progress: bool = False) -> str:
    """Run a reindex job; whatever happens, the job ends succeeded, failed or cancelled (never stuck running:
    if this process dies, the sweep gives the job to another one, which resumes from the written chunks)."""
    job = jobs.reindex_job_claim(job_id=job_id, worker=process_identity())
    if job is None:
        return "skipped: finished, or running in another live process"
    if job.cancel_requested:
        return _finish(job, ReindexJob.Status.CANCELLED)
    try:
        with Heartbeat(job.pk, job.worker) as beat:
            return _run(job, show_progress, beat)
    except JobLost:
        return "dropped: another worker took this job over"
    except SoftTimeLimitExceeded:
        return _finish(job, ReindexJob.Status.FAILED, "the job ran past its time limit and was stopped")
    except Exception as exc:  # the job must end readable whatever broke; the traceback goes to the log
        log.exception("reindex job %s failed", job.pk)
        return _finish(job, ReindexJob.Status.FAILED, f"unexpected error: {type(exc).__name__}: {exc}")


def _run(job: ReindexJob, show_progress: bool, beat: Heartbeat) -> str:
    """The job's steps: scan the source, extract what is new or changed, merge with what the active version
    can keep, write a new version, and switch to it."""
    collection, previous = job.collection, job.collection.active_version
    started = time.monotonic()
    try:
        listing, annotation_skips = source_listing(collection)
        models = runtime.models(catalog.collection_encoder(collection), catalog.collection_combiner(collection))
    except RetrievalError as exc:
        return _finish(job, ReindexJob.Status.FAILED, str(exc))
    indexed = _reusable_sources(job, previous, models)
    scan = catalog.collection_apply_scan(collection=collection, listing=listing, indexed=indexed)
    _beat(job, added=scan.added, changed=scan.changed, deleted=scan.deleted, total=len(scan.extract_ids))
    if indexed is not None and not scan.extract_ids and not scan.deleted_ids:
        _beat(job, version=previous)
        return _finish(job, ReindexJob.Status.SUCCEEDED)
    items = _extraction_items(scan, models)
    work_dir = catalog.collection_dir(collection) / "jobs" / str(job.pk)
    try:
        result = _extract(job, beat, items, models, work_dir, show_progress)
    except ExtractionCancelled:
        shutil.rmtree(work_dir, ignore_errors=True)
        return _finish(job, ReindexJob.Status.CANCELLED)
    reasons = dict(result.skipped)
    catalog.image_skip_reasons_set(reasons=reasons, read_ids=result.ids.tolist())
    ids, features = _merged_with_previous(result, previous if indexed is not None else None, scan)
    if len(ids) == 0:
        shutil.rmtree(work_dir, ignore_errors=True)
        return _finish(job, ReindexJob.Status.FAILED, "no image could be read, so there is nothing to index")
    written, key = _write(job, ids, features, models, skipped=len(reasons))
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
        done=len(items),
        total=len(items),
        skipped=len(reasons),
        eta_seconds=0,
        skipped_reasons=_skipped_reasons(reasons, annotation_skips),
    )
    if version is None:  # cancelled while writing, or taken over: the built version is nobody's
        storage.index_version_discard(path=key)
        if selectors.reindex_job_cancel_requested(job_id=job.pk):
            shutil.rmtree(work_dir, ignore_errors=True)
            return _finish(job, ReindexJob.Status.CANCELLED)
        raise JobLost()
    shutil.rmtree(work_dir, ignore_errors=True)
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


def _extraction_items(scan: catalog.ScanResult, models: Models) -> list[Item]:
    files = selectors.image_files(ids=scan.extract_ids)
    # the stamp names the encoder too, so a job resumed under other models never reuses these chunks
    model = models_identity(models)
    return [Item(i, Path(files[i][0]), f"{files[i][1]}:{files[i][2]}:{model}") for i in scan.extract_ids]


class _JobWatch:
    """The extraction's callbacks: progress stored and published at most every PROGRESS_EVERY seconds, and a
    cancel request or a lost claim noticed within half a second."""

    def __init__(self, job: ReindexJob, beat: Heartbeat) -> None:
        self.job, self.beat = job, beat
        self.last_progress = self.last_cancel_check = 0.0

    def on_progress(self, p: Progress) -> None:
        now = time.monotonic()
        if now - self.last_progress < PROGRESS_EVERY and p.done < p.total:
            return
        self.last_progress = now
        _beat(
            self.job,
            done=p.done,
            total=p.total,
            skipped=p.skipped,
            images_per_second=p.images_per_second,
            eta_seconds=p.eta_seconds,
        )
        self.job.refresh_from_db()
        publish_job(self.job)
        fault_point("reindex.progress")

    def should_stop(self) -> bool:
        if self.beat.lost.is_set():
            raise JobLost()
        now = time.monotonic()
        if now - self.last_cancel_check < 0.5:
            return False
        self.last_cancel_check = now
        return selectors.reindex_job_cancel_requested(job_id=self.job.pk)


def _extract(
    job: ReindexJob, beat: Heartbeat, items: list[Item], models: Models, work_dir: Path, show_progress: bool
) -> ExtractionResult:
    watch = _JobWatch(job, beat)
    result = extract_features(
        items,
        models.encoder.encode_image_batch,
        models.encoder.preprocess,
        work_dir,
        dim=models.encoder.dim,
        on_progress=watch.on_progress,
        should_stop=watch.should_stop,
        draft_size=models.encoder.input_resolution * 2,
        show_progress=show_progress,
        chunk_size=settings.CIR_REINDEX_CHUNK,
    )
    if result.resumed_chunks:
        log.info("reindex job %s: %d chunks reused from an earlier attempt", job.pk, result.resumed_chunks)
    return result


def _merged_with_previous(
    result: ExtractionResult, previous: IndexVersion | None, scan: catalog.ScanResult
) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """The new features, plus (incremental) those of the previous version that were neither changed nor
    deleted."""
    ids, features = result.ids, result.features
    if previous is None:
        return ids, features
    old = load_version(storage.index_version_folder(path=previous.path), mmap=True)
    drop = set(scan.deleted_ids) | set(scan.extract_ids)
    keep = np.array([i not in drop for i in old.ids.tolist()], bool)
    return np.concatenate([np.asarray(old.ids)[keep], ids]), np.concatenate([np.asarray(old.features)[keep], features])


def _write(
    job: ReindexJob, ids: NDArray[np.int64], features: NDArray[np.float32], models: Models, skipped: int
) -> tuple[WrittenVersion, str]:
    """The new version, built in this host's cache under a number neither the disk, the shared store nor the
    catalog has used, then published to the shared store; returns it and its store key."""
    collection = job.collection
    stats = selectors.image_sources(ids=ids.tolist())
    root = storage.index_version_staging(slug=collection.slug)
    used = [
        *version_numbers(root),
        *storage.index_version_numbers(slug=collection.slug),
        *selectors.index_version_numbers(collection=collection),
    ]
    written = write_version(
        root,
        ids,
        features,
        encoder=models.clip_spec,
        combiner=models.combiner_spec,
        preprocessing=models.preprocessing,
        version=max(used, default=0) + 1,
        extra={"job": job.pk, "skipped": skipped},
        extra_files={"sources.json": json.dumps({str(i): stats[i] for i in stats})},
    )
    key = storage.index_version_key(slug=collection.slug, number=written.meta.version)
    return written, storage.index_version_publish(folder=written.path, key=key)


def _skipped_reasons(reasons: dict[int, str], annotation_skips: dict[str, int]) -> dict[str, str]:
    """What the job page lists: annotation entries skipped by kind, then images by name (the first few)."""
    named = selectors.image_relpaths(ids=reasons)
    return {
        **{f"annotations: {why}": f"{n} entries skipped" for why, n in annotation_skips.items()},
        **{named.get(i, str(i)): r for i, r in list(reasons.items())[:MAX_REASONS]},
    }
