"""`python manage.py bench_pipeline`: end-to-end turn latency against a running server, beside the compute
time the worker measured for the same turns. The difference is what the pipeline itself costs
(websocket, database, broker, worker hand-off, channel layer), plus, with more conversations than search
workers, the time turns wait for a busy worker: the worker reports that wait (`queue_wait`), and
"overhead less queue wait" is the pipeline's own share.

Start the product first (`CIR_RATELIMIT_ENABLE=0 python manage.py serve`: 200 turns a minute are past the
visitor limits), then for example:
    python manage.py bench_pipeline --url http://localhost:8000 --collection shapes --turns 200 --concurrency 1 8

Or let it start the product itself, once per search-worker count and alternating for `--rounds` rounds, to
compare throughput side by side (the machine's load drifts between runs; alternating spreads it evenly):
    python manage.py bench_pipeline --serve-search-workers 1 2 --rounds 2 --turns 160 --concurrency 16

Each level's CPU by kind of process (web, search, redis, ..., and the load client) is counted where the
command knows the `serve` process (it started it, or `--serve-pid`): per turn, summed, and as the rate the
cores allow at that cost (`cirweb.processes.core_budget`). `--beside-turn RN50x4:100000` times the in-process
turn (`bench-turn`) after the levels, in the same run, for the gap between the two:
    python manage.py bench_pipeline --serve-search-workers 1 --collection real --fresh-texts \
        --concurrency 1 8 32 --beside-turn RN50x4:100000
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandError

from cirweb.processes.commandline import DocumentedCommand
from cirweb.processes.core_budget import beside_text, in_process_turn, machine_class
from cirweb.processes.load_client import Client, level_run, row_text, served, throughput_text


class Command(DocumentedCommand):
    help = "Measure end-to-end turn latency (websocket send -> turn.results) against a running server."
    example = (
        "python manage.py bench_pipeline --url http://localhost:8000 --collection shapes --concurrency 1 8\n"
        "python manage.py bench_pipeline --serve-search-workers 1 2 --rounds 2 --concurrency 16"
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--url", default="http://localhost:8000", help="address of the running server")
        parser.add_argument("--collection", default="shapes", help="slug of an indexed collection to search")
        parser.add_argument("--turns", type=int, default=200, help="turns per concurrency level")
        parser.add_argument(
            "--concurrency", type=int, nargs="+", default=[1, 8], help="conversations at once, one run per level"
        )
        parser.add_argument(
            "--serve-search-workers",
            type=int,
            nargs="+",
            default=None,
            help="start `manage.py serve --search-workers N` here for each N (limits off) instead of using --url",
        )
        parser.add_argument("--rounds", type=int, default=1, help="with --serve-search-workers: alternations")
        parser.add_argument(
            "--fresh-texts",
            action="store_true",
            help="new words every turn (the worker's text cache never answers: each turn runs the text tower, as "
            "bench-turn measures it); by default six requests recur",
        )
        parser.add_argument(
            "--serve-pid",
            type=int,
            default=None,
            help="with --url: the process id of its `manage.py serve`, to count the CPU of each kind of process",
        )
        parser.add_argument(
            "--beside-turn",
            default=None,
            metavar="ARCH:COUNT",
            help="also time the in-process turn (`python -m retrieval bench-turn --arch ARCH --count COUNT`) "
            "in the same run, after the levels, e.g. RN50x4:100000 for the real-size stack",
        )
        parser.add_argument("--beside-turns", type=int, default=100, help="turns of that in-process run")
        parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")

    def handle(self, *args: Any, **options: Any) -> None:
        counts = options["serve_search_workers"]
        beside = self.beside_parse(options["beside_turn"])
        if not counts:
            report = self.levels(options["url"].rstrip("/"), options, options["serve_pid"])
        else:
            report = []
            for round_ in range(options["rounds"]):
                for n in counts:
                    with served(search_workers=n, collection=options["collection"]) as (base, serve_pid):
                        if not options["json"]:
                            self.stdout.write(f"round {round_ + 1}, {n} search worker(s):")
                        report += [row | {"search_workers": n} for row in self.levels(base, options, serve_pid)]
            if not options["json"]:
                self.stdout.write(throughput_text(report, counts))
        if beside is not None:
            turn = in_process_turn(*beside, options["beside_turns"])
            report = [row | {"in_process_turn": turn} for row in report]
            if not options["json"]:
                self.stdout.write(beside_text(turn, report))
        if options["json"]:
            machine = machine_class()  # each figure with the machine it was measured on
            self.stdout.write(json.dumps([row | {"machine": machine} for row in report]))

    @staticmethod
    def beside_parse(value: str | None) -> tuple[str, int] | None:
        if value is None:
            return None
        arch, _, count = value.rpartition(":")
        if not arch or not count.isdigit():
            raise CommandError(f"--beside-turn wants ARCH:COUNT, e.g. RN50x4:100000, not {value!r}")
        return arch, int(count)

    def levels(self, base: str, options: dict[str, Any], serve_pid: int | None = None) -> list[dict[str, Any]]:
        ws_base = base.replace("http", "ws", 1)
        page = Client(base).json(f"/api/collections/{options['collection']}/images?limit=200")
        images = [img["id"] for img in page["images"]]
        if not images:
            raise CommandError(f"collection {options['collection']!r} has no indexed images at {base}")
        report = []
        for concurrency in options["concurrency"]:
            row = level_run(
                base,
                ws_base,
                options["collection"],
                images,
                options["turns"],
                concurrency,
                serve_pid,
                fresh_texts=options["fresh_texts"],
            )
            report.append(row)
            if not options["json"]:
                self.stdout.write(row_text(row))
        return report
