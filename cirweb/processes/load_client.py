"""A load client for the running product, behind `manage.py bench_pipeline`: conversations driven over the
real websocket and HTTP API, their end-to-end latency beside the compute time the worker measured, the product
started per search-worker count when asked, and how busy each of its processes was (by role)."""

from __future__ import annotations

import json
import os
import random
import resource
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import CommandError
from websockets.sync.client import connect
from websockets.typing import Origin

from cirweb.processes.core_budget import CLIENT, budget_text, core_budget

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
    """A visitor: its own session cookie, and (behind a proxy) the address the proxy forwards for it."""

    def __init__(self, base: str, forwarded_for: str | None = None) -> None:
        self.base = base
        self.jar = CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}

    def json(self, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json", **self.headers}
        request = urllib.request.Request(self.base + path, data=data, headers=headers)
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
    out: list[tuple[float, float, float]],
    errors: list[str],
    seed: int,
    pace: tuple[float, float] = (0.0, 0.0),
    forwarded_for: str | None = None,
    fresh_texts: bool = False,
) -> None:
    """One visitor's conversation: `turns` turns, each sent on its last's results after a pause drawn from
    `pace` (seconds; a person reads the results first), from `forwarded_for` as a proxy would say. Appends
    (end to end, compute, queue wait) in ms to `out`, and "<code>: <sentence>" of each refusal to `errors`.
    With `fresh_texts` every turn's words are new (a tag is added), so the worker's text cache never answers
    and each turn runs the text tower, as `bench-turn` measures it; else six requests recur."""
    client = Client(base, forwarded_for)
    created = client.json("/api/conversations", {"collection": collection})
    run = uuid.uuid4().hex[:6]
    origin = Origin(base)
    headers = {"Cookie": client.cookie(), **client.headers}
    pauses = random.Random(seed)
    with connect(ws_base + created["ws"], additional_headers=headers, origin=origin) as ws:
        for i in range(turns):
            if i and pace[1] > 0:
                time.sleep(pauses.uniform(*pace))
            message = {
                "type": "turn.create",
                "client_id": f"b{run}-{seed}-{i}",
                "text": TEXTS[(seed + i) % len(TEXTS)] + (f" #{run}{seed}x{i}" if fresh_texts else ""),
                "reference": {"image": images[(seed * 7919 + i * 31) % len(images)]},
                "k": 24,
                "exclude_seen": False,
            }
            started = time.perf_counter()
            ws.send(json.dumps(message))
            while True:
                frame = json.loads(ws.recv(timeout=60))
                if frame["type"] == "turn.results":
                    timings = frame["timings_ms"]
                    e2e = (time.perf_counter() - started) * 1000
                    out.append((e2e, timings["total"], timings.get("queue_wait", 0.0)))
                    break
                if frame["type"] in ("turn.failed", "error"):
                    errors.append(f"{frame.get('code')}: {frame.get('error', frame)}")
                    break


@contextmanager
def served(*, search_workers: int, collection: str) -> Iterator[tuple[str, int]]:
    """The product as `manage.py serve` runs it, on a free port, with the visitor limits off; warmed up by a
    few turns (models and index loaded in every search process) before it is measured. Yields its address
    and its process id (`usage_by_role` finds what it started from there)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    log = Path(settings.CIR_DATA_DIR) / "logs" / f"bench-serve-{search_workers}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CIR_RATELIMIT_ENABLE": "0"}
    command = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "serve", "--no-colour"]
    command += ["--port", str(port), "--search-workers", str(search_workers)]
    with log.open("ab") as out:
        server = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while not healthy(base):
            if server.poll() is not None:  # it refused to start: its last words say why (an unmigrated database)
                said = log.read_text(errors="replace").strip().splitlines()[-1:] or ["nothing"]
                raise CommandError(f"`manage.py serve` stopped: {said[0]} (its log: {log})")
            if time.monotonic() > deadline:
                raise CommandError(f"`manage.py serve` did not become healthy; see {log}")
            time.sleep(1)
        try:
            page = Client(base).json(f"/api/collections/{collection}/images?limit=50")
        except urllib.error.HTTPError as exc:
            raise CommandError(
                f"collection {collection!r} cannot be read here (HTTP {exc.code}). `python manage.py bootstrap_demo` "
                "builds the demo's (shapes), `--size real` the real-size one (real); --collection names another."
            ) from None
        images = [i["id"] for i in page["images"]]
        level_run(base, base.replace("http", "ws", 1), collection, images, 4 * search_workers, 2 * search_workers)
        settled(server.pid)
        yield base, server.pid
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)  # serve stops its children
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(5)


def settled(root: int, *, quiet: float = 0.05, longest: float = 60.0) -> None:
    """Wait until `serve`'s processes are idle (under `quiet` of a core over a second), at most `longest`
    seconds: a worker still starting (the index worker loads its models after `/healthz` answers) would
    otherwise count its start-up CPU against the first level's turns."""
    deadline = time.monotonic() + longest
    before = sum(running for running, _ in usage_by_role(root).values())
    while time.monotonic() < deadline:
        time.sleep(1)
        now = sum(running for running, _ in usage_by_role(root).values())
        if now - before < quiet:
            return
        before = now


def healthy(base: str) -> bool:
    try:
        with urllib.request.urlopen(base + "/healthz", timeout=5) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def throughput_text(report: list[dict[str, Any]], counts: list[int]) -> str:
    """Turns per second for each search-worker count and conversation level, averaged over the rounds,
    as ratios to the first count."""
    lines = []
    for concurrency in sorted({r["concurrency"] for r in report}):
        rate = {
            n: statistics.mean(
                r["turns_per_second"] for r in report if r["search_workers"] == n and r["concurrency"] == concurrency
            )
            for n in counts
        }
        shown = ", ".join(f"{n} worker(s) {rate[n]:.1f} ({rate[n] / rate[counts[0]]:.2f}x)" for n in counts)
        lines.append(f"{concurrency} conversations, turns/s: {shown}")
    return "\n".join(lines)


def spread(values: list[float]) -> dict[str, float]:
    shown = {f"p{p}": round(percentile(values, p), 1) for p in (50, 95, 99)}
    return shown | {"mean": round(statistics.mean(values), 1)}


# What each process of `serve` is, from its command line (a Celery worker's pool children share its line).
ROLES = (("-Q search", "search"), ("-Q index", "index"), ("cirweb.processes.webserver", "web"), ("redis", "redis"))


def usage_by_role(root: int) -> dict[str, tuple[float, float]]:
    """Seconds of CPU used and seconds spent runnable but waiting for a core, so far, by process `root` and
    all its descendants (`serve` and what it started), summed by role: web, search, index, redis, other (the
    sweeper and `serve` itself). From /proc (Linux); empty elsewhere."""
    ticks = os.sysconf("SC_CLK_TCK")
    processes: dict[int, tuple[int, float, float, str]] = {}  # pid: (parent, CPU, waiting, command line)
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()  # after the name: state, ppid, ...
            waiting_ns = sum(int(t.read_text().split()[1]) for t in entry.glob("task/*/schedstat"))  # all threads
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):  # the process ended meanwhile, or no schedstat here
            continue
        running = (int(fields[11]) + int(fields[12])) / ticks  # utime + stime, all threads
        processes[int(entry.name)] = (int(fields[1]), running, waiting_ns / 1e9, command)
    tree, grew = {root}, True
    while grew:
        found = {pid for pid, (parent, *_) in processes.items() if parent in tree} - tree
        tree, grew = tree | found, bool(found)
    used: dict[str, tuple[float, float]] = {}
    for pid in tree & processes.keys():
        _, running, waiting, command = processes[pid]
        role = next((name for mark, name in ROLES if mark in command), "other")
        before = used.get(role, (0.0, 0.0))
        used[role] = (before[0] + running, before[1] + waiting)
    return used


def client_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def level_run(
    base: str,
    ws_base: str,
    collection: str,
    images: list[int],
    turns: int,
    concurrency: int,
    serve_pid: int | None = None,
    *,
    fresh_texts: bool = False,
) -> dict[str, Any]:
    """`turns` turns over `concurrency` conversations at once, each sending its next turn on its last's results.
    With the process id of the `serve` answering them (`serve_pid`), also how busy each kind of process was
    meanwhile (`cpu_percent`: percent of one core; 2 cores give 200 in all), how long each kind waited,
    runnable, for a core (`core_wait_ms_per_turn`, summed over its processes): together they tell what limits
    the rate; and the CPU a turn costs by kind with the rate the cores allow at that cost (`core_budget`)."""
    per = max(1, turns // concurrency)
    results: list[tuple[float, float, float]] = []
    errors: list[str] = []
    threads = [
        threading.Thread(
            target=conversation_run,
            args=(base, ws_base, collection, images, per, results, errors, n),
            kwargs={"fresh_texts": fresh_texts},
        )
        for n in range(concurrency)
    ]
    usage_before = usage_by_role(serve_pid) if serve_pid else {}
    client_before = client_cpu_seconds()
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    usage = {
        role: (running - usage_before.get(role, (0.0, 0.0))[0], waiting - usage_before.get(role, (0.0, 0.0))[1])
        for role, (running, waiting) in (usage_by_role(serve_pid) if serve_pid else {}).items()
    }
    cpu = {role: round(max(0.0, running) / wall * 100) for role, (running, _) in sorted(usage.items())}
    seconds = {role: running for role, (running, _) in usage.items()}
    if serve_pid:
        seconds[CLIENT] = client_cpu_seconds() - client_before
        cpu[CLIENT] = round(seconds[CLIENT] / wall * 100)
    core_wait = {
        role: round(max(0.0, waiting) / max(1, len(results)) * 1000, 1) for role, (_, waiting) in sorted(usage.items())
    }
    if not results:
        raise CommandError(f"no turn came back at {concurrency} conversation(s): {errors[:1]}")
    return {
        "concurrency": concurrency,
        "turns": len(results),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "turns_per_second": round(len(results) / wall, 1),
        "load_average": round(os.getloadavg()[0], 1),  # this machine's: figures here depend on it
        "e2e_ms": spread([e for e, _, _ in results]),
        "compute_ms": spread([c for _, c, _ in results]),
        "queue_wait_ms": spread([w for _, _, w in results]),
        "overhead_ms": spread([e - c for e, c, _ in results]),
        "overhead_less_queue_ms": spread([e - c - w for e, c, w in results]),
        "cpu_percent": cpu,
        "core_wait_ms_per_turn": core_wait,
    } | (core_budget(seconds, len(results), len(results) / wall) if serve_pid else {})


def row_text(row: dict[str, Any]) -> str:
    def pair(key: str) -> str:
        return f"{row[key]['p50']} / {row[key]['p99']}"

    return (
        f"{row['concurrency']} conversation(s), {row['turns']} turns, {row['turns_per_second']} turns/s "
        f"(load {row['load_average']}), p50 / p99 ms: end to end {pair('e2e_ms')}; compute {pair('compute_ms')}; "
        f"overhead {pair('overhead_ms')}; waiting for a busy worker {pair('queue_wait_ms')}; "
        f"overhead less that wait {pair('overhead_less_queue_ms')}"
        + (f"; {row['errors']} errors, first: {row['first_error']}" if row["errors"] else "")
        + (
            "; CPU, % of a core: "
            + ", ".join(f"{role} {share}" for role, share in row["cpu_percent"].items())
            + "; waiting for a core, ms a turn: "
            + ", ".join(f"{role} {ms}" for role, ms in row["core_wait_ms_per_turn"].items())
            if row.get("cpu_percent")
            else ""
        )
        + budget_text(row)
    )


def visitors_run(
    base: str,
    collection: str,
    images: list[int],
    *,
    visitors: int,
    turns: int,
    pace: tuple[float, float],
    forwarded: bool,
) -> dict[str, Any]:
    """`visitors` people at once, each a conversation of `turns` turns at a person's `pace` (seconds between a
    turn's results and the next turn). With `forwarded`, each arrives through a proxy that names its own
    address (X-Forwarded-For, 10.x.y.z, drawn anew each run); without, all share the address they connect from.
    Returns how many turns were answered, the refusals by code, turns/s and end-to-end latency."""
    results: list[tuple[float, float, float]] = []
    errors: list[str] = []
    first = random.randrange(1, 250)
    threads = [
        threading.Thread(
            target=conversation_run,
            args=(base, base.replace("http", "ws", 1), collection, images, turns, results, errors, n),
            kwargs={"pace": pace, "forwarded_for": f"10.{first}.{n // 250}.{n % 250 + 1}" if forwarded else None},
        )
        for n in range(visitors)
    ]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    refused: dict[str, int] = {}
    for error in errors:
        code = error.split(":", 1)[0]
        refused[code] = refused.get(code, 0) + 1
    return {
        "visitors": visitors,
        "turns": visitors * turns,
        "answered": len(results),
        "refused": refused,
        "first_refusal": errors[0] if errors else None,
        "seconds": round(wall, 1),
        "turns_per_second": round(len(results) / wall, 1),
        "e2e_ms": spread([e for e, _, _ in results]) if results else {},
    }
