"""What staff may point the product at: sources under the source roots (never the product's own folders),
checkpoints under the model roots; dataset annotations and links that lead out of their root are skipped."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from django.conf import settings as django_settings
from django.test import Client

from cirweb.catalog.models import Collection, Image
from retrieval.datasets.cirr import load_cirr
from retrieval.datasets.fashioniq import load_fashioniq
from retrieval.datasets.folder import scan_folder
from retrieval.errors import CheckpointError, DatasetError
from tests.conftest import make_tiny_clip
from tests.web.factories import png_bytes
from tests.web.test_admin import login

pytestmark = pytest.mark.django_db


def add_collection(client: Client, **fields: str) -> str:
    data = {"name": "X", "slug": "x", "source": "folder", "source_split": "", "encoder": "", "combiner": ""}
    response = client.post(
        "/admin/catalog/collection/add/",
        {**data, **fields, "versions-TOTAL_FORMS": "0", "versions-INITIAL_FORMS": "0"},
    )
    assert not Collection.objects.filter(slug="x").exists(), "the form should have refused this collection"
    return response.content.decode()


@pytest.fixture
def keeper() -> Client:
    # "change collection" is all it takes to edit a source: the refusal must not depend on other permissions
    return login("keeper", staff=True, perms=("add_collection", "change_collection", "view_collection"))


def test_a_collection_cannot_publish_the_uploads_folder(keeper: Client, settings: Any) -> None:
    uploads = Path(settings.CIR_UPLOADS_DIR)
    (uploads / "ab").mkdir(parents=True, exist_ok=True)
    (uploads / "ab" / "visitor.png").write_bytes(png_bytes())
    settings.CIR_SOURCE_ROOTS = [Path(settings.CIR_DATA_DIR)]  # even when a source root contains it
    body = add_collection(keeper, source_path=str(uploads))
    assert "which holds visitors&#x27; uploads; a collection may not publish them" in body
    body = add_collection(keeper, source_path=str(settings.CIR_DATA_DIR))  # a folder above it
    assert "would include" in body


def test_a_source_outside_the_roots_is_refused_with_the_roots_named(
    keeper: Client, settings: Any, tmp_path: Path
) -> None:
    (tmp_path / "a.png").write_bytes(png_bytes())
    settings.CIR_SOURCE_ROOTS = [tmp_path / "sources"]
    body = add_collection(keeper, source_path=str(tmp_path))
    assert "is outside the folders collections may be read from" in body and str(tmp_path / "sources") in body
    body = add_collection(keeper, source="cirr", source_split="val", source_path="/etc")
    assert "is outside the folders collections may be read from" in body


def test_checkpoints_outside_the_model_roots_are_refused(keeper: Client, settings: Any, tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(png_bytes())
    torch.save(make_tiny_clip().state_dict(), tmp_path / "clip.pt")
    body = add_collection(keeper, source_path=str(tmp_path), encoder=str(tmp_path / "clip.pt"))
    assert "is outside the model folders" in body and "can run code when loaded" in body
    body = add_collection(keeper, source_path=str(tmp_path), combiner=str(tmp_path / "clip.pt"))
    assert "Combiner checkpoint" in body and "is outside the model folders" in body


def test_the_engine_loads_checkpoints_only_from_the_roots_it_is_given(tmp_path: Path) -> None:
    from retrieval.models.clip_encoder import load_clip
    from retrieval.models.combiner_model import load_combiner

    outside = tmp_path / "elsewhere" / "clip.pt"
    outside.parent.mkdir()
    torch.save(make_tiny_clip().state_dict(), outside)
    with pytest.raises(CheckpointError, match="outside the model folders"):
        load_clip(str(outside), model_roots=[tmp_path / "models"])
    with pytest.raises(CheckpointError, match="outside the model folders"):
        load_combiner(outside, model_roots=[tmp_path / "models"])
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "link.pt").symlink_to(outside)  # a link inside leading out counts as outside
    with pytest.raises(CheckpointError, match="outside the model folders"):
        load_clip(str(tmp_path / "models" / "link.pt"), model_roots=[tmp_path / "models"])
    assert load_clip(str(outside), model_roots=[tmp_path / "elsewhere"]).dim == 32


def test_the_defaults_keep_the_committed_models_loadable() -> None:
    from cirweb.catalog.validation import model_problem

    assert model_problem(django_settings.CIR_CLIP_MODEL, django_settings.CIR_COMBINER) is None


def write_cirr(root: Path, split_map: dict[str, str]) -> None:
    (root / "cirr" / "captions").mkdir(parents=True)
    (root / "cirr" / "image_splits").mkdir(parents=True)
    (root / "cirr" / "image_splits" / "split.rc2.val.json").write_text(json.dumps(split_map))
    entries = [{"pairid": 1, "reference": "a", "target_hard": "b", "caption": "x", "img_set": {"members": []}}]
    (root / "cirr" / "captions" / "cap.rc2.val.json").write_text(json.dumps(entries))


def test_dataset_paths_and_links_outside_the_root_are_skipped_with_a_reason(tmp_path: Path) -> None:
    secret = tmp_path / "secret.html"
    secret.write_text("<script>alert(1)</script>")
    root = tmp_path / "cirr_dataset"
    (root / "dev").mkdir(parents=True)
    for name in "ab":
        (root / "dev" / f"{name}.png").write_bytes(png_bytes())
    (root / "dev" / "link.png").symlink_to(secret)
    write_cirr(root, {"a": "./dev/a.png", "b": "./dev/b.png", "up": "../secret.html", "abs": str(secret),
                      "link": "./dev/link.png"})  # fmt: skip
    data = load_cirr(root, "val")
    assert set(data.images) == {"a", "b"} and len(data.triplets) == 1
    assert data.skipped == {"image paths outside the dataset root": 3}

    fiq = tmp_path / "fiq"
    (fiq / "images").mkdir(parents=True)
    (fiq / "image_splits").mkdir()
    (fiq / "captions").mkdir()
    (fiq / "images" / "a.png").write_bytes(png_bytes())
    (fiq / "image_splits" / "split.dress.val.json").write_text(json.dumps(["a", "../../secret"]))
    (fiq / "captions" / "cap.dress.val.json").write_text("[]")
    data = load_fashioniq(fiq, "val", categories=["dress"])
    assert set(data.images) == {"a"} and data.skipped == {"image paths outside the dataset root": 1}

    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.png").write_bytes(png_bytes())
    (folder / "out.png").symlink_to(secret)
    assert [f.relpath for f in scan_folder(folder)] == ["a.png"]


def test_the_index_worker_refuses_a_source_the_form_would_refuse(settings: Any) -> None:
    from workers.sources import source_listing

    settings.CIR_SOURCE_ROOTS = [Path(settings.CIR_DATA_DIR)]
    collection = Collection.objects.create(slug="u", name="U", source="folder", source_path=settings.CIR_UPLOADS_DIR)
    with pytest.raises(DatasetError, match="visitors' uploads"):
        source_listing(collection)


def test_an_image_row_naming_a_file_outside_its_source_is_not_served(tmp_path: Path, settings: Any) -> None:
    root = tmp_path / "ds"
    root.mkdir()
    secret = tmp_path / "secret.html"
    secret.write_text("<script>alert(1)</script>")
    inside_html = root / "page.html"
    inside_html.write_text("<script>alert(1)</script>")
    collection = Collection.objects.create(slug="c", name="C", source="cirr", source_path=str(root))
    for path in (secret, inside_html):
        image = Image.objects.create(collection=collection, relpath=path.name, path=str(path), size=1, mtime_ns=1)
        assert Client().get(f"/images/{image.pk}").status_code == 404
