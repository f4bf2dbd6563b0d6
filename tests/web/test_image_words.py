"""Pictures in words: every picture's alt text and, on a shapes collection, requests worth suggesting, made by
the worker at a reindex and stored; sent with every image, every result and every turn."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from cirweb.catalog.models import Collection, Image
from cirweb.catalog.services import SourceImage, collection_apply_scan
from cirweb.conversations import services, shaping
from cirweb.conversations.models import TurnResult
from cirweb.conversations.selectors import turn_outcomes_since
from cirweb.transport.protocol import results_frame
from retrieval.datasets.shapes import Edit, Scene, describe, scene_diff
from retrieval.datasets.shapes_text import phrase
from retrieval.datasets.shapes_world import generate_world, load_scenes
from tests.web.factories import make_collection, png_bytes, visitor
from workers.search import result_alts
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


def test_every_result_carries_its_alt_text_in_the_frame_the_catch_up_and_the_turn_json(
    django_assert_num_queries: Any,
) -> None:
    collection = make_collection(images=3)
    a, b, c = collection.images.order_by("pk")
    Image.objects.filter(pk=b.pk).update(description="a large red square in the centre")
    owner = visitor()
    conversation = services.conversation_create(owner=owner, collection_slug=collection.slug)
    turn = services.turn_create(conversation=conversation, owner=owner, text="bigger", reference={"image": a.pk})
    TurnResult.objects.bulk_create([TurnResult(turn=turn, rank=r, image=i, score=0.5) for r, i in enumerate([b, c])])
    expected = ["a large red square in the centre", "img2"]  # a row no reindex described yet: its file's name

    with django_assert_num_queries(1):  # the worker's hot path: one query for the page ...
        alts = result_alts(version_id=1, image_ids=[b.pk, c.pk])
    with django_assert_num_queries(0):  # ... and none for pictures it has already described
        assert result_alts(version_id=1, image_ids=[c.pk, b.pk]) == alts
    frame = results_frame(turn_id=turn.pk, offset=0, ranked=[(b.pk, 0.5), (c.pk, 0.4)], alts=alts, timings_ms={})
    assert [r["alt"] for r in frame["results"]] == expected

    turn.status, turn.finished = "done", turn.created
    turn.save()
    (caught_up,) = turn_outcomes_since(conversation_id=conversation.pk, since=turn.created)
    assert [r["alt"] for r in caught_up["results"]] == expected
    (turn_json,) = shaping.conversation_json(conversation)["turns"]
    assert [r["alt"] for r in turn_json["results"]] == expected
    assert turn_json["reference"]["alt"] == "img0"
