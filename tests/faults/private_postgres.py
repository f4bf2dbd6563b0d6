"""A PostgreSQL server a test owns: its own cluster (initdb) in a temporary folder, on a free port, that the test
may stop and start at will. Never the machine's own server, which other suites and sessions use.

PostgreSQL refuses to run as root; a test run as root runs the server as the `postgres` user (the Debian
package's) instead. Skipped where no PostgreSQL binaries are installed."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest


def postgres_bin() -> Path | None:
    """The newest installed server's bin folder (Debian: /usr/lib/postgresql/<major>/bin), or what PATH has."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path else None


@dataclass
class PrivatePostgres:
    bin: Path
    root: Path
    port: int
    user: str | None  # the system user the server runs as (None: this process's own)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/cirweb"

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin / args[0]), *args[1:]]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=self.root)
        assert done.returncode == 0, f"{' '.join(args[:2])} failed:\n{done.stdout}\n{done.stderr}\n{self.log_tail()}"
        return done

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", options, "-w", "start")

    def stop(self) -> None:
        """A fast shutdown: every session is ended at once, as when the server is restarted for an upgrade."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join((self.root / "server.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def private_postgres(port: int) -> PrivatePostgres:
    """A new cluster with a database `cirweb`, started; the caller stops it and calls `remove`."""
    binaries = postgres_bin()
    if binaries is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) on this machine")
    # a folder of its own under the system's temporary folder: pytest's are private to the user running it
    root = Path(tempfile.mkdtemp(prefix="cirweb-postgres-"))
    user = None
    if os.geteuid() == 0:
        user = "postgres"
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    server = PrivatePostgres(binaries, root, port, user)
    server._run("initdb", "-D", str(server.data), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8")
    server.start()
    server._run("createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "cirweb")
    return server


def remove(server: PrivatePostgres) -> None:
    if server.running():
        try:
            server._run("pg_ctl", "-D", str(server.data), "-m", "immediate", "-w", "stop", timeout=30)
        except AssertionError:
            time.sleep(1)
    shutil.rmtree(server.root, ignore_errors=True)
