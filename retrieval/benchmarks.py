"""Speed and memory measurements, printed as figures (the README's Benchmarks section comes from here).

Architectures at full size with random weights cost exactly what trained ones cost to run, so encoder
throughput is measured without the real weights. Index figures use `clustered_features`.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from retrieval.combiner import normalize
from retrieval.encoders import ClipEncoder, build_random_clip, make_preprocess
from retrieval.index import INDEX_TYPES, VectorIndex
from retrieval.synthetic import clustered_features

PROMPTS = [
    "make the dress red and shorter",
    "same scene but without the person",
    "the dog is running on the beach instead",
    "change the circle to a blue square",
]


@dataclass
class EncodeFigures:
    architecture: str
    batch: int
    images_per_second: float
    texts_per_second: float
    ms_per_single_text: float


def bench_encode(architecture: str, batch: int = 32, repeats: int = 1) -> EncodeFigures:
    model = build_random_clip(architecture)
    encoder = ClipEncoder(model, make_preprocess(model.visual.input_resolution), torch.device("cpu"), architecture)
    res = encoder.input_resolution
    pixels = torch.randn(batch, 3, res, res)
    texts = [PROMPTS[i % len(PROMPTS)] for i in range(batch)]
    encoder.encode_image_batch(pixels[:2])  # warm-up: allocator and kernels
    encoder.encode_texts(texts[:2])
    start = time.perf_counter()
    for _ in range(repeats):
        encoder.encode_image_batch(pixels)
    images = batch * repeats / (time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(repeats * 4):
        encoder.encode_texts(texts, batch_size=batch)
    text_rate = batch * repeats * 4 / (time.perf_counter() - start)
    start = time.perf_counter()
    for prompt in PROMPTS * 3:
        encoder.encode_texts([prompt])
    single = (time.perf_counter() - start) / (len(PROMPTS) * 3) * 1000
    return EncodeFigures(architecture, batch, round(images, 2), round(text_rate, 1), round(single, 1))


@dataclass
class IndexFigures:
    index_type: str
    count: int
    dim: int
    build_seconds: float
    index_mb: float
    resident_mb_after_mmap_load: float
    ms_per_query: float
    recall_at_10: float


def _rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def bench_index(count: int, dim: int, types: list[str], queries: int = 200, seed: int = 0) -> list[IndexFigures]:
    features = clustered_features(count, dim, clusters=max(count // 500, 10), seed=seed)
    ids = np.arange(count, dtype=np.int64)
    qs = normalize(clustered_features(queries, dim, clusters=max(count // 500, 10), seed=seed + 1))
    truth = np.argsort(-(qs @ normalize(features).T), axis=1)[:, :10]
    out = []
    for index_type in types:
        start = time.perf_counter()
        index = VectorIndex.build(ids, features, index_type=index_type)
        build = time.perf_counter() - start
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "index.faiss"
            index.save(path)
            size = path.stat().st_size / 2**20
            before = _rss_mb()
            loaded = VectorIndex.load(path, index_type, index.params, ids=ids, mmap=True, exact=index.exact)
            resident = _rss_mb() - before
            loaded.search(qs[:5], 10)
            start = time.perf_counter()
            found = np.concatenate([loaded.search(q[None], 10)[1] for q in qs])  # one query at a time, as turns come
            per_query = (time.perf_counter() - start) / queries * 1000
            del loaded
        recall = float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)]))
        out.append(
            IndexFigures(
                index_type,
                count,
                dim,
                round(build, 2),
                round(size, 1),
                round(resident, 1),
                round(per_query, 2),
                round(recall, 4),
            )
        )
        print(json.dumps(asdict(out[-1])), file=sys.stderr, flush=True)
    return out


__all__ = ["INDEX_TYPES", "bench_encode", "bench_index"]
