"""Fault injection for the fault suite (tests/faults): named points in the worker code where a test can make
the process sleep or kill itself. Off unless the settings name a CIR_FAULTS_FILE, which only the test
settings do; production settings have no way to turn it on.

The file is JSON, `{"point": "sleep:2" | "kill" | "kill-once"}`, read at each point (a test rewrites it
while the processes run). "kill-once" fires for the first process that reaches the point, then is removed.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from django.conf import settings


def fault_point(name: str) -> None:
    path = getattr(settings, "CIR_FAULTS_FILE", None)
    if not path:
        return
    try:
        action = json.loads(Path(path).read_text()).get(name)
    except (OSError, ValueError):
        return
    if not action:
        return
    if action.startswith("sleep:"):
        time.sleep(float(action.split(":", 1)[1]))
    elif action == "kill-once":
        marker = Path(f"{path}.{name}.fired")
        try:
            marker.open("x").close()  # exactly one process wins the race to fire it
        except FileExistsError:
            return
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
