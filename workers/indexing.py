"""Reindexing a collection: scan its source, extract features of what is new or changed (chunked and
resumable), build a new index version beside the active one, then switch in one update.

The active version is never touched until the new one is complete: a failure, a cancel or a killed worker
leaves search exactly as it was. A job redelivered after its worker died resumes from its written chunks.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import time
from pathlib import Path

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded
from django.utils import timezone

from cirweb.catalog import services as catalog
from cirweb.catalog.models import Image, IndexVersion, ReindexJob
from retrieval.errors import RetrievalError
from retrieval.features import ExtractionCancelled, Item, Progress, extract_features
from retrieval.store import load_version, version_numbers, write_version
from workers.publish import publish
from workers.runtime import runtime
from workers.sources import source_listing

log = logging.getLogger(__name__)
PROGRESS_EVERY = 0.5  # seconds between stored/published progress updates
MAX_REASONS = 500


def job_group(job_id: int) -> str:
    return f"reindex.{job_id}"


def publish_job(job: ReindexJob) -> None:
    publish(job_group(job.pk), catalog.reindex_job_progress(job))


def _finish(job: ReindexJob, status: str, error: str = "") -> str:
    catalog.reindex_job_update(job_id=job.pk, status=status, error=error, finished=timezone.now())
    job.refresh_from_db()
    publish_job(job)
    return f"{status}: {error}" if error else status


def _indexed_sources(version: IndexVersion | None) -> dict[str, tuple[int, int]] | None:
    """relpath -> (size, mtime_ns) of what `version` holds (None when there is nothing to compare with)."""
    if version is None:
        return None
    try:
        data = json.loads((Path(version.path) / "sources.json").read_text())
    except (OSError, ValueError):
        return None
    return {rel: (size, mtime) for rel, size, mtime in data.values()}


def reindex_run(job_id: int, *, show_progress: bool = False) -> str:
    """Run a reindex job; whatever happens, the job ends succeeded, failed or cancelled (never stuck running)."""
    job = ReindexJob.objects.select_related("collection__active_version").filter(pk=job_id).first()
    if job is None or job.status in ReindexJob.FINISHED:
        return "skipped"
    me = f"{socket.gethostname()}:{os.getpid()}"
    if catalog.reindex_job_alive_elsewhere(job, me):
        return "skipped: another worker is running this job"
    if job.cancel_requested:
        return _finish(job, ReindexJob.Status.CANCELLED)
    try:
        return _run(job, show_progress)
    except SoftTimeLimitExceeded:
        return _finish(job, ReindexJob.Status.FAILED, "the job ran past its time limit and was stopped")
    except Exception as exc:  # the job must end readable whatever broke; the traceback goes to the log
        log.exception("reindex job %s failed", job.pk)
        return _finish(job, ReindexJob.Status.FAILED, f"unexpected error: {type(exc).__name__}: {exc}")


def _run(job: ReindexJob, show_progress: bool) -> str:
    collection, previous = job.collection, job.collection.active_version
    catalog.reindex_job_update(
        job_id=job.pk, status=ReindexJob.Status.RUNNING, started=job.started or timezone.now(), heartbeat=timezone.now()
    )
    started = time.monotonic()
    try:
        listing = source_listing(collection)
        models = runtime.models(catalog.collection_encoder(collection), catalog.collection_combiner(collection))
    except RetrievalError as exc:
        return _finish(job, ReindexJob.Status.FAILED, str(exc))
    indexed = _indexed_sources(previous) if job.kind == ReindexJob.Kind.INCREMENTAL and previous is not None else None
    if (
        indexed is not None
        and previous is not None
        and (previous.encoder, previous.dim) != (models.clip_spec, models.encoder.dim)
    ):
        indexed = None  # another encoder made the active version: its features cannot be reused
    incremental = indexed is not None
    scan = catalog.collection_apply_scan(collection=collection, listing=listing, indexed=indexed)
    catalog.reindex_job_update(
        job_id=job.pk,
        added=scan.added,
        changed=scan.changed,
        deleted=scan.deleted,
        total=len(scan.extract_ids),
        heartbeat=timezone.now(),
    )
    if incremental and not scan.extract_ids and not scan.deleted_ids:
        catalog.reindex_job_update(job_id=job.pk, version=previous)
        return _finish(job, ReindexJob.Status.SUCCEEDED)
    rows = Image.objects.filter(pk__in=scan.extract_ids).values_list("pk", "path", "size", "mtime_ns")
    files = {pk: (path, f"{size}:{mtime}") for pk, path, size, mtime in rows}
    items = [Item(i, Path(files[i][0]), files[i][1]) for i in scan.extract_ids]
    work_dir = catalog.collection_dir(collection) / "jobs" / str(job.pk)
    last = {"t": 0.0, "cancel_checked": 0.0}

    def on_progress(p: Progress) -> None:
        now = time.monotonic()
        if now - last["t"] < PROGRESS_EVERY and p.done < p.total:
            return
        last["t"] = now
        catalog.reindex_job_update(
            job_id=job.pk,
            done=p.done,
            total=p.total,
            skipped=p.skipped,
            images_per_second=p.images_per_second,
            eta_seconds=p.eta_seconds,
            heartbeat=timezone.now(),
        )
        job.refresh_from_db()
        publish_job(job)

    def should_stop() -> bool:
        now = time.monotonic()
        if now - last["cancel_checked"] < 0.5:
            return False
        last["cancel_checked"] = now
        return ReindexJob.objects.filter(pk=job.pk, cancel_requested=True).exists()

    try:
        result = extract_features(
            items,
            models.encoder.encode_image_batch,
            models.encoder.preprocess,
            work_dir,
            dim=models.encoder.dim,
            on_progress=on_progress,
            should_stop=should_stop,
            draft_size=models.encoder.input_resolution * 2,
            show_progress=show_progress,
        )
    except ExtractionCancelled:
        shutil.rmtree(work_dir, ignore_errors=True)
        return _finish(job, ReindexJob.Status.CANCELLED)
    reasons = dict(result.skipped)
    for image_id, reason in reasons.items():
        Image.objects.filter(pk=image_id).update(skip_reason=reason[:500])
    Image.objects.filter(pk__in=result.ids.tolist()).exclude(skip_reason="").update(skip_reason="")
    ids, features = result.ids, result.features
    if incremental and previous is not None:
        old = load_version(previous.path, mmap=True)
        drop = set(scan.deleted_ids) | set(scan.extract_ids)
        keep = np.array([i not in drop for i in old.ids.tolist()], bool)
        ids = np.concatenate([np.asarray(old.ids)[keep], ids])
        features = np.concatenate([np.asarray(old.features)[keep], features])
    if len(ids) == 0:
        shutil.rmtree(work_dir, ignore_errors=True)
        return _finish(job, ReindexJob.Status.FAILED, "no image could be read, so there is nothing to index")
    stats = {
        pk: (rel, size, mtime)
        for pk, rel, size, mtime in Image.objects.filter(pk__in=ids.tolist()).values_list(
            "pk", "relpath", "size", "mtime_ns"
        )
    }
    root = catalog.collection_dir(collection)
    taken = IndexVersion.objects.filter(collection=collection).values_list("number", flat=True)
    number = max([*version_numbers(root), *taken], default=0) + 1
    written = write_version(
        root,
        ids,
        features,
        encoder=models.clip_spec,
        combiner=models.combiner_spec,
        preprocessing=models.preprocessing,
        version=number,
        extra={"job": job.pk, "skipped": len(reasons)},
        extra_files={"sources.json": json.dumps({str(i): stats[i] for i in stats})},
    )
    if ReindexJob.objects.filter(pk=job.pk, cancel_requested=True).exists():  # cancelled while writing
        shutil.rmtree(written.path, ignore_errors=True)
        shutil.rmtree(work_dir, ignore_errors=True)
        return _finish(job, ReindexJob.Status.CANCELLED)
    version = catalog.index_version_register(
        collection=collection,
        number=number,
        path=str(written.path),
        count=written.meta.count,
        dim=written.meta.dim,
        index_type=written.meta.index_type,
        encoder=models.clip_spec,
        combiner=models.combiner_spec,
        build_seconds=time.monotonic() - started,
    )
    catalog.collection_activate_version(collection=collection, version=version)
    named = dict(Image.objects.filter(pk__in=list(reasons)).values_list("pk", "relpath"))
    catalog.reindex_job_update(
        job_id=job.pk,
        version=version,
        done=len(items),
        total=len(items),
        skipped=len(reasons),
        eta_seconds=0,
        skipped_reasons={named.get(i, str(i)): r for i, r in list(reasons.items())[:MAX_REASONS]},
    )
    shutil.rmtree(work_dir, ignore_errors=True)
    return _finish(job, ReindexJob.Status.SUCCEEDED)
