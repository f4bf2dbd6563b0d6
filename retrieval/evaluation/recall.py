"""Evaluation: Recall@K and Recall_subset@K under CIRR's protocol, FashionIQ's per-category recall.

CIRR protocol, as its authors' evaluation code computes it: the gallery is every image of the split; the
reference image is removed from each query's ranking; Recall@K is the share of queries whose target is in
the top K. Recall_subset@K ranks only the query's img_set members (reference removed).
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from retrieval.datasets.base import SplitData, Triplet
from retrieval.extraction.features import Item, extract_features
from retrieval.fusion.fuser import Fuser, Mode
from retrieval.models.clip_encoder import ClipEncoder
from retrieval.vectors import normalize

RECALL_KS = (1, 5, 10, 50)
SUBSET_KS = (1, 2, 3)


@dataclass
class Gallery:
    """Encoded images of a split: raw features [n, dim] in the order of `names`."""

    names: list[str]
    features: NDArray[np.float32]
    index: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.index = {n: i for i, n in enumerate(self.names)}

    def rows(self, names: Sequence[str]) -> NDArray[np.int64]:
        return np.array([self.index[n] for n in names], np.int64)


def encode_gallery(
    encoder: ClipEncoder,
    images: dict[str, Path],
    work_dir: Path | None = None,
    batch_size: int = 64,
    show_progress: bool = True,
) -> Gallery:
    """Features of every image of a split (unreadable files are left out, and said so on stderr)."""
    names = sorted(images)
    items = [Item(i, images[n]) for i, n in enumerate(names)]
    encoder.expect_images(len(items))
    with tempfile.TemporaryDirectory() as tmp:
        result = extract_features(
            items,
            encoder.encode_image_batch,
            encoder.preprocess,
            work_dir or tmp,
            dim=encoder.dim,
            chunk_size=4096,
            batch_size=batch_size,
            show_progress=show_progress,
        )
    if result.skipped:
        print(f"warning: {len(result.skipped)} images could not be read and are left out", file=sys.stderr)
    return Gallery([names[i] for i in result.ids], result.features)


def query_features(
    encoder: ClipEncoder, fuser: Fuser, gallery: Gallery, triplets: Sequence[Triplet], mode: Mode, batch_size: int = 256
) -> NDArray[np.float32]:
    """Fused, normalized query features [q, dim] for `triplets` (references taken from `gallery`)."""
    out = []
    for i in range(0, len(triplets), batch_size):
        chunk = triplets[i : i + batch_size]
        image = gallery.features[gallery.rows([t.reference for t in chunk])] if mode.needs_image else None
        text = encoder.encode_texts([t.caption for t in chunk]) if mode.needs_text else None
        out.append(fuser.fuse(mode, image, text))
    return np.concatenate(out) if out else np.zeros((0, gallery.features.shape[1]), np.float32)


def ranked(
    queries: NDArray[np.float32], gallery: Gallery, references: Sequence[str], top: int = 50, chunk: int = 1024
) -> NDArray[np.int64]:
    """Gallery rows of the `top` best matches of each query, its reference removed: [q, top]."""
    targets = torch.from_numpy(normalize(gallery.features))
    refs = gallery.rows(references)
    top = min(top, len(gallery.names) - 1)
    out = []
    for s in range(0, len(queries), chunk):
        scores = torch.from_numpy(queries[s : s + chunk]) @ targets.T
        scores[torch.arange(len(scores)), torch.from_numpy(refs[s : s + chunk])] = -torch.inf
        out.append(torch.topk(scores, top, dim=1).indices.numpy())
    return np.concatenate(out) if out else np.zeros((0, top), np.int64)


def recall_at(ranks: NDArray[np.int64], ks: Sequence[int]) -> dict[str, float]:
    """`ranks` are 0-based ranks of the target (a large number when it is not retrieved)."""
    return {f"recall@{k}": float((ranks < k).mean()) if len(ranks) else 0.0 for k in ks}


def target_ranks(top_rows: NDArray[np.int64], gallery: Gallery, targets: Sequence[str]) -> NDArray[np.int64]:
    rows = gallery.rows(targets)
    hits = top_rows == rows[:, None]
    return np.where(hits.any(axis=1), hits.argmax(axis=1), 10**9)


def subset_ranks(queries: NDArray[np.float32], gallery: Gallery, triplets: Sequence[Triplet]) -> NDArray[np.int64]:
    """Rank of the target among its img_set (reference removed), for Recall_subset."""
    feats = normalize(gallery.features)
    out = []
    for q, t in zip(queries, triplets, strict=True):
        members = [m for m in dict.fromkeys(t.group) if m != t.reference and m in gallery.index]
        scores = feats[gallery.rows(members)] @ q
        order = [members[i] for i in np.argsort(-scores, kind="stable")]
        out.append(order.index(t.target) if t.target in order else 10**9)
    return np.array(out, np.int64)


def evaluate_split(
    encoder: ClipEncoder,
    fuser: Fuser,
    data: SplitData,
    mode: Mode,
    gallery: Gallery | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Recall@1/5/10/50 (and Recall_subset@1/2/3 where queries have img_sets) on a split with targets;
    `recall_curve` holds Recall@K for K = 1..50, for the plot."""
    gallery = gallery or encode_gallery(encoder, data.images, show_progress=show_progress)
    triplets = [
        t for t in data.triplets if t.target is not None and t.target in gallery.index and t.reference in gallery.index
    ]
    queries = query_features(encoder, fuser, gallery, triplets, mode)
    top = ranked(queries, gallery, [t.reference for t in triplets], top=max(RECALL_KS))
    metrics: dict[str, Any] = {"queries": len(triplets), "gallery": len(gallery.names)}
    ranks = target_ranks(top, gallery, [t.target for t in triplets if t.target])
    metrics |= recall_at(ranks, RECALL_KS)
    if triplets and all(t.group for t in triplets):
        sub = recall_at(subset_ranks(queries, gallery, triplets), SUBSET_KS)
        metrics |= {k.replace("recall@", "recall_subset@"): v for k, v in sub.items()}
    metrics["recall_curve"] = [round(float((ranks < k).mean()), 4) if len(ranks) else 0.0 for k in range(1, 51)]
    return metrics


def recall_plot(curves: dict[str, dict[str, Any]], path: Path) -> Path:
    """Recall@K against K (1..50), one line per mode, written as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for mode, metrics in curves.items():
        curve = metrics["recall_curve"]
        ax.plot(range(1, len(curve) + 1), curve, label=mode)
    ax.set(xlabel="K", ylabel="Recall@K", xscale="log", ylim=(0, 1.01), title="Recall@K")
    ax.grid(alpha=0.3)
    ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def format_metrics(metrics: dict[str, Any]) -> str:
    """'recall@1=0.412 recall@5=...': the scalar recall figures of `metrics`, for logs."""
    return " ".join(f"{k}={v:.3f}" for k, v in metrics.items() if "recall" in k and isinstance(v, float))
