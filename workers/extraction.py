"""Making one chunk of a reindex: claimed by any index worker on any host (the chunk task), or by the job's
coordinator (workers/indexing.py), which makes the chunks nobody took.

A chunk's items come from its row (image ids and stamps); where their files are is read from this host's
catalog, and the encoder must be the one the plan names (its identity hashes the checkpoint's bytes, so a
copy on another host agrees). A chunk already in the shared store with the same fingerprint is never made
again. The file goes to the store before the row says done, so a worker killed in between costs only the
file's discovery by the next claimant.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from cirweb.catalog import chunks, selectors
from cirweb.catalog import services as catalog
from cirweb.catalog.chunks import PlannedChunk
from cirweb.catalog.models import ReindexChunk
from cirweb.files import storage
from cirweb.processes.faults import fault_point
from cirweb.processes.liveness import process_identity
from foundation.explained_error import ExplainedError
from retrieval.extraction.features import Chunk, ChunkStore, ExtractionCancelled, Item, encoder_reader, extract_chunk
from workers.runtime import Models, runtime

log = logging.getLogger(__name__)
PROGRESS_EVERY = 0.5  # seconds between a chunk's beats (each also asks whether to go on)


def chunk_store(job_id: int) -> ChunkStore:
    """The job's chunk files in the shared store, through this host's cache."""
    scratch = Path(settings.CIR_CACHE_DIR) / storage.job_chunks_key(job_id=job_id)
    return ChunkStore(storage.shared_store(), storage.job_chunks_key(job_id=job_id), scratch)


def chunks_plan(job_id: int, extract_ids: list[int], models: Models) -> int:
    """The job's chunk rows for what must be extracted, each item stamped with its file's size and mtime and
    the encoder (a job resumed under other models never reuses a chunk); returns how many chunks are
    already made (in the store with the plan's fingerprint)."""
    files = selectors.image_files(ids=extract_ids)
    model = models.identity
    items = [(i, f"{files[i][1]}:{files[i][2]}:{model}") for i in extract_ids]
    size = max(settings.CIR_REINDEX_CHUNK, 1)
    planned = []
    for n, start in enumerate(range(0, len(items), size)):
        part = items[start : start + size]
        planned.append(PlannedChunk(n, part, ChunkStore.fingerprint([Item(i, Path(), s) for i, s in part])))
    chunks.reindex_chunks_plan(job_id=job_id, model=model, chunks=planned)
    store, reused = chunk_store(job_id), 0
    for row in selectors.reindex_chunks(job_id=job_id):
        if row.status == ReindexChunk.Status.PENDING and store.exists(row.number):  # its maker died after the put
            found = store.open(row.number, row.fingerprint)
            if found is not None:
                chunks.reindex_chunk_found(
                    chunk_id=row.pk, made_by=found.made_by, done=len(row.items), skipped=len(found.skipped)
                )
                reused += 1
        elif row.status == ReindexChunk.Status.DONE:
            reused += 1
    return reused


def chunk_items(chunk: ReindexChunk) -> list[Item]:
    files = selectors.image_files(ids=[image_id for image_id, _ in chunk.items])
    missing = Path("/nonexistent/image-removed-from-the-catalog")  # read as "does not exist", and skipped
    return [Item(i, Path(files[i][0]) if i in files else missing, stamp) for i, stamp in chunk.items]


class ChunkWatch:
    """A chunk's callbacks: its progress beaten at most every PROGRESS_EVERY seconds, the beat also telling
    whether to go on; `also` (the coordinator's job progress) is told after each batch."""

    def __init__(
        self, chunk: ReindexChunk, worker: str, also: Callable[[], None] | None, stop: Callable[[], bool] | None
    ) -> None:
        self.chunk, self.worker, self.also, self.stop = chunk, worker, also, stop
        self.done = self.skipped = 0
        self.last_beat = time.monotonic()
        self.stopped = False

    def on_batch(self, read: int, skipped: int) -> None:
        self.done, self.skipped = self.done + read, self.skipped + skipped
        if time.monotonic() - self.last_beat >= PROGRESS_EVERY:
            self.last_beat = time.monotonic()
            self.stopped = not chunks.reindex_chunk_beat(
                chunk_id=self.chunk.pk, worker=self.worker, done=self.done, skipped=self.skipped
            )
        fault_point("reindex.progress")  # after every batch: the fault tests slow a reindex batch by batch
        if self.also:
            self.also()

    def should_stop(self) -> bool:
        return self.stopped or bool(self.stop and self.stop())


def chunk_make(
    chunk: ReindexChunk,
    models: Models,
    worker: str,
    *,
    also: Callable[[], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> Chunk | None:
    """Make the chunk `worker` claimed and put it in the shared store; None when it was not made here (the
    job was cancelled or ended, the chunk taken back, or this host has another encoder than the plan's)."""
    if chunk.model != models.identity:
        log.warning("chunk %s of job %s needs encoder %s, not this host's: left to others", chunk.number,
                    chunk.job_id, chunk.model)  # fmt: skip
        chunks.reindex_chunk_release(chunk_id=chunk.pk, worker=worker)
        return None
    items, store = chunk_items(chunk), chunk_store(chunk.job_id)
    try:
        made = store.read(chunk.number, items)
        if made is None:
            watch = ChunkWatch(chunk, worker, also, stop)
            reader = encoder_reader(models.encoder)
            models.encoder.expect_images(len(items))  # a chunk big enough to pay for compiling the image tower
            made = extract_chunk(
                items,
                models.encoder.encode_image_batch,
                reader,
                dim=models.encoder.dim,
                on_batch=watch.on_batch,
                should_stop=watch.should_stop,
            )
            if not chunks.reindex_chunk_beat(chunk_id=chunk.pk, worker=worker, done=watch.done, skipped=watch.skipped):
                raise ExtractionCancelled("the job ended or the chunk was taken back")  # no file for nobody
            made.made_by = worker
            store.write(chunk.number, items, made)
    except BaseException as exc:  # stopped, lost, killed by a time limit, broken: the chunk is another's now
        chunks.reindex_chunk_release(chunk_id=chunk.pk, worker=worker)
        if isinstance(exc, ExtractionCancelled):
            return None
        raise
    done = chunks.reindex_chunk_done(
        chunk_id=chunk.pk, worker=worker, done=len(items), skipped=len(made.skipped), made_by=made.made_by
    )
    return made if done else None


def chunk_run(job_id: int, number: int) -> str:
    """The chunk task: claim chunk `number` of the job, make it, say so. Whatever breaks, the chunk is given
    back for another worker (or the coordinator) to make."""
    worker = process_identity()
    chunk = chunks.reindex_chunk_claim(job_id=job_id, number=number, worker=worker)
    if chunk is None:
        return "skipped: made, being made, or its job has ended"
    try:
        collection = chunk.job.collection
        models = runtime.models(catalog.collection_encoder(collection), catalog.collection_combiner(collection))
        made = chunk_make(chunk, models, worker)
    except (ExplainedError, SoftTimeLimitExceeded) as exc:
        chunks.reindex_chunk_release(chunk_id=chunk.pk, worker=worker)
        return f"given back: {exc or type(exc).__name__}"
    except Exception:  # the coordinator makes it, or fails the job with the reason
        log.exception("chunk %s of job %s failed here; given back", number, job_id)
        chunks.reindex_chunk_release(chunk_id=chunk.pk, worker=worker)
        return "given back after an error (see the log)"
    finally:
        _tidy_scratch(job_id)
    return "made" if made is not None else "stopped"


def _tidy_scratch(job_id: int) -> None:
    """Chunk files pass through the scratch folder and are removed; the folder goes once empty (not while
    another process of this host uses it)."""
    with contextlib.suppress(OSError):
        (Path(settings.CIR_CACHE_DIR) / storage.job_chunks_key(job_id=job_id)).rmdir()
