"""A version built from parts (write_version_parts) is the version built from the whole array, and chunk
files in a shared store are recognised from another host."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from foundation.shared_store import DirectoryStore
from retrieval.errors import SearchIndexError
from retrieval.extraction.features import Chunk, ChunkStore, Item
from retrieval.index import faiss_index, rowfile
from retrieval.index.faiss_index import IndexParams
from retrieval.index.rowfile import RowFile
from retrieval.index.versions import FeaturePart, load_version, write_version, write_version_parts
from tests.engine.test_index import clustered


def parts_of(ids: np.ndarray, features: np.ndarray, sizes: list[int]) -> list[FeaturePart]:
    """The rows in a shuffled order, cut into parts of these sizes (an empty one included)."""
    order = np.random.default_rng(5).permutation(len(ids))
    cuts = np.cumsum([0, *sizes])
    return [FeaturePart(ids[order[a:b]], lambda rows=order[a:b]: features[rows]) for a, b in itertools.pairwise(cuts)]


@pytest.mark.parametrize("index_type", ["flat", "ivf", "hnsw", "ivfpq"])
def test_a_version_built_from_parts_is_the_version_built_whole(
    tmp_path: Path, index_type: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(faiss_index, "ADD_BLOCK", 300)  # several blocks, as millions of rows would be
    features = clustered(2000, 32, 8, seed=3)
    ids = np.random.default_rng(1).permutation(50_000)[:2000]
    params = IndexParams(nlist=16)  # k-means on a sample (64 per list), read from the file row by row
    whole = write_version(
        tmp_path / "whole", ids, features, encoder="e", combiner="c", index_type=index_type, params=params
    )
    built = write_version_parts(
        tmp_path / "parts",
        parts_of(ids, features, [700, 0, 1000, 300]),
        dim=32,
        encoder="e",
        combiner="c",
        index_type=index_type,
        params=params,
    )
    assert isinstance(built.features, np.memmap) and built.meta.count == 2000 and built.meta.index_type == index_type
    np.testing.assert_array_equal(built.ids, whole.ids)
    np.testing.assert_array_equal(built.features, whole.features)
    queries = clustered(30, 32, 8, seed=4)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    exclude = set(ids[:50].tolist())
    got_scores, got_ids = built.index.search(queries, 10, exclude)
    want_scores, want_ids = whole.index.search(queries, 10, exclude)
    np.testing.assert_array_equal(got_ids, want_ids)
    np.testing.assert_allclose(got_scores, want_scores, atol=1e-6)
    assert load_version(built.path).meta.params == whole.meta.params


def test_parts_that_repeat_an_id_or_lie_about_their_shape_leave_nothing(tmp_path: Path) -> None:
    features = np.eye(4, 8, dtype=np.float32)
    twice = [FeaturePart(np.array([1, 2]), lambda: features[:2]), FeaturePart(np.array([2, 3]), lambda: features[2:])]
    with pytest.raises(SearchIndexError, match="same id appears in two parts"):
        write_version_parts(tmp_path, twice, dim=8, encoder="e", combiner="c")
    short = [FeaturePart(np.array([1, 2, 3]), lambda: features[:2])]
    with pytest.raises(SearchIndexError, match="for 3 ids"):
        write_version_parts(tmp_path, short, dim=8, encoder="e", combiner="c")
    assert list(tmp_path.iterdir()) == []  # no version, no temporary folder


def test_rows_of_a_file_read_in_any_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rowfile, "WINDOW_ROWS", 7)
    array = np.arange(100 * 3, dtype=np.float32).reshape(100, 3)
    np.save(tmp_path / "a.npy", array)
    rows = RowFile(tmp_path / "a.npy")
    assert rows.shape == (100, 3) and len(rows) == 100
    np.testing.assert_array_equal(rows[10:25], array[10:25])
    np.testing.assert_array_equal(rows[95:200], array[95:])
    pick = np.array([99, 3, 3, 50, 0, 51, 98])
    np.testing.assert_array_equal(rows.take(pick), array[pick])
    with pytest.raises(IndexError):
        rows.take(np.array([100]))


def test_a_chunk_made_on_one_host_is_found_on_another(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path / "shared")
    here = [Item(i, Path(f"/mnt/a/img{i}.png"), f"{i}:1700:enc") for i in range(3)]
    there = [Item(i, Path(f"/data/photos/img{i}.png"), f"{i}:1700:enc") for i in range(3)]
    made = Chunk(np.array([0, 2]), np.ones((2, 4), np.float32), {1: "corrupt"}, made_by="host-a:41")
    ChunkStore(store, "jobs/7", tmp_path / "cache-a").write(0, here, made)
    assert store.list("jobs/7") == ["jobs/7/chunk_00000.npz"]
    found = ChunkStore(store, "jobs/7", tmp_path / "cache-b").read(0, there)
    assert found is not None and found.made_by == "host-a:41" and found.skipped == {1: "corrupt"}
    np.testing.assert_array_equal(found.ids, [0, 2])
    retrained = [Item(it.id, it.path, it.stamp.replace("enc", "enc2")) for it in there]
    assert ChunkStore(store, "jobs/7", tmp_path / "cache-b").read(0, retrained) is None
    assert list((tmp_path / "cache-b").iterdir()) == []  # copies pass through the cache and leave
