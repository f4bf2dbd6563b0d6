"""Index versions on disk: ``<collection dir>/v<N>/{features.npy, ids.npy, index.faiss, meta.json}``.

A version is written into a temporary directory and renamed into place, so a reader never sees half of
one and a killed writer leaves nothing that looks finished. Rows of ``features.npy`` (raw CLIP features,
as the Combiner takes them) and ``ids.npy`` are sorted by image id; the index labels are the same ids.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from retrieval.errors import SearchIndexError
from retrieval.index import IndexParams, VectorIndex

VERSION_DIR = re.compile(r"^v(\d+)$")


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
class IndexVersion:
    """A loaded version: its features (memory-mapped), ids and index."""

    path: Path
    meta: VersionMeta
    ids: NDArray[np.int64]
    features: NDArray[np.float32]
    index: VectorIndex

    def features_of(self, ids: list[int] | NDArray[np.int64]) -> NDArray[np.float32]:
        """Raw features of these image ids, in the order given; KeyError names an id that is not indexed."""
        ids = np.asarray(ids, np.int64)
        rows = np.searchsorted(self.ids, ids)
        rows = np.minimum(rows, len(self.ids) - 1) if len(self.ids) else rows
        if not len(self.ids) or (self.ids[rows] != ids).any():
            missing = ids[(rows >= len(self.ids)) | (self.ids[rows] != ids)] if len(self.ids) else ids
            raise KeyError(f"image {int(missing[0])} is not in index version {self.meta.version}")
        return np.asarray(self.features[rows], np.float32)


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
) -> IndexVersion:
    """Build the index of (ids, raw features) and write it as a new version directory under `root`;
    `extra_files` (name -> text) are written into the directory too, before it appears."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    version = version if version is not None else max(version_numbers(root), default=0) + 1
    target = root / f"v{version}"
    if target.exists():
        raise SearchIndexError(f"index version {target} already exists")
    ids = np.asarray(ids, np.int64)
    order = np.argsort(ids, kind="stable")
    ids, features = ids[order], np.asarray(features, np.float32)[order]
    index = VectorIndex.build(ids, features, index_type=index_type, params=params)
    meta = VersionMeta(
        version=version,
        encoder=encoder,
        combiner=combiner,
        dim=int(features.shape[1]),
        count=len(ids),
        index_type=index.index_type,
        params=asdict(index.params),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        extra=extra or {},
        preprocessing=preprocessing,
    )
    tmp = Path(tempfile.mkdtemp(prefix=f".v{version}-", dir=root))
    try:
        np.save(tmp / "features.npy", features)
        np.save(tmp / "ids.npy", ids)
        index.save(tmp / "index.faiss")
        (tmp / "meta.json").write_text(json.dumps(asdict(meta), indent=2))
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return IndexVersion(target, meta, ids, features, index)


def read_meta(path: str | Path) -> VersionMeta:
    path = Path(path)
    try:
        return VersionMeta(**json.loads((path / "meta.json").read_text()))
    except FileNotFoundError:
        raise SearchIndexError(f"{path} is not an index version (no meta.json)") from None
    except (json.JSONDecodeError, TypeError) as exc:
        raise SearchIndexError(f"{path}/meta.json is unreadable ({exc})") from None


def load_version(path: str | Path, *, mmap: bool = True) -> IndexVersion:
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
    return IndexVersion(path, meta, ids, features, index)
