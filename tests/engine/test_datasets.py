"""Dataset loaders and CIRR submission files: real CIRR annotations, synthetic FashionIQ, folder trees."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from retrieval.datasets.base import SplitData, Triplet
from retrieval.datasets.cirr import load_cirr
from retrieval.datasets.fashioniq import load_fashioniq
from retrieval.datasets.folder import load_folder, scan_folder
from retrieval.errors import DatasetError
from retrieval.evaluation.fashioniq_recall import evaluate_fashioniq
from retrieval.evaluation.submission import validate_cirr_submission, write_cirr_submission
from retrieval.fusion.fuser import Fuser, Mode
from retrieval.models.clip_encoder import ClipEncoder, load_clip
from tests.conftest import write_images

# The `cirr` subfolder of a cirr_dataset root: a trimmed real subset of the published annotations (README there)
CIRR_ANNOTATIONS = Path(__file__).resolve().parent.parent / "data" / "cirr"


@pytest.fixture(scope="module")
def tiny_clip(tiny_clip_checkpoint: Path) -> ClipEncoder:
    return load_clip(str(tiny_clip_checkpoint))


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (2, 2), "white").save(buffer, format="PNG")
    return buffer.getvalue()


# --- CIRR -------------------------------------------------------------------------------------------------------


@pytest.fixture
def cirr_root(tmp_path: Path) -> Path:
    root = tmp_path / "cirr_dataset"
    root.mkdir()
    (root / "cirr").symlink_to(CIRR_ANNOTATIONS)
    return root


def test_cirr_real_annotations_without_images(cirr_root: Path) -> None:
    val = load_cirr(cirr_root, "val", check_images=False)
    assert (len(val.triplets), len(val.images), val.skipped) == (300, 332, {})
    for t in val.triplets:
        assert len(t.group) == 6 and t.reference in t.group and t.target in t.group
    test1 = load_cirr(cirr_root, "test1", check_images=False)
    assert (len(test1.triplets), len(test1.images)) == (200, 242)
    assert all(t.target is None for t in test1.triplets)


def test_cirr_entries_with_missing_images_are_skipped_and_counted(cirr_root: Path) -> None:
    entries = json.loads((CIRR_ANNOTATIONS / "captions" / "cap.rc2.val.json").read_text())
    split_map = json.loads((CIRR_ANNOTATIONS / "image_splits" / "split.rc2.val.json").read_text())
    present = {name for e in entries[:100] for name in (e["reference"], e["target_hard"])}
    placeholder = png_bytes()
    for name in present:
        path = cirr_root / split_map[name]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(placeholder)

    data = load_cirr(cirr_root, "val")

    assert set(data.images) == present
    assert data.skipped["image files missing"] == 332 - len(present)
    assert len(data.triplets) >= 100
    assert len(data.triplets) + data.skipped["annotations naming missing images"] == 300
    assert all(t.reference in data.images and t.target in data.images for t in data.triplets)
    assert all(data.images[t.reference].is_file() for t in data.triplets)
    assert "skipped" in data.report()


def test_cirr_bad_input(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"does not exist.*cirr/captions/cap.rc2"):
        load_cirr(tmp_path / "nowhere", "val")
    with pytest.raises(DatasetError, match=r"unknown CIRR split 'dev'.*train, val, test1"):
        load_cirr(tmp_path, "dev")

    (tmp_path / "cirr" / "image_splits").mkdir(parents=True)
    (tmp_path / "cirr" / "image_splits" / "split.rc2.val.json").write_text("{}")
    captions = tmp_path / "cirr" / "captions" / "cap.rc2.val.json"
    with pytest.raises(DatasetError) as missing:
        load_cirr(tmp_path, "val")
    assert str(captions) in str(missing.value) and "expected CIRR's layout" in str(missing.value)

    captions.parent.mkdir()
    captions.write_text('[{"pairid": 1,')
    with pytest.raises(DatasetError, match="is not valid JSON"):
        load_cirr(tmp_path, "val")


# --- FashionIQ --------------------------------------------------------------------------------------------------


def write_json(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


@pytest.fixture
def fiq_root(tmp_path: Path) -> Path:
    """12 images per category; dress lists an image whose file is missing and has a malformed entry."""
    root = tmp_path / "fashioniq"
    names = [p.stem for p in write_images(root / "images", 36)]
    for c, category in enumerate(("dress", "shirt", "toptee")):
        own = names[12 * c : 12 * c + 12]
        write_json(root / "image_splits" / f"split.{category}.val.json", own + (["ghost"] if c == 0 else []))
        entries: list[object] = [
            {"target": own[1], "candidate": own[0], "captions": ["is RED.", " has a V-neck?"]},
            {"target": own[3], "candidate": own[2], "captions": ["is shorter", "is blue, "]},
        ]
        if category == "dress":
            entries += [
                {"target": own[5], "candidate": own[4], "captions": ["only one caption"]},
                {"target": "ghost", "candidate": own[6], "captions": ["is green", "is plain"]},
            ]
        write_json(root / "captions" / f"cap.{category}.val.json", entries)
    write_json(root / "image_splits" / "split.dress.test.json", names[:12])
    write_json(root / "captions" / "cap.dress.test.json", [{"candidate": names[0], "captions": ["a", "b"]}])
    return root


def test_fashioniq_parsing_and_caption_joining(fiq_root: Path) -> None:
    data = load_fashioniq(fiq_root, "val")

    assert (data.dataset, data.split, len(data.images), len(data.triplets)) == ("fashioniq", "val", 36, 6)
    assert data.skipped == {
        "image files missing": 1,
        "malformed annotation entries": 1,
        "annotations naming missing images": 1,
    }
    first = data.triplets[0]
    assert (first.reference, first.target, first.category, first.group) == ("img0000", "img0001", "dress", ())
    assert first.caption == "Is red and has a V-neck"  # CLIP4Cir: strip('.?, '), capitalize() the first only
    assert first.captions == ("Is red and has a V-neck", "Has a v-neck and is RED")
    assert data.triplets[1].caption == "Is shorter and is blue"
    assert [t.category for t in data.triplets] == ["dress"] * 2 + ["shirt"] * 2 + ["toptee"] * 2
    assert len({t.pairid for t in data.triplets}) == 6
    assert data.images["img0000"] == fiq_root / "images" / "img0000.png"

    test = load_fashioniq(fiq_root, "test", categories=("dress",))
    assert [(t.reference, t.target, t.caption) for t in test.triplets] == [("img0000", None, "A and b")]


def test_fashioniq_bad_input(fiq_root: Path) -> None:
    with pytest.raises(DatasetError, match=r"unknown FashionIQ category 'pants'.*dress, shirt, toptee"):
        load_fashioniq(fiq_root, "val", categories=("dress", "pants"))
    with pytest.raises(DatasetError, match="unknown FashionIQ split"):
        load_fashioniq(fiq_root, "dev")
    with pytest.raises(DatasetError) as missing:
        load_fashioniq(fiq_root, "train")
    assert "split.dress.train.json" in str(missing.value) and "expected FashionIQ's layout" in str(missing.value)
    with pytest.raises(DatasetError, match="does not exist"):
        load_fashioniq(fiq_root / "nowhere", "val")


def test_fashioniq_evaluation_per_category(fiq_root: Path, tiny_clip: ClipEncoder) -> None:
    data = load_fashioniq(fiq_root, "val")
    metrics = evaluate_fashioniq(tiny_clip, Fuser(None, tiny_clip.dim), data, Mode.SUM, show_progress=False)

    for category in ("dress", "shirt", "toptee", "average"):
        for k in (10, 50):
            assert 0.0 <= metrics[f"{category}/recall@{k}"] <= 1.0
    assert metrics["dress/queries"] == 2 and metrics["queries"] == 6
    assert metrics["dress/recall@50"] == 1.0  # 12 images per category: the target is always in the top 50


def test_fashioniq_keeps_the_reference_in_the_ranking(fiq_root: Path, tiny_clip: ClipEncoder) -> None:
    data = load_fashioniq(fiq_root, "val")
    # The image alone retrieves the reference first: found only if the reference is not removed.
    same = [dataclasses.replace(t, target=t.reference) for t in data.triplets]
    metrics = evaluate_fashioniq(
        tiny_clip, Fuser(None, tiny_clip.dim), dataclasses.replace(data, triplets=same), Mode.IMAGE, show_progress=False
    )
    assert metrics["average/recall@10"] == 1.0


# --- folders ----------------------------------------------------------------------------------------------------


def make_tree(root: Path) -> None:
    (root / "a" / "b").mkdir(parents=True)
    Image.new("RGB", (8, 8), "red").save(root / "a" / "b" / "x.jpg")
    Image.new("RGB", (8, 8), "green").save(root / "a" / "y.png")
    Image.new("RGB", (8, 8), "blue").save(root / "z.webp")
    Image.new("P", (8, 8)).save(root / "anim.gif")
    Image.new("RGB", (8, 8)).save(root / "UPPER.JPG", format="JPEG")
    Image.new("RGB", (8, 8)).save(root / ".hidden.png")
    (root / ".cache").mkdir()
    Image.new("RGB", (8, 8)).save(root / ".cache" / "thumb.png")
    (root / "notes.txt").write_text("not an image")
    (root / "link.png").symlink_to(Path("a") / "y.png")  # a linked file is an image too


def test_scan_folder_finds_images_with_stable_ids(tmp_path: Path) -> None:
    make_tree(tmp_path / "photos")
    (tmp_path / "photos" / "a" / "loop").symlink_to(tmp_path / "photos", target_is_directory=True)

    images = scan_folder(tmp_path / "photos")

    assert [i.relpath for i in images] == ["UPPER.JPG", "a/b/x.jpg", "a/y.png", "anim.gif", "link.png", "z.webp"]
    assert all(0 < i.id < 2**63 for i in images) and len({i.id for i in images}) == len(images)
    assert all(i.size == i.path.stat().st_size and i.path.is_file() for i in images)
    assert scan_folder(tmp_path / "photos") == images

    shutil.copytree(tmp_path / "photos", tmp_path / "copy", symlinks=True)
    copied = {i.relpath: i.id for i in scan_folder(tmp_path / "copy")}
    assert copied == {i.relpath: i.id for i in images}

    data = load_folder(tmp_path / "photos")
    assert (data.dataset, data.split, data.triplets) == ("folder", "all", [])
    assert data.images["a/y.png"] == images[2].path


def test_scan_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        scan_folder(tmp_path / "nowhere")
    (tmp_path / "file.png").write_bytes(png_bytes())
    with pytest.raises(DatasetError, match="is not a folder"):
        scan_folder(tmp_path / "file.png")
    (tmp_path / "empty" / ".hidden").mkdir(parents=True)
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    (tmp_path / "empty" / ".hidden" / "x.png").write_bytes(png_bytes())
    with pytest.raises(DatasetError, match=r"holds no images \(looked for .jpg, .jpeg, .png"):
        scan_folder(tmp_path / "empty")


# --- CIRR submission --------------------------------------------------------------------------------------------


@pytest.fixture
def cirr_test1(tmp_path: Path) -> SplitData:
    """60 images and 8 queries in CIRR's test1 format (no targets)."""
    root = tmp_path / "tiny_cirr"
    names = [p.stem for p in write_images(root / "test1", 60)]
    write_json(root / "cirr" / "image_splits" / "split.rc2.test1.json", {n: f"./test1/{n}.png" for n in names})
    entries = [
        {
            "pairid": 100 + i,
            "reference": names[i],
            "caption": "make it brighter",
            "img_set": {"id": i, "members": [names[i], *names[10 + 5 * i : 15 + 5 * i]]},
        }
        for i in range(8)
    ]
    write_json(root / "cirr" / "captions" / "cap.rc2.test1.json", entries)
    return load_cirr(root, "test1")


def test_cirr_submission_is_valid(cirr_test1: SplitData, tiny_clip: ClipEncoder, tmp_path: Path) -> None:
    recall_path, subset_path = write_cirr_submission(
        tiny_clip,
        Fuser(None, tiny_clip.dim),
        cirr_test1,
        tmp_path / "out",
        mode=Mode.SUM,
        name="tiny",
        show_progress=False,
    )

    assert (recall_path.name, subset_path.name) == ("recall_submission_tiny.json", "recall_subset_submission_tiny.json")
    assert validate_cirr_submission(recall_path, subset_path, cirr_test1) == []
    recall, subset = json.loads(recall_path.read_text()), json.loads(subset_path.read_text())
    assert (recall["version"], recall["metric"], subset["metric"]) == ("rc2", "recall", "recall_subset")
    assert set(recall) == {"version", "metric"} | {str(100 + i) for i in range(8)}
    for t in cirr_test1.triplets:
        answer = recall[str(t.pairid)]
        assert len(set(answer)) == 50 and t.reference not in answer
        assert len(subset[str(t.pairid)]) == 3 and set(subset[str(t.pairid)]) < set(t.group) - {t.reference}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted([recall_path.name, subset_path.name])


def test_cirr_submission_validator_catches_broken_files(
    cirr_test1: SplitData, tiny_clip: ClipEncoder, tmp_path: Path
) -> None:
    recall_path, subset_path = write_cirr_submission(
        tiny_clip, Fuser(None, tiny_clip.dim), cirr_test1, tmp_path, mode=Mode.SUM, show_progress=False
    )
    assert recall_path.name == "recall_submission_cirr.json"  # named after the dataset by default
    recall, subset = json.loads(recall_path.read_text()), json.loads(subset_path.read_text())
    t0, t1, t2 = (cirr_test1.triplets[i] for i in range(3))
    del recall[str(t0.pairid)]
    recall[str(t1.pairid)][1] = recall[str(t1.pairid)][0]
    recall[str(t2.pairid)][-1] = t2.reference
    subset[str(t0.pairid)] = [t0.reference, *subset[str(t0.pairid)][:2]]
    subset["version"] = "rc1"
    recall_path.write_text(json.dumps(recall))
    subset_path.write_text(json.dumps(subset))

    problems = validate_cirr_submission(recall_path, subset_path, cirr_test1)

    assert any(f"no answer for pairid {t0.pairid}" in p for p in problems)
    assert any(f"pairid {t1.pairid}: names repeat" in p for p in problems)
    assert any(f"pairid {t2.pairid}: includes the reference" in p for p in problems)
    assert any(f"{subset_path} pairid {t0.pairid}: includes the reference" in p for p in problems)
    assert any("should say version 'rc2'" in p for p in problems)
    assert len(problems) == 5


def test_cirr_submission_needs_more_than_50_images(tiny_clip: ClipEncoder, tmp_path: Path) -> None:
    paths = write_images(tmp_path / "imgs", 20)
    data = SplitData("shapes", "test1", {p.stem: p for p in paths}, [Triplet(1, "img0000", "a cat", None)])
    with pytest.raises(DatasetError, match="only 20 readable images"):
        write_cirr_submission(
            tiny_clip, Fuser(None, tiny_clip.dim), data, tmp_path / "out", mode=Mode.SUM, show_progress=False
        )
