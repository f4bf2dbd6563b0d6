"""Index versions on disk: ``<collection dir>/v<N>/{features.npy, ids.npy, index.faiss, meta.json}``, and
``regions.npy`` where the collection is served with a judge (`retrieval.extraction.regions`).

A version is written into a temporary directory and renamed into place, so a reader never sees half of
one and a killed writer leaves nothing that looks finished. Rows of ``features.npy`` (raw CLIP features,
as the Combiner takes them) and ``ids.npy`` are sorted by image id; the index labels are the same ids.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.format import open_memmap
from numpy.typing import NDArray

from retrieval.errors import SearchIndexError
from retrieval.index.faiss_index import IndexParams, VectorIndex
from retrieval.index.rowfile import RowFile

VERSION_DIR = re.compile(r"^v(\d+)$")
REGIONS_FILE = "regions.npy"  # made by retrieval.extraction.regions


@dataclass
class VersionMeta:
    """What `meta.json` records about a version."""

    version: int
    encoder: str
    combiner: str
    dim: int
    count: int
    index_type: str
    params: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    preprocessing: str = "clip"  # "clip" or "targetpad": how the images were prepared for the encoder


@dataclass
class LoadedVersion:
    """A loaded version: its features (memory-mapped), ids and index, and its regions where it has them."""

    path: Path
    meta: VersionMeta
    ids: NDArray[np.int64]
    features: NDArray[np.float32]
    index: VectorIndex
    regions: NDArray[np.float16] | None = None  # [count, cells, dim], rows as `ids`

    def features_of(self, ids: list[int] | NDArray[np.int64]) -> NDArray[np.float32]:
        """Raw features of these image ids, in the order given; KeyError names an id that is not indexed."""
        return np.asarray(self.features[self.rows_of(ids)], np.float32)

    def regions_of(self, ids: list[int] | NDArray[np.int64]) -> NDArray[np.float32]:
        """Regions of these image ids [n, cells, dim], in the order given (the version must have them)."""
        if self.regions is None:
            raise KeyError(f"index version {self.meta.version} has no regions")
        return np.asarray(self.regions[self.rows_of(ids)], np.float32)

    def rows_of(self, ids: list[int] | NDArray[np.int64]) -> NDArray[np.int64]:
        """Rows of these image ids; KeyError names an id that is not indexed."""
        ids = np.asarray(ids, np.int64)
        rows = np.searchsorted(self.ids, ids)
        rows = np.minimum(rows, len(self.ids) - 1) if len(self.ids) else rows
        if not len(self.ids) or (self.ids[rows] != ids).any():
            missing = ids[(rows >= len(self.ids)) | (self.ids[rows] != ids)] if len(self.ids) else ids
            raise KeyError(f"image {int(missing[0])} is not in index version {self.meta.version}")
        return np.asarray(rows, np.int64)


def version_numbers(root: str | Path) -> list[int]:
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(int(m.group(1)) for p in root.iterdir() if p.is_dir() and (m := VERSION_DIR.match(p.name)))


def write_version(
    root: str | Path,
    ids: NDArray[np.int64],
    features: NDArray[np.float32],
    *,
    encoder: str,
    combiner: str,
    preprocessing: str = "clip",
    index_type: str = "auto",
    params: IndexParams | None = None,
    version: int | None = None,
    extra: dict[str, Any] | None = None,
    extra_files: dict[str, str] | None = None,
) -> LoadedVersion:
    """Build the index of (ids, raw features) held in memory and write it as a new version directory under
    `root`; `extra_files` (name -> text) are written into the directory too, before it appears. For a
    collection larger than memory use `write_version_parts`."""
    ids = np.asarray(ids, np.int64)
    order = np.argsort(ids, kind="stable")
    ids, features = ids[order], np.asarray(features, np.float32)[order]
    meta = VersionMeta(0, encoder, combiner, int(features.shape[1]), len(ids), index_type, preprocessing=preprocessing)

    def fill(tmp: Path) -> VectorIndex:
        np.save(tmp / "features.npy", features)
        np.save(tmp / "ids.npy", ids)
        return VectorIndex.build(ids, features, index_type=index_type, params=params)

    path, meta, index = _write(root, version, meta, fill, extra, extra_files)
    return LoadedVersion(path, meta, ids, features, index)


@dataclass(frozen=True)
class FeaturePart:
    """Some rows of a version being built: their image ids [m], and how to read their raw features [m, dim]
    when the writer comes to them (so one part at a time is in memory)."""

    ids: NDArray[np.int64]
    load: Callable[[], NDArray[np.float32]]


def write_version_parts(
    root: str | Path,
    parts: Sequence[FeaturePart],
    *,
    dim: int,
    encoder: str,
    combiner: str,
    preprocessing: str = "clip",
    index_type: str = "auto",
    params: IndexParams | None = None,
    version: int | None = None,
    extra: dict[str, Any] | None = None,
    extra_files: dict[str, str] | None = None,
    regions: Callable[[NDArray[np.int64]], NDArray[np.float16]] | None = None,
) -> LoadedVersion:
    """`write_version` for a collection given in parts (a reindex's chunk files, the rows an older version
    keeps), never concatenated: each part is written into its rows of features.npy (sorted by id) through a
    memory map opened for that part only, then the index is trained on a sample and filled block by block
    from the file. Peak memory is one part or block plus what the index type keeps (all vectors for flat,
    ivf and hnsw; codes only for ivfpq). `regions(ids)`, given, makes regions.npy for the sorted ids before
    the folder appears. Returns the version memory-mapped from its folder."""
    ids = np.sort(np.concatenate([p.ids for p in parts]).astype(np.int64)) if parts else np.zeros(0, np.int64)
    if len(ids) > 1 and (ids[1:] == ids[:-1]).any():
        raise SearchIndexError("image ids must be unique: the same id appears in two parts")
    meta = VersionMeta(0, encoder, combiner, dim, len(ids), index_type, preprocessing=preprocessing)

    def fill(tmp: Path) -> VectorIndex:
        target = tmp / "features.npy"
        open_memmap(target, mode="w+", dtype=np.float32, shape=(len(ids), dim)).flush()  # the file, all zeros
        for part in parts:
            rows = np.searchsorted(ids, part.ids)
            block = np.asarray(part.load(), np.float32)
            if block.shape != (len(part.ids), dim):
                raise SearchIndexError(f"a part gave features {block.shape} for {len(part.ids)} ids of {dim} floats")
            out = open_memmap(target, mode="r+")
            out[rows] = block
            out.flush()
            del out  # unmapped: the written pages leave this process (the page cache writes them out)
        np.save(tmp / "ids.npy", ids)
        if regions is not None:
            made = regions(ids)
            if len(made) != len(ids):
                raise SearchIndexError(f"regions were made for {len(made)} of {len(ids)} pictures")
            np.save(tmp / REGIONS_FILE, made)
        return VectorIndex.build(ids, RowFile(target), index_type=index_type, params=params)

    path, _, _ = _write(root, version, meta, fill, extra, extra_files)
    return load_version(path)


def _write(
    root: str | Path,
    version: int | None,
    meta: VersionMeta,
    fill: Callable[[Path], VectorIndex],
    extra: dict[str, Any] | None,
    extra_files: dict[str, str] | None,
) -> tuple[Path, VersionMeta, VectorIndex]:
    """A new version folder: `fill` writes features.npy and ids.npy into a temporary folder and returns the
    index, saved there with meta.json and `extra_files`; the folder is then renamed into place."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    version = version if version is not None else max(version_numbers(root), default=0) + 1
    target = root / f"v{version}"
    if target.exists():
        raise SearchIndexError(f"index version {target} already exists")
    tmp = Path(tempfile.mkdtemp(prefix=f".v{version}-", dir=root))
    try:
        index = fill(tmp)
        meta.version, meta.index_type, meta.params = version, index.index_type, asdict(index.params)
        meta.created = datetime.now(UTC).isoformat(timespec="seconds")
        meta.extra = extra or {}
        index.save(tmp / "index.faiss")
        (tmp / "meta.json").write_text(json.dumps(asdict(meta), indent=2))
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target, meta, index


def read_meta(path: str | Path) -> VersionMeta:
    path = Path(path)
    try:
        return VersionMeta(**json.loads((path / "meta.json").read_text()))
    except FileNotFoundError:
        raise SearchIndexError(f"{path} is not an index version (no meta.json)") from None
    except (json.JSONDecodeError, TypeError) as exc:
        raise SearchIndexError(f"{path}/meta.json is unreadable ({exc})") from None


def load_version(path: str | Path, *, mmap: bool = True) -> LoadedVersion:
    """Open a version directory; with `mmap` (the default) nothing is copied into private memory."""
    path = Path(path)
    meta = read_meta(path)
    ids = np.load(path / "ids.npy", mmap_mode="r" if mmap else None)
    features = np.load(path / "features.npy", mmap_mode="r" if mmap else None)
    index = VectorIndex.load(
        path / "index.faiss", meta.index_type, IndexParams(**meta.params), ids=ids, mmap=mmap, exact=features
    )
    if index.count != meta.count or len(ids) != meta.count:
        raise SearchIndexError(f"{path} is inconsistent: meta says {meta.count} vectors, index has {index.count}")
    regions = np.load(path / REGIONS_FILE, mmap_mode="r" if mmap else None) if (path / REGIONS_FILE).is_file() else None
    if regions is not None and len(regions) != meta.count:
        raise SearchIndexError(f"{path} is inconsistent: {len(regions)} rows of regions for {meta.count} pictures")
    return LoadedVersion(path, meta, ids, features, index, regions)
