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
        json=True,
        stdout=out,
    )
    rows = json.loads(out.getvalue())
    assert [(r["concurrency"], r["turns"], r["errors"]) for r in rows] == [(1, 4, 0), (2, 4, 0)]
    for row in rows:
        assert 0 < row["compute_ms"]["p50"] <= row["e2e_ms"]["p50"] <= row["e2e_ms"]["p99"]
        assert row["turns_per_second"] > 0
