"""The database names no machine path: what staff type on one host is stored relative to its root, and a
data directory whose roots moved serves the same files; the migration converts rows written before."""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.apps import apps
from django.test import Client

from cirweb.catalog import selectors
from cirweb.catalog.models import Collection, Image, IndexVersion, Upload
from cirweb.catalog.services import collection_apply_scan, collection_encoder
from cirweb.files import locations, storage
from retrieval.index.versions import load_version, write_version
from tests.web.factories import make_collection, png_bytes
from tests.web.test_admin import login
from workers.sources import source_listing

pytestmark = pytest.mark.django_db


def host(settings: Any, root: Path) -> None:
    """Settings of a host whose source and model roots lie under `root`."""
    settings.CIR_SOURCE_ROOTS = [root / "sources", root / "worlds"]
    settings.CIR_MODEL_ROOTS = [root / "models"]


def test_what_staff_type_is_stored_relative_and_served_after_the_roots_move(settings: Any, tmp_path: Path) -> None:
    host(settings, tmp_path / "a")
    photos = tmp_path / "a" / "worlds" / "photos"
    photos.mkdir(parents=True)
    (photos / "sea.png").write_bytes(png_bytes("blue"))
    (tmp_path / "a" / "models").mkdir()
    (tmp_path / "a" / "models" / "clip.pt").write_bytes(b"weights")
    response = login("keeper", staff=True, perms=("add_collection", "view_collection")).post(
        "/admin/catalog/collection/add/",
        {
            "name": "Photos", "slug": "photos", "source": "folder", "source_path": str(photos), "source_split": "",
            "encoder": str(tmp_path / "a" / "models" / "clip.pt"), "combiner": "sum",
            "versions-TOTAL_FORMS": "0", "versions-INITIAL_FORMS": "0",
        },
    )  # fmt: skip
    assert response.status_code == 302, response.content.decode()[:2000]
    collection = Collection.objects.get(slug="photos")
    assert (collection.source_path, collection.encoder, collection.combiner) == ("photos", "clip.pt", "sum")
    collection_apply_scan(collection=collection, listing=source_listing(collection)[0], indexed=None)
    image = Image.objects.get(collection=collection)
    assert image.path == "sea.png"
    Image.objects.filter(pk=image.pk).update(indexed=True)
    assert Client().get(f"/images/{image.pk}").status_code == 200

    shutil.move(tmp_path / "a", tmp_path / "b")  # another mount point, or another host's
    host(settings, tmp_path / "b")
    served = Client().get(f"/images/{image.pk}")
    assert served.status_code == 200 and b"".join(served.streaming_content) == png_bytes("blue")  # type: ignore[attr-defined]
    assert selectors.image_files(ids=[image.pk])[image.pk][0] == str(tmp_path / "b" / "worlds" / "photos" / "sea.png")
    assert locations.model_file(collection_encoder(collection)) == str(tmp_path / "b" / "models" / "clip.pt")
    rescan = collection_apply_scan(collection=collection, listing=source_listing(collection)[0], indexed=None)
    assert rescan.changed == 0  # the same files, wherever they are mounted


def test_the_migration_makes_existing_rows_relative_and_publishes_old_versions_and_uploads(settings: Any) -> None:
    settings.CIR_MODEL_ROOTS = [Path(settings.CIR_DATA_DIR) / "models"]
    checkpoint = Path(settings.CIR_DATA_DIR) / "models" / "shapes" / "clip.pt"
    collection = make_collection("legacy", images=2)  # absolute paths, as rows were written before
    Collection.objects.filter(pk=collection.pk).update(encoder=str(checkpoint), combiner="sum")
    folder = Path(settings.CIR_COLLECTIONS_DIR) / "legacy"
    written = write_version(
        folder, np.arange(1, 4), np.eye(3, 8, dtype=np.float32), encoder="e", combiner="c", version=1
    )
    version = IndexVersion.objects.create(
        collection=collection, number=1, path=str(written.path), count=3, dim=8, index_type="flat",
        encoder=str(checkpoint), combiner="sum",
    )  # fmt: skip
    relative = "ab/" + "ab" * 32 + ".png"
    (Path(settings.CIR_UPLOADS_DIR) / relative).parent.mkdir(parents=True, exist_ok=True)
    (Path(settings.CIR_UPLOADS_DIR) / relative).write_bytes(png_bytes("red"))
    Upload.objects.create(file=relative, content_type="image/png", size=1, width=1, height=1, sha256="ab" * 32)

    migration = importlib.import_module("cirweb.catalog.migrations.0004_location_independence")
    migration.to_relative(apps, None)

    collection.refresh_from_db()
    version.refresh_from_db()
    tests_root = Path(settings.CIR_SOURCE_ROOTS[0])  # the temporary folder, which holds the test data directory
    assert collection.source_path == (Path(settings.CIR_DATA_DIR) / "src" / "legacy").relative_to(tests_root).as_posix()
    assert collection.encoder == version.encoder == "shapes/clip.pt"
    assert sorted(collection.images.values_list("path", flat=True)) == ["img0.png", "img1.png"]
    assert version.path == "collections/legacy/v1" and storage.index_version_exists(path=version.path)
    shutil.rmtree(folder)  # the old layout is gone (prune deletes it): the store serves the version
    assert load_version(storage.index_version_folder(path=version.path)).meta.count == 3
    (Path(settings.CIR_UPLOADS_DIR) / relative).unlink()
    assert storage.upload_local(file=relative).read_bytes() == png_bytes("red")
