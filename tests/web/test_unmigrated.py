"""A data directory that was never migrated: `serve` and `bench_pipeline` say what to run first, instead of
starting processes whose every page and task fails with "no such table" (seen: /healthz said healthy, the API
answered 500, the sweeper printed a traceback every 2 s)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


@pytest.mark.parametrize(
    ("command", "then"),
    [
        (["serve", "--port", "0"], "then serve again"),
        (["bench_pipeline", "--serve-search-workers", "1", "--turns", "1"], "then serve again"),
    ],
)
def test_commands_on_an_unmigrated_database_say_what_to_run_first(
    tmp_path: Path, command: list[str], then: str
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}  # SQLite in the empty data directory
    env |= {"CIR_DATA_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "cirweb.settings"}  # not the tests' own
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), *command],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:  # it started serving after all: stop it and what it started
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
        raise
    done = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    assert done.returncode != 0
    assert "migration(s) not applied yet" in done.stderr and "bootstrap_demo" in done.stderr and then in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert not (tmp_path / "redis").exists()  # serve stopped before starting anything
