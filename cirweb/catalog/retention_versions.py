"""Retention of index versions (cirweb/catalog/retention.py): in the shared store, in this host's cache and
in the data directory's old layout (CIR_COLLECTIONS_DIR/<slug>/v<N>, before the shared store)."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from django.conf import settings

from cirweb.catalog.models import Collection, IndexVersion
from cirweb.catalog.retention_report import TMP_AGE, PruneReport, old_tmp, path_bytes
from cirweb.files import storage

VERSION_DIR = re.compile(r"^v(\d+)$")


def versions_prune(*, report: PruneReport, collection: Collection, now: datetime) -> None:
    """Versions beyond the newest CIR_KEEP_INDEX_VERSIONS (never the active one), everywhere they lie;
    the caller skips collections with a reindex queued or running."""
    versions = list(IndexVersion.objects.filter(collection=collection).order_by("-number"))
    keep = {v.pk for v in versions[: max(settings.CIR_KEEP_INDEX_VERSIONS, 1)]} | {collection.active_version_id}
    for version in versions:
        if version.pk not in keep:
            _version_remove(report, version.path)
            version.delete()
    kept = {v.path for v in versions if v.pk in keep}
    _prune_store(report, collection.slug, kept, now)
    _prune_cache(report, collection.slug, kept, now)
    _prune_legacy(report, collection.slug, kept)


def _version_remove(report: PruneReport, path: str) -> None:
    if Path(path).is_absolute():  # a row from before the shared store: only a folder of this host
        if Path(path).is_relative_to(Path(settings.CIR_COLLECTIONS_DIR)) and Path(path).exists():
            report.remove("index versions", Path(path))
        return
    if storage.shared_store().list(path):
        report.remove_key("index versions", path)
    cached = Path(settings.CIR_CACHE_DIR) / path
    size = path_bytes(cached) if cached.is_dir() else 0
    if cached.is_dir() and storage.cache_drop(cached):  # a worker that still maps it keeps it until it lets go
        report.count("cached index versions", size)


def _prune_store(report: PruneReport, slug: str, kept: set[str], now: datetime) -> None:
    """Versions the store holds that no kept row names: whole ones (their job died before registering
    them), and half-published ones nobody has written to for TMP_AGE (their publisher died)."""
    store = storage.shared_store()
    for number in storage.index_version_numbers(slug=slug):
        key = storage.index_version_key(slug=slug, number=number)
        if key in kept:
            continue
        if storage.index_version_exists(path=key):
            report.remove_key("index versions", key)
            continue
        written = [store.modified(k) or 0.0 for k in store.list(key)]
        if now.timestamp() - max(written, default=0.0) > TMP_AGE.total_seconds():
            report.remove_key("half-published index versions", key)


def _prune_cache(report: PruneReport, slug: str, kept: set[str], now: datetime) -> None:
    """Copies in this host's cache of versions no kept row names (unless a worker maps them), and the
    temporary folders of fetches and builds that were killed."""
    root = Path(settings.CIR_CACHE_DIR) / "collections" / slug
    for path in root.iterdir() if root.is_dir() else ():
        if VERSION_DIR.match(path.name) and path.is_dir() and f"collections/{slug}/{path.name}" not in kept:
            if storage.cached_whole(path) or _older_than_tmp_age(path, now):  # else: a build being published
                size = path_bytes(path)
                if storage.cache_drop(path):
                    report.count("cached index versions", size)
        elif path.name.startswith(".v") and (old_tmp(path, now) or _older_than_tmp_age(path, now)):
            report.remove("temporary version folders", path)


def _older_than_tmp_age(path: Path, now: datetime) -> bool:
    return now.timestamp() - path.stat().st_mtime > TMP_AGE.total_seconds()


def _prune_legacy(report: PruneReport, slug: str, kept: set[str]) -> None:
    """The old layout: version folders no kept row names, temporary version folders, and the chunk folders
    of finished jobs (every job of this collection has finished: busy ones are skipped)."""
    root = Path(settings.CIR_COLLECTIONS_DIR) / slug
    named = {Path(p).name for p in kept if Path(p).is_absolute()}
    for path in root.iterdir() if root.is_dir() else ():
        if path.is_dir() and VERSION_DIR.match(path.name) and path.name not in named:
            report.remove("index versions", path)  # published to the store by the migration, or never registered
        elif path.is_dir() and path.name.startswith(".v"):
            report.remove("temporary version folders", path)
    jobs = root / "jobs"
    for path in jobs.iterdir() if jobs.is_dir() else ():
        report.remove("job chunk folders", path)
