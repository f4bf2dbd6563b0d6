"""Speed and memory measurements, printed as figures (the README's Benchmarks section comes from here).

Architectures at full size with random weights cost exactly what trained ones cost to run, so encoder
throughput is measured without the real weights. Index figures use `clustered_features`.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from retrieval.benchmarks.synthetic import clustered_features
from retrieval.extraction.features import ChunkStore, ImageReader, Item, encoder_reader, extract_chunk
from retrieval.index.faiss_index import INDEX_TYPES, IndexParams, VectorIndex
from retrieval.models.clip_encoder import ClipEncoder
from retrieval.models.clip_weights import CLIP, build_random_clip
from retrieval.models.precision import Precision, compute_threads_set_here, precision_for
from retrieval.models.preprocessing import make_preprocess
from retrieval.vectors import normalize

PROMPTS = [
    "make the dress red and shorter",
    "same scene but without the person",
    "the dog is running on the beach instead",
    "change the circle to a blue square",
]


@dataclass
class EncodeFigures:
    architecture: str
    precision: str
    batch: int
    images_per_second: float
    texts_per_second: float
    ms_per_single_text: float
    image_cosine_vs_fp32: float
    text_cosine_vs_fp32: float
    compile_seconds: float = 0.0  # once per process, before the timed runs (0: eager)


def _cosine_min(a: np.ndarray, b: np.ndarray) -> float:
    return float(((normalize(a) * normalize(b)).sum(1)).min())


def bench_encode(
    architecture: str, batch: int = 32, repeats: int = 1, precisions: tuple[str, ...] = ("fp32", "auto")
) -> list[EncodeFigures]:
    """Throughput of each precision on the same model and inputs, side by side; `auto` is what this CPU
    gets (`retrieval.models.precision`). Cosines are the worst image / text against fp32 on the same inputs."""
    model = build_random_clip(architecture)
    res = int(model.visual.input_resolution)
    pixels = torch.randn(batch, 3, res, res)
    texts = [PROMPTS[i % len(PROMPTS)] for i in range(batch)]
    out, reference = [], None
    for name in precisions:
        chosen = load_clip_precision(model, name)
        encoder = ClipEncoder(model, make_preprocess(res), torch.device("cpu"), architecture, chosen)
        encoder.expect_images(10_000)  # what an indexing job asks for
        start = time.perf_counter()
        encoder.encode_image_batch(pixels if chosen.compile_images else pixels[:2])  # warm-up (and compile)
        compiled = time.perf_counter() - start if chosen.compile_images else 0.0
        encoder._encode_texts_now(texts[:2], batch)
        start = time.perf_counter()
        for _ in range(repeats):
            image_features = encoder.encode_image_batch(pixels)
        images = batch * repeats / (time.perf_counter() - start)
        start = time.perf_counter()
        for _ in range(repeats * 4):
            text_features = encoder._encode_texts_now(texts, batch)  # uncached: the encoder's own speed
        text_rate = batch * repeats * 4 / (time.perf_counter() - start)
        start = time.perf_counter()
        for prompt in PROMPTS * 3:
            encoder._encode_texts_now([prompt], 1)
        single = (time.perf_counter() - start) / (len(PROMPTS) * 3) * 1000
        reference = reference or (image_features, text_features)
        label = f"{name} ({chosen.describe()})" if name == "auto" else name
        out.append(
            EncodeFigures(
                architecture,
                label,
                batch,
                round(images, 2),
                round(text_rate, 1),
                round(single, 1),
                round(_cosine_min(image_features, reference[0]), 5),
                round(_cosine_min(text_features, reference[1]), 5),
                round(compiled, 1),
            )
        )
        print(json.dumps(asdict(out[-1])), file=sys.stderr, flush=True)
        if chosen.channels_last:  # leave the shared model as the next precision expects it
            model.visual.to(memory_format=torch.contiguous_format)
    return out


def load_clip_precision(model: CLIP, name: str) -> Precision:
    """`auto` (this CPU's choice for the model) or a named lever."""
    return precision_for(model, device=torch.device("cpu")) if name == "auto" else Precision.named(name)


@dataclass
class ExtractFigures:
    architecture: str
    precision: str
    images: int
    batch: int
    bare_images_per_second: float
    extraction_images_per_second: float
    ratio: float
    decode_ms: float  # CPU time to decode and preprocess one picture, on one thread
    peak_rss_mb: float


def _bare_rate(encoder: ClipEncoder, batches: list[torch.Tensor], images: int) -> float:
    start = time.perf_counter()
    for pixels in batches:
        encoder.encode_image_batch(pixels)
    return images / (time.perf_counter() - start)


def _decode_ms(reader: ImageReader, items: list[Item]) -> float:
    """CPU time to read one item (decode and preprocess), on one thread set up as a decoding thread is."""

    def reads() -> float:
        start = time.thread_time()
        for item in items:
            reader.read(item)
        return (time.thread_time() - start) / len(items) * 1000

    with ThreadPoolExecutor(1, "decode", compute_threads_set_here, (1,)) as pool:
        return pool.submit(reads).result()


def bench_extract(
    architecture: str, images: int = 64, batch: int = 32, rounds: int = 3, *, blocks: int = 0
) -> ExtractFigures:
    """The whole extraction as an index worker runs it (JPEG files decoded on threads, preprocessed, encoded,
    chunks written) against the bare encoder on the same pixel batches, with this CPU's precision: `rounds` of
    each, alternated, and the median of each (the ratio is whole / bare, at most about 1: extraction is the
    bare work plus decoding and I/O). Beside it, the CPU time that decoding one picture takes on its own.

    `blocks` cuts a ViT's image tower to its first blocks: a stand-in for a faster CPU (ViT-B/32 with AMX
    encodes about 4x faster than with AVX-512 BF16 alone), where decoding weighs more against the encoder."""
    model = build_random_clip(architecture)
    if blocks:
        tower = getattr(getattr(model.visual, "transformer", None), "resblocks", None)  # a ViT's; a ResNet has none
        if tower is None or not 0 < blocks <= len(tower):
            raise ValueError(f"{architecture} has no {blocks} transformer blocks to keep")
        architecture = f"{architecture}, first {blocks} of {len(tower)} blocks"
        model.visual.transformer.resblocks = tower[:blocks]
    res = int(model.visual.input_resolution)
    encoder = ClipEncoder(
        model, make_preprocess(res), torch.device("cpu"), architecture, load_clip_precision(model, "auto")
    )
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        items = []
        for i in range(images):
            path = Path(tmp) / f"{i}.jpg"
            Image.fromarray(rng.integers(0, 255, (res + 64, res + 96, 3), np.uint8)).save(path, quality=90)
            items.append(Item(i, path))
        reader = encoder_reader(encoder, batch_size=batch)
        batches = [b.pixels for b in reader.batches(items) if b.pixels is not None]
        decode_ms = _decode_ms(reader, items)
        encoder.expect_images(10_000)  # what an indexing job asks for
        encoder.encode_image_batch(batches[0])  # warm-up at the full batch shape (kernels are shape-specific)
        bares, wholes = [], []
        for round_ in range(rounds):  # alternated, so both see the same machine (others' load comes and goes)
            bares.append(_bare_rate(encoder, batches, images))
            store = ChunkStore(Path(tmp) / f"chunks-{round_}")  # a fresh folder: nothing from the previous round
            start = time.perf_counter()
            chunk = extract_chunk(items, encoder.encode_image_batch, reader, dim=encoder.dim)
            store.write(0, items, chunk)
            wholes.append(images / (time.perf_counter() - start))
        bare, whole = statistics.median(bares), statistics.median(wholes)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return ExtractFigures(
        architecture,
        encoder.precision.describe(),
        images,
        batch,
        round(bare, 2),
        round(whole, 2),
        round(whole / bare, 3),
        round(decode_ms, 2),
        round(peak, 1),
    )


@dataclass
class IndexFigures:
    index_type: str
    count: int
    dim: int
    setting: str
    build_seconds: float
    index_mb: float
    resident_mb_after_mmap_load: float
    excluded: int
    ms_per_query: float
    recall_at_10: float


def _rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _exact_neighbours(features: np.ndarray, queries: np.ndarray, n: int) -> np.ndarray:
    """Row numbers of each query's `n` nearest gallery vectors, best first (chunked: bounded memory)."""
    gallery = normalize(features)
    out = np.empty((len(queries), n), np.int64)
    for start in range(0, len(queries), 16):
        sims = queries[start : start + 16] @ gallery.T
        top = np.argpartition(-sims, n - 1, axis=1)[:, :n]
        order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1, kind="stable")
        out[start : start + 16] = np.take_along_axis(top, order, axis=1)
    return out


def _settings(index_type: str, nprobes: list[int], ef_searches: list[int], p: IndexParams) -> list[IndexParams]:
    """The search settings to sweep for one built index (build parameters unchanged)."""
    if index_type.startswith("ivf") and nprobes:
        return [replace(p, nprobe=min(n, p.nlist)) for n in nprobes]
    if index_type == "hnsw" and ef_searches:
        return [replace(p, ef_search=e) for e in ef_searches]
    return [p]


def _label(index_type: str, p: IndexParams) -> str:
    if index_type.startswith("ivf"):
        return f"nlist {p.nlist}, nprobe {p.nprobe}"
    if index_type == "hnsw":
        return f"M {p.hnsw_m}, efSearch {p.ef_search}"
    return "exact"


def bench_index(
    count: int,
    dim: int,
    types: list[str],
    queries: int = 200,
    seed: int = 0,
    *,
    exclude: int = 0,
    params: IndexParams | None = None,
    nprobes: list[int] | None = None,
    ef_searches: list[int] | None = None,
) -> list[IndexFigures]:
    """Build each index type once, then time single queries for each search setting. With `exclude`, each
    query leaves out that many ids drawn from its own 2·exclude nearest (what a conversation has already
    seen), and recall is against the exact top 10 of what remains."""
    features = clustered_features(count, dim, clusters=max(count // 500, 10), seed=seed)
    ids = np.arange(count, dtype=np.int64)
    qs = normalize(clustered_features(queries, dim, clusters=max(count // 500, 10), seed=seed + 1))
    near = _exact_neighbours(features, qs, 2 * exclude + 10)
    rng = np.random.default_rng(seed)
    excluded = [
        set(rng.choice(row[: 2 * exclude], exclude, replace=False).tolist()) if exclude else set() for row in near
    ]
    truth = [[i for i in row if i not in ex][:10] for row, ex in zip(near, excluded, strict=True)]
    out = []
    for index_type in types:
        start = time.perf_counter()
        index = VectorIndex.build(ids, features, index_type=index_type, params=params)
        build = time.perf_counter() - start
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "index.faiss"
            index.save(path)
            size = path.stat().st_size / 2**20
            before = _rss_mb()
            loaded = VectorIndex.load(path, index_type, index.params, ids=ids, mmap=True, exact=index.exact)
            resident = _rss_mb() - before
            for setting in _settings(index_type, nprobes or [], ef_searches or [], index.params):
                loaded.params = setting
                loaded.search(qs[:5], 10)
                start = time.perf_counter()
                found = [loaded.search(q[None], 10, exclude=ex)[1][0] for q, ex in zip(qs, excluded, strict=True)]
                per_query = (time.perf_counter() - start) / queries * 1000
                recall = float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)]))
                out.append(
                    IndexFigures(
                        index_type,
                        count,
                        dim,
                        _label(index_type, setting),
                        round(build, 2),
                        round(size, 1),
                        round(resident, 1),
                        exclude,
                        round(per_query, 2),
                        round(recall, 4),
                    )
                )
                print(json.dumps(asdict(out[-1])), file=sys.stderr, flush=True)
            del loaded
        del index
    return out


__all__ = ["INDEX_TYPES", "bench_encode", "bench_extract", "bench_index"]
