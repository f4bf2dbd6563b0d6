"""The soak's picture (`manage.py bench_soak --svg`), drawn as SVG text so the web side needs no plotting
library: on the left each process's resident memory against the turns done, on the right its change since
the end of the warm-up with the bound it is judged against. One line per process, the same colour in both."""

from __future__ import annotations

import math
from html import escape
from typing import Any

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f")
WIDTH, HEIGHT, MARGIN = 460, 300, (46, 16, 40, 56)  # a panel; margins: top, right, bottom, left
Series = dict[str, list[tuple[float, float]]]


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round values spanning low..high (steps of 1, 2 or 5 times a power of ten)."""
    span = max(high - low, 1e-9)
    raw = span / count
    power = 10 ** math.floor(math.log10(raw))
    step = next((m * power for m in (1, 2, 5, 10) if m * power >= raw), 10 * power)
    first = math.ceil(low / step - 1e-9) * step
    return [
        round(first + i * step, 6) for i in range(int((high - first) / step) + 2) if first + i * step <= high + 1e-9
    ]


def panel(
    series: Series, *, left: float, title: str, y_label: str, marks: list[tuple[str, float, str]], lines: list[float]
) -> list[str]:
    """One chart at x offset `left`: `series` as polylines, vertical `marks` (label, x, dash) and horizontal
    reference `lines` (y values, dashed red)."""
    top, right, bottom, margin_left = MARGIN
    xs = [x for points in series.values() for x, _ in points] or [0.0, 1.0]
    ys = [y for points in series.values() for _, y in points] + lines + [0.0]
    x0, x1 = min(xs), max(max(xs), min(xs) + 1)
    y0, y1 = min(ys), max(ys)
    pad = max((y1 - y0) * 0.05, 1.0)
    y0, y1 = y0 - (pad if y0 < 0 else 0), y1 + pad
    plot_w, plot_h = WIDTH - margin_left - right, HEIGHT - top - bottom

    def px(x: float) -> float:
        return left + margin_left + (x - x0) / (x1 - x0) * plot_w

    def py(y: float) -> float:
        return top + (1 - (y - y0) / (y1 - y0)) * plot_h

    out = [f'<text x="{left + margin_left}" y="20" class="title">{escape(title)}</text>']
    for y in nice_ticks(y0, y1):
        out.append(f'<line x1="{px(x0):.1f}" x2="{px(x1):.1f}" y1="{py(y):.1f}" y2="{py(y):.1f}" class="grid"/>')
        out.append(f'<text x="{px(x0) - 4:.1f}" y="{py(y) + 4:.1f}" class="tick" text-anchor="end">{y:g}</text>')
    for x in nice_ticks(x0, x1, 4):
        out.append(f'<text x="{px(x):.1f}" y="{top + plot_h + 16}" class="tick" text-anchor="middle">{x:,.0f}</text>')
    out.append(
        f'<rect x="{px(x0):.1f}" y="{top}" width="{plot_w}" height="{plot_h}" class="frame"/>'
        f'<text x="{px((x0 + x1) / 2):.1f}" y="{HEIGHT - 6}" class="label" text-anchor="middle">turns</text>'
        f'<text transform="translate({left + 12},{top + plot_h / 2}) rotate(-90)" class="label" '
        f'text-anchor="middle">{escape(y_label)}</text>'
    )
    for y in lines:
        out.append(f'<line x1="{px(x0):.1f}" x2="{px(x1):.1f}" y1="{py(y):.1f}" y2="{py(y):.1f}" class="bound"/>')
    for label, x, dash in marks:
        out.append(
            f'<line x1="{px(x):.1f}" x2="{px(x):.1f}" y1="{top}" y2="{top + plot_h}" stroke="#555" '
            f'stroke-dasharray="{dash}"/>'
            f'<text x="{px(x) + 3:.1f}" y="{top + plot_h - 6}" class="tick">{escape(label)}</text>'
        )
    for i, points in enumerate(series.values()):
        drawn = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
        out.append(f'<polyline points="{drawn}" fill="none" stroke="{COLOURS[i % len(COLOURS)]}" stroke-width="1.6"/>')
    return out


def caption_of(report: dict[str, Any]) -> str:
    m = report["machine"]
    units = ", ".join(u for u, has in (("AVX-512", m["avx512"]), ("AMX", m["amx"])) if has) or "no AVX-512"
    return (
        f"{report['turns']:,} turns, {report['concurrency']} visitors at a time, {report.get('search_workers', 1)} "
        f"search worker(s); {m['cpu']}, {m['cores']} cores ({units}), shared; {report.get('when', '')}"
    )


def resident_chart_svg(report: dict[str, Any]) -> str:
    """The SVG document of a soak report (`soak_run`'s, as bench_soak writes it): resident MB, and its change
    since the warm-up, against turns, with the run and the machine as its caption."""
    caption = caption_of(report)
    samples, warmup, bound = report["samples"], report["warmup_turns"], report["bound_mb"]
    names = sorted(set().union(*(s["rss_mb"] for s in samples)))
    absolute: Series = {n: [(s["turns"], s["rss_mb"][n]) for s in samples if n in s["rss_mb"]] for n in names}
    base = next((s for s in samples if s["turns"] >= warmup), samples[-1])["rss_mb"]
    change: Series = {
        n: [(s["turns"], s["rss_mb"][n] - base[n]) for s in samples if n in s["rss_mb"] and s["turns"] >= warmup]
        for n in names
        if n in base
    }
    warm = [("warm-up ends", float(warmup), "4 3")]
    legend_top = HEIGHT + 6
    rows = (len(names) + 3) // 4
    height = legend_top + rows * 18 + (24 if caption else 8)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * WIDTH}" height="{height}" '
        f'viewBox="0 0 {2 * WIDTH} {height}" font-family="sans-serif">',
        "<style>.title{font-size:13px;font-weight:bold}.tick{font-size:10px;fill:#333}.label{font-size:11px}"
        ".grid{stroke:#e4e4e4}.frame{fill:none;stroke:#999}.bound{stroke:#d62728;stroke-dasharray:6 3}"
        ".legend{font-size:11px}</style>",
        '<rect width="100%" height="100%" fill="white"/>',
        *panel(absolute, left=0, title="Resident memory by process", y_label="MB", marks=warm, lines=[]),
        *panel(
            change,
            left=WIDTH,
            title=f"Change since the warm-up (bound +{bound:g} MB)",
            y_label="MB since warm-up",
            marks=[],
            lines=[bound],
        ),
    ]
    for i, name in enumerate(names):
        x, y = 56 + (i % 4) * 210, legend_top + (i // 4) * 18
        colour = COLOURS[i % len(COLOURS)]
        out.append(
            f'<line x1="{x}" x2="{x + 18}" y1="{y + 6}" y2="{y + 6}" stroke="{colour}" stroke-width="3"/>'
            f'<text x="{x + 24}" y="{y + 10}" class="legend">{escape(name)}</text>'
        )
    if caption:
        out.append(f'<text x="56" y="{height - 8}" class="tick">{escape(caption)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
