"""Catalog services: collections, their images and index versions, reindexing jobs.

Plain functions, keyword-only; views, admin actions and worker tasks call these and nothing below them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from cirweb.catalog.job_fields import reindex_job_fields
from cirweb.catalog.jobs import reindex_job_claim_lost, reindex_job_send
from cirweb.catalog.models import Collection, Image, IndexVersion, ReindexJob
from cirweb.catalog.selectors import id_batches
from cirweb.files.locations import model_stored


class CatalogError(ValueError):
    """A request about collections that cannot be carried out, with the reason in words."""


class ReindexConflict(CatalogError):
    pass


@dataclass(frozen=True)
class SourceImage:
    """One image as a scan of the collection's source sees it."""

    relpath: str
    path: str  # relative to the collection's source folder (cirweb/files/locations.py)
    size: int
    mtime_ns: int
    attributes: dict[str, Any] = field(default_factory=dict)
    description: str = ""  # the picture in words (its alt text), made by the worker that lists the source
    suggestions: list[str] = field(default_factory=list)  # requests worth suggesting with it as the reference


@dataclass
class ScanResult:
    """What `collection_apply_scan` changed: ids to extract, ids gone, and how many of each kind."""

    extract_ids: list[int]
    deleted_ids: list[int]
    added: int
    changed: int
    deleted: int
    removed_ids: list[int] = field(default_factory=list)  # gone from the source: marked at activation


def collection_dir(collection: Collection) -> Path:
    return Path(settings.CIR_COLLECTIONS_DIR) / collection.slug


def collection_encoder(collection: Collection) -> str:
    """The collection's CLIP, as the database stores it (a checkpoint relative to the model roots)."""
    return model_stored(collection.encoder or settings.CIR_CLIP_MODEL)


def collection_combiner(collection: Collection) -> str:
    return model_stored(collection.combiner or settings.CIR_COMBINER)


def collection_apply_scan(
    *, collection: Collection, listing: Iterable[SourceImage], indexed: dict[str, tuple[int, int]] | None
) -> ScanResult:
    """Bring the collection's Image rows in line with a scan of its source.

    `indexed` maps relpath -> (size, mtime_ns) for what the active index version holds (None: full
    reindex, everything is extracted again). New and changed files are returned for extraction. Files gone
    from the source are only listed (`removed_ids`): they are marked removed together with the activation of
    the version that leaves them out, so a failed or cancelled job changes nothing users see. New rows are
    not `indexed` until then either.
    """
    listing = list(listing)
    with transaction.atomic():
        rows = {img.relpath: img for img in Image.objects.select_for_update().filter(collection=collection)}
        seen: set[str] = set()
        to_create, to_update, to_reword, extract_rel = [], [], [], []
        added = changed = 0
        for src in listing:
            seen.add(src.relpath)
            row = rows.get(src.relpath)
            if row is None:
                to_create.append(
                    Image(
                        collection=collection,
                        relpath=src.relpath,
                        path=src.path,
                        size=src.size,
                        mtime_ns=src.mtime_ns,
                        attributes=src.attributes,
                        description=src.description,
                        suggestions=src.suggestions,
                    )
                )
            else:
                moved = (row.size, row.mtime_ns, row.path, row.removed) != (src.size, src.mtime_ns, src.path, False)
                if moved or row.attributes != src.attributes:
                    row.size, row.mtime_ns, row.path, row.removed, row.attributes = (
                        src.size, src.mtime_ns, src.path, False, src.attributes)  # fmt: skip
                    row.description, row.suggestions = src.description, src.suggestions
                    to_update.append(row)
                elif (row.description, row.suggestions) != (src.description, src.suggestions):
                    # new words for the same file (a catalog older than them, a neighbour added): no source change
                    row.description, row.suggestions = src.description, src.suggestions
                    to_reword.append(row)
            before = indexed.get(src.relpath) if indexed is not None else None
            if indexed is None or before != (src.size, src.mtime_ns):
                extract_rel.append(src.relpath)
                if indexed is not None:
                    added, changed = (added + 1, changed) if before is None else (added, changed + 1)
        Image.objects.bulk_create(to_create, batch_size=1000)
        Image.objects.bulk_update(
            to_update,
            ["size", "mtime_ns", "path", "removed", "attributes", "description", "suggestions"],
            batch_size=1000,
        )
        Image.objects.bulk_update(to_reword, ["description", "suggestions"], batch_size=1000)  # 2 fields: ~4x faster
        gone = [r for rel, r in rows.items() if rel not in seen and not r.removed]
        ids = dict(Image.objects.filter(collection=collection).values_list("relpath", "pk"))
    deleted_rel = [rel for rel in (indexed or {}) if rel not in seen]
    deleted = len(deleted_rel)
    if indexed is None:  # a full reindex reports what changed in the source since the catalog last saw it
        added, changed, deleted = len(to_create), len(to_update), len(gone)
    return ScanResult(
        [ids[r] for r in extract_rel],
        [ids[r] for r in deleted_rel if r in ids],
        added,
        changed,
        deleted,
        removed_ids=[r.pk for r in gone],
    )


def index_version_register(
    *,
    collection: Collection,
    number: int,
    path: str,
    count: int,
    dim: int,
    index_type: str,
    encoder: str,
    combiner: str,
    build_seconds: float,
) -> IndexVersion:
    return IndexVersion.objects.create(
        collection=collection,
        number=number,
        path=path,
        count=count,
        dim=dim,
        index_type=index_type,
        encoder=encoder,
        combiner=combiner,
        build_seconds=build_seconds,
    )


def collection_activate_version(
    *, collection: Collection, version: IndexVersion, removed_ids: Iterable[int] = ()
) -> None:
    """Switch the collection to `version` (searches pick it up on their next turn), together with the
    images' `indexed` and `removed` flags, in one transaction (the caller's, when it has one)."""
    if version.collection_id != collection.pk:
        raise CatalogError(f"version {version.number} belongs to another collection")
    indexed_ids = _version_ids(version)
    with transaction.atomic():
        Collection.objects.filter(pk=collection.pk).update(active_version=version, updated=timezone.now())
        for batch in id_batches(removed_ids):
            Image.objects.filter(pk__in=batch, collection=collection).update(removed=True)
        Image.objects.filter(collection=collection).update(indexed=False)
        for batch in id_batches(indexed_ids):
            Image.objects.filter(pk__in=batch).update(indexed=True)
    collection.active_version = version


def _version_ids(version: IndexVersion) -> list[int]:
    import numpy as np  # numpy is light; the web never imports the engine itself

    from cirweb.files import storage

    path = storage.index_version_folder(path=version.path) / "ids.npy"
    return np.load(path).tolist() if path.is_file() else []


def reindex_job_start(*, collection: Collection, kind: str, user: Any = None, enqueue: bool = True) -> ReindexJob:
    """Queue a reindex of `collection`; refused while another one of it is queued or running. With
    `enqueue=False` the caller runs the job itself (a command working without the workers)."""
    if kind not in ReindexJob.Kind.values:
        raise CatalogError(f"unknown reindex kind {kind!r}: use 'full' or 'incremental'")
    with transaction.atomic():
        Collection.objects.select_for_update().get(pk=collection.pk)
        # a job whose worker or message was lost is taken back or failed by the sweep (workers/sweep.py)
        running = ReindexJob.objects.filter(collection=collection).exclude(status__in=ReindexJob.FINISHED).first()
        if running is not None:
            raise ReindexConflict(f"{collection.name} is already being reindexed (job {running.pk}, {running.status})")
        job = ReindexJob.objects.create(
            collection=collection, kind=kind, created_by=user if getattr(user, "is_authenticated", False) else None
        )
        if enqueue:
            transaction.on_commit(lambda: reindex_job_send(job_id=job.pk))
    return job


def reindex_job_cancel(*, job: ReindexJob) -> ReindexJob:
    """Ask a job to stop. A queued job stops at once; a running one at its next batch. The active version
    is never touched by a job that does not finish."""
    with transaction.atomic():
        job = ReindexJob.objects.select_for_update().get(pk=job.pk)
        if job.status in ReindexJob.FINISHED:
            raise CatalogError(f"job {job.pk} has already {job.status}")
        job.cancel_requested = True
        fields = ["cancel_requested"]
        if job.status == ReindexJob.Status.QUEUED or reindex_job_claim_lost(job):  # nobody will see the request
            job.status, job.finished = ReindexJob.Status.CANCELLED, timezone.now()
            fields += ["status", "finished"]
        job.save(update_fields=fields)
    return job


def reindex_job_progress(job: ReindexJob) -> dict[str, Any]:
    """A job's progress as the admin page shows it (pushed over the websocket and polled as JSON)."""
    return {
        "type": "job.progress",
        "job": job.pk,
        "status": job.status,
        "done": job.done,
        "total": job.total,
        "skipped": job.skipped,
        "images_per_second": round(job.images_per_second, 1),
        "eta_seconds": job.eta_seconds,
        "percent": round(job.percent, 1),
        "added": job.added,
        "changed": job.changed,
        "deleted": job.deleted,
        "error": job.error,
        "version": job.version.number if job.version else None,
        "skipped_reasons": job.skipped_reasons,
        "fields": reindex_job_fields(job),  # every field of the job page, as the page shows it
    }


def reindex_job_activate(
    *, job: ReindexJob, worker: str, version_fields: dict[str, Any], removed_ids: Iterable[int], **job_fields: Any
) -> IndexVersion | None:
    """Register the built version, switch the collection to it, apply the catalog's removals and mark the
    job succeeded: all in one transaction, and only while `worker` still holds the job and nobody asked to
    cancel it. None (nothing changed) otherwise."""
    with transaction.atomic():
        owned = ReindexJob.objects.filter(
            pk=job.pk, status=ReindexJob.Status.RUNNING, worker=worker, cancel_requested=False
        ).update(status=ReindexJob.Status.SUCCEEDED, finished=timezone.now(), error="", **job_fields)
        if not owned:
            return None
        version = index_version_register(collection=job.collection, **version_fields)
        ReindexJob.objects.filter(pk=job.pk).update(version=version)
        collection_activate_version(collection=job.collection, version=version, removed_ids=removed_ids)
    return version


def image_skip_reasons_set(*, reasons: dict[int, str], read_ids: Iterable[int]) -> None:
    """Record why images could not be read (shown in the admin), and clear the reason of those read now."""
    for image_id, reason in reasons.items():
        Image.objects.filter(pk=image_id).update(skip_reason=reason[:500])
    for batch in id_batches(read_ids):
        Image.objects.filter(pk__in=batch).exclude(skip_reason="").update(skip_reason="")
