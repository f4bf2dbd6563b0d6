"""The web process stays light: serving HTTP and websockets loads none of the engine's heavy parts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "torchvision", "faiss", "clip", "retrieval", "workers.tasks", "workers.runtime")


def test_importing_the_asgi_application_loads_no_engine() -> None:
    probe = (
        "import json, sys, cirweb.asgi, cirweb.urls, cirweb.transport.queueing\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=True
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
