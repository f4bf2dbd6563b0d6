"""CIRR (Liu et al., ICCV 2021), laid out as its authors publish it. `root` is the `cirr_dataset` folder:

  root/{dev,test1,train/<n>}/<name>.png
  root/cirr/captions/cap.rc2.<split>.json        [{pairid, reference, target_hard, caption, img_set}, ...]
  root/cirr/image_splits/split.rc2.<split>.json  {name: "./dev/<name>.png", ...} (paths relative to root)

Splits are "train", "val" and "test1" (test1 has no targets). The shapes world is written in this format too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from retrieval.datasets.base import SplitData, Triplet, count_skip
from retrieval.datasets.base import read_json as read_annotations
from retrieval.errors import DatasetError

SPLITS = ("train", "val", "test1")
LAYOUT = (
    "expected CIRR's layout under the root: cirr/captions/cap.rc2.<split>.json, "
    "cirr/image_splits/split.rc2.<split>.json and the image folders dev/, test1/, train/"
)


def read_json(path: Path, what: str) -> Any:
    return read_annotations(path, what, LAYOUT)


def load_cirr(root: str | Path, split: str, *, check_images: bool = True, dataset: str = "cirr") -> SplitData:
    """Load a CIRR-format split. With `check_images`, entries whose images are not on disk are skipped."""
    root = Path(root)
    if split not in SPLITS:
        raise DatasetError(f"unknown CIRR split {split!r}; choose one of {', '.join(SPLITS)}")
    if not root.is_dir():
        raise DatasetError(f"dataset root {root} does not exist; {LAYOUT}")
    split_map = read_json(root / "cirr" / "image_splits" / f"split.rc2.{split}.json", "image split file")
    entries = read_json(root / "cirr" / "captions" / f"cap.rc2.{split}.json", "caption file")
    if not isinstance(split_map, dict) or not isinstance(entries, list):
        raise DatasetError(f"{root}/cirr does not hold CIRR annotations (a name->path object and a list of entries)")
    images: dict[str, Path] = {}
    missing: set[str] = set()
    outside: set[str] = set()
    inside = root.resolve()
    for name, rel in split_map.items():
        path = (root / str(rel)).resolve()  # symbolic links followed: a link may not lead out either
        if not path.is_relative_to(inside):
            outside.add(name)  # an annotation file must not publish files from elsewhere on the server
        elif check_images and not path.is_file():
            missing.add(name)
        else:
            images[name] = path
    skipped: dict[str, int] = {}
    if missing:
        skipped["image files missing"] = len(missing)
    if outside:
        skipped["image paths outside the dataset root"] = len(outside)
    triplets = []
    for entry in entries:
        try:
            img_set = entry.get("img_set") or {}
            if not isinstance(entry["caption"], str) or not isinstance(img_set, dict):
                raise TypeError("caption must be text and img_set an object")
            triplet = Triplet(
                pairid=int(entry["pairid"]),
                reference=str(entry["reference"]),
                caption=entry["caption"],
                target=str(entry["target_hard"]) if "target_hard" in entry else None,
                group=tuple(str(m) for m in img_set.get("members", ())),
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            count_skip(skipped, "malformed annotation entries")
            continue
        needed = [triplet.reference] + ([triplet.target] if triplet.target else [])
        if any(name not in images for name in needed):
            count_skip(skipped, "annotations naming missing images")
            continue
        triplets.append(triplet)
    return SplitData(dataset, split, images, triplets, skipped)
