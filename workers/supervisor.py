"""Running the whole product on one machine: Redis (private unless CIR_REDIS_URL is set), a search worker,
an index worker and the web server (uvicorn), each restarted if it dies, logs prefixed by process, all stopped
together."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cirweb.processes.devservers import port_open, redis_command, wait_for_port
from cirweb.processes.metrics import metrics_reset, process_dead
from cirweb.processes.webserver import web_command

COLOURS = {"redis": "\033[35m", "search": "\033[36m", "index": "\033[33m", "sweep": "\033[34m", "web": "\033[32m"}


@dataclass
class Child:
    name: str
    command: list[str]
    process: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)


def json_line(name: str, line: str) -> str:
    """A child's line as one JSON object naming the child (`service`): its own JSON object when it wrote one
    (CIR_LOG_FORMAT=json), else the text as the message (Redis's lines, the supervisor's own)."""
    try:
        parsed = json.loads(line)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        parsed = {"time": now, "level": "INFO", "logger": "serve", "message": line}
    return json.dumps({**parsed, "service": name}, ensure_ascii=False)


class Supervisor:
    def __init__(
        self, children: list[Child], env: dict[str, str], colour: bool = True, json_lines: bool = False
    ) -> None:
        self.children, self.env, self.colour, self.json_lines = children, env, colour, json_lines
        self.stopping = threading.Event()
        self.out_lock = threading.Lock()

    def say(self, name: str, line: str) -> None:
        """One line of a child (or about it), prefixed with its name; with JSON logs, one JSON object naming it."""
        line = line.rstrip()
        if self.json_lines:
            if not line.strip():
                return
            shown = json_line(name, line)
        else:
            shown = (f"{COLOURS.get(name, '')}[{name:>6}]\033[0m " if self.colour else f"[{name:>6}] ") + line
        with self.out_lock:
            sys.stdout.write(shown + "\n")
            sys.stdout.flush()

    def start(self, child: Child) -> None:
        child.process = subprocess.Popen(
            child.command, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        threading.Thread(target=self._pump, args=(child, child.process), daemon=True).start()

    def _pump(self, child: Child, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            self.say(child.name, raw.decode(errors="replace"))

    def run(self, ready_url: str | None = None) -> int:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.stopping.set())
        if folder := self.env.get("PROMETHEUS_MULTIPROC_DIR"):
            metrics_reset(Path(folder))  # this run's counters only
        for child in self.children:
            self.start(child)
            if child.name == "redis":
                port = int(child.command[child.command.index("--port") + 1])
                if not wait_for_port(port):
                    self.say("redis", "did not start; see the lines above")
        if ready_url:
            threading.Thread(target=self._announce, args=(ready_url,), daemon=True).start()
        while not self.stopping.wait(0.5):
            for child in self.children:
                if child.process is not None and child.process.poll() is not None:
                    self._restart(child)
        self.stop()
        return 0

    def _restart(self, child: Child) -> None:
        code = child.process.returncode if child.process else None
        if child.process is not None and self.env.get("PROMETHEUS_MULTIPROC_DIR"):
            process_dead(child.process.pid)  # its live gauges (open sockets) no longer count
        now = time.monotonic()
        child.restarts = [t for t in child.restarts if now - t < 60] + [now]
        if len(child.restarts) > 5:
            self.say(child.name, f"exited with {code} six times in a minute; stopping everything")
            self.stopping.set()
            return
        self.say(child.name, f"exited with {code}; restarting")
        time.sleep(min(2 ** len(child.restarts) * 0.25, 5))
        self.start(child)

    def _announce(self, url: str) -> None:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not self.stopping.is_set():
            try:
                with urllib.request.urlopen(url + "healthz", timeout=5) as response:
                    if response.status == 200:
                        self.say("web", f"ready: open {url}")
                        return
            except OSError:
                pass
            time.sleep(1)
        if not self.stopping.is_set():
            self.say("web", f"{url}healthz did not answer 200 within 3 minutes; see the lines above")

    def stop(self) -> None:
        for child in reversed(self.children):
            if child.process is not None and child.process.poll() is None:
                os.killpg(child.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for child in reversed(self.children):
            if child.process is None:
                continue
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(child.process.pid, signal.SIGKILL)
        self.say("web", "stopped")


def build_children(
    *, port: int, host: str, redis_port: int | None, data_dir: Path, search_workers: int = 1, index_workers: int = 1
) -> list[Child]:
    """Redis (when private), the two worker pools, the sweep and the web server. Workers are prefork
    processes of one Celery worker per queue; each process loads the models once."""
    py = sys.executable
    celery = [
        py,
        "-m",
        "celery",
        "-A",
        "workers.app",
        "worker",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "--loglevel",
        "INFO",
        "--pool",
        "prefork",
    ]
    children = []
    if redis_port is not None and not port_open(redis_port):
        children.append(Child("redis", redis_command(redis_port, data_dir / "redis")))
    children += [
        Child("search", [*celery, "--concurrency", str(search_workers), "-Q", "search", "-n", "search@%h"]),
        Child(
            "index",
            [
                *celery,
                "--concurrency",
                str(index_workers),
                "-Q",
                "index",
                "-n",
                "index@%h",
                "--prefetch-multiplier",
                "1",
            ],
        ),
        Child("sweep", [py, str(Path(__file__).resolve().parents[1] / "manage.py"), "sweep"]),
        Child("web", web_command(host=host, port=port)),
    ]
    return children
