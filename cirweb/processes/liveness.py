"""Who is running a turn or a job, and whether that process is still there.

A claim records `host:pid` of the worker process. On the same host a dead (or zombie) process is seen at
once; elsewhere only the time since its last sign of life can tell, so callers pass how long that may be.
The answer only decides how soon work is taken back: correctness never rests on it, because every write of
an outcome is conditional on the claim still being the writer's own.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta

from django.utils import timezone


def process_identity() -> str:
    """This process as a claim names it."""
    return f"{socket.gethostname()}:{os.getpid()}"


def pid_gone(pid: int) -> bool:
    """Whether a process of this host has exited (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:  # a zombie still answers kill(0) but will never work again
            if stat.read().rpartition(")")[2].split()[0] in ("Z", "X"):
                return True
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def claim_lost(identity: str, last_seen: datetime | None, grace: timedelta) -> bool:
    """True when the process named `identity` can no longer finish what it claimed: it is gone from this
    host, or (any host) it has given no sign of life for `grace`."""
    if not identity:
        return True
    host, _, pid = identity.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        return pid_gone(int(pid))  # on this host the process table is the truth
    return last_seen is None or timezone.now() - last_seen > grace
