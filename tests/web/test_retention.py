"""`manage.py prune`: after a visitor's uploads expire, files change, reindexes pile up versions and jobs
die, the data directory comes back to its size before all that, and nothing still in use is touched."""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from cirweb.catalog.models import IndexVersion, ReindexChunk, ReindexJob, Upload
from cirweb.files import storage
from retrieval.index.versions import write_version
from tests.web.factories import make_collection, png_bytes

pytestmark = pytest.mark.django_db


def footprint(settings: Any) -> tuple[int, int]:
    """(bytes, files) under the folders prune looks after: this host's and the shared store."""
    total = files = 0
    folders = [Path(settings.CIR_DATA_DIR) / name for name in ("uploads", "thumbs", "collections")]
    for folder in [*folders, Path(settings.CIR_CACHE_DIR), Path(settings.CIR_STORE_URL)]:
        for dirpath, _, names in os.walk(folder):
            for n in names:
                total += os.lstat(os.path.join(dirpath, n)).st_size
                files += 1
    return total, files


def upload(client: Client, colour: str) -> dict[str, Any]:
    response = client.post("/api/uploads", {"file": SimpleUploadedFile("x.png", png_bytes(colour))})
    assert response.status_code == 201, response.content
    assert client.get(response.json()["thumb"]).status_code == 200  # its thumbnail, cached on disk
    return response.json()


def built(collection: Any, number: int) -> Path:
    """A version folder as an index worker builds it, in this host's cache (not published yet)."""
    ids = np.arange(1, 4, dtype=np.int64)
    staging = storage.index_version_staging(slug=collection.slug)
    return write_version(staging, ids, np.eye(3, 8, dtype=np.float32), encoder="e", combiner="c", version=number).path


def version(collection: Any, number: int) -> IndexVersion:
    """A version built, published to the shared store and registered, as a reindex leaves it."""
    key = storage.index_version_publish(
        folder=built(collection, number), key=storage.index_version_key(slug=collection.slug, number=number)
    )
    return IndexVersion.objects.create(
        collection=collection, number=number, path=key, count=3, dim=8, index_type="flat", encoder="e", combiner="c"
    )


def in_store(key: str) -> bool:
    return bool(storage.shared_store().list(key))


def collection_dir(collection: Any) -> Path:
    """The data directory's folder of the collection before the shared store (and of its jobs' chunks)."""
    from cirweb.catalog.services import collection_dir as owner_of_the_rule

    return owner_of_the_rule(collection)


def aged(path: Path, hours: float = 2) -> None:
    for p in [path, *path.rglob("*")]:
        os.utime(p, (time.time() - hours * 3600,) * 2)


def test_prune_brings_the_data_directory_back_to_its_baseline(settings: Any) -> None:
    settings.CIR_KEEP_INDEX_VERSIONS = 2
    settings.CIR_UPLOAD_RETENTION_DAYS = 30
    collection = make_collection("kept", images=2)
    image = collection.images.first()
    assert image is not None
    keeper, leaver = Client(), Client()
    kept_upload = upload(keeper, "teal")  # a live upload, and one whose bytes an expiring upload shares
    assert keeper.get(f"/images/{image.pk}/thumb").status_code == 200
    collection.active_version = version(collection, 3)
    collection.save()
    version(collection, 4)  # newer than the active one: kept too (the newest two)
    call_command("prune", stdout=io.StringIO())  # whatever earlier tests left
    baseline = footprint(settings)

    old = upload(leaver, "olive")
    shared = upload(leaver, "teal")
    name = f"{old['id']}.abc123.npy"
    for folder in (Path(settings.CIR_UPLOADS_DIR) / "features", Path(settings.CIR_CACHE_DIR) / storage.UPLOAD_FEATURES):
        folder.mkdir(parents=True, exist_ok=True)  # the first: where features lay before the shared store
        np.save(folder / name, np.zeros(512, np.float32))
    storage.shared_store().put_file(folder / name, f"{storage.UPLOAD_FEATURES}/{name}")
    olive = Upload.objects.get(pk=old["id"]).file
    (Path(settings.CIR_UPLOADS_DIR) / olive).unlink()  # as if the web process of another host had taken it
    assert storage.upload_local(file=olive).is_relative_to(settings.CIR_CACHE_DIR)  # fetched from the store
    Upload.objects.filter(pk__in=[old["id"], shared["id"]]).update(created=timezone.now() - timedelta(days=31))
    os.utime(image.path, ns=(image.mtime_ns + 10**9, image.mtime_ns + 10**9))  # the file changed: new thumbnail
    assert keeper.get(f"/images/{image.pk}/thumb").status_code == 200
    old_versions = [version(collection, 1), version(collection, 2)]
    for old_version in old_versions:
        storage.index_version_folder(path=old_version.path)  # fetched into this host's cache
    unregistered = storage.index_version_publish(folder=built(collection, 9), key="collections/kept/v9")
    half = built(collection, 11)
    storage.shared_store().put_file(half / "features.npy", "collections/kept/v11/features.npy")  # its writer died
    aged(Path(settings.CIR_STORE_URL) / "collections" / "kept" / "v11")
    aged(half)
    legacy = write_version(collection_dir(collection), np.arange(3), np.eye(3, 8, dtype=np.float32),
                           encoder="e", combiner="c", version=5).path  # fmt: skip
    killed = [Path(tempfile.mkdtemp(prefix=".v10-", dir=d)) for d in (collection_dir(collection), half.parent)]
    for folder in killed:
        (folder / "features.npy").write_bytes(b"x" * 4096)
        aged(folder)
    job = ReindexJob.objects.create(collection=collection, kind="full", status=ReindexJob.Status.FAILED)
    chunks = collection_dir(collection) / "jobs" / str(job.pk)
    chunks.mkdir(parents=True)
    (chunks / "chunk-0.npy").write_bytes(b"x" * 8192)  # the old layout's chunk folder
    storage.shared_store().put_file(chunks / "chunk-0.npy", f"{storage.job_chunks_key(job_id=job.pk)}/chunk_00000.npz")
    cached_chunks = Path(settings.CIR_CACHE_DIR) / storage.job_chunks_key(job_id=job.pk)
    cached_chunks.mkdir(parents=True)
    (cached_chunks / "chunk_00001.npz").write_bytes(b"x" * 4096)  # a cancel from the web left the job's files
    ReindexChunk.objects.create(job=job, number=0, items=[[image.pk, "stamp"]], fingerprint="f", model="m")
    expired = SessionStore()
    expired.create()
    Session.objects.filter(session_key=expired.session_key).update(expire_date=timezone.now() - timedelta(days=1))
    assert footprint(settings)[0] > baseline[0] + 8192

    out = io.StringIO()
    call_command("prune", stdout=out)

    assert footprint(settings) == baseline, out.getvalue()
    assert "deleted" in out.getvalue() and "freed" in out.getvalue()
    assert not Session.objects.filter(session_key=expired.session_key).exists()
    assert not IndexVersion.objects.filter(pk__in=[v.pk for v in old_versions]).exists()
    assert not any(in_store(v.path) for v in old_versions) and not in_store(unregistered)
    assert not in_store("collections/kept/v11") and not legacy.exists() and not half.exists()
    assert not any(k.exists() for k in killed) and not chunks.exists() and not cached_chunks.exists()
    assert not in_store(storage.job_chunks_key(job_id=job.pk))
    assert ReindexChunk.objects.get(job=job).items == []  # the row stays (who made it), its item list goes
    collection.refresh_from_db()
    assert collection.active_version is not None and storage.index_version_exists(path=collection.active_version.path)
    # what is still in use still works: the live upload (whose bytes the expired one shared), the image
    assert keeper.get(f"/uploads/{kept_upload['id']}").status_code == 200
    assert keeper.get(kept_upload["thumb"]).status_code == 200
    assert keeper.get(f"/images/{image.pk}/thumb").status_code == 200
    assert leaver.get(f"/uploads/{old['id']}").status_code == 404


def test_prune_never_deletes_the_active_version_nor_touches_a_collection_being_reindexed(settings: Any) -> None:
    settings.CIR_KEEP_INDEX_VERSIONS = 1
    collection = make_collection("busy", images=1)
    collection.active_version = version(collection, 1)
    collection.save()
    newest = version(collection, 2)
    call_command("prune", stdout=io.StringIO())
    assert storage.index_version_exists(path=collection.active_version.path)
    assert storage.index_version_exists(path=newest.path)

    job = ReindexJob.objects.create(collection=collection, kind="full", status=ReindexJob.Status.RUNNING)
    writing = Path(tempfile.mkdtemp(prefix=".v3-", dir=storage.index_version_staging(slug=collection.slug)))
    aged(writing)  # however long the build takes
    storage.shared_store().put_file(newest_file(newest), "collections/busy/v3/features.npy")  # being published
    aged(Path(settings.CIR_STORE_URL) / "collections" / "busy" / "v3")
    (collection_dir(collection) / "jobs" / str(job.pk)).mkdir(parents=True)
    call_command("prune", stdout=io.StringIO())
    assert writing.exists() and (collection_dir(collection) / "jobs" / str(job.pk)).exists()
    assert in_store("collections/busy/v3")


def newest_file(version: IndexVersion) -> Path:
    return storage.index_version_folder(path=version.path) / "features.npy"


def test_prune_leaves_a_cached_version_a_worker_maps_until_it_lets_go(settings: Any) -> None:
    settings.CIR_KEEP_INDEX_VERSIONS = 1
    collection = make_collection("mapped", images=1)
    old, active = version(collection, 1), version(collection, 2)
    collection.active_version = active
    collection.save()
    shutil.rmtree(storage.index_version_staging(slug=collection.slug))  # a search host: its cache started empty
    held = storage.index_version_hold(path=old.path)  # a worker still answering turns from v1

    call_command("prune", stdout=io.StringIO())
    assert not in_store(old.path) and not IndexVersion.objects.filter(pk=old.pk).exists()
    assert (held.folder / "index.faiss").is_file()  # still mapped: still there

    held.release()
    call_command("prune", stdout=io.StringIO())
    assert not held.folder.exists()
