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

import numpy as np
import torch
from numpy.typing import NDArray

from retrieval.combiner import Fuser, Mode, normalize
from retrieval.datasets.base import SplitData, Triplet, count_skip
from retrieval.datasets.base import read_json as read_annotations
from retrieval.encoders import ClipEncoder
from retrieval.errors import DatasetError
from retrieval.evaluate import Gallery, encode_gallery, query_features, recall_at

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


def target_ranks_keeping_reference(
    queries: NDArray[np.float32], gallery: Gallery, targets: Sequence[str], chunk: int = 1024
) -> NDArray[np.int64]:
    """0-based rank of each target among the whole gallery, the reference included (FashionIQ's protocol,
    which `evaluate.ranked` does not follow: it removes the reference)."""
    features = torch.from_numpy(normalize(gallery.features))
    rows = torch.from_numpy(gallery.rows(targets))
    out = []
    for s in range(0, len(queries), chunk):
        scores = torch.from_numpy(queries[s : s + chunk]) @ features.T
        target_scores = scores[torch.arange(len(scores)), rows[s : s + chunk]]
        out.append((scores > target_scores[:, None]).sum(dim=1).numpy())
    return np.concatenate(out).astype(np.int64) if out else np.zeros(0, np.int64)


def evaluate_fashioniq(
    encoder: ClipEncoder, fuser: Fuser, data: SplitData, mode: Mode, show_progress: bool = True
) -> dict[str, float]:
    """Recall@10/50 per category and their plain average, as CLIP4Cir reports FashionIQ (fractions, not %).

    Keys: "<category>/recall@10", "<category>/recall@50", "<category>/queries", "average/recall@10",
    "average/recall@50", "queries". Each category's queries are ranked against its own images when `data`
    comes from `load_fashioniq`, against all of the split's images otherwise. Queries without a target are
    left out; categories without queries are left out of the average.
    """
    gallery = encode_gallery(encoder, data.images, show_progress=show_progress)
    per_category = data.category_images if isinstance(data, FashionIQSplit) else {}
    categories = list(per_category) or sorted({t.category for t in data.triplets})
    metrics: dict[str, float] = {}
    averaged: list[dict[str, float]] = []
    for category in categories:
        names = [n for n in per_category.get(category, gallery.names) if n in gallery.index]
        sub = Gallery(names, gallery.features[gallery.rows(names)])
        triplets = [
            t for t in data.triplets if t.category == category and t.target in sub.index and t.reference in sub.index
        ]
        label = category or "all"
        metrics[f"{label}/queries"] = float(len(triplets))
        if not triplets:
            continue
        queries = query_features(encoder, fuser, sub, triplets, mode)
        targets = [str(t.target) for t in triplets]  # all set: filtered above
        ranks = target_ranks_keeping_reference(queries, sub, targets)
        recalls = recall_at(ranks, FIQ_KS)
        metrics |= {f"{label}/{key}": value for key, value in recalls.items()}
        averaged.append(recalls)
    for k in FIQ_KS:
        values = [r[f"recall@{k}"] for r in averaged]
        metrics[f"average/recall@{k}"] = float(np.mean(values)) if values else 0.0
    metrics["queries"] = float(sum(v for k, v in metrics.items() if k.endswith("/queries")))
    return metrics
