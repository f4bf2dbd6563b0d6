"""Recall under CIRR's protocol, on features built by hand so the right answers are known."""

from __future__ import annotations

import numpy as np

from retrieval.datasets.base import Triplet
from retrieval.evaluation.recall import Gallery, ranked, recall_at, subset_ranks, target_ranks


def test_reference_is_removed_and_recall_counts_targets() -> None:
    names = ["a", "b", "c", "d", "e"]
    features = np.eye(5, dtype=np.float32)
    gallery = Gallery(names, features)
    # query 0 points exactly at its own reference "a" and then at "b": with "a" removed, "b" ranks first
    queries = np.array([[1, 0.5, 0, 0, 0], [0, 0, 0.1, 1, 0]], np.float32)
    top = ranked(queries, gallery, ["a", "c"], top=4)
    assert names[top[0][0]] == "b" and "a" not in [names[i] for i in top[0]]
    ranks = target_ranks(top, gallery, ["b", "e"])
    assert ranks.tolist()[0] == 0 and ranks[1] > 0
    assert recall_at(ranks, (1, 5)) == {"recall@1": 0.5, "recall@5": 1.0}


def test_subset_ranks_within_the_img_set_without_the_reference() -> None:
    names = ["r", "s1", "s2", "x"]
    gallery = Gallery(names, np.eye(4, dtype=np.float32))
    t = Triplet(1, "r", "cap", "s2", group=("r", "s1", "s2"))
    query = np.array([[0.9, 0.2, 0.5, 1.0]], np.float32)  # x scores highest but is not in the set
    assert subset_ranks(query, gallery, [t]).tolist() == [0]
