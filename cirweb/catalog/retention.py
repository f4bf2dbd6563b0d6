"""Retention: what the data directory, this host's cache and the shared store no longer need, deleted
(`manage.py prune`, and the sweep process every CIR_PRUNE_EVERY seconds: workers/sweep.py).

- uploads older than CIR_UPLOAD_RETENTION_DAYS, or deleted by their owner: the file here, in this host's
  cache and in the shared store (unless a live upload shares its bytes), its features (store, cache, and
  the old uploads/features folder) and thumbnails; the row stays, marked deleted, for the history;
- thumbnails of images or uploads that are gone, or made from an older version of the file;
- index versions beyond the newest CIR_KEEP_INDEX_VERSIONS of each collection (never the active one):
  their keys in the shared store and their copies in this host's cache; versions in the store that no row
  names (written, but their job died) and half-published ones (no `_complete.json`, untouched for an hour);
  folders of the data directory's old layout (CIR_COLLECTIONS_DIR, before the shared store) no row names;
- this host's cache trimmed to CIR_CACHE_VERSIONS versions (never a folder a worker process maps);
- chunk files of reindex jobs that finished (a new job never resumes an old one's chunks), in the shared
  store and this host's cache, and the item lists of their chunk rows; the temporary folders of versions
  whose writer or fetcher was killed;
- expired sessions.

Collections with a reindex queued or running are left alone (their folders are being written). Other
hosts' caches trim themselves whenever they fetch a version (cirweb/files/storage.py), and by their own prune.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.sessions.models import Session
from django.utils import timezone

from cirweb.catalog.models import Collection, Image, ReindexChunk, ReindexJob, Upload
from cirweb.catalog.retention_report import PruneReport, old_tmp, path_bytes
from cirweb.catalog.retention_versions import versions_prune
from cirweb.catalog.selectors import id_batches
from cirweb.catalog.thumbnails import etag_for
from cirweb.files import locations, storage

THUMB_NAME = re.compile(r"^(\d+)-([0-9a-f]+)\.jpg$")


def data_prune(*, now: datetime | None = None) -> PruneReport:
    """Delete everything listed in the module docstring; safe to run at any time, and again."""
    now = now or timezone.now()
    report = PruneReport()
    _prune_uploads(report, now)
    _prune_thumbnails(report, now)
    busy = set(ReindexJob.objects.exclude(status__in=ReindexJob.FINISHED).values_list("collection_id", flat=True))
    for collection in Collection.objects.exclude(pk__in=busy):
        versions_prune(report=report, collection=collection, now=now)
    _prune_job_chunks(report)
    sizes = {folder: path_bytes(folder) for folder in storage.cached_versions()}
    for folder in storage.cache_evict():
        report.count("cached index versions", sizes.get(folder, 0))
    report.counts["expired sessions"] = Session.objects.filter(expire_date__lt=now).delete()[0]
    return report


def _prune_job_chunks(report: PruneReport) -> None:
    """Chunk files of reindex jobs that are no longer queued or running (finished, or deleted with their
    collection), in the shared store and in this host's cache, and the item lists of their chunk rows (the
    rows stay: who made each chunk). A worker removes them itself when a job ends; these are what a cancel
    from the web side, or a job the sweep failed, leave behind."""
    busy = set(ReindexJob.objects.exclude(status__in=ReindexJob.FINISHED).values_list("pk", flat=True))
    store = storage.shared_store()
    stored = {key.split("/")[1] for key in store.list("jobs")}
    for name in sorted(n for n in stored if n.isdigit() and int(n) not in busy):
        report.remove_key("job chunk folders", storage.job_chunks_key(job_id=int(name)))
    cached = Path(settings.CIR_CACHE_DIR) / "jobs"
    for path in sorted(cached.iterdir()) if cached.is_dir() else ():
        if path.name.isdigit() and int(path.name) not in busy:
            report.remove("job chunk folders", path)
    ReindexChunk.objects.filter(job__status__in=ReindexJob.FINISHED).exclude(items=[]).update(items=[])


def _prune_uploads(report: PruneReport, now: datetime) -> None:
    root, cache = Path(settings.CIR_UPLOADS_DIR), Path(settings.CIR_CACHE_DIR)
    store = storage.shared_store()
    cutoff = now - timedelta(days=settings.CIR_UPLOAD_RETENTION_DAYS)
    expired = Upload.objects.filter(created__lt=cutoff, deleted=False)
    expired.update(deleted=True)
    live_files = set(Upload.objects.filter(deleted=False).values_list("file", flat=True))
    live_ids = set(Upload.objects.filter(deleted=False).values_list("pk", flat=True))
    for relative in set(Upload.objects.filter(deleted=True).values_list("file", flat=True)) - live_files:
        key = storage.upload_key(file=relative)
        for path in (root / relative, cache / key):
            if path.is_file():
                report.remove("upload files", path)
        if store.exists(key):
            report.remove_key("upload files in the shared store", key)
    for folder in (root / "features", cache / storage.UPLOAD_FEATURES):  # the first: before the shared store
        for path in folder.glob("*.npy") if folder.is_dir() else ():
            if not _live_feature(path.name, live_ids):
                report.remove("upload features", path)
    for key in store.list(storage.UPLOAD_FEATURES):
        if not _live_feature(key.rsplit("/", 1)[-1], live_ids):
            report.remove_key("upload features in the shared store", key)
    for folder in (root, cache / "uploads"):
        for path in folder.rglob("*.tmp") if folder.is_dir() else ():  # left by a process killed mid-write
            if old_tmp(path, now):
                report.remove("temporary files", path)


def _live_feature(name: str, live_ids: set[int]) -> bool:
    upload_id = name.split(".", 1)[0]
    return upload_id.isdigit() and int(upload_id) in live_ids


def _prune_thumbnails(report: PruneReport, now: datetime) -> None:
    """Thumbnails are named `<id>-<etag>.jpg`; the etag is the one `thumbnail()` gives the file today."""
    root = Path(settings.CIR_THUMBS_DIR)
    for kind in ("images", "uploads"):
        folder = root / kind
        if not folder.is_dir():
            continue
        thumbs = [(p, THUMB_NAME.match(p.name)) for p in folder.iterdir()]
        ids = [int(m.group(1)) for _, m in thumbs if m]
        sources = _image_files(ids) if kind == "images" else _upload_files(ids)
        for path, match in thumbs:
            if match is None:
                if not path.name.endswith(".tmp") or old_tmp(path, now):
                    report.remove("stale thumbnails", path)
                continue
            if not _current(sources.get(int(match.group(1))), match.group(2)):
                report.remove("stale thumbnails", path)


def _image_files(ids: list[int]) -> dict[int, Path]:
    """id -> the file as the image view resolves it on this host."""
    rows = [
        row
        for batch in id_batches(ids)
        for row in Image.objects.filter(pk__in=batch, removed=False).values_list(
            "pk", "path", "collection__source_path"
        )
    ]
    folders = {source: locations.source_folder(source) for source in {row[2] for row in rows}}
    return {pk: locations.image_file(path, folders[source]).resolve() for pk, path, source in rows}


def _upload_files(ids: list[int]) -> dict[int, Path]:
    """id -> the file the upload view serves on this host (written here, or fetched into the cache)."""
    live = [
        row
        for batch in id_batches(ids)
        for row in Upload.objects.filter(pk__in=batch, deleted=False).values_list("pk", "file")
    ]
    written, cached = Path(settings.CIR_UPLOADS_DIR), Path(settings.CIR_CACHE_DIR)
    return {pk: written / f if (written / f).is_file() else cached / storage.upload_key(file=f) for pk, f in live}


def _current(source: Path | None, etag: str) -> bool:
    try:
        return source is not None and etag_for(source, settings.CIR_THUMB_SIZE).strip('"') == etag
    except OSError:  # the file is gone
        return False
