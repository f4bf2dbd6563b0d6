"""What the cores allow, for `manage.py bench_pipeline`: the CPU one served turn costs in each kind of process,
the rate the machine's cores could sustain at that cost, and the in-process turn measured beside it.

A turn spends CPU in the web process (websocket, database), the broker (Redis), the search worker (the
model), and the load client that sends it. With every core busy with turns and nothing else, the cores allow
`cores / (CPU seconds of one turn in the product's processes)` turns a second; the measured rate divided by that
is how much of the machine the pipeline turns into answers (the rest: cores idle, or busy with other work).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from typing import Any

from django.conf import settings
from django.core.management.base import CommandError

CLIENT = "client"  # the load generator: it shares the cores, but it is not part of the product


# The CPU features that decide which kernels a turn runs on (retrieval.models.precision reads the same flags).
MATRIX_FLAGS = ("amx_bf16", "amx_int8", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "avx2")


def machine_class() -> dict[str, Any]:
    """This machine as figures are labelled with: the CPU's model name, its cores, and which matrix features
    it has (AMX, AVX-512, AVX2 ...); from /proc/cpuinfo (Linux), the platform's name elsewhere."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count() or 1, "features": [f for f in MATRIX_FLAGS if f in flags]}


def core_budget(cpu_seconds: dict[str, float], turns: int, turns_per_second: float) -> dict[str, Any]:
    """From the CPU seconds each kind of process used over a run of `turns` turns (the client's under
    CLIENT): milliseconds of CPU a turn by kind, their sum over the product's kinds, the turns a second this
    machine's cores allow at that cost, and the measured rate as a share of it."""
    per_turn = {role: round(max(0.0, s) / max(1, turns) * 1000, 2) for role, s in sorted(cpu_seconds.items())}
    product = sum(ms for role, ms in per_turn.items() if role != CLIENT)
    cores = os.cpu_count() or 1
    allowed = cores * 1000 / product if product > 0 else 0.0
    return {
        "cpu_ms_per_turn": per_turn,
        "cpu_ms_per_turn_product": round(product, 2),
        "cores": cores,
        "turns_per_second_allowed": round(allowed, 1),
        "share_of_allowed": round(turns_per_second / allowed, 3) if allowed else None,
    }


def in_process_turn(arch: str, count: int, turns: int) -> dict[str, Any]:
    """`python -m retrieval bench-turn --arch ARCH --count N --json` run as its own process (the web side
    never imports the engine): the turn a search worker computes, without the pipeline, on this machine now.
    Returns its JSON object (`total_p50_ms`, the stages, the naive turn beside it)."""
    command = [sys.executable, "-m", "retrieval", "bench-turn", "--arch", arch, "--count", str(count)]
    command += ["--turns", str(turns), "--json"]
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=settings.BASE_DIR)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        said = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise CommandError(f"the in-process turn (`{' '.join(command[1:])}`) failed: {said}")
    figures: dict[str, Any] = json.loads(lines[-1])
    return figures


def beside_text(turn: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """One line: the in-process turn, and how far each level's end-to-end p50 is from it."""
    gaps = ", ".join(f"{r['concurrency']}: +{r['e2e_ms']['p50'] - turn['total_p50_ms']:.1f} ms" for r in rows)
    return (
        f"in process ({turn['arch']}, {turn['count']:,} images): turn p50 {turn['total_p50_ms']} ms (text "
        f"{turn['text_p50_ms']}, Combiner {turn['combine_p50_ms']}, search {turn['search_p50_ms']}; naive "
        f"{turn['naive_p50_ms']}); end to end p50 over it, by conversations: {gaps}"
    )


def budget_text(row: dict[str, Any]) -> str:
    """The CPU a turn costs by kind of process, and the rate against what the cores allow."""
    if not row.get("cpu_ms_per_turn"):
        return ""
    kinds = ", ".join(f"{role} {ms}" for role, ms in row["cpu_ms_per_turn"].items())
    return (
        f"; CPU ms a turn: {kinds} (product {row['cpu_ms_per_turn_product']}); {row['cores']} cores allow "
        f"{row['turns_per_second_allowed']} turns/s, measured {row['share_of_allowed']} of it"
    )
