"""Feature extraction for a whole collection: reader -> encoder -> writer, chunked and resumable.

- `ImageReader` decodes and preprocesses images on a thread pool, a few batches ahead of the model, so
  decoding overlaps encoding (threads rather than DataLoader processes: Celery's worker processes are
  daemons and may not fork children).
- the encoder is any callable from a pixel batch [b, 3, H, W] to features [b, dim] (`ClipEncoder.encode_image_batch`).
- `ChunkStore` persists every `chunk_size` items as one file, written atomically. A run that is killed
  starts again from the first chunk that is missing; a chunk whose inputs changed is recomputed.

Unreadable or corrupt images are skipped with their reason; they never abort the run.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image
from tqdm import tqdm

from retrieval.images import ImageError, open_image

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
    """Decodes items into preprocessed pixel batches on `workers` threads, `prefetch` batches ahead."""

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

    def _load(self, item: Item) -> torch.Tensor | str:
        try:
            return self.preprocess(open_image(item.path, draft_size=self.draft_size))
        except ImageError as exc:
            return str(exc)
        except Exception as exc:  # a transform failing on a strange image is that image's problem only
            return f"{item.path} could not be preprocessed ({type(exc).__name__}: {exc})"

    def batches(self, items: Sequence[Item]) -> Iterator[Batch]:
        groups = [items[i : i + self.batch_size] for i in range(0, len(items), self.batch_size)]
        with ThreadPoolExecutor(self.workers, thread_name_prefix="decode") as pool:
            pending: list[list[Future[torch.Tensor | str]]] = []
            for group in groups[: self.prefetch]:
                pending.append([pool.submit(self._load, it) for it in group])
            for n, group in enumerate(groups):
                results = [f.result() for f in pending.pop(0)]
                if n + self.prefetch < len(groups):
                    pending.append([pool.submit(self._load, it) for it in groups[n + self.prefetch]])
                ok = [(it.id, r) for it, r in zip(group, results, strict=True) if isinstance(r, torch.Tensor)]
                skipped = {it.id: r for it, r in zip(group, results, strict=True) if isinstance(r, str)}
                pixels = torch.stack([r for _, r in ok]) if ok else None
                yield Batch([i for i, _ in ok], pixels, skipped)


class ChunkStore:
    """Chunk files under `directory`: ``chunk_00000.npz`` holds the ids, features and skips of items
    [0, chunk_size), and a fingerprint of those items so a changed input list is never mistaken for done."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def fingerprint(items: Sequence[Item]) -> str:
        digest = hashlib.sha1()
        for it in items:
            digest.update(f"{it.id}\0{it.path}\0{it.stamp}\n".encode())
        return digest.hexdigest()

    def path(self, n: int) -> Path:
        return self.directory / f"chunk_{n:05d}.npz"

    def read(
        self, n: int, items: Sequence[Item]
    ) -> tuple[NDArray[np.int64], NDArray[np.float32], dict[int, str]] | None:
        path = self.path(n)
        if not path.is_file():
            return None
        try:
            with np.load(path) as data:
                if str(data["fingerprint"]) != self.fingerprint(items):
                    return None
                skipped = dict(zip(data["skipped_ids"].tolist(), data["skipped_reasons"].tolist(), strict=True))
                return data["ids"], data["features"], skipped
        except (OSError, ValueError, KeyError):
            return None  # a damaged chunk is simply recomputed

    def write(
        self,
        n: int,
        items: Sequence[Item],
        ids: NDArray[np.int64],
        features: NDArray[np.float32],
        skipped: dict[int, str],
    ) -> None:
        tmp = self.path(n).with_suffix(".tmp.npz")
        np.savez(
            tmp,
            fingerprint=np.array(self.fingerprint(items)),
            ids=ids,
            features=features,
            skipped_ids=np.array(list(skipped), np.int64),
            skipped_reasons=np.array(list(skipped.values()), dtype=str),
        )
        tmp.replace(self.path(n))


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
    """Extract features for `items`, resuming from the chunks already in `work_dir`."""
    store = ChunkStore(work_dir)
    reader = ImageReader(preprocess, batch_size=batch_size, workers=workers, draft_size=draft_size)
    chunks = [items[i : i + chunk_size] for i in range(0, len(items), chunk_size)]
    all_ids: list[NDArray[np.int64]] = []
    all_features: list[NDArray[np.float32]] = []
    skipped: dict[int, str] = {}
    started, done_here, resumed = time.monotonic(), 0, 0
    bar = tqdm(total=len(items), unit="img", desc="extracting", disable=not show_progress, file=sys.stderr)

    def report(done: int, skipped_now: int) -> None:
        elapsed = time.monotonic() - started
        rate = done_here / elapsed if elapsed > 0 and done_here else 0.0
        eta = (len(items) - done) / rate if rate else None
        if on_progress:
            on_progress(Progress(done, len(items), skipped_now, rate, eta))

    done = 0
    for n, chunk in enumerate(chunks):
        cached = store.read(n, chunk)
        if cached is None:
            ids_c: list[int] = []
            feats_c: list[NDArray[np.float32]] = []
            skipped_c: dict[int, str] = {}
            for batch in reader.batches(chunk):
                if should_stop and should_stop():
                    bar.close()
                    raise ExtractionCancelled(f"stopped after {done} of {len(items)} images")
                if batch.pixels is not None:
                    feats_c.append(np.asarray(encode(batch.pixels), np.float32))
                    ids_c.extend(batch.ids)
                skipped_c.update(batch.skipped)
                done += len(batch.ids) + len(batch.skipped)
                done_here += len(batch.ids) + len(batch.skipped)
                bar.update(len(batch.ids) + len(batch.skipped))
                report(done, len(skipped) + len(skipped_c))
            features_c = np.concatenate(feats_c) if feats_c else np.zeros((0, dim), np.float32)
            cached = (np.array(ids_c, np.int64), features_c, skipped_c)
            store.write(n, chunk, *cached)
        else:
            resumed += 1
            done += len(chunk)
            bar.update(len(chunk))
            report(done, len(skipped) + len(cached[2]))
        all_ids.append(cached[0])
        all_features.append(cached[1])
        skipped.update(cached[2])
    bar.close()
    report(done, len(skipped))
    features = np.concatenate(all_features) if all_features else np.zeros((0, dim), np.float32)
    ids = np.concatenate(all_ids) if all_ids else np.zeros(0, np.int64)
    return ExtractionResult(ids, features, skipped, time.monotonic() - started, resumed)
