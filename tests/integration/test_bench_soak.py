"""The soak benchmark (`manage.py bench_soak`) at smoke size against the product it starts with `serve`: every
turn comes back, every process of the stack is sampled and named, each growth figure is a real difference of
two samples, and the picture has a line per process. The 20,000-turn run is docs/benchmarks.md's."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.core.management import call_command

from tests.live import LiveServices, ShapesCollection

pytestmark = [pytest.mark.integration, pytest.mark.slow]
STACK = {"serve", "web", "search", "search pool 1", "index", "index pool 1", "sweep"}


def test_bench_soak_samples_every_process_of_serve_and_judges_growth(
    live_services: LiveServices, shapes: ShapesCollection, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE", "DJANGO_ALLOWED_HOSTS"):
        monkeypatch.setenv(name, live_services.env[name])  # the product it starts reads the test database
    out = io.StringIO()
    call_command(
        "bench_soak",
        collection=shapes.slug,
        turns=200,
        warmup=50,
        concurrency=4,
        sample_every=25,
        out=str(tmp_path / "soak.json"),
        svg=str(tmp_path / "soak.svg"),
        stdout=out,
    )
    report = json.loads((tmp_path / "soak.json").read_text())
    assert (report["answered"], report["errors"]) == (200, 0), report["first_error"]
    assert report["visitors"] == 20 and report["turns_per_second"] > 0
    assert 0 < report["e2e_ms"]["p50"] <= report["e2e_ms"]["p99"]
    assert report["processes"].keys() >= STACK, report["processes"].keys()
    turns = [s["turns"] for s in report["samples"]]
    assert turns[0] == 0 and 25 <= turns[1] < 35 and turns[-1] == 200 and turns == sorted(turns), turns
    for name in STACK:
        p = report["processes"][name]
        after = [s["rss_mb"][name] for s in report["samples"] if s["turns"] >= 50]
        assert p["growth_mb"] == pytest.approx(after[-1] - after[0], abs=0.11), (name, p)
        assert 10 < p["warmup_mb"] < 4000 and p["peak_mb"] >= p["end_mb"], (name, p)
        assert p["passed"] == (p["growth_mb"] < 50)
    search_pool = report["processes"]["search pool 1"]["warmup_mb"]
    assert search_pool > report["processes"]["sweep"]["warmup_mb"], "the models live in the search pool child"
    assert report["passed"] and "OVER THE BOUND" not in out.getvalue(), out.getvalue()
    svg = (tmp_path / "soak.svg").read_text()
    assert svg.startswith("<svg") and svg.count("<polyline") == 2 * len(report["processes"])
    assert all(f">{name}</text>" in svg for name in STACK)
