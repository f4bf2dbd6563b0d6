"""Faiss indexes over image features, keyed by image id.

One id space: the index stores the image ids themselves (IndexIDMap2 or the IVF lists' own ids), so a
result can never point at the wrong image through a drifting side list. Gallery vectors are L2-normalized
here, once, and compared by inner product (cosine similarity).

Types, chosen by `choose_index_type` from sizes measured on 2-core machines (see the README benchmark):
``flat`` exact search; ``ivf`` inverted lists over exact vectors; ``hnsw`` graph search; ``ivfpq``
product-quantized lists (16x smaller) re-ranked exactly from the features on disk.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from numpy.typing import NDArray

from retrieval.errors import SearchIndexError
from retrieval.index.rowfile import RowFile
from retrieval.vectors import normalize

INDEX_TYPES = ("flat", "ivf", "hnsw", "ivfpq")
# Exact search costs ~0.25 ms per 1k vectors of 640-d on 2 cores (README): up to this size a query stays
# near 5 ms, the turn's search budget; above it IVF does the same in ~3 ms at 100k with recall@10 1.0 (and
# keeps add/remove in place, which HNSW cannot: it rebuilds its graph on every removal).
FLAT_MAX = 20_000
# Above this many bytes of float32 vectors, quantize (ivfpq) instead of keeping them in memory.
MEMORY_BUDGET_BYTES = 8 * 1024**3
PQ_RERANK_FACTOR = 8
# k-means points per IVF list: Faiss warns under 39; 64 keeps 1M-vector builds to minutes on 2 cores.
TRAIN_PER_LIST = 64
EXACT_COPY_TYPES = ("ivfpq", "hnsw")  # types that need the raw features beside them (see VectorIndex)
ADD_BLOCK = 16384  # rows normalized and added at a time (40 MB of 640-d float32): a build's working memory


def choose_index_type(count: int, dim: int, memory_budget: int = MEMORY_BUDGET_BYTES) -> str:
    """The index type a collection of `count` vectors of `dim` floats should use."""
    if count <= FLAT_MAX:
        return "flat"
    if count * dim * 4 <= memory_budget:
        return "ivf"
    return "ivfpq"


@dataclass
class IndexParams:
    """Build and search settings; defaults reach recall@10 >= 0.95 against exact on clustered data."""

    nlist: int = 0  # IVF lists; 0: 4·sqrt(n), clamped
    nprobe: int = 0  # IVF lists probed; 0: scaled with nlist (1%, at least 16), so recall holds as n grows
    hnsw_m: int = 32
    ef_construction: int = 64
    ef_search: int = 96
    pq_bytes: int = 0  # PQ code size; 0: dim / 4 (16x smaller than float32)

    def resolved(self, count: int, dim: int) -> IndexParams:
        nlist = self.nlist or int(min(max(4 * math.sqrt(max(count, 1)), 1), 65536))
        nlist = max(1, min(nlist, count // 39 if count >= 39 else 1))  # faiss wants >= 39 points a list
        pq = self.pq_bytes or next(m for m in (dim // 4, dim // 8, dim // 16, 1) if m and dim % m == 0)
        # measured at 100k x 640 with 200 excluded neighbours (1264 lists): nprobe 8 -> recall@10 0.995, 16 -> 1.0
        nprobe = self.nprobe or max(16, nlist // 100)
        return IndexParams(nlist, min(nprobe, nlist), self.hnsw_m, self.ef_construction, self.ef_search, pq)


@dataclass
class VectorIndex:
    """A Faiss index of normalized features whose labels are image ids.

    `ids` are the labels it holds, sorted. `exact` (ivfpq and hnsw only) holds the raw features in the
    same order: ivfpq re-ranks its candidates from them, and `remove` on hnsw (which Faiss cannot do in
    place) rebuilds from them. Loaded from disk, both are memory-mapped files.
    """

    index: faiss.Index
    index_type: str
    params: IndexParams
    ids: NDArray[np.int64]
    exact: NDArray[np.float32] | None = None
    read_only: bool = False

    @property
    def dim(self) -> int:
        return int(self.index.d)

    @property
    def count(self) -> int:
        return int(self.index.ntotal)

    # -- building ---------------------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        ids: NDArray[np.int64],
        features: NDArray[np.float32] | RowFile,
        *,
        index_type: str = "auto",
        params: IndexParams | None = None,
        seed: int = 1234,
    ) -> VectorIndex:
        """Index `features` [n, dim] (raw or normalized; normalized here) under the labels `ids` [n].

        Vectors are normalized and added ADD_BLOCK rows at a time, and k-means trains on a sample, so the
        build itself holds one block beside what the index keeps. `features` may be a `RowFile` (a
        features.npy read block by block): then `ids` must be sorted, and `exact` maps that file."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if features.ndim != 2 or len(ids) != len(features):
            raise SearchIndexError(f"need ids [n] and features [n, dim]; got {ids.shape} and {features.shape}")
        if len(np.unique(ids)) != len(ids):
            raise SearchIndexError("image ids must be unique: the same id appears twice")
        n, dim = features.shape
        if index_type == "auto":
            index_type = choose_index_type(n, dim)
        if index_type not in INDEX_TYPES:
            raise SearchIndexError(f"unknown index type {index_type!r}; choose one of {', '.join(INDEX_TYPES)}")
        p = (params or IndexParams()).resolved(n, dim)
        index = _new_index(index_type, dim, p)
        if not index.is_trained:
            rows = np.arange(n)
            if n > TRAIN_PER_LIST * p.nlist:  # k-means needs a sample, not everything
                rows = np.random.default_rng(seed).choice(n, TRAIN_PER_LIST * p.nlist, replace=False)
            index.train(normalize(_rows(features, rows), in_place=True))
        for start in range(0, n, ADD_BLOCK):
            block = features[start : start + ADD_BLOCK]  # a RowFile's is an array of its own; a slice is a view
            block = block if isinstance(features, RowFile) else np.array(block, np.float32)
            index.add_with_ids(normalize(block, in_place=True), ids[start : start + ADD_BLOCK])
        exact = None
        if index_type in EXACT_COPY_TYPES:
            if isinstance(features, RowFile):
                if (np.diff(ids) < 0).any():
                    raise SearchIndexError("a build from a features file needs its ids sorted")
                exact = features.mapped()
            else:
                exact = np.ascontiguousarray(features[np.argsort(ids)], np.float32)
        return cls(index, index_type, p, np.sort(ids), exact)

    # -- persistence ----------------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Write the index to `path` atomically (tmp file + rename)."""
        path = Path(path)
        tmp = path.with_suffix(path.suffix + ".tmp")
        faiss.write_index(self.index, str(tmp))
        tmp.replace(path)

    @classmethod
    def load(
        cls,
        path: str | Path,
        index_type: str,
        params: IndexParams,
        *,
        ids: NDArray[np.int64],
        mmap: bool = True,
        exact: NDArray[np.float32] | None = None,
    ) -> VectorIndex:
        """Read an index; with `mmap` its vectors stay in the page cache, shared and read-only."""
        flags = 0
        if mmap:
            flags = faiss.IO_FLAG_READ_ONLY | (
                faiss.IO_FLAG_MMAP if index_type.startswith("ivf") else faiss.IO_FLAG_MMAP_IFC
            )
        try:
            index = faiss.read_index(str(path), flags)
        except RuntimeError as exc:
            raise SearchIndexError(f"cannot read the index {path}: {str(exc).splitlines()[0]}") from None
        if index.ntotal != len(ids):
            raise SearchIndexError(f"{path} holds {index.ntotal} vectors but {len(ids)} ids were given")
        return cls(index, index_type, params, ids, exact if index_type in EXACT_COPY_TYPES else None, read_only=mmap)

    # -- searching ------------------------------------------------------------------------------------

    def search(
        self, queries: NDArray[np.float32], k: int, exclude: Collection[int] = ()
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """Top-`k` (scores, ids) for each normalized query [q, dim]. Ids in `exclude` never come back, and k
        results still do when the collection has that many others; missing slots are id -1, score -inf."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if queries.shape[1] != self.dim:
            raise SearchIndexError(f"query features are {queries.shape[1]}-d but the index holds {self.dim}-d ones")
        if k < 1:
            raise SearchIndexError("k must be at least 1")
        rerank = self.index_type == "ivfpq" and self.exact is not None
        fetch = min(k * PQ_RERANK_FACTOR if rerank else k, max(self.count, 1))
        scores, ids = self.index.search(queries, fetch, params=self._search_params(exclude, fetch))
        if rerank:
            scores, ids = self._rerank(queries, ids, k)
        if ids.shape[1] < k:
            pad = k - ids.shape[1]
            ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        scores = np.where(ids < 0, -np.inf, scores).astype(np.float32)
        return scores, ids.astype(np.int64)

    def _search_params(self, exclude: Collection[int], fetch: int) -> Any:
        sel = None
        if exclude:
            sel = faiss.IDSelectorNot(faiss.IDSelectorBatch(np.fromiter(exclude, np.int64, len(exclude))))
        if self.index_type.startswith("ivf"):
            return faiss.SearchParametersIVF(sel=sel, nprobe=self.params.nprobe)
        if self.index_type == "hnsw":
            # Excluded nodes are still walked through but never take a slot among the ef best, so ef need not
            # grow with the exclusions (measured at 100k with 200 excluded neighbours: ef 64 -> recall@10 0.99).
            return faiss.SearchParametersHNSW(sel=sel, efSearch=max(self.params.ef_search, fetch))
        return faiss.SearchParameters(sel=sel) if sel is not None else None

    def _rerank(
        self, queries: NDArray[np.float32], candidates: NDArray[np.int64], k: int
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        assert self.exact is not None
        out_s = np.full((len(queries), k), -np.inf, np.float32)
        out_i = np.full((len(queries), k), -1, np.int64)
        for q, row in enumerate(candidates):
            row = row[row >= 0]
            vectors = normalize(self.exact[np.searchsorted(self.ids, row)])
            exact_scores = vectors @ queries[q]
            top = np.argsort(-exact_scores, kind="stable")[:k]
            out_s[q, : len(top)], out_i[q, : len(top)] = exact_scores[top], row[top]
        return out_s, out_i

    # -- changing -------------------------------------------------------------------------------------

    def add(self, ids: NDArray[np.int64], features: NDArray[np.float32]) -> None:
        """Add raw features under new ids (an id already present is an error: remove it first)."""
        self._check_writable()
        ids = np.ascontiguousarray(ids, np.int64)
        if np.isin(ids, self.ids).any() or len(np.unique(ids)) != len(ids):
            raise SearchIndexError("some ids are already in the index; remove them before adding again")
        self.index.add_with_ids(normalize(features), ids)
        order = np.argsort(np.concatenate([self.ids, ids]))
        if self.exact is not None:
            self.exact = np.concatenate([self.exact, np.asarray(features, np.float32)])[order]
        self.ids = np.concatenate([self.ids, ids])[order]

    def remove(self, ids: Collection[int]) -> int:
        """Remove these ids; returns how many were present."""
        self._check_writable()
        remove = np.fromiter(ids, np.int64, len(ids))
        keep = ~np.isin(self.ids, remove)
        removed = int((~keep).sum())
        if not removed:
            return 0
        if self.index_type == "hnsw":  # HNSW graphs cannot drop nodes: rebuild from the kept vectors
            assert self.exact is not None
            self.index = VectorIndex.build(
                self.ids[keep], self.exact[keep], index_type="hnsw", params=self.params
            ).index
        else:
            self.index.remove_ids(faiss.IDSelectorBatch(remove))
        self.ids = self.ids[keep]
        if self.exact is not None:
            self.exact = self.exact[keep]
        return removed

    def _check_writable(self) -> None:
        if self.read_only:
            raise SearchIndexError(
                "this index was loaded read-only (memory-mapped); load it with mmap=False to change it"
            )


def _rows(features: NDArray[np.float32] | RowFile, rows: NDArray[np.int64]) -> NDArray[np.float32]:
    """A copy of these rows (fancy indexing copies; so does a RowFile)."""
    if isinstance(features, RowFile):
        return features.take(rows)
    return np.asarray(features[rows], np.float32)


def _new_index(index_type: str, dim: int, p: IndexParams) -> faiss.Index:
    factory = {
        "flat": "IDMap2,Flat",
        "ivf": f"IVF{p.nlist},Flat",
        "hnsw": f"IDMap2,HNSW{p.hnsw_m},Flat",
        "ivfpq": f"IVF{p.nlist},PQ{p.pq_bytes}x8np",  # np: no polysemous training (25x slower, unused)
    }[index_type]
    index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    if index_type == "hnsw":
        faiss.downcast_index(index.index).hnsw.efConstruction = p.ef_construction
    return index
