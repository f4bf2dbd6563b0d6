"""The soak's section of docs/benchmarks.md, drawn from the soak.json that `manage.py bench_soak --out` writes
beside the page. The soak needs the served product (web, workers, Redis), so `bench-report` does not run it;
the page shows the soak's last figures and `--render-only` redraws them with the rest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def soak_section(path: Path) -> list[str]:
    """The section's lines (none when `path` does not exist)."""
    if not path.exists():
        return []
    soak: dict[str, Any] = json.loads(path.read_text())
    m = soak["machine"]
    units = " and ".join(u for u, has in (("AVX-512", m["avx512"]), ("AMX", m["amx"])) if has)
    units = f"{units}, no AMX" if units == "AVX-512" else units or "neither AVX-512 nor AMX"
    rows = [
        f"| {name} | {p['warmup_mb']} | {p['end_mb']} | {p['peak_mb']} | {p['growth_mb']:+} | "
        f"{'yes' if p['passed'] else '**no**'} |"
        for name, p in soak["processes"].items()
        if "growth_mb" in p
    ]
    e2e, compute = soak["e2e_ms"], soak["compute_ms"]
    every = round(soak["samples"][1]["turns"], -1) if len(soak["samples"]) > 1 else soak["turns"]
    redis = "a private Redis" if "redis" in soak["processes"] else "not Redis, which is external here"
    return [
        "",
        f"## Soak: {soak['turns']:,} turns through `serve`",
        "",
        f"`{soak['command']} --out docs/soak.json --svg docs/soak.svg`, then `python -m retrieval bench-report "
        "--render-only --out docs` to redraw this page. The command starts `manage.py serve` on a free port with "
        "the visitor limits off, sends the turns as visitors of "
        f"{soak['turns'] // max(1, soak['visitors'])} turns each (a new conversation and socket for each visitor), "
        f"{soak['concurrency']} at a time, every turn on its last's results and with new words (the text cache "
        "fills to its bound instead of answering), and samples the resident memory (VmRSS) of every process "
        f"under `serve` about every {every:,} turns: the web server, the search worker and its pool child (the "
        "models and the memory-mapped index are there), the index worker and its pool child, the sweep, "
        f"`serve` itself and {redis}. Growth is a process's resident memory at the end less at the "
        f"end of the warm-up (the first {soak['warmup_turns']:,} turns), judged against {soak['bound_mb']:g} MB; "
        "the command fails when one grows past it.",
        "",
        f"Finished {soak['when']}: {m['cpu']}, {m['cores']} cores ({units}), shared with other work (load average "
        f"{m['load_average_start']} at the start, {m['load_average_end']} at the end), the client and `serve` "
        f"at niceness {m['niceness']}. {soak['answered']:,} of {soak['turns']:,} turns answered, {soak['errors']} "
        f"errors, in {soak['seconds']:,} s: {soak['turns_per_second']} turns/s; end to end p50 {e2e['p50']} ms, "
        f"p99 {e2e['p99']} ms (the worker's compute p50 {compute['p50']} ms, p99 {compute['p99']} ms; the rest is "
        f"mostly waiting behind the other {soak['concurrency'] - 1} visitors for the one search process).",
        "",
        f"| process | after the warm-up, MB | at the end, MB | peak after the warm-up, MB | growth, MB | under "
        f"{soak['bound_mb']:g} MB |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        "![resident memory of each process against turns, and its change since the warm-up](soak.svg)",
        "",
    ]
