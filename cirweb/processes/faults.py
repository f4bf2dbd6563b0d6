"""Fault injection for the fault suite (tests/faults): named points in the worker and writer code where a
test can make the process sleep, kill itself, or find the disk full. Off unless the settings name a
CIR_FAULTS_FILE, which only the test settings do (and they refuse DJANGO_ENV=production); production
settings have no way to turn it on.

The file is JSON, `{"point": "sleep:2" | "kill" | "kill-once" | "enospc" | "enospc:<part of the detail>"}`,
read at each point (a test rewrites it while the processes run). "kill-once" fires for the first process
that reaches the point, then is removed. "enospc" raises the error a full disk gives (errno ENOSPC) at a
writer's point, for every write or only those whose detail (a store key, a file name) contains the text
after the colon: where the machine forbids a test to mount a small file system, this is its full disk.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from django.conf import settings


def fault_point(name: str, detail: str = "") -> None:
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
    elif action.startswith("enospc"):
        wanted = action.partition(":")[2]
        if not wanted or wanted in detail:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), detail or None)
    elif action == "kill-once":
        marker = Path(f"{path}.{name}.fired")
        try:
            marker.open("x").close()  # exactly one process wins the race to fire it
        except FileExistsError:
            return
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)


def store_write_point() -> Callable[[str], None] | None:
    """The shared store's hook before each write completes (`store.put`, its detail the key), where faults
    are enabled; None (no hook at all) elsewhere."""
    if not getattr(settings, "CIR_FAULTS_FILE", None):
        return None
    return lambda key: fault_point("store.put", key)
