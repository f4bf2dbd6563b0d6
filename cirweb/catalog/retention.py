"""Retention: what the data directory no longer needs, deleted (`manage.py prune`, and the sweep process
every CIR_PRUNE_EVERY seconds: workers/sweep.py).

- uploads older than CIR_UPLOAD_RETENTION_DAYS, or deleted by their owner: the file (unless a live upload
  shares its bytes), its cached features and thumbnails; the row stays, marked deleted, for the history;
- thumbnails of images or uploads that are gone, or made from an older version of the file;
- index versions beyond the newest CIR_KEEP_INDEX_VERSIONS of each collection (never the active one), and
  version folders no row names;
- chunk folders of reindex jobs that finished (a new job never resumes an old one's chunks), and the
  temporary folders of versions whose writer was killed;
- expired sessions.

Collections with a reindex queued or running are left alone (their folders are being written).
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.sessions.models import Session
from django.utils import timezone

from cirweb.catalog.models import Collection, Image, IndexVersion, ReindexJob, Upload
from cirweb.catalog.thumbnails import etag_for

THUMB_NAME = re.compile(r"^(\d+)-([0-9a-f]+)\.jpg$")
VERSION_DIR = re.compile(r"^v(\d+)$")
TMP_AGE = timedelta(hours=1)  # a .tmp file younger than this may still be being written


@dataclass
class PruneReport:
    """How many things of each kind were deleted, and the bytes freed."""

    counts: dict[str, int] = field(default_factory=dict)
    freed: int = 0

    def remove(self, kind: str, path: Path) -> None:
        size = _size(path)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.freed += size

    def summary(self) -> str:
        parts = [f"{n} {kind}" for kind, n in self.counts.items() if n]
        return f"deleted {', '.join(parts) or 'nothing'}; freed {self.freed / 2**20:.1f} MB"


def _size(path: Path) -> int:
    if path.is_file() or path.is_symlink():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def data_prune(*, now: datetime | None = None) -> PruneReport:
    """Delete everything listed in the module docstring; safe to run at any time, and again."""
    now = now or timezone.now()
    report = PruneReport()
    _prune_uploads(report, now)
    _prune_thumbnails(report, now)
    busy = set(ReindexJob.objects.exclude(status__in=ReindexJob.FINISHED).values_list("collection_id", flat=True))
    for collection in Collection.objects.exclude(pk__in=busy):
        _prune_collection(report, collection)
    report.counts["expired sessions"] = Session.objects.filter(expire_date__lt=now).delete()[0]
    return report


def _old_tmp(path: Path, now: datetime) -> bool:
    return path.name.endswith(".tmp") and now.timestamp() - path.stat().st_mtime > TMP_AGE.total_seconds()


def _prune_uploads(report: PruneReport, now: datetime) -> None:
    root = Path(settings.CIR_UPLOADS_DIR)
    cutoff = now - timedelta(days=settings.CIR_UPLOAD_RETENTION_DAYS)
    expired = Upload.objects.filter(created__lt=cutoff, deleted=False)
    expired.update(deleted=True)
    live_files = set(Upload.objects.filter(deleted=False).values_list("file", flat=True))
    live_ids = set(Upload.objects.filter(deleted=False).values_list("pk", flat=True))
    for relative in set(Upload.objects.filter(deleted=True).values_list("file", flat=True)) - live_files:
        path = root / relative
        if path.is_file():
            report.remove("upload files", path)
    features = root / "features"
    for path in features.glob("*.npy") if features.is_dir() else ():
        upload_id = path.name.split(".", 1)[0]
        if not upload_id.isdigit() or int(upload_id) not in live_ids:
            report.remove("upload features", path)
    for path in root.rglob("*.tmp") if root.is_dir() else ():  # left by a process killed mid-write
        if _old_tmp(path, now):
            report.remove("temporary files", path)


def _prune_thumbnails(report: PruneReport, now: datetime) -> None:
    """Thumbnails are named `<id>-<etag>.jpg`; the etag is the one `thumbnail()` gives the file today."""
    root = Path(settings.CIR_THUMBS_DIR)
    uploads = Path(settings.CIR_UPLOADS_DIR)
    for kind in ("images", "uploads"):
        folder = root / kind
        if not folder.is_dir():
            continue
        thumbs = [(p, THUMB_NAME.match(p.name)) for p in folder.iterdir()]
        ids = [int(m.group(1)) for _, m in thumbs if m]
        if kind == "images":
            images = Image.objects.filter(pk__in=ids, removed=False).values_list("pk", "path")
            sources = {pk: Path(path).resolve() for pk, path in images}  # as the image view resolves it
        else:
            live = Upload.objects.filter(pk__in=ids, deleted=False).values_list("pk", "file")
            sources = {pk: uploads / f for pk, f in live}
        for path, match in thumbs:
            if match is None:
                if not path.name.endswith(".tmp") or _old_tmp(path, now):
                    report.remove("stale thumbnails", path)
                continue
            if not _current(sources.get(int(match.group(1))), match.group(2)):
                report.remove("stale thumbnails", path)


def _current(source: Path | None, etag: str) -> bool:
    try:
        return source is not None and etag_for(source, settings.CIR_THUMB_SIZE).strip('"') == etag
    except OSError:  # the file is gone
        return False


def _prune_collection(report: PruneReport, collection: Collection) -> None:
    root = Path(settings.CIR_COLLECTIONS_DIR) / collection.slug
    if not root.is_dir():
        return
    versions = list(IndexVersion.objects.filter(collection=collection).order_by("-number"))
    keep = {v.pk for v in versions[: max(settings.CIR_KEEP_INDEX_VERSIONS, 1)]} | {collection.active_version_id}
    for version in versions:
        if version.pk not in keep:
            path = Path(version.path)
            if path.is_relative_to(root) and path.exists():
                report.remove("index versions", path)
            version.delete()
    named = {Path(v.path).name for v in versions if v.pk in keep}
    for path in root.iterdir():
        if path.is_dir() and VERSION_DIR.match(path.name) and path.name not in named:
            report.remove("index versions", path)  # written, but never registered (its job died)
        elif path.is_dir() and path.name.startswith(".v"):
            report.remove("temporary version folders", path)
    jobs = root / "jobs"
    if jobs.is_dir():
        for path in jobs.iterdir():  # every job of this collection has finished (busy ones are skipped)
            report.remove("job chunk folders", path)
