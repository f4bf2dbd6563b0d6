"""The pipeline benchmark runs against the live product at smoke size, so it cannot rot: every turn it sends
comes back, and it reports the figures the README's Pipeline table is made of."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command

from tests.live import LiveServices, ShapesCollection

pytestmark = pytest.mark.integration


def test_bench_pipeline_answers_every_turn(live_services: LiveServices, shapes: ShapesCollection) -> None:
    out = io.StringIO()
    call_command(
        "bench_pipeline",
        url=live_services.base_url,
        collection=shapes.slug,
        turns=4,
        concurrency=[1, 2],
        fresh_texts=True,  # new words every turn: the worker's text cache never answers
        json=True,
        stdout=out,
    )
    rows = json.loads(out.getvalue())
    assert [(r["concurrency"], r["turns"], r["errors"]) for r in rows] == [(1, 4, 0), (2, 4, 0)]
    for row in rows:
        assert 0 < row["compute_ms"]["p50"] <= row["e2e_ms"]["p50"] <= row["e2e_ms"]["p99"]
        assert row["turns_per_second"] > 0


def test_bench_pipeline_starts_the_product_per_worker_count_and_compares_throughput(
    live_services: LiveServices, shapes: ShapesCollection, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE", "DJANGO_ALLOWED_HOSTS"):
        monkeypatch.setenv(name, live_services.env[name])  # the product it starts reads the test database
    out = io.StringIO()
    call_command(
        "bench_pipeline", collection=shapes.slug, turns=4, concurrency=[2], serve_search_workers=[1], stdout=out
    )
    text = out.getvalue()
    assert "round 1, 1 search worker(s):" in text, text
    assert "2 conversations, turns/s: 1 worker(s)" in text and "(1.00x)" in text, text
    assert "errors" not in text, text
    assert "CPU, % of a core: " in text and " search " in text and " web " in text, text  # what limits the rate
    assert "waiting for a core, ms a turn: " in text, text
    assert "CPU ms a turn: " in text and " cores allow " in text, text  # the rate against what the cores allow
