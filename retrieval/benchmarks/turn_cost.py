"""`python -m retrieval bench-turn`: one turn as a search worker runs it, in process, at real model size.

A turn: encode the edit text, look up the reference image's stored feature (memory-mapped version on
disk, as workers load it), fuse with a Combiner of CLIP4Cir's size for that encoder (projection 4x and
hidden 8x the feature width), search the collection's index leaving out 50 ids the conversation has
already shown (the reference's nearest neighbours: the hard case). The same run also times the naive turn
(fp32, the full 77-token context, exact flat search, no cache), so the speed-up is a ratio taken side by
side, which noisy shared machines can hold even when absolute figures drift.

Weights are random (`random:<arch>`): they cost exactly what trained ones cost. The collection is
`clustered_features`. Every turn's text is new, so the text LRU never hits; what a hit costs is reported
apart (`text_cached_p50_ms`).
"""

from __future__ import annotations

import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch

from retrieval.benchmarks.synthetic import clustered_features
from retrieval.fusion.fuser import Fuser, Mode
from retrieval.index.faiss_index import IndexParams, VectorIndex
from retrieval.index.versions import load_version, write_version
from retrieval.models.clip_encoder import ClipEncoder, load_clip
from retrieval.models.combiner_model import Combiner
from retrieval.models.precision import Precision
from retrieval.vectors import normalize

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import clip

VERBS = ["make", "turn", "change", "show", "paint", "swap"]
OBJECTS = ["the dress", "the sofa", "the dog", "the car", "the jacket", "the lamp", "the shoes", "the cup"]
EDITS = [
    "red and shorter",
    "blue with longer sleeves",
    "without the stripes",
    "on a sandy beach",
    "in black leather",
    "smaller and rounder",
    "with a floral pattern",
    "facing left instead",
]


def edit_texts(n: int) -> list[str]:
    """`n` distinct modification texts of the usual length (7-10 tokens)."""
    combos = [f"{v} {o} {e}" for e in EDITS for o in OBJECTS for v in VERBS]
    return [combos[i % len(combos)] + (f" please {i // len(combos)}" if i >= len(combos) else "") for i in range(n)]


@dataclass
class TurnFigures:
    arch: str
    count: int
    dim: int
    index_type: str
    precision: str
    turns: int
    excluded: int
    text_p50_ms: float
    reference_p50_ms: float
    combine_p50_ms: float
    search_p50_ms: float
    total_p50_ms: float
    total_p99_ms: float
    text_cached_p50_ms: float
    naive_text_p50_ms: float
    naive_search_p50_ms: float
    naive_p50_ms: float
    naive_p99_ms: float
    speedup_p50: float
    recall_at_10_vs_naive: float
    totals_ms: list[float]


def _p(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 2)


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - start) * 1000


def bench_turn(
    arch: str,
    count: int,
    *,
    turns: int = 200,
    excluded: int = 50,
    index_type: str = "auto",
    params: IndexParams | None = None,
    precision: Precision | None = None,
    k: int = 24,
    seed: int = 0,
) -> TurnFigures:
    encoder = load_clip(f"random:{arch}", precision=precision)
    dim = encoder.dim
    combiner = Combiner(dim, dim * 4, dim * 8).eval()
    fuser = Fuser(combiner, dim, int8=encoder.precision.combiner == "int8")
    naive_fuser = Fuser(combiner, dim)  # the naive turn: the fp32 Combiner
    clusters = max(count // 500, 10)
    ids = np.arange(10_000, 10_000 + count, dtype=np.int64)  # ids as a database hands them out, not 0..n
    rng = np.random.default_rng(seed)
    references = rng.choice(ids, turns, replace=count < turns)
    texts = edit_texts(turns + 5)
    with tempfile.TemporaryDirectory() as tmp:
        features = clustered_features(count, dim, clusters=clusters, seed=seed)
        write_version(tmp, ids, features, encoder=arch, combiner="random", index_type=index_type, params=params)
        naive_index = VectorIndex.build(ids, features, index_type="flat")
        del features
        version = load_version(f"{tmp}/v1")
        seen = _neighbours(naive_index, version.features_of(references), excluded)
        fast_text: TextFn = lambda t: encoder.encode_texts([t])  # noqa: E731
        naive_text = _full_context_text(encoder)
        fast_index, ref0 = version.index, int(references[0])
        _turn(fast_text, fuser, version, fast_index, texts[-1], ref0, seen[0], k)  # warm-up
        _turn(naive_text, naive_fuser, version, naive_index, texts[-2], ref0, seen[0], k)
        fast: list[dict[str, float]] = []
        naive: list[dict[str, float]] = []
        found, truth = [], []
        for i in range(turns):  # interleaved, so both see the same load on the machine
            ref = int(references[i])
            got, times = _turn(fast_text, fuser, version, fast_index, texts[i], ref, seen[i], k)
            fast.append(times)
            found.append(got)
            want, times = _turn(naive_text, naive_fuser, version, naive_index, texts[i], ref, seen[i], k)
            naive.append(times)
            truth.append(want)
        cached = [_timed(partial(fast_text, t))[1] for t in texts[: min(turns, 50)]]
        index_type = version.index.index_type
    totals = [t["total"] for t in fast]
    naive_totals = [t["total"] for t in naive]
    recall = float(np.mean([len(set(f[:10]) & set(t[:10])) / 10 for f, t in zip(found, truth, strict=True)]))
    return TurnFigures(
        arch=arch,
        count=count,
        dim=dim,
        index_type=index_type,
        precision=encoder.precision.describe(),
        turns=turns,
        excluded=excluded,
        text_p50_ms=_p([t["text"] for t in fast], 50),
        reference_p50_ms=_p([t["reference"] for t in fast], 50),
        combine_p50_ms=_p([t["combine"] for t in fast], 50),
        search_p50_ms=_p([t["search"] for t in fast], 50),
        total_p50_ms=_p(totals, 50),
        total_p99_ms=_p(totals, 99),
        text_cached_p50_ms=_p(cached, 50),
        naive_text_p50_ms=_p([t["text"] for t in naive], 50),
        naive_search_p50_ms=_p([t["search"] for t in naive], 50),
        naive_p50_ms=_p(naive_totals, 50),
        naive_p99_ms=_p(naive_totals, 99),
        speedup_p50=round(float(np.median(naive_totals) / np.median(totals)), 2),
        recall_at_10_vs_naive=round(recall, 4),
        totals_ms=[round(t, 2) for t in totals],
    )


def _neighbours(index: VectorIndex, queries: np.ndarray, n: int) -> list[list[int]]:
    """The ids nearest each reference: what earlier turns of its conversation would have shown."""
    if n == 0:
        return [[] for _ in queries]
    _, ids = index.search(normalize(queries), n)
    return [[int(i) for i in row] for row in ids]


TextFn = Callable[[str], np.ndarray]


def _turn(
    text_fn: TextFn, fuser: Fuser, version: Any, index: VectorIndex, text: str, reference: int, seen: list[int], k: int
) -> tuple[list[int], dict[str, float]]:
    """What `workers/search.py` does for one turn, minus the database: stage by stage, timed."""
    start = time.perf_counter()
    txt, t_text = _timed(lambda: text_fn(text))
    img, t_ref = _timed(lambda: version.features_of([reference]))
    query, t_comb = _timed(lambda: fuser.fuse(Mode.COMBINER, img, txt))
    (_, ids), t_search = _timed(lambda: index.search(query, k, exclude=seen))
    total = (time.perf_counter() - start) * 1000
    times = {"text": t_text, "reference": t_ref, "combine": t_comb, "search": t_search, "total": total}
    return [int(i) for i in ids[0]], times


def _full_context_text(encoder: ClipEncoder) -> TextFn:
    """fp32, all 77 positions, no cache: the text encoder as OpenAI's code runs it."""

    @torch.inference_mode()
    def encode(text: str) -> np.ndarray:
        tokens = clip.tokenize([text], context_length=encoder.context_length, truncate=True)
        return encoder.model.encode_text(tokens).float().numpy()

    return encode
