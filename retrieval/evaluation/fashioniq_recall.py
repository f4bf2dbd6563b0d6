"""FashionIQ's protocol, as CLIP4Cir reports it: Recall@10/50 per category, ranked against the category's own
images with the reference kept in the gallery, and their plain average."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from numpy.typing import NDArray

from retrieval.datasets.base import SplitData
from retrieval.datasets.fashioniq import FIQ_KS, FashionIQSplit
from retrieval.evaluation.recall import Gallery, encode_gallery, query_features, recall_at
from retrieval.fusion.fuser import Fuser, Mode
from retrieval.models.clip_encoder import ClipEncoder
from retrieval.vectors import normalize


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
