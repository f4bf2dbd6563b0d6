"""`python manage.py bench_soak`: a soak of the product as `manage.py serve` runs it. It starts `serve` on a free
port (visitor limits off), sends `--turns` turns through it as visitors of `--visitor-turns` turns each,
`--concurrency` at a time, and samples the resident memory of every process of the stack (web, search worker
and its pool children, index worker and its pool child, the sweep, `serve` itself, a private Redis) every
`--sample-every` turns. After `--warmup` turns each process's growth is judged against `--bound-mb`; it writes
the samples and figures as JSON (`--out`) and, with `--svg`, the picture. It fails (exit status 1) when a
process grew past the bound. For example (docs/benchmarks.md, "Soak"):
    python manage.py bench_soak --turns 20000 --warmup 2000 --out docs/soak.json --svg docs/soak.svg
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import CommandError
from django.utils import timezone

from cirweb.processes.commandline import DocumentedCommand
from cirweb.processes.load_client import Client, served
from cirweb.processes.soak import soak_run, soak_text
from cirweb.processes.soak_chart import resident_chart_svg


class Command(DocumentedCommand):
    help = "Soak the served product with many turns and judge each process's resident-memory growth after a warm-up."
    example = (
        "python manage.py bench_soak --turns 20000 --warmup 2000 --out docs/soak.json --svg docs/soak.svg\n"
        "python manage.py bench_soak --turns 200 --warmup 50 --sample-every 10"
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--collection", default="shapes", help="slug of an indexed collection to search")
        parser.add_argument("--turns", type=int, default=20000, help="turns in all, after serve's own warm-up")
        parser.add_argument("--warmup", type=int, default=2000, help="turns before growth is measured")
        parser.add_argument("--concurrency", type=int, default=8, help="visitors at once")
        parser.add_argument("--visitor-turns", type=int, default=10, help="turns of each visitor's conversation")
        parser.add_argument("--search-workers", type=int, default=1, help="`serve --search-workers N`")
        parser.add_argument("--sample-every", type=int, default=100, help="turns between two samples")
        parser.add_argument("--bound-mb", type=float, default=50.0, help="the growth allowed to each process")
        parser.add_argument(
            "--recurring-texts",
            action="store_true",
            help="six requests recur (the worker's text cache answers); by default every turn's words are new",
        )
        parser.add_argument("--out", default="", help="JSON of the figures and samples (default: data dir's bench/)")
        parser.add_argument("--svg", default="", help="also draw the samples as an SVG picture here")
        parser.add_argument("--json", action="store_true", help="print the report as one JSON object")

    def handle(self, *args: Any, **options: Any) -> None:
        if not 0 <= options["warmup"] < options["turns"]:
            raise CommandError("--warmup must be at least 0 and fewer than --turns")
        with served(search_workers=options["search_workers"], collection=options["collection"]) as (base, pid):
            page = Client(base).json(f"/api/collections/{options['collection']}/images?limit=200")
            report = soak_run(
                base,
                options["collection"],
                [img["id"] for img in page["images"]],
                serve_pid=pid,
                turns=options["turns"],
                concurrency=options["concurrency"],
                visitor_turns=options["visitor_turns"],
                warmup=options["warmup"],
                every=options["sample_every"],
                bound_mb=options["bound_mb"],
                fresh_texts=not options["recurring_texts"],
            )
        report["search_workers"] = options["search_workers"]
        report["when"] = timezone.now().isoformat(timespec="minutes")
        report["command"] = (
            "python manage.py bench_soak "
            + " ".join(
                f"--{key.replace('_', '-')} {options[key]}"
                for key in ("turns", "warmup", "concurrency", "visitor_turns", "search_workers", "sample_every")
            )
            + (" --recurring-texts" if options["recurring_texts"] else "")
        )
        out = Path(options["out"] or Path(settings.CIR_DATA_DIR) / "bench" / "soak.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1) + "\n")
        if options["svg"]:
            Path(options["svg"]).write_text(resident_chart_svg(report))
        self.stdout.write(json.dumps(report) if options["json"] else soak_text(report) + f"\nsamples: {out}")
        if not report["passed"]:
            over = [n for n, p in report["processes"].items() if not p.get("passed", True)]
            raise CommandError(f"resident memory grew past {options['bound_mb']:g} MB after the warm-up: {over}")
