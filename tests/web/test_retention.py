"""`manage.py prune`: after a visitor's uploads expire, files change, reindexes pile up versions and jobs
die, the data directory comes back to its size before all that, and nothing still in use is touched."""

from __future__ import annotations

import io
import os
import tempfile
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

from cirweb.catalog.models import IndexVersion, ReindexJob, Upload
from retrieval.store import write_version
from tests.web.factories import make_collection, png_bytes

pytestmark = pytest.mark.django_db


def footprint(settings: Any) -> tuple[int, int]:
    """(bytes, files) under the folders prune looks after."""
    total = files = 0
    for name in ("uploads", "thumbs", "collections"):
        for dirpath, _, names in os.walk(Path(settings.CIR_DATA_DIR) / name):
            for n in names:
                total += os.lstat(os.path.join(dirpath, n)).st_size
                files += 1
    return total, files


def upload(client: Client, colour: str) -> dict[str, Any]:
    response = client.post("/api/uploads", {"file": SimpleUploadedFile("x.png", png_bytes(colour))})
    assert response.status_code == 201, response.content
    assert client.get(response.json()["thumb"]).status_code == 200  # its thumbnail, cached on disk
    return response.json()


def version(collection: Any, number: int) -> IndexVersion:
    root = Path(collection_dir(collection))
    ids = np.arange(1, 4, dtype=np.int64)
    written = write_version(root, ids, np.eye(3, 8, dtype=np.float32), encoder="e", combiner="c", version=number)
    return IndexVersion.objects.create(
        collection=collection, number=number, path=str(written.path), count=3, dim=8, index_type="flat",
        encoder="e", combiner="c",
    )  # fmt: skip


def collection_dir(collection: Any) -> Path:
    from cirweb.catalog.services import collection_dir as owner_of_the_rule

    return owner_of_the_rule(collection)


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
    features = Path(settings.CIR_UPLOADS_DIR) / "features" / f"{old['id']}.abc123.npy"
    features.parent.mkdir(parents=True, exist_ok=True)
    np.save(features, np.zeros(512, np.float32))
    Upload.objects.filter(pk__in=[old["id"], shared["id"]]).update(created=timezone.now() - timedelta(days=31))
    os.utime(image.path, ns=(image.mtime_ns + 10**9, image.mtime_ns + 10**9))  # the file changed: new thumbnail
    assert keeper.get(f"/images/{image.pk}/thumb").status_code == 200
    old_versions = [version(collection, 1), version(collection, 2)]
    unregistered = write_version(collection_dir(collection), np.arange(3), np.eye(3, 8, dtype=np.float32),
                                 encoder="e", combiner="c", version=9).path  # fmt: skip
    killed = Path(tempfile.mkdtemp(prefix=".v10-", dir=collection_dir(collection)))
    (killed / "features.npy").write_bytes(b"x" * 4096)
    job = ReindexJob.objects.create(collection=collection, kind="full", status=ReindexJob.Status.FAILED)
    chunks = collection_dir(collection) / "jobs" / str(job.pk)
    chunks.mkdir(parents=True)
    (chunks / "chunk-0.npy").write_bytes(b"x" * 8192)
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
    assert not unregistered.exists() and not killed.exists() and not chunks.exists()
    collection.refresh_from_db()
    assert collection.active_version is not None and Path(collection.active_version.path).is_dir()
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
    assert Path(collection.active_version.path).is_dir() and Path(newest.path).is_dir()

    job = ReindexJob.objects.create(collection=collection, kind="full", status=ReindexJob.Status.RUNNING)
    writing = Path(tempfile.mkdtemp(prefix=".v3-", dir=collection_dir(collection)))
    (collection_dir(collection) / "jobs" / str(job.pk)).mkdir(parents=True)
    call_command("prune", stdout=io.StringIO())
    assert writing.exists() and (collection_dir(collection) / "jobs" / str(job.pk)).exists()
