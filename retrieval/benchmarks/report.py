"""`python -m retrieval bench-report`: every engine benchmark in one run, written as docs/benchmarks.md with
its plots (turn latency histogram, precision speed-ups, recall against milliseconds per index setting).

Presets size the run: `full` is what the issue's goals name (RN50x4 and ViT-B/32, 10k/100k/1M; hours on 2
cores), `quick` fits a busy 2-core machine in well under an hour, `smoke` (seconds to minutes) is what CI
runs so that no benchmark can rot. The raw figures go to benchmarks.json beside the page, and
`--render-only` redraws the page from them.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from retrieval.benchmarks.served import pipeline_plot, pipeline_rows, served_section
from retrieval.benchmarks.soak_page import soak_section
from retrieval.benchmarks.throughput import bench_encode, bench_extract, bench_index
from retrieval.benchmarks.turn_cost import bench_turn
from retrieval.models.precision import compute_threads_set, cpu_flags


@dataclass(frozen=True)
class ReportSize:
    turn_archs: tuple[str, ...]
    turn_counts: tuple[int, ...]
    turns: int
    encode: tuple[tuple[str, int], ...]  # (architecture, batch)
    precisions: tuple[str, ...]
    extract_images: int
    index_count: int
    index_dim: int
    index_queries: int
    nprobes: tuple[int, ...]
    ef_searches: tuple[int, ...]
    index_types: tuple[str, ...] = ("flat", "ivf", "hnsw")
    excluded: int = 200
    turn_excluded: int = 50
    extract_batch: int = 32  # what an index worker reads (retrieval.extraction.features.ImageReader)


PRESETS = {
    "full": ReportSize(
        ("RN50x4", "ViT-B/32"),
        (10_000, 100_000, 1_000_000),
        200,
        (("RN50x4", 32), ("ViT-B/32", 16)),
        ("fp32", "bf16", "int8", "auto"),
        256,  # at 32 a batch, as an index worker reads: 8 batches, the first the only one not overlapped
        1_000_000,
        640,
        200,
        (16, 32, 64, 128),
        (16, 32, 64, 128),
    ),
    "quick": ReportSize(
        ("RN50x4",),
        (10_000, 100_000),
        40,
        (("RN50x4", 8), ("ViT-B/32", 4)),  # 8: the smallest batch that compiles (retrieval.models.precision)
        ("fp32", "int8", "auto"),
        128,
        100_000,
        640,
        100,
        (8, 16, 32, 64),
        (16, 32, 64, 128),
    ),
    "smoke": ReportSize(
        ("ViT-B/32",),
        (500,),
        3,
        (("ViT-B/32", 2),),
        ("fp32", "auto"),
        4,
        2_000,
        64,
        10,
        (4,),
        (16,),
        excluded=10,
        turn_excluded=5,
        extract_batch=2,
    ),
}


@dataclass
class Report:
    preset: str
    machine: dict[str, Any]
    turn: list[dict[str, Any]] = field(default_factory=list)
    encode: list[dict[str, Any]] = field(default_factory=list)
    extract: list[dict[str, Any]] = field(default_factory=list)
    index: list[dict[str, Any]] = field(default_factory=list)


def machine() -> dict[str, Any]:
    flags = cpu_flags()
    return {
        "when": datetime.now(UTC).isoformat(timespec="minutes"),
        "cpu": cpu_model() or platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "bf16_units": sorted(f for f in flags if f in ("amx_bf16", "avx512_bf16", "amx_int8")),
        "avx512": "avx512f" in flags,
        "vnni": sorted(f for f in flags if f in ("avx512_vnni", "avx_vnni")),
    }


def machine_words(m: dict[str, Any]) -> str:
    """A machine as the page names it: CPU, threads, bf16 units, AVX-512, VNNI."""
    return (
        f"{m['cpu']}, {m['threads']} threads, bf16 units: {', '.join(m['bf16_units']) or 'none'}, "
        f"AVX-512: {'yes' if m.get('avx512') else 'no'}"
        f"{', VNNI: ' + (', '.join(m['vnni']) or 'none') if 'vnni' in m else ''}"
    )


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ("" where there is none), as `lscpu` shows it."""
    try:
        with open("/proc/cpuinfo") as fh:
            return next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), "")
    except OSError:
        return ""


def run(preset_name: str) -> Report:
    p = PRESETS[preset_name]
    report = Report(preset_name, machine())
    figures = bench_index(
        p.index_count,
        p.index_dim,
        list(p.index_types),
        queries=p.index_queries,
        exclude=p.excluded,
        nprobes=list(p.nprobes),
        ef_searches=list(p.ef_searches),
    )
    report.index = [asdict(f) for f in figures]
    compute_threads_set(1)  # a turn runs as a search worker runs it (CIR_SEARCH_THREADS, 1 by default)
    for arch in p.turn_archs:
        for count in p.turn_counts:
            report.turn.append(asdict(bench_turn(arch, count, turns=p.turns, excluded=p.turn_excluded)))
    compute_threads_set(os.cpu_count() or 1)  # encoding runs as an index worker runs it: every core
    for arch, batch in p.encode:
        report.encode += [asdict(f) for f in bench_encode(arch, batch=batch, precisions=p.precisions)]
    return run_extract(report, preset_name)


def run_extract(report: Report, preset_name: str) -> Report:
    """The whole-extraction table measured (again) on this machine, at the preset's size; each row names its
    machine, since the rest of `report` may come from another."""
    p = PRESETS[preset_name]
    compute_threads_set(os.cpu_count() or 1)  # as an index worker runs: every core
    where = machine()
    report.extract = [
        {**asdict(bench_extract(arch, images=p.extract_images, batch=p.extract_batch)), "machine": where}
        for arch, _ in p.encode
    ]
    return report


def write(report: Report, out: Path) -> Path:
    """benchmarks.json, the three plots and benchmarks.md under `out` (with the soak's section when `out` holds
    the soak.json of `manage.py bench_soak`); returns the page's path."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmarks.json").write_text(json.dumps(asdict(report), indent=1))
    _plots(report, out)
    served = pipeline_rows(out)  # the served stack's figures, measured by `manage.py bench_pipeline`
    if served:
        pipeline_plot(served, out)
    page = out / "benchmarks.md"
    page.write_text(render(report, served) + "\n".join(soak_section(out / "soak.json")))
    return page


def load(path: Path) -> Report:
    return Report(**json.loads(path.read_text()))


def _plots(report: Report, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    for t in report.turn:
        ax.hist(t["totals_ms"], bins=30, alpha=0.6, label=f"{t['arch']} {t['count']:,} ({t['index_type']})")
    ax.set(xlabel="turn total, ms", ylabel="turns", title="In-process turn latency")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "bench-turn.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 3.5))
    labels, image_x, text_x = [], [], []
    for arch in dict.fromkeys(e["architecture"] for e in report.encode):
        rows = [e for e in report.encode if e["architecture"] == arch]
        base = next(e for e in rows if e["precision"] == "fp32")
        for e in rows:
            labels.append(f"{arch}\n{e['precision'].split(' (')[0]}")
            image_x.append(e["images_per_second"] / base["images_per_second"])
            text_x.append(base["ms_per_single_text"] / e["ms_per_single_text"])
    xs = range(len(labels))
    ax.bar([x - 0.2 for x in xs], image_x, 0.4, label="images/s (batch)")
    ax.bar([x + 0.2 for x in xs], text_x, 0.4, label="one text")
    ax.axhline(1, color="grey", lw=0.8)
    ax.set_xticks(list(xs), labels, fontsize=7)
    ax.set(ylabel="speed-up vs fp32 eager", title="Precision levers on this CPU")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "bench-precision.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 3.5))
    for kind in dict.fromkeys(i["index_type"] for i in report.index):
        rows = [i for i in report.index if i["index_type"] == kind]
        ax.plot([i["ms_per_query"] for i in rows], [i["recall_at_10"] for i in rows], "o-", label=kind)
    ax.axhline(0.95, color="grey", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set(xlabel="ms per query (log)", ylabel="recall@10 vs exact", title="Index types and settings")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "bench-index.png", dpi=110)
    plt.close(fig)


def _table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    head = "| " + " | ".join(title for _, title in columns) + " |"
    rule = "|" + "---|" * len(columns)
    body = ["| " + " | ".join(str(r.get(key, "")) for key, _ in columns) + " |" for r in rows]
    return "\n".join([head, rule, *body])


# Not measured by this command (it needs the product's processes): how to measure a turn end to end at real size.
SERVED_STACK = [
    "## A served stack at real size",
    "",
    "The figures above are in process. To measure what a person waits for at real size, build the real-size "
    "stack and serve it (figures, each with its machine, in the README's Benchmarks section):",
    "",
    "```bash",
    "python manage.py bootstrap_demo --size real            # 100,000 images; --count N for fewer",
    "CIR_CLIP_MODEL=var/models/real-RN50x4/clip.pt CIR_COMBINER=var/models/real-RN50x4/combiner.pt \\",
    "  CIR_RATELIMIT_ENABLE=0 python manage.py serve",
    "python manage.py bench_pipeline --collection real --fresh-texts --turns 200 --concurrency 1 8 32 \\",
    "  --serve-pid <serve's pid> --beside-turn RN50x4:100000   # and the in-process turn, same machine, same run",
    "```",
    "",
    "`bootstrap_demo --size real` writes an RN50x4 CLIP and a CLIP4Cir Combiner of that encoder's size "
    "(640 -> 2560 -> 5120) with random weights as checkpoints under the data directory's `models/real-RN50x4/` "
    "(float16, a `manifest.json` with their SHA-256), then the collection `real`: one small placeholder picture "
    "per image (its cluster's colour and number, `000123-c7.png`) and, for each, a feature drawn as `bench-turn` "
    "draws its collection (`clustered_draw`: 640-d, one cluster per 500 images, seed 0). A full reindex job "
    "plans its chunks as always, finds each one already in the shared store (written beforehand from the drawn "
    "features instead of rendering the pictures through the image tower), builds the version (IVF at 100,000), "
    "publishes and activates it. The text tower's ONNX export is made into this host's cache on the way, so the "
    "search workers find it. A second run checks the checksums, the pictures and the active version, and does "
    "nothing. The environment variables make the search workers load the pair when they start rather than on "
    "the first turn; `serve` needs no other setting. `--arch` builds another size (`ViT-B/32`, `RN50x16`, ...).",
    "",
]


def render(report: Report, served: list[dict[str, Any]] | None = None) -> str:
    m = report.machine
    command = f"python -m retrieval bench-report --preset {report.preset} --out docs"
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `{command}` on {m['when']} ({machine_words(m)}). "
        "Random weights at full size (they cost what trained ones "
        "cost); synthetic clustered collections. Shared machines are noisy: compare figures taken in the same "
        "run (the ratios), not across runs. `--render-only` redraws this page from benchmarks.json.",
        "",
        "## A turn, in process",
        "",
        "`python -m retrieval bench-turn --arch A --count N [--json]`: text encoding, stored reference feature, "
        "Combiner, search excluding the ids already shown; beside it in the same run the naive turn (fp32, "
        "77-token context, exact flat search, no cache); both with one thread, as a search worker runs them "
        "(`--threads`, CIR_SEARCH_THREADS).",
        "",
        _table(
            report.turn,
            [
                ("arch", "arch"),
                ("count", "images"),
                ("index_type", "index"),
                ("precision", "precision"),
                ("text_p50_ms", "text"),
                ("reference_p50_ms", "reference"),
                ("combine_p50_ms", "combine"),
                ("search_p50_ms", "search"),
                ("total_p50_ms", "turn p50"),
                ("total_p99_ms", "turn p99"),
                ("naive_p50_ms", "naive p50"),
                ("speedup_p50", "speed-up"),
                ("recall_at_10_vs_naive", "recall@10 vs naive"),
                ("text_cached_p50_ms", "text, cached"),
            ],
        ),
        "",
        "![turn latency](bench-turn.png)",
        "",
        "## Encoders by precision",
        "",
        "`python -m retrieval bench-encode --arch A --batch B --precision fp32 bf16 int8 auto --extract 64`. "
        "`auto` is what this CPU gets (retrieval/models/precision.py); bf16 without bf16 units is emulated (same "
        "numbers, not the speed); compiled image batches (`torch.compile`, real-size ResNets where a C++ compiler "
        "is found) pay their compile once per process, before the timed runs. Cosines are the worst feature "
        "against fp32 on the same inputs.",
        "",
        _table(
            report.encode,
            [
                ("architecture", "arch"),
                ("precision", "precision"),
                ("batch", "batch"),
                ("images_per_second", "images/s"),
                ("texts_per_second", "texts/s (batch)"),
                ("ms_per_single_text", "one text, ms"),
                ("image_cosine_vs_fp32", "image cosine"),
                ("text_cosine_vs_fp32", "text cosine"),
                ("compile_seconds", "compile, s"),
            ],
        ),
        "",
        "![precision speed-ups](bench-precision.png)",
        "",
        "Whole extraction as an index worker runs it (JPEG files decoded on threads, preprocessed, encoded, chunk "
        "files written) against the bare encoder on the same batches; decode: the CPU time that decoding and "
        "preprocessing one picture takes, on one thread. `--extract-only` measures this table again on "
        "the machine at hand and keeps the rest of the page (`bench-encode --arch A --batch 32 --extract N` alone):",
        "",
        _table(
            [{**row, "measured_on": machine_words(row.get("machine", m))} for row in report.extract],
            [
                ("architecture", "arch"),
                ("precision", "precision"),
                ("images", "images"),
                ("batch", "batch"),
                ("bare_images_per_second", "bare images/s"),
                ("extraction_images_per_second", "extraction images/s"),
                ("ratio", "ratio"),
                ("decode_ms", "decode, ms"),
                ("peak_rss_mb", "peak RSS, MB"),
                ("measured_on", "machine"),
            ],
        ),
        "",
        "## Indexes",
        "",
        "`python -m retrieval bench-index --count N --dim D --types flat ivf hnsw --exclude 200 --nprobe ... "
        "--ef-search ...`: one query at a time, each leaving out 200 ids drawn from its own 400 nearest; recall "
        "against the exact top 10 of the rest.",
        "",
        _table(
            report.index,
            [
                ("index_type", "type"),
                ("count", "images"),
                ("dim", "dim"),
                ("setting", "setting"),
                ("build_seconds", "build, s"),
                ("index_mb", "size, MB"),
                ("ms_per_query", "ms/query"),
                ("recall_at_10", "recall@10"),
            ],
        ),
        "",
        "![recall against time](bench-index.png)",
        "",
        *SERVED_STACK,
        *served_section(served or []),
    ]
    return "\n".join(lines)
