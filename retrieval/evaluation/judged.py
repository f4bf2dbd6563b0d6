"""Rankings with the second stage: the first stage's pool (fused queries by cosine, the reference left out),
ordered by the judge (`retrieval.fusion.judging`), as the worker orders a turn. Used by the open requests'
figures and the closed benchmark's, so both measure what a person is served."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from numpy.typing import NDArray

from retrieval.datasets.base import SplitData
from retrieval.evaluation.recall import Gallery
from retrieval.extraction.features import Item
from retrieval.extraction.regions import extract_regions
from retrieval.fusion.judging import JudgeStage
from retrieval.models.clip_encoder import ClipEncoder
from retrieval.vectors import normalize

BATCH = 32  # requests judged at once


def judged_ranked(
    stage: JudgeStage,
    queries: NDArray[np.float32],
    gallery: Gallery,
    regions: NDArray[np.float16] | NDArray[np.float32],
    references: Sequence[str] | None,
    texts: Sequence[str],
    top: int = 10,
) -> NDArray[np.int64]:
    """Gallery rows of the `top` best of each query [q, top]: the first `stage.pool` by cosine, ordered by the
    judge reading `texts` said of `references` (None: words alone, said of the judge's empty picture, as the
    worker serves them); `regions` [n, cells, dim] are the gallery's, row for row."""
    feats = torch.from_numpy(normalize(gallery.features))
    refs = gallery.rows(references) if references is not None else None
    if refs is None and stage.blank is None:
        raise ValueError("this judge has no empty picture (blank) to read words alone against")
    pool = min(stage.pool, len(gallery.names) - 1)
    out = []
    for s in range(0, len(queries), BATCH):
        scores = torch.from_numpy(queries[s : s + BATCH]) @ feats.T
        if refs is not None:
            scores[torch.arange(len(scores)), torch.from_numpy(refs[s : s + BATCH])] = -torch.inf
            said_of = np.asarray(regions[refs[s : s + BATCH]], np.float32)
        else:
            said_of = np.repeat(np.asarray(stage.blank, np.float32)[None], len(scores), axis=0)
        first = torch.topk(scores, pool, dim=1)
        rows = first.indices.numpy()
        judged = stage.rerank_many(
            list(texts[s : s + BATCH]), said_of, np.asarray(regions[rows], np.float32), first.values.numpy()
        )
        order = np.argsort(-judged, axis=1, kind="stable")[:, :top]
        out.append(np.take_along_axis(rows, order, axis=1))
    return np.concatenate(out) if out else np.zeros((0, top), np.int64)


def gallery_regions(encoder: ClipEncoder, data: SplitData, gallery: Gallery) -> NDArray[np.float16]:
    """The regions of a gallery's pictures [n, cells, dim], row for row (a picture unreadable now: zeros)."""
    read, made, _ = extract_regions(encoder, [Item(row, data.images[name]) for row, name in enumerate(gallery.names)])
    regions = np.zeros((len(gallery.names), *made.shape[1:]), np.float16)
    regions[read] = made
    return regions
