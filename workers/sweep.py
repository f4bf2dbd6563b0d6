"""The one owner of expiry: a loop that, every CIR_SWEEP_EVERY seconds, takes back or fails turns and reindex
jobs whose worker or message was lost (cirweb.conversations.states.turn_sweep, cirweb.catalog.jobs).

Why a loop of its own rather than Celery beat: beat only sends messages, and something must consume them;
the two worker queues are exactly what may be stuck or dead when the sweep is needed (a reindex holds the
index worker for hours; a dead search worker is what strands turns). This process talks to the database
directly, needs no worker, and more than one may run: every change it makes is a conditional update.
Started by `manage.py serve` and by docker-compose (`manage.py sweep`).
"""

from __future__ import annotations

import logging
import threading

from django.conf import settings
from django.db import close_old_connections

from cirweb.catalog.jobs import reindex_job_sweep
from cirweb.conversations.states import turn_sweep

log = logging.getLogger(__name__)


def sweep_once() -> str:
    turns, jobs = turn_sweep(), reindex_job_sweep()
    parts = [
        f"{n} {what}"
        for n, what in (
            (turns.expired, "turns failed (expired)"),
            (turns.released, "turns taken back from dead workers"),
            (turns.resent, "turn tasks sent again"),
            (jobs.released, "jobs taken back from dead workers"),
            (jobs.resent, "job tasks sent again"),
            (jobs.failed, "jobs failed"),
        )
        if n
    ]
    return ", ".join(parts)


def sweep_forever(stop: threading.Event | None = None) -> None:
    stop = stop or threading.Event()
    log.info("sweeping every %.1f s", settings.CIR_SWEEP_EVERY)
    while not stop.wait(settings.CIR_SWEEP_EVERY):
        try:
            close_old_connections()
            done = sweep_once()
            if done:
                log.info("sweep: %s", done)
        except Exception:  # a database or Redis blink: the next sweep tries again
            log.exception("sweep failed; trying again in %.1f s", settings.CIR_SWEEP_EVERY)
