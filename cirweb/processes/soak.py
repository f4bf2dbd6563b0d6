"""A soak of the running product, behind `manage.py bench_soak`: visitors' conversations through `serve` for
tens of thousands of turns, the resident memory of every process of the stack sampled as the turns go by,
and each process's growth after a warm-up judged against a bound. A cache without a bound or a list that only
grows shows here as a line that keeps rising, long before it takes a host down.

Resident memory is VmRSS from /proc (Linux): what the kernel holds in RAM for the process, its share of the
memory-mapped index and of pages inherited from its parent included. Growth is a process's resident memory
at the end less at the end of the warm-up (when models, indexes, caches and the database connection are
loaded): what a long run adds."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cirweb.processes.load_client import conversation_run, spread

# A process's role from its command line; a Celery worker's pool children share their parent's line.
MARKS = (
    ("-Q search", "search"),
    ("-Q index", "index"),
    ("cirweb.processes.webserver", "web"),
    ("manage.py sweep", "sweep"),
    ("redis", "redis"),
)


def resident_mb(pid: int) -> float | None:
    """VmRSS of `pid` in MB (10^6 bytes), None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / 1e6
    except (OSError, ValueError, IndexError):
        return None
    return None


def descendants(root: int) -> dict[int, tuple[int, str]]:
    """pid: (parent pid, command line) of `root` and every process under it, from /proc."""
    table: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):  # ended meanwhile
            continue
        table[int(entry.name)] = (parent, command)
    tree, grew = {root}, True
    while grew:
        found = {pid for pid, (parent, _) in table.items() if parent in tree} - tree
        tree, grew = tree | found, bool(found)
    return {pid: table[pid] for pid in sorted(tree & table.keys())}


@dataclass
class StackProcesses:
    """Names the processes under `serve` (its pid is `root`) and keeps each name on its process across samples:
    `serve`, `web`, `search`, `search pool 1`, ..., `index`, `index pool 1`, `sweep`, `redis` (a private one).
    A pool child that dies and is replaced takes its slot's name; `replaced` counts such changes per name."""

    root: int
    pids: dict[str, int] = field(default_factory=dict)
    replaced: dict[str, int] = field(default_factory=dict)

    def current(self) -> dict[str, int]:
        tree = descendants(self.root)
        roles: dict[int, str] = {}
        for pid, (_, command) in tree.items():
            roles[pid] = "serve" if pid == self.root else next((n for m, n in MARKS if m in command), "other")
        named = {pid: name for name, pid in self.pids.items() if pid in tree}
        for pid, (parent, _) in tree.items():
            if pid in named:
                continue
            role = roles[pid]
            pool = parent in roles and roles[parent] == role and role != "other"
            base = f"{role} pool" if pool else role
            taken = self.slots(base)
            free = [n for n in taken if self.pids[n] not in tree]
            if free:  # a replacement takes the name of the process that is gone
                name = free[0]
                self.replaced[name] = self.replaced.get(name, 0) + 1
            elif pool or base == "other" or taken:
                name = f"{base} {len(taken) + 1}"
            else:
                name = base
            self.pids[name] = pid
            named[pid] = name
        return {name: pid for pid, name in named.items()}

    def slots(self, base: str) -> list[str]:
        return sorted(n for n in self.pids if n == base or (n.startswith(base + " ") and n[len(base) + 1 :].isdigit()))


def stack_settle(stack: StackProcesses, *, timeout: float = 180, still_mb: float = 2.0) -> float:
    """Wait until every Celery worker of the stack has its pool children and no process's resident memory moved
    by `still_mb` or more over two seconds: a worker that is still loading its models is not what a soak measures
    (another stack's worker may have answered `serve`'s own warm-up turns). Returns the seconds waited."""
    started = time.monotonic()
    before: dict[str, float | None] = {}
    while time.monotonic() - started < timeout:
        names = stack.current()
        now = {name: resident_mb(pid) for name, pid in names.items()}
        pools = all(f"{role} pool 1" in names for role in ("search", "index") if role in names)
        still = now.keys() == before.keys() and all(
            a is not None and b is not None and abs(a - b) < still_mb for a, b in ((now[n], before[n]) for n in now)
        )
        if pools and still:
            break
        before = now
        time.sleep(2.0)
    return round(time.monotonic() - started, 1)


@dataclass
class Sampler:
    """Samples the resident memory of every process of the stack each time the turns done pass a multiple of
    `every` (polled every `poll` s), on a thread of its own."""

    stack: StackProcesses
    progress: Any  # () -> turns done so far
    every: int
    poll: float = 0.2
    samples: list[dict[str, Any]] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def sample(self, turns: int, started: float) -> None:
        rss = {name: resident_mb(pid) for name, pid in sorted(self.stack.current().items())}
        seconds = round(time.perf_counter() - started, 2)
        self.samples.append(
            {"turns": turns, "seconds": seconds, "rss_mb": {n: round(v, 1) for n, v in rss.items() if v is not None}}
        )

    def run(self, started: float) -> None:
        self.sample(0, started)
        due = self.every
        while not self.stopping.wait(self.poll):
            done = self.progress()
            if done >= due:
                self.sample(done, started)
                due = (done // self.every + 1) * self.every


def machine() -> dict[str, Any]:
    """The CPU as `lscpu` names it, its cores, and whether it has AVX-512 and AMX units (figures depend on it)."""
    model, flags = "unknown", set[str]()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == "unknown":
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "avx512": "avx512f" in flags,
        "amx": any(f.startswith("amx") for f in flags),
    }


def growth(samples: list[dict[str, Any]], warmup: int, bound_mb: float) -> dict[str, dict[str, Any]]:
    """Per process: resident MB at the end of the warm-up (the first sample at `warmup` turns or more), at the
    end, its peak after the warm-up, and the growth (end less warm-up) judged against `bound_mb`."""
    after = [s for s in samples if s["turns"] >= warmup] or samples[-1:]
    first, last = after[0], after[-1]
    report = {}
    for name in sorted(set().union(*(s["rss_mb"] for s in samples))):
        if name not in first["rss_mb"] or name not in last["rss_mb"]:
            report[name] = {"note": "not present from the warm-up to the end"}
            continue
        grew = round(last["rss_mb"][name] - first["rss_mb"][name], 1)
        report[name] = {
            "warmup_mb": first["rss_mb"][name],
            "end_mb": last["rss_mb"][name],
            "peak_mb": max(s["rss_mb"].get(name, 0.0) for s in after),
            "growth_mb": grew,
            "passed": grew < bound_mb,
        }
    return report


def soak_run(
    base: str,
    collection: str,
    images: list[int],
    *,
    serve_pid: int,
    turns: int,
    concurrency: int,
    visitor_turns: int,
    warmup: int,
    every: int,
    bound_mb: float,
    fresh_texts: bool = True,
) -> dict[str, Any]:
    """`turns` turns through the product at `base`: `concurrency` visitors at a time, each a new conversation of
    `visitor_turns` turns on its own socket, each turn sent on its last's results; every process under `serve`
    sampled every `every` turns. Returns the figures and the samples."""
    results: list[tuple[float, float, float]] = []
    errors: list[str] = []
    claimed, lock = [0, 0], threading.Lock()  # turns handed out, visitors started

    def visitor_loop() -> None:
        while True:
            with lock:
                left = turns - claimed[0]
                if left <= 0:
                    return
                count, seed = min(visitor_turns, left), claimed[1]
                claimed[0] += count
                claimed[1] += 1
            try:
                conversation_run(
                    base, base.replace("http", "ws", 1), collection, images, count, results, errors, seed,
                    fresh_texts=fresh_texts,
                )  # fmt: skip
            except (OSError, TimeoutError, ValueError) as exc:  # a dropped socket: counted, the soak goes on
                errors.append(f"client: {type(exc).__name__}: {exc}")

    stack = StackProcesses(serve_pid)
    settled_s = stack_settle(stack)
    sampler = Sampler(stack, lambda: len(results) + len(errors), every)
    load_start = round(os.getloadavg()[0], 1)
    started = time.perf_counter()
    sampling = threading.Thread(target=sampler.run, args=(started,), daemon=True)
    sampling.start()
    threads = [threading.Thread(target=visitor_loop) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    sampler.stopping.set()
    sampling.join()
    sampler.sample(len(results) + len(errors), started)
    processes = growth(sampler.samples, warmup, bound_mb)
    for name, count in sampler.stack.replaced.items():
        processes.setdefault(name, {})["replaced"] = count
    return {
        "turns": turns,
        "answered": len(results),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "visitors": claimed[1],
        "concurrency": concurrency,
        "seconds": round(wall, 1),
        "turns_per_second": round(len(results) / wall, 1),
        "e2e_ms": spread([e for e, _, _ in results]) if results else {},
        "compute_ms": spread([c for _, c, _ in results]) if results else {},
        "settled_s": settled_s,
        "warmup_turns": warmup,
        "bound_mb": bound_mb,
        "passed": all(p.get("passed", True) for p in processes.values()),
        "processes": processes,
        "machine": machine()
        | {
            "load_average_start": load_start,
            "load_average_end": round(os.getloadavg()[0], 1),
            "niceness": os.nice(0),  # of the client; `serve` and its processes inherit it
        },
        "samples": sampler.samples,
    }


def soak_text(report: dict[str, Any]) -> str:
    """The report for people: the run, then one line per process."""
    lines = [
        f"{report['answered']} of {report['turns']} turns answered ({report['errors']} errors) by "
        f"{report['visitors']} visitors, {report['concurrency']} at a time, in {report['seconds']} s: "
        f"{report['turns_per_second']} turns/s; end to end p50 {report['e2e_ms'].get('p50')} ms, "
        f"p99 {report['e2e_ms'].get('p99')} ms (load average {report['machine']['load_average_start']} at the start, "
        f"{report['machine']['load_average_end']} at the end)",
        f"resident memory, MB, after a warm-up of {report['warmup_turns']} turns (bound {report['bound_mb']} MB):",
    ]
    for name, p in report["processes"].items():
        if "growth_mb" not in p:
            lines.append(f"  {name:<16} {p.get('note', '')}")
            continue
        verdict = "ok" if p["passed"] else "OVER THE BOUND"
        lines.append(
            f"  {name:<16} {p['warmup_mb']:>8.1f} -> {p['end_mb']:>8.1f} (peak {p['peak_mb']:.1f}): "
            f"{p['growth_mb']:+.1f} {verdict}" + (f", replaced {p['replaced']}x" if p.get("replaced") else "")
        )
    if report["first_error"]:
        lines.append(f"first error: {report['first_error']}")
    return "\n".join(lines)
