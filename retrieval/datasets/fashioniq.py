"""FashionIQ (Wu et al., CVPR 2021), laid out as its authors publish it:

  root/captions/cap.<category>.<split>.json          [{target, candidate, captions: [c1, c2]}, ...]
  root/image_splits/split.<category>.<split>.json    [name, ...]
  root/images/<name>.png

Categories are "dress", "shirt" and "toptee"; splits "train", "val" and "test" (test entries may lack their
target). Each category is evaluated on its own: its queries are ranked against that category's images only,
and, unlike CIRR, the reference image stays in the ranking (CLIP4Cir's `compute_fiq_val_metrics`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrieval.datasets.base import SplitData, Triplet, count_skip
from retrieval.datasets.base import read_json as read_annotations
from retrieval.errors import DatasetError

SPLITS = ("train", "val", "test")
CATEGORIES = ("dress", "shirt", "toptee")
FIQ_KS = (10, 50)
LAYOUT = (
    "expected FashionIQ's layout under the root: captions/cap.<category>.<split>.json, "
    "image_splits/split.<category>.<split>.json and images/<name>.png"
)


@dataclass
class FashionIQSplit(SplitData):
    """A FashionIQ split: `images` is the union of the categories' images, `category_images` each one's own
    (the gallery its queries are ranked against)."""

    category_images: dict[str, tuple[str, ...]] = field(default_factory=dict)


def read_json(path: Path, what: str) -> Any:
    return read_annotations(path, what, LAYOUT)


def join_captions(first: str, second: str) -> str:
    """The two annotators' captions as one sentence, exactly as CLIP4Cir joins them."""
    return f"{first.strip('.?, ').capitalize()} and {second.strip('.?, ')}"


def load_fashioniq(
    root: str | Path,
    split: str,
    *,
    categories: Sequence[str] = CATEGORIES,
    check_images: bool = True,
) -> FashionIQSplit:
    """Load a FashionIQ split over `categories`. With `check_images`, entries whose images are not on disk
    are skipped. `pairid` is the entry's position in the categories' caption files, read in order."""
    root = Path(root)
    if split not in SPLITS:
        raise DatasetError(f"unknown FashionIQ split {split!r}; choose one of {', '.join(SPLITS)}")
    categories = (categories,) if isinstance(categories, str) else tuple(categories)
    for category in categories or ("",):
        if category not in CATEGORIES:
            raise DatasetError(f"unknown FashionIQ category {category!r}; choose among {', '.join(CATEGORIES)}")
    if not root.is_dir():
        raise DatasetError(f"dataset root {root} does not exist; {LAYOUT}")
    if check_images and not (root / "images").is_dir():
        raise DatasetError(f"image folder {root / 'images'} does not exist; {LAYOUT}")
    images: dict[str, Path] = {}
    missing: set[str] = set()
    outside: set[str] = set()
    image_root = (root / "images").resolve()
    category_images: dict[str, tuple[str, ...]] = {}
    category_sets: dict[str, set[str]] = {}
    entries_of: dict[str, list[Any]] = {}
    for category in categories:
        split_path = root / "image_splits" / f"split.{category}.{split}.json"
        names = read_json(split_path, "image split file")
        entries = read_json(root / "captions" / f"cap.{category}.{split}.json", "caption file")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise DatasetError(f"image split file {split_path} does not hold a list of image names")
        if not isinstance(entries, list):
            raise DatasetError(f"caption file {root}/captions/cap.{category}.{split}.json does not hold a list")
        for name in names:
            path = root / "images" / f"{name}.png"
            if not path.resolve().is_relative_to(image_root):  # "../" in a name, or a link leading out
                outside.add(name)
            elif check_images and name not in images and not path.is_file():
                missing.add(name)
            else:
                images[name] = path
        category_images[category] = tuple(dict.fromkeys(n for n in names if n in images))
        category_sets[category] = set(category_images[category])
        entries_of[category] = entries
    skipped: dict[str, int] = {}
    if missing:
        skipped["image files missing"] = len(missing)
    if outside:
        skipped["image paths outside the dataset root"] = len(outside)
    triplets = []
    position = -1
    for category, entries in entries_of.items():
        for entry in entries:
            position += 1
            triplet = parse_entry(entry, position, category, split)
            if triplet is None:
                count_skip(skipped, "malformed annotation entries")
                continue
            needed = [triplet.reference] + ([triplet.target] if triplet.target else [])
            if any(name not in category_sets[category] for name in needed):
                count_skip(skipped, "annotations naming missing images")
                continue
            triplets.append(triplet)
    return FashionIQSplit("fashioniq", split, images, triplets, skipped, category_images)


def parse_entry(entry: Any, pairid: int, category: str, split: str) -> Triplet | None:
    """One caption-file entry as a Triplet, or None when it is malformed."""
    if not isinstance(entry, dict):
        return None
    captions, reference, target = entry.get("captions"), entry.get("candidate"), entry.get("target")
    if not isinstance(captions, list) or len(captions) != 2 or not all(isinstance(c, str) for c in captions):
        return None
    if not isinstance(reference, str) or not (isinstance(target, str) or (target is None and split == "test")):
        return None
    first, second = captions
    return Triplet(
        pairid=pairid,
        reference=reference,
        caption=join_captions(first, second),
        target=target,
        captions=(join_captions(first, second), join_captions(second, first)),
        category=category,
    )
