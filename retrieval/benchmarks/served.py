"""The served stack's section of docs/benchmarks.md: `manage.py bench_pipeline --json` figures, kept beside the
page as bench-pipeline.json, drawn as a table and as end-to-end latency against concurrency (an SVG).

`bench-report` does not run the served stack (it needs the product's processes: web, Redis, search workers);
it renders what `bench_pipeline` measured, each row with the machine it was measured on, so a later
`--render-only` or a new preset run keeps the section. Without the file the section says how to make it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PIPELINE_FILE = "bench-pipeline.json"
PIPELINE_PLOT = "bench-pipeline.svg"
MAKE_IT = (
    "python manage.py bench_pipeline --serve-search-workers 1 2 --rounds 3 --collection real --fresh-texts "
    "--turns 320 --concurrency 1 8 32 --beside-turn RN50x4:100000 --json > docs/bench-pipeline.json"
)


def pipeline_rows(out: Path) -> list[dict[str, Any]]:
    """The rows `bench_pipeline --json` wrote into `out`, or none."""
    path = out / PIPELINE_FILE
    rows: list[dict[str, Any]] = json.loads(path.read_text()) if path.is_file() else []
    return rows


def median_rounds(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (search workers, conversations): of its rounds, the one with the median end-to-end p50,
    with how many rounds there were (`rounds`)."""
    groups: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row.get("search_workers", 0), row["concurrency"]), []).append(row)
    chosen = []
    for key in sorted(groups):
        ordered = sorted(groups[key], key=lambda r: r["e2e_ms"]["p50"])
        chosen.append(ordered[(len(ordered) - 1) // 2] | {"rounds": len(ordered)})
    return chosen


def machine_text(machine: dict[str, Any] | None) -> str:
    if not machine:
        return "machine not recorded"
    return f"{machine['cpu']}, {machine['cores']} cores, {', '.join(machine['features']) or 'no AVX2'}"


def pipeline_plot(rows: list[dict[str, Any]], out: Path) -> None:
    """End-to-end p50 and p99 against conversations at once, beside the in-process turn: an SVG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matplotlib.rcParams["svg.hashsalt"] = "cirweb"  # the same figures draw the same file
    chosen = median_rounds(rows)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for colour, workers in enumerate(sorted({r.get("search_workers", 0) for r in chosen})):
        levels = [r for r in chosen if r.get("search_workers", 0) == workers]
        xs = [r["concurrency"] for r in levels]
        name = f"{workers} search worker(s), " if workers else ""
        ax.plot(xs, [r["e2e_ms"]["p50"] for r in levels], "o-", color=f"C{colour}", label=f"{name}end to end p50")
        ax.plot(xs, [r["e2e_ms"]["p99"] for r in levels], "s--", color=f"C{colour}", label=f"{name}end to end p99")
    xs = sorted({r["concurrency"] for r in chosen})
    turn = chosen[0].get("in_process_turn")
    if turn:
        ax.axhline(turn["total_p50_ms"], color="grey", lw=0.8, label=f"in-process turn p50 ({turn['total_p50_ms']} ms)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set(xlabel="conversations at once", ylabel="ms (log)", title="A served turn against concurrency")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / PIPELINE_PLOT, format="svg", metadata={"Date": None})
    plt.close(fig)


def served_section(rows: list[dict[str, Any]]) -> list[str]:
    """The page's lines for the served stack's figures (empty without figures)."""
    if not rows:
        return []
    levels = median_rounds(rows)
    lines = [
        "### Measured",
        "",
        f"`{MAKE_IT}` on {machine_text(levels[0].get('machine'))} (each row: of its rounds, the one with the "
        "median end-to-end p50; the load average at its end says whether the cores were shared). CPU per turn "
        "is counted over each kind of process of `serve` (and the load client, which is not the product's; a "
        "Redis that `serve` did not start is not counted); the cores allow `cores / product CPU of one turn` "
        "turns a second.",
        "",
        "| search workers | conversations | rounds | turns | turns/s | end to end p50 / p99, ms | worker compute "
        "p50 | waiting for a worker p50 | CPU ms a turn, by process | product CPU ms a turn | cores allow, "
        "turns/s | measured / allowed | waiting for a core, ms a turn | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in levels:
        kinds = ", ".join(f"{k} {v}" for k, v in r.get("cpu_ms_per_turn", {}).items()) or "-"
        waits = ", ".join(f"{k} {v}" for k, v in r.get("core_wait_ms_per_turn", {}).items()) or "-"
        lines.append(
            f"| {r.get('search_workers', '-')} | {r['concurrency']} | {r['rounds']} | {r['turns']} | "
            f"{r['turns_per_second']} | {r['e2e_ms']['p50']} / "
            f"{r['e2e_ms']['p99']} | {r['compute_ms']['p50']} | {r['queue_wait_ms']['p50']} | {kinds} | "
            f"{r.get('cpu_ms_per_turn_product', '-')} | {r.get('turns_per_second_allowed', '-')} | "
            f"{r.get('share_of_allowed', '-')} | {waits} | {r['load_average']} |"
        )
    turn = levels[0].get("in_process_turn")
    if turn:
        gap = levels[0]["e2e_ms"]["p50"] - turn["total_p50_ms"]
        lines += [
            "",
            f"In process, same run (`bench-turn --arch {turn['arch']} --count {turn['count']}`, after the "
            f"levels): turn p50 {turn['total_p50_ms']} ms (text {turn['text_p50_ms']}, Combiner "
            f"{turn['combine_p50_ms']}, search {turn['search_p50_ms']}), naive {turn['naive_p50_ms']} ms. "
            f"End to end at {levels[0]['concurrency']} conversation(s) is {gap:.1f} ms over it.",
        ]
    return [*lines, "", f"![end-to-end latency against concurrency]({PIPELINE_PLOT})", ""]
