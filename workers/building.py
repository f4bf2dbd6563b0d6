"""The last step of a reindex, run once by the job's coordinator: the new version from the chunk files in
the shared store (and, for an incremental job, the rows of the previous version it keeps), built part by
part (retrieval.index.versions.write_version_parts: never the whole collection in one array), then published.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from cirweb.catalog import chunks, selectors
from cirweb.catalog.models import ReindexJob
from cirweb.files import storage
from cirweb.processes.faults import fault_point
from retrieval.extraction.regions import regions_for_version
from retrieval.index.rowfile import RowFile
from retrieval.index.versions import REGIONS_FILE, FeaturePart, LoadedVersion, version_numbers, write_version_parts
from workers.extraction import chunk_store
from workers.runtime import Models

KEPT_ROWS_PER_PART = 65536  # rows of the previous version read at a time (160 MB of 640-d float32)


@dataclass
class Gathered:
    """The job's chunks as the build takes them: one part per chunk file (fetched into this host's cache),
    the images read and the reasons of those skipped."""

    parts: list[FeaturePart] = field(default_factory=list)
    read_ids: list[int] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)
    redo: int = 0  # chunks the store did not hold as planned, now pending again


def _features_of(path: str) -> NDArray[np.float32]:
    fault_point("version.part")  # the writer is mid-way: features.npy exists, this part is not in it yet
    with np.load(path) as data:
        return np.asarray(data["features"], np.float32)


def chunks_gather(job_id: int) -> Gathered:
    """Every chunk of the job from the store, checked against its plan; one that is missing or made of
    other items is set pending again (counted in `redo`) for the caller to have made."""
    store, gathered = chunk_store(job_id), Gathered()
    for row in selectors.reindex_chunks(job_id=job_id):
        chunk = store.open(row.number, row.fingerprint, keep=True)
        if chunk is None:
            chunks.reindex_chunk_redo(chunk_id=row.pk)
            gathered.redo += 1
            continue
        local = str(store.local(row.number))
        gathered.parts.append(FeaturePart(np.asarray(chunk.ids, np.int64), functools.partial(_features_of, local)))
        gathered.read_ids.extend(chunk.ids.tolist())
        gathered.skipped.update(chunk.skipped)
    return gathered


def previous_parts(folder: Path, drop: set[int]) -> list[FeaturePart]:
    """The rows of the version in `folder` (the previous one's local copy, held by the caller while the parts
    are read) that are neither changed nor deleted."""
    old_ids = np.load(folder / "ids.npy")
    keep = np.flatnonzero(~np.isin(old_ids, np.fromiter(drop, np.int64, len(drop))))
    rows = RowFile(folder / "features.npy")
    blocks = [keep[s : s + KEPT_ROWS_PER_PART] for s in range(0, len(keep), KEPT_ROWS_PER_PART)]
    return [FeaturePart(old_ids[block], functools.partial(rows.take, block)) for block in blocks]


def version_build(
    job: ReindexJob, parts: list[FeaturePart], models: Models, skipped: int, previous: Path | None = None
) -> tuple[LoadedVersion, str]:
    """The new version, built in this host's cache under a number neither the disk, the shared store nor the
    catalog has used, then published to the shared store; returns it and its store key. Where the models
    have a judge, the version holds the pictures' regions too (those of `previous`, the folder of the
    version an incremental job keeps rows of, are copied when made by the same encoder)."""
    collection = job.collection
    ids = np.concatenate([p.ids for p in parts]).tolist()
    stats = selectors.image_sources(ids=ids)
    root = storage.index_version_staging(slug=collection.slug)
    used = [
        *version_numbers(root),
        *storage.index_version_numbers(slug=collection.slug),
        *selectors.index_version_numbers(collection=collection),
    ]
    written = write_version_parts(
        root,
        parts,
        dim=models.encoder.dim,
        encoder=models.clip_spec,
        combiner=models.combiner_spec,
        preprocessing=models.preprocessing,
        version=max(used, default=0) + 1,
        extra={"job": job.pk, "skipped": skipped, **({"regions": models.identity} if models.judge else {})},
        extra_files={"sources.json": json.dumps({str(i): stats[i] for i in stats})},
        regions=functools.partial(_regions, models, previous) if models.judge else None,
    )
    key = storage.index_version_key(slug=collection.slug, number=written.meta.version)
    try:
        return written, storage.index_version_publish(folder=written.path, key=key)
    except BaseException:  # half published (a full store, say): nobody will register it, so its space goes back
        storage.index_version_discard(path=key)
        raise


def _regions(models: Models, previous: Path | None, ids: NDArray[np.int64]) -> NDArray[np.float16]:
    """The regions of a version's pictures (`retrieval.extraction.regions`), reusing the previous version's
    where the same encoder made them."""
    kept = None
    if previous is not None and (previous / REGIONS_FILE).is_file():
        meta = json.loads((previous / "meta.json").read_text())
        if meta.get("extra", {}).get("regions") == models.identity:
            kept = (np.load(previous / "ids.npy"), np.load(previous / REGIONS_FILE, mmap_mode="r"))

    def paths(wanted: list[int]) -> dict[int, Path]:
        return {i: Path(row[0]) for i, row in selectors.image_files(ids=wanted).items()}

    return regions_for_version(models.encoder, ids, paths, kept)
