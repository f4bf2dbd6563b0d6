"""Every benchmark runs at smoke size, so none can rot: the commands print the figures their docs promise.
They assert shapes and sanity, never speeds (benchmarks are commands that print figures, not timed tests)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from retrieval.benchmarks import report as bench_report
from retrieval.benchmarks import throughput
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
    assert report.extract[0]["decode_ms"] > 0 and report.extract[0]["machine"]["cpu"]
    assert bench_report.write(bench_report.load(tmp_path / "benchmarks.json"), tmp_path / "again").read_text() == text


def test_the_extraction_table_is_measured_again_on_its_own(tmp_path: Path) -> None:
    """`bench-report --extract-only` measures the extraction again and keeps every other figure of the page;
    `bench-encode --extract-blocks` cuts a ViT's tower, a stand-in for a faster CPU."""
    earlier = bench_report.Report("smoke", {**bench_report.machine(), "cpu": "an earlier machine"})
    page = bench_report.write(earlier, tmp_path)
    assert main(["bench-report", "--extract-only", "--out", str(tmp_path)]) == 0
    again = bench_report.load(tmp_path / "benchmarks.json")
    assert again.machine == earlier.machine and again.preset == "smoke"
    (row,) = again.extract
    assert row["architecture"] == "ViT-B/32" and row["images"] == 4 and row["machine"]["cpu"] != "an earlier machine"
    assert "an earlier machine" in page.read_text() and row["machine"]["cpu"] in page.read_text()
    cut = throughput.bench_extract("ViT-B/32", images=2, batch=2, rounds=1, blocks=2)
    assert cut.architecture == "ViT-B/32, first 2 of 12 blocks" and cut.ratio > 0
    with pytest.raises(ValueError, match="no 13 transformer blocks"):
        throughput.bench_extract("ViT-B/32", images=2, batch=2, blocks=13)


def test_clustered_draw_is_clustered_features_with_the_cluster_of_each_vector() -> None:
    features, labels = clustered_draw(3000, 32, clusters=12, seed=5)
    assert np.array_equal(features, clustered_features(3000, 32, clusters=12, seed=5))
    means = np.stack([features[labels == c].mean(0) for c in range(12)])
    nearest = ((features[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
    assert (nearest == labels).all()  # what the real-size stack colours its placeholder pictures by


def test_the_served_stacks_figures_are_drawn_on_the_page_with_their_machine(tmp_path: Path) -> None:
    """`bench_pipeline --json` saved beside the page (bench-pipeline.json) is rendered by every `bench-report`
    run, `--render-only` too: a table with the machine, the in-process turn's gap, and the SVG of latency
    against concurrency."""
    docs = Path(__file__).parents[2] / "docs"
    machine = {"cpu": "AMD EPYC", "cores": 2, "features": ["avx512f", "avx512_vnni", "avx2"]}
    turn = {"arch": "RN50x4", "count": 100000, "total_p50_ms": 10.0, "text_p50_ms": 6.0, "combine_p50_ms": 2.5}
    turn |= {"search_p50_ms": 1.2, "naive_p50_ms": 150.0}
    rows = [
        {
            "concurrency": n,
            "turns": 200,
            "turns_per_second": rate,
            "load_average": 2.0,
            "e2e_ms": {"p50": p50, "p99": p50 * 1.5},
            "compute_ms": {"p50": 11.0},
            "queue_wait_ms": {"p50": p50 - 20},
            "cpu_ms_per_turn": {"client": 2.0, "search": 12.0, "web": 5.0},
            "cpu_ms_per_turn_product": 17.0,
            "turns_per_second_allowed": 117.6,
            "share_of_allowed": round(rate / 117.6, 3),
            "in_process_turn": turn,
            "machine": machine,
        }
        for n, rate, p50 in ((1, 45.0, 21.5), (8, 60.0, 130.0), (32, 70.0, 450.0))
    ]
    (tmp_path / "bench-pipeline.json").write_text(json.dumps(rows))
    text = bench_report.write(bench_report.load(docs / "benchmarks.json"), tmp_path).read_text()
    assert "AMD EPYC, 2 cores, avx512f, avx512_vnni, avx2" in text
    assert "| - | 32 | 1 | 200 | 70.0 | 450.0 / 675.0 |" in text and "| 0.595 |" in text
    assert "End to end at 1 conversation(s) is 11.5 ms over it." in text
    svg = (tmp_path / "bench-pipeline.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg and "(bench-pipeline.svg)" in text
    assert bench_report.write(bench_report.load(docs / "benchmarks.json"), tmp_path).read_text() == text
    assert (tmp_path / "bench-pipeline.svg").read_text() == svg  # the same figures draw the same file
