"""`python manage.py bench_pipeline`: end-to-end turn latency against a running server, beside the compute
time the worker measured for the same turns. The difference is what the pipeline itself costs
(websocket, database, broker, worker hand-off, channel layer).

Start the product first (`python manage.py serve`), then for example:
    python manage.py bench_pipeline --url http://localhost:8000 --collection shapes --turns 200 --concurrency 1 8
"""

from __future__ import annotations

import json
import statistics
import threading
import time
import urllib.request
from http.cookiejar import CookieJar
from typing import Any

from django.core.management.base import CommandError
from websockets.sync.client import connect
from websockets.typing import Origin

from cirweb.commandline import DocumentedCommand

TEXTS = [
    "make the circle red",
    "remove the small square",
    "add a blue star at the top left",
    "make the large triangle smaller",
    "move the cross to the centre",
    "replace the star with a green circle",
]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class Client:
    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def json(self, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, headers={"Content-Type": "application/json"})
        with self.opener.open(request, timeout=30) as response:
            return json.loads(response.read())

    def cookie(self) -> str:
        return "; ".join(f"{c.name}={c.value}" for c in self.jar)


def conversation_run(
    base: str,
    ws_base: str,
    collection: str,
    images: list[int],
    turns: int,
    out: list[tuple[float, float]],
    errors: list[str],
    seed: int,
) -> None:
    client = Client(base)
    created = client.json("/api/conversations", {"collection": collection})
    origin = Origin(base)
    with connect(ws_base + created["ws"], additional_headers={"Cookie": client.cookie()}, origin=origin) as ws:
        for i in range(turns):
            message = {
                "type": "turn.create",
                "client_id": f"b{seed}-{i}",
                "text": TEXTS[(seed + i) % len(TEXTS)],
                "reference": {"image": images[(seed * 7919 + i * 31) % len(images)]},
                "k": 24,
                "exclude_seen": False,
            }
            started = time.perf_counter()
            ws.send(json.dumps(message))
            while True:
                frame = json.loads(ws.recv(timeout=60))
                if frame["type"] == "turn.results":
                    out.append(((time.perf_counter() - started) * 1000, frame["timings_ms"]["total"]))
                    break
                if frame["type"] in ("turn.failed", "error"):
                    errors.append(frame.get("error", str(frame)))
                    break


class Command(DocumentedCommand):
    help = "Measure end-to-end turn latency (websocket send -> turn.results) against a running server."
    example = "python manage.py bench_pipeline --url http://localhost:8000 --collection shapes --concurrency 1 8"

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--url", default="http://localhost:8000", help="address of the running server")
        parser.add_argument("--collection", default="shapes", help="slug of an indexed collection to search")
        parser.add_argument("--turns", type=int, default=200, help="turns per concurrency level")
        parser.add_argument(
            "--concurrency", type=int, nargs="+", default=[1, 8], help="conversations at once, one run per level"
        )
        parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")

    def handle(self, *args: Any, **options: Any) -> None:
        base = options["url"].rstrip("/")
        ws_base = base.replace("http", "ws", 1)
        client = Client(base)
        page = client.json(f"/api/collections/{options['collection']}/images?limit=200")
        images = [img["id"] for img in page["images"]]
        if not images:
            raise CommandError(f"collection {options['collection']!r} has no indexed images at {base}")
        report = []
        for concurrency in options["concurrency"]:
            per = max(1, options["turns"] // concurrency)
            results: list[tuple[float, float]] = []
            errors: list[str] = []
            threads = [
                threading.Thread(
                    target=conversation_run,
                    args=(base, ws_base, options["collection"], images, per, results, errors, n),
                )
                for n in range(concurrency)
            ]
            started = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - started
            e2e = [r[0] for r in results]
            compute = [r[1] for r in results]
            overhead = [a - b for a, b in results]
            row = {
                "concurrency": concurrency,
                "turns": len(results),
                "errors": len(errors),
                "turns_per_second": round(len(results) / wall, 1),
                "e2e_ms": {
                    "p50": round(percentile(e2e, 50), 1),
                    "p95": round(percentile(e2e, 95), 1),
                    "p99": round(percentile(e2e, 99), 1),
                },
                "compute_ms": {"p50": round(percentile(compute, 50), 1), "p95": round(percentile(compute, 95), 1)},
                "overhead_ms": {
                    "p50": round(percentile(overhead, 50), 1),
                    "p95": round(percentile(overhead, 95), 1),
                    "p99": round(percentile(overhead, 99), 1),
                    "mean": round(statistics.mean(overhead), 1),
                },
            }
            report.append(row)
            if not options["json"]:
                self.stdout.write(
                    f"{concurrency} conversation(s), {len(results)} turns, {row['turns_per_second']} turns/s: "
                    f"end-to-end p50 {row['e2e_ms']['p50']} ms / p95 {row['e2e_ms']['p95']} ms; "
                    f"compute p50 {row['compute_ms']['p50']} / p95 {row['compute_ms']['p95']} ms; "
                    f"overhead p50 {row['overhead_ms']['p50']} / p95 {row['overhead_ms']['p95']} / p99 "
                    f"{row['overhead_ms']['p99']} ms"
                    + (f"; {len(errors)} errors, first: {errors[0]}" if errors else "")
                )
        if options["json"]:
            self.stdout.write(json.dumps(report))
