"""The soak's figures (cirweb/processes/soak.py) without a stack: growth is counted from the end of the
warm-up, and a process keeps its name when a pool child is replaced (tests/integration/test_bench_soak.py
runs the whole soak against `serve`), and the benchmarks page and the picture show what the soak measured."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cirweb.processes.soak import StackProcesses, growth
from cirweb.processes.soak_chart import resident_chart_svg
from retrieval.benchmarks.soak_page import soak_section


def test_growth_is_judged_from_the_end_of_the_warm_up() -> None:
    samples = [
        {"turns": 0, "rss_mb": {"web": 50.0, "search": 100.0}},
        {"turns": 100, "rss_mb": {"web": 80.0, "search": 300.0}},  # loading: not counted
        {"turns": 200, "rss_mb": {"web": 90.0, "search": 400.0}},
        {"turns": 300, "rss_mb": {"web": 85.0, "search": 351.0}},
    ]
    report = growth(samples, warmup=100, bound_mb=50)
    assert report["web"] == {"warmup_mb": 80.0, "end_mb": 85.0, "peak_mb": 90.0, "growth_mb": 5.0, "passed": True}
    assert report["search"]["growth_mb"] == 51.0 and not report["search"]["passed"]


def test_the_stack_keeps_its_names_when_a_pool_child_is_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    serve, search, web = (0, "manage.py serve"), (1, "celery -Q search"), (1, "python -m cirweb.processes.webserver")
    trees = iter([{1: serve, 2: search, 3: (2, search[1]), 4: web}, {1: serve, 2: search, 9: (2, search[1]), 4: web}])
    monkeypatch.setattr("cirweb.processes.soak.descendants", lambda root: next(trees))
    stack = StackProcesses(1)
    assert stack.current() == {"serve": 1, "search": 2, "search pool 1": 3, "web": 4}
    assert stack.current() == {"serve": 1, "search": 2, "search pool 1": 9, "web": 4}
    assert stack.replaced == {"search pool 1": 1}
    assert re.fullmatch(r"[\w ]+", " ".join(stack.pids))


def test_the_benchmarks_page_shows_the_soak_it_finds_beside_it(tmp_path: Path) -> None:
    samples = [
        {"turns": t, "seconds": t / 10, "rss_mb": {"web": 80.0 + t / 10, "search": 300.0}} for t in (0, 100, 900)
    ]
    soak = {
        "turns": 900,
        "visitors": 90,
        "concurrency": 8,
        "warmup_turns": 100,
        "bound_mb": 50.0,
        "answered": 900,
        "errors": 0,
        "seconds": 90.0,
        "turns_per_second": 10.0,
        "e2e_ms": {"p50": 400.0, "p99": 900.0},
        "compute_ms": {"p50": 60.0, "p99": 150.0},
        "processes": growth(samples, warmup=100, bound_mb=50),
        "machine": {"cpu": "AMD EPYC", "cores": 2, "avx512": True, "amx": False, "load_average_start": 3.0}
        | {"load_average_end": 4.0, "niceness": 10},
        "when": "2026-12-07T22:33+00:00",
        "command": "python manage.py bench_soak --turns 900",
        "samples": samples,
    }
    (tmp_path / "soak.json").write_text(json.dumps(soak))
    page = "\n".join(soak_section(tmp_path / "soak.json"))
    assert "| web | 90.0 | 170.0 | 170.0 | +80.0 | **no** |" in page  # grew 80 MB after the warm-up
    assert "| search | 300.0 | 300.0 | 300.0 | +0.0 | yes |" in page
    assert "AMD EPYC, 2 cores (AVX-512, no AMX)" in page and "![" in page and "(soak.svg)" in page
    assert soak_section(tmp_path / "absent.json") == []
    svg = resident_chart_svg(soak)
    assert svg.count("<polyline") == 4 and ">web</text>" in svg and "bound +50 MB" in svg
