"""Pictures in words: every picture's alt text and, on a shapes collection, requests worth suggesting, made by
the worker at a reindex and stored; sent with every image."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from cirweb.catalog.models import Collection, Image
from cirweb.catalog.services import SourceImage, collection_apply_scan
from retrieval.datasets.shapes import Edit, Scene, describe, scene_diff
from retrieval.datasets.shapes_text import phrase
from retrieval.datasets.shapes_world import generate_world, load_scenes
from tests.web.factories import png_bytes
from workers.sources import source_listing

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small shapes world whose val split (two families of six pictures) is drawn."""
    root = tmp_path_factory.mktemp("words-world")
    generate_world(root, 60, seed=3, size=32, workers=1, show_progress=False, render_splits=("val",))
    return root


def synced(collection: Collection) -> dict[str, Image]:
    """The catalog after a reindex's scan of the collection's source (what the index worker runs)."""
    collection_apply_scan(collection=collection, listing=source_listing(collection)[0], indexed=None)
    Image.objects.filter(collection=collection).update(indexed=True)
    return {image.relpath: image for image in Image.objects.filter(collection=collection)}


def worded(text: str, edits: list[Edit], scene: Scene) -> bool:
    """Whether `text` is one of the ways the world's annotation wording says one of `edits` of `scene`: its
    templates drawn until one says it (the rarest of a few dozen wordings comes about 1 in 300 draws)."""
    return any(phrase(edit, scene, random.Random(seed)) == text for seed in range(20000) for edit in edits)


def test_a_shapes_reindex_stores_each_scene_in_words_and_requests_whose_result_is_in_the_collection(
    world: Path,
) -> None:
    collection = Collection.objects.create(
        slug="shapes-words", name="Shapes", source="shapes", source_path=str(world), source_split="val"
    )
    images = synced(collection)
    scenes = load_scenes(world, "val")
    assert set(images) == set(scenes) and len(images) == 12
    for name, image in images.items():
        assert image.description == describe(scenes[name])  # "a small red circle at the top left and ..."
        assert 1 <= len(image.suggestions) <= 4, (name, image.suggestions)
        assert len(set(image.suggestions)) == len(image.suggestions)
        # judged from the scene graphs: each request is a wording of one edit whose result is a picture here
        reachable = [edits[0] for edits in (scene_diff(scenes[name], s) for s in scenes.values()) if len(edits) == 1]
        for text in image.suggestions:
            assert worded(text, reachable, scenes[name]), f"{name}: no picture here is the result of {text!r}"
    for family in (0, 1):  # a family's reference has four one-edit siblings: four requests with an answer
        assert len(images[f"dev-{family}-0"].suggestions) == 4

    page = Client().get(f"/api/collections/{collection.slug}/images?limit=50").json()["images"]
    assert {i["name"]: (i["alt"], i["suggestions"]) for i in page} == {
        name: (image.description, image.suggestions) for name, image in images.items()
    }
    # the same words on every reindex: a rescan changes nothing
    rescan = collection_apply_scan(collection=collection, listing=source_listing(collection)[0], indexed=None)
    assert rescan.changed == 0
    assert {i.relpath: i.suggestions for i in Image.objects.filter(collection=collection)} == {
        name: image.suggestions for name, image in images.items()
    }


def test_a_folder_image_is_described_by_its_file_name_and_gets_no_suggestions(settings: Any) -> None:
    folder = Path(settings.CIR_DATA_DIR) / "src" / "photos"
    (folder / "beach").mkdir(parents=True)
    (folder / "beach" / "sea at dusk.png").write_bytes(png_bytes("blue"))
    (folder / "boat.v2.png").write_bytes(png_bytes("red"))
    collection = Collection.objects.create(slug="photos", name="Photos", source="folder", source_path=str(folder))
    # a catalog older than the words: its rows get them at the next reindex, which is no change of the source
    old = [SourceImage(s.relpath, s.path, s.size, s.mtime_ns) for s in source_listing(collection)[0]]
    collection_apply_scan(collection=collection, listing=old, indexed=None)
    assert set(Image.objects.filter(collection=collection).values_list("description", flat=True)) == {""}
    scan = collection_apply_scan(collection=collection, listing=source_listing(collection)[0], indexed=None)
    assert scan.changed == 0
    Image.objects.filter(collection=collection).update(indexed=True)
    stored = {i.relpath: (i.description, i.suggestions) for i in Image.objects.filter(collection=collection)}
    assert stored == {"beach/sea at dusk.png": ("sea at dusk", []), "boat.v2.png": ("boat.v2", [])}
    page = Client().get("/api/collections/photos/images").json()["images"]
    assert {i["name"]: (i["alt"], i["suggestions"]) for i in page} == stored
