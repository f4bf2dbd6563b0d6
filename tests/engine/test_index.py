"""Faiss indexes: exact equals brute force, approximate types reach recall, exclusions always hold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from retrieval.benchmarks.synthetic import clustered_features
from retrieval.errors import SearchIndexError
from retrieval.index.faiss_index import IndexParams, VectorIndex, choose_index_type
from retrieval.index.versions import load_version, version_numbers, write_version
from retrieval.vectors import normalize


def clustered(n: int, dim: int, clusters: int, seed: int) -> np.ndarray:
    return clustered_features(n, dim, clusters=clusters, seed=seed)


def brute_force(features: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    scores = normalize(queries) @ normalize(features).T
    return ids[np.argsort(-scores, axis=1, kind="stable")[:, :k]]


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    features = clustered(20_000, 64, 100, seed=0)
    ids = np.random.default_rng(1).permutation(1_000_000)[:20_000].astype(np.int64)  # sparse, unordered ids
    queries = normalize(clustered(200, 64, 100, seed=2))
    return ids, features, queries


def test_exact_search_equals_brute_force(data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    ids, features, queries = data
    index = VectorIndex.build(ids, features, index_type="flat")
    scores, found = index.search(queries, 10)
    expected = brute_force(features, ids, queries, 10)
    assert (found == expected).mean() > 0.999  # ties in float32 may swap a neighbour pair
    assert np.all(np.diff(scores, axis=1) <= 1e-6)


@pytest.mark.parametrize("index_type", ["ivf", "hnsw", "ivfpq"])
def test_approximate_types_reach_recall(data: tuple[np.ndarray, np.ndarray, np.ndarray], index_type: str) -> None:
    ids, features, queries = data
    index = VectorIndex.build(ids, features, index_type=index_type)
    _, found = index.search(queries, 10)
    expected = brute_force(features, ids, queries, 10)
    recall = np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, expected, strict=True)])
    assert recall >= 0.95, f"{index_type} recall@10 {recall:.3f}"


@pytest.mark.parametrize("index_type", ["flat", "ivf", "hnsw", "ivfpq"])
def test_exclusions_never_come_back_and_k_results_still_do(index_type: str) -> None:
    features = clustered(3000, 32, 10, seed=5)
    ids = np.arange(3000, dtype=np.int64) * 10
    index = VectorIndex.build(ids, features, index_type=index_type, params=IndexParams(nprobe=64))
    query = normalize(features[:1])
    _, first = index.search(query, 20)
    excluded = set(first[0].tolist())
    _, second = index.search(query, 20, exclude=excluded)
    assert not excluded & set(second[0].tolist())
    assert (second[0] >= 0).all() and len(set(second[0].tolist())) == 20


def test_small_collections_pad_with_minus_one() -> None:
    index = VectorIndex.build(np.array([5, 9, 2]), clustered(3, 8, 1, seed=0), index_type="flat")
    scores, found = index.search(normalize(clustered(1, 8, 1, seed=1)), 5, exclude={9})
    assert sorted(found[0][:2].tolist()) == [2, 5]
    assert found[0][2:].tolist() == [-1, -1, -1] and np.isneginf(scores[0][2:]).all()


def test_add_and_remove_by_id() -> None:
    features = clustered(500, 16, 5, seed=3)
    for index_type in ("flat", "ivf", "hnsw"):
        index = VectorIndex.build(np.arange(400), features[:400], index_type=index_type, params=IndexParams(nprobe=64))
        index.add(np.arange(1000, 1100), features[400:])
        assert index.count == 500
        _, found = index.search(normalize(features[450:451]), 1)
        assert found[0, 0] == 1050
        assert index.remove([1050, 3, 99999]) == 2
        _, found = index.search(normalize(features[450:451]), 5)
        assert 1050 not in found[0] and index.count == 498
        with pytest.raises(SearchIndexError, match="already in the index"):
            index.add(np.array([1000]), features[:1])


def test_bad_builds_are_refused() -> None:
    with pytest.raises(SearchIndexError, match="unique"):
        VectorIndex.build(np.array([1, 1]), np.zeros((2, 4), np.float32))
    with pytest.raises(SearchIndexError, match="unknown index type"):
        VectorIndex.build(np.array([1]), np.zeros((1, 4), np.float32), index_type="annoy")
    index = VectorIndex.build(np.array([1]), np.ones((1, 4), np.float32))
    with pytest.raises(SearchIndexError, match="4-d"):
        index.search(np.ones((1, 5), np.float32), 1)


def test_choice_of_type_follows_size() -> None:
    assert choose_index_type(20_000, 640) == "flat"
    assert choose_index_type(50_000, 640) == "ivf"
    assert choose_index_type(1_000_000, 640) == "ivf"
    assert choose_index_type(10_000_000, 640) == "ivfpq"


@pytest.mark.parametrize("index_type", ["flat", "ivf", "hnsw", "ivfpq"])
def test_versions_persist_and_load_memory_mapped(tmp_path: Path, index_type: str) -> None:
    features = clustered(2000, 32, 8, seed=9)
    ids = np.random.default_rng(0).permutation(10_000)[:2000]
    written = write_version(tmp_path, ids, features, encoder="tiny.pt", combiner="c.pt", index_type=index_type)
    assert version_numbers(tmp_path) == [1] and written.path.name == "v1"
    loaded = load_version(tmp_path / "v1")
    assert loaded.meta.index_type == index_type and loaded.meta.count == 2000 and loaded.meta.encoder == "tiny.pt"
    assert isinstance(loaded.features, np.memmap) and loaded.index.read_only
    query = normalize(features[:3])
    np.testing.assert_array_equal(loaded.index.search(query, 5)[1], written.index.search(query, 5)[1])
    np.testing.assert_allclose(loaded.features_of(ids[[5, 0]]), features[[5, 0]])
    with pytest.raises(KeyError, match="not in index version 1"):
        loaded.features_of([10_001])
    with pytest.raises(SearchIndexError, match="read-only"):
        loaded.index.remove([int(ids[0])])
    second = write_version(tmp_path, ids[:10], features[:10], encoder="e", combiner="sum", index_type="flat")
    assert second.meta.version == 2 and version_numbers(tmp_path) == [1, 2]
