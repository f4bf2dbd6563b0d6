"""The shapes world: deterministic, in CIRR's format, edits exact, siblings in the gallery."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest

from retrieval.datasets.cirr import load_cirr
from retrieval.datasets.shapes import (
    COLOURS,
    SHAPES,
    describe,
    possible_edits,
    random_scene,
    scene_diff,
)
from retrieval.datasets.shapes_text import phrase, refer
from retrieval.datasets.shapes_world import generate_world, load_scenes


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    generate_world(out, 360, seed=5, show_progress=False, workers=1)
    return out


def digest(folder: Path) -> str:
    h = hashlib.sha1()
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != "world.json":
            h.update(path.relative_to(folder).as_posix().encode() + path.read_bytes())
    return h.hexdigest()


def test_same_seed_same_world_other_seed_other_world(world: Path, tmp_path: Path) -> None:
    generate_world(tmp_path / "again", 360, seed=5, show_progress=False, workers=2)
    generate_world(tmp_path / "other", 360, seed=6, show_progress=False, workers=1)
    assert digest(world) == digest(tmp_path / "again")
    assert digest(world) != digest(tmp_path / "other")


def test_world_is_cirr_format_with_sibling_groups(world: Path) -> None:
    val = load_cirr(world, "val", dataset="shapes")
    test1 = load_cirr(world, "test1", dataset="shapes")
    assert not val.skipped and len(val.images) == 72 and len(val.triplets) == 72
    assert all(t.target is None for t in test1.triplets)
    scenes = load_scenes(world, "val")
    for t in val.triplets:
        assert len(t.group) == 6 and t.reference in t.group and t.target in t.group
        edits = scene_diff(scenes[t.reference], scenes[t.target])  # type: ignore[index]
        assert 1 <= len(edits) <= 2
        siblings = [m for m in t.group if m not in (t.reference, t.target)]
        assert all(scenes[m] != scenes[t.target] for m in siblings)  # type: ignore[index]
    raw = json.loads((world / "cirr" / "captions" / "cap.rc2.val.json").read_text())
    assert set(raw[0]) >= {"pairid", "reference", "target_hard", "target_soft", "caption", "img_set"}
    split = json.loads((world / "cirr" / "image_splits" / "split.rc2.val.json").read_text())
    assert all(path.startswith("./dev/") for path in split.values())


def test_no_scene_appears_twice_in_the_world(world: Path) -> None:
    scenes = [s for split in ("train", "val", "test1") for s in load_scenes(world, split).values()]
    assert len(scenes) == len(set(scenes))
    assert all(1 <= len(s) <= 4 for s in scenes)


def test_diff_then_apply_gives_the_target() -> None:
    rng = random.Random(1)
    for _ in range(400):
        a = random_scene(rng)
        b = a
        for edit in possible_edits(a, rng)[:2]:
            try:
                b = edit.apply(b)
            except ValueError:
                continue
        c = a
        for edit in scene_diff(a, b):
            c = edit.apply(c)
        assert c == b


def test_wording_names_the_edit_and_refers_unambiguously() -> None:
    rng = random.Random(2)
    kinds: dict[str, list[str]] = {}
    for _ in range(300):
        scene = random_scene(rng)
        for edit in possible_edits(scene, rng):
            kinds.setdefault(edit.kind, []).append(phrase(edit, scene, rng))
        for obj in scene:
            ref = refer(obj, scene, rng)
            assert obj.shape in ref
    assert set(kinds) == {"recolour", "resize", "move", "add", "remove", "replace"}
    assert any(t.startswith(("remove", "take away", "delete")) for t in kinds["remove"])
    assert len({t.split()[0] for t in kinds["recolour"]}) >= 4  # several phrasings, not one template
    text = describe(random_scene(random.Random(3)))
    assert any(c in text for c in COLOURS) and any(s in text for s in SHAPES)


def test_too_small_a_world_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 18 images"):
        generate_world(tmp_path, 10, seed=0)
