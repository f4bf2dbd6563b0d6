"""Every benchmark runs at smoke size, so none can rot: the commands print the figures their docs promise.
They assert shapes and sanity, never speeds (benchmarks are commands that print figures, not timed tests)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from retrieval.benchmarks import report as bench_report
from retrieval.benchmarks.synthetic import clustered_draw, clustered_features
from retrieval.cli import main

pytestmark = pytest.mark.slow


def test_bench_turn_prints_the_contract_keys(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench-turn", "--arch", "ViT-B/32", "--count", "300", "--turns", "3", "--exclude", "5", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("total_p50_ms", "total_p99_ms", "naive_p50_ms", "text_p50_ms", "reference_p50_ms", "combine_p50_ms"):
        assert figures[key] > 0, key
    assert figures["search_p50_ms"] > 0 and figures["index_type"] == "flat"
    assert 0.5 <= figures["recall_at_10_vs_naive"] <= 1.0  # int8 text may move a result, not the whole list


def test_bench_report_writes_the_page_and_its_plots(tmp_path: Path) -> None:
    page = bench_report.write(bench_report.run("smoke"), tmp_path)
    text = page.read_text()
    for section in ("A turn, in process", "Encoders by precision", "Indexes", "bench-report --preset smoke"):
        assert section in text
    for plot in ("bench-turn.png", "bench-precision.png", "bench-index.png"):
        assert (tmp_path / plot).stat().st_size > 1000
        assert f"({plot})" in text
    report = bench_report.load(tmp_path / "benchmarks.json")
    assert {i["index_type"] for i in report.index} == {"flat", "ivf", "hnsw"}
    assert all(0 <= i["recall_at_10"] <= 1 for i in report.index)
    assert report.extract[0]["ratio"] > 0 and report.extract[0]["peak_rss_mb"] > 0
    assert bench_report.write(bench_report.load(tmp_path / "benchmarks.json"), tmp_path / "again").read_text() == text


def test_clustered_draw_is_clustered_features_with_the_cluster_of_each_vector() -> None:
    features, labels = clustered_draw(3000, 32, clusters=12, seed=5)
    assert np.array_equal(features, clustered_features(3000, 32, clusters=12, seed=5))
    means = np.stack([features[labels == c].mean(0) for c in range(12)])
    nearest = ((features[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
    assert (nearest == labels).all()  # what the real-size stack colours its placeholder pictures by
