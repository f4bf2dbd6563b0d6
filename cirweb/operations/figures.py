"""The figures of the admin's Operations page, from the turns that ended lately: turns per minute (done and
failed) and the median and 99th percentile of their latency (queued to results stored), minute by minute over
WINDOW_MINUTES, and the same over the last RECENT_MINUTES for the headline. Rounded as people read them: whole
milliseconds, turns per minute to one decimal."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

WINDOW_MINUTES = 30
RECENT_MINUTES = 5
DONE, FAILED = "done", "failed"


def percentile(ordered: Sequence[float], share: float) -> float | None:
    """The nearest-rank percentile of values sorted ascending (`share` 0.5: the median; 0.99: p99); None for
    none. Nearest rank, so the figure is a latency some turn really had."""
    if not ordered:
        return None
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def whole_ms(value: float | None) -> int | None:
    return None if value is None else round(value)


def minute_of(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def turn_pulse(
    *, ended: Iterable[tuple[datetime, str, float | None]], now: datetime, window: int = WINDOW_MINUTES
) -> dict[str, Any]:
    """`ended`: (finished, status, latency_ms) of turns that ended in the window. One entry a minute, oldest
    first, the current (partial) minute last, each with its label in the site's time zone ("14:05"), its done
    and failed counts and its p50/p99 latency in ms (None without answered turns); `recent`: the same over the
    last RECENT_MINUTES, with turns per minute."""
    first = minute_of(now) - timedelta(minutes=window - 1)
    latencies: list[list[float]] = [[] for _ in range(window)]
    counts = [{DONE: 0, FAILED: 0} for _ in range(window)]
    recent_latencies: list[float] = []
    recent = {DONE: 0, FAILED: 0}
    recent_since = now - timedelta(minutes=RECENT_MINUTES)
    for finished, status, latency_ms in ended:
        slot = int((minute_of(finished) - first).total_seconds() // 60)
        if not 0 <= slot < window or status not in (DONE, FAILED):
            continue
        counts[slot][status] += 1
        if finished >= recent_since:
            recent[status] += 1
        if status == DONE and latency_ms is not None:
            latencies[slot].append(latency_ms)
            if finished >= recent_since:
                recent_latencies.append(latency_ms)
    minutes = []
    for slot in range(window):
        ordered = sorted(latencies[slot])
        start = first + timedelta(minutes=slot)
        minutes.append(
            {
                "label": timezone.localtime(start).strftime("%H:%M"),
                DONE: counts[slot][DONE],
                FAILED: counts[slot][FAILED],
                "p50_ms": whole_ms(percentile(ordered, 0.5)),
                "p99_ms": whole_ms(percentile(ordered, 0.99)),
                "partial": slot == window - 1,
            }
        )
    recent_latencies.sort()
    return {
        "window_minutes": window,
        "minutes": minutes,
        "recent": {
            "minutes": RECENT_MINUTES,
            "turns_per_minute": round((recent[DONE] + recent[FAILED]) / RECENT_MINUTES, 1),
            DONE: recent[DONE],
            FAILED: recent[FAILED],
            "p50_ms": whole_ms(percentile(recent_latencies, 0.5)),
            "p99_ms": whole_ms(percentile(recent_latencies, 0.99)),
        },
    }
