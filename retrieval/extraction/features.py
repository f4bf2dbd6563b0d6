"""Feature extraction for a whole collection: reader -> encoder -> writer, chunked and resumable.

- `ImageReader` decodes and preprocesses images on a thread pool, a few batches ahead of the model, so
  decoding overlaps encoding (threads rather than DataLoader processes: Celery's worker processes are
  daemons and may not fork children).
- the encoder is any callable from a pixel batch [b, 3, H, W] to features [b, dim] (`ClipEncoder.encode_image_batch`).
- `ChunkStore` persists every `chunk_size` items as one file in a shared store (a folder, or what
  `foundation.shared_store` reaches), written atomically. A run that is killed starts again from the first
  chunk that is missing; a chunk whose inputs changed is recomputed. `extract_chunk` makes one chunk, so
  chunks can be made by different processes on different hosts (the workers' distributed reindex).

Unreadable or corrupt images are skipped with their reason; they never abort the run.
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image
from tqdm import tqdm

from foundation.shared_store import BlobStore, DirectoryStore, StoreError
from retrieval.extraction.images import ImageError, open_image
from retrieval.models.clip_encoder import ClipEncoder
from retrieval.models.precision import compute_threads_set_here

Encode = Callable[[torch.Tensor], NDArray[np.float32]]
Preprocess = Callable[[Image.Image], torch.Tensor]


@dataclass(frozen=True)
class Item:
    """One image to extract: its id (the collection's image id), where its bytes are, and a stamp of the
    file's version (size and mtime, say) so a resumed run never reuses features of an older file."""

    id: int
    path: Path
    stamp: str = ""


@dataclass
class Progress:
    done: int
    total: int
    skipped: int
    images_per_second: float
    eta_seconds: float | None


@dataclass
class ExtractionResult:
    ids: NDArray[np.int64]
    features: NDArray[np.float32]
    skipped: dict[int, str] = field(default_factory=dict)  # image id -> reason
    seconds: float = 0.0
    resumed_chunks: int = 0


class ExtractionCancelled(Exception):
    """The `should_stop` callback asked the run to stop; written chunks are kept for a resume."""


@dataclass
class Batch:
    ids: list[int]
    pixels: torch.Tensor | None
    skipped: dict[int, str]


class ImageReader:
    """Decodes items into preprocessed pixel batches on `workers` threads, `prefetch` batches ahead of the
    one the model encodes (0: a batch is read when it is asked for; `encoder_reader` says which to use)."""

    def __init__(
        self,
        preprocess: Preprocess,
        *,
        batch_size: int = 32,
        workers: int = 2,
        prefetch: int = 2,
        draft_size: int | None = None,
    ) -> None:
        self.preprocess = preprocess
        self.batch_size = batch_size
        self.workers = workers
        self.prefetch = prefetch
        self.draft_size = draft_size

    def read(self, item: Item) -> torch.Tensor | str:
        """One item's preprocessed pixels, or why it cannot be read."""
        try:
            return self.preprocess(open_image(item.path, draft_size=self.draft_size))
        except ImageError as exc:
            return str(exc)
        except Exception as exc:  # a transform failing on a strange image is that image's problem only
            return f"{item.path} could not be preprocessed ({type(exc).__name__}: {exc})"

    def batches(self, items: Sequence[Item]) -> Iterator[Batch]:
        groups = [items[i : i + self.batch_size] for i in range(0, len(items), self.batch_size)]
        # one intra-op thread each: the cores' other threads are the encoder's (compute_threads_set_here)
        with ThreadPoolExecutor(self.workers, "decode", compute_threads_set_here, (1,)) as pool:
            pending: deque[list[Future[torch.Tensor | str]]] = deque()
            for n, group in enumerate(groups):
                while len(pending) <= self.prefetch and n + len(pending) < len(groups):
                    pending.append([pool.submit(self.read, it) for it in groups[n + len(pending)]])
                results = [f.result() for f in pending.popleft()]
                ok = [(it.id, r) for it, r in zip(group, results, strict=True) if isinstance(r, torch.Tensor)]
                skipped = {it.id: r for it, r in zip(group, results, strict=True) if isinstance(r, str)}
                pixels = torch.stack([r for _, r in ok]) if ok else None
                yield Batch([i for i, _ in ok], pixels, skipped)


def encoder_reader(encoder: ClipEncoder, *, batch_size: int = 32) -> ImageReader:
    """How an index worker reads pictures for `encoder`. A JPEG is decoded at a power-of-two fraction of its
    size, never under twice the model's input (features within cosine 0.9999 of the whole decode's:
    tests/engine/test_pixels.py).

    An encoder on the CPU has every core in its team of threads, and a team waits for its slowest thread:
    a decoding thread that takes a core from one of them for a millisecond stalls them all for about as long,
    so decoding beside the encoder cost twice its CPU time. Its pictures are read between batches instead,
    on as many threads as the team has, while the team waits (ViT-B/32 cut to 4 blocks, 97 images/s bare on
    2 cores, about ViT-B/32's speed with AMX: 0.88 of bare, against 0.81 decoding two batches ahead beside
    it). An encoder on an accelerator leaves the cores to decoding: two threads, two batches ahead."""
    draft = 2 * encoder.input_resolution
    if encoder.device.type != "cpu":
        return ImageReader(encoder.preprocess, batch_size=batch_size, workers=2, prefetch=2, draft_size=draft)
    threads = torch.get_num_threads()
    return ImageReader(encoder.preprocess, batch_size=batch_size, workers=threads, prefetch=0, draft_size=draft)


@dataclass
class Chunk:
    """What one chunk of items came to: features of the images read, the reasons of those skipped, and
    who made it (a worker's name, recorded in the chunk file)."""

    ids: NDArray[np.int64]
    features: NDArray[np.float32]
    skipped: dict[int, str] = field(default_factory=dict)
    made_by: str = ""


class ChunkStore:
    """Chunk files in a shared store (foundation.shared_store) under `prefix`: ``<prefix>/chunk_00000.npz``
    holds the ids, features and skips of items [0, chunk_size), and a fingerprint of those items so a
    changed input list is never mistaken for done. Files pass through the local folder `scratch` (a store
    may be remote); a plain folder stands for a store with `ChunkStore(folder)`."""

    def __init__(self, store: BlobStore | str | Path, prefix: str = "", scratch: str | Path | None = None) -> None:
        if isinstance(store, (str, Path)):
            scratch = scratch or Path(store) / ".scratch"
            store = DirectoryStore(store)
        self.store, self.prefix = store, prefix.strip("/")
        self.scratch = Path(scratch or tempfile.mkdtemp(prefix="chunks-"))

    @staticmethod
    def fingerprint(items: Sequence[Item]) -> str:
        """Names the items by id and stamp (or path, for items without a stamp): not by where a host mounts
        them, so a chunk made on one host is recognised on another."""
        digest = hashlib.sha1()
        for it in items:
            digest.update(f"{it.id}\0{it.stamp or it.path}\n".encode())
        return digest.hexdigest()

    def key(self, n: int) -> str:
        name = f"chunk_{n:05d}.npz"
        return f"{self.prefix}/{name}" if self.prefix else name

    def fetch(self, n: int) -> Path | None:
        """A local copy of chunk `n` (in `scratch`), or None when the store has none."""
        local = self.local(n)
        try:
            self.store.get_file(self.key(n), local)
        except StoreError:
            return None
        return local

    def exists(self, n: int) -> bool:
        return self.store.exists(self.key(n))

    def read(self, n: int, items: Sequence[Item], *, keep: bool = False) -> Chunk | None:
        """Chunk `n` if it is in the store and was made from exactly `items`."""
        return self.open(n, self.fingerprint(items), keep=keep)

    def open(self, n: int, fingerprint: str, *, keep: bool = False) -> Chunk | None:
        """Chunk `n` if it is in the store with this fingerprint; its local copy (`local(n)`) is removed
        unless `keep`."""
        local = self.fetch(n)
        if local is None:
            return None
        try:
            with np.load(local) as data:
                if str(data["fingerprint"]) != fingerprint:
                    return None
                skipped = dict(zip(data["skipped_ids"].tolist(), data["skipped_reasons"].tolist(), strict=True))
                made_by = str(data["made_by"]) if "made_by" in data.files else ""
                return Chunk(data["ids"], data["features"], skipped, made_by)
        except (OSError, ValueError, KeyError):
            return None  # a damaged chunk is simply recomputed
        finally:
            if not keep:
                local.unlink(missing_ok=True)

    def local(self, n: int) -> Path:
        return self.scratch / f"chunk_{n:05d}.npz"

    def write(self, n: int, items: Sequence[Item], chunk: Chunk) -> None:
        """Put chunk `n` in the store (atomically: a reader finds the old file or the whole new one)."""
        self.scratch.mkdir(parents=True, exist_ok=True)
        local = self.scratch / f".chunk_{n:05d}.{uuid.uuid4().hex}.npz"
        try:
            np.savez(
                local,
                fingerprint=np.array(self.fingerprint(items)),
                ids=chunk.ids,
                features=chunk.features,
                skipped_ids=np.array(list(chunk.skipped), np.int64),
                skipped_reasons=np.array(list(chunk.skipped.values()), dtype=str),
                made_by=np.array(chunk.made_by),
            )
            self.store.put_file(local, self.key(n))
        finally:
            local.unlink(missing_ok=True)


def extract_chunk(
    items: Sequence[Item],
    encode: Encode,
    reader: ImageReader,
    *,
    dim: int,
    on_batch: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Chunk:
    """Features of one chunk of items. `on_batch(read, skipped)` follows each batch with how many items were
    taken and how many were skipped; `should_stop` is asked before each batch (ExtractionCancelled)."""
    ids: list[int] = []
    features: list[NDArray[np.float32]] = []
    skipped: dict[int, str] = {}
    for batch in reader.batches(items):
        if should_stop and should_stop():
            raise ExtractionCancelled(f"stopped after {len(ids) + len(skipped)} of {len(items)} images")
        if batch.pixels is not None:
            features.append(np.asarray(encode(batch.pixels), np.float32))
            ids.extend(batch.ids)
        skipped.update(batch.skipped)
        if on_batch:
            on_batch(len(batch.ids) + len(batch.skipped), len(batch.skipped))
    stacked = np.concatenate(features) if features else np.zeros((0, dim), np.float32)
    return Chunk(np.array(ids, np.int64), stacked, skipped)


def extract_features(
    items: Sequence[Item],
    encode: Encode,
    preprocess: Preprocess,
    work_dir: str | Path,
    *,
    dim: int,
    chunk_size: int = 1024,
    batch_size: int = 32,
    workers: int = 2,
    draft_size: int | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    show_progress: bool = True,
) -> ExtractionResult:
    """Extract features for `items` in one process, resuming from the chunks already in `work_dir`, and
    return them all (in memory: for evaluation and notebooks; a reindex builds from the chunks instead)."""
    store = ChunkStore(work_dir)
    reader = ImageReader(preprocess, batch_size=batch_size, workers=workers, draft_size=draft_size)
    chunks = [items[i : i + chunk_size] for i in range(0, len(items), chunk_size)]
    made: list[Chunk] = []
    skipped: dict[int, str] = {}
    started, done_here, resumed, done, skipped_now = time.monotonic(), 0, 0, 0, 0
    bar = tqdm(total=len(items), unit="img", desc="extracting", disable=not show_progress, file=sys.stderr)

    def report(read: int, skips: int, fresh: bool = True) -> None:
        nonlocal done, done_here, skipped_now
        done, skipped_now = done + read, skipped_now + skips
        done_here += read if fresh else 0
        bar.update(read)
        elapsed = time.monotonic() - started
        rate = done_here / elapsed if elapsed > 0 and done_here else 0.0
        eta = (len(items) - done) / rate if rate else None
        if on_progress:
            on_progress(Progress(done, len(items), skipped_now, rate, eta))

    try:
        for n, group in enumerate(chunks):
            chunk = store.read(n, group)
            if chunk is None:
                chunk = extract_chunk(group, encode, reader, dim=dim, on_batch=report, should_stop=should_stop)
                store.write(n, group, chunk)
            else:
                resumed += 1
                report(len(group), len(chunk.skipped), fresh=False)
            made.append(chunk)
            skipped.update(chunk.skipped)
        report(0, 0)
    finally:
        bar.close()
    features = np.concatenate([c.features for c in made]) if made else np.zeros((0, dim), np.float32)
    ids = np.concatenate([c.ids for c in made]) if made else np.zeros(0, np.int64)
    return ExtractionResult(ids, features, skipped, time.monotonic() - started, resumed)
