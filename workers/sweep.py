"""The one owner of expiry: a loop that, every CIR_SWEEP_EVERY seconds, takes back or fails turns and reindex
jobs whose worker or message was lost (cirweb.conversations.states.turn_sweep, cirweb.catalog.jobs). Every
CIR_PRUNE_EVERY seconds it also prunes the data directory (cirweb.catalog.retention, as `manage.py prune`),
in a thread of its own so a long prune never delays a sweep.

Why a loop of its own rather than Celery beat: beat only sends messages, and something must consume them;
the two worker queues are exactly what may be stuck or dead when the sweep is needed (a reindex holds the
index worker for hours; a dead search worker is what strands turns). This process talks to the database
directly, needs no worker, and more than one may run: every change it makes is a conditional update.
Started by `manage.py serve` and by docker-compose (`manage.py sweep`).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from cirweb.catalog.jobs import reindex_job_sweep
from cirweb.catalog.retention import data_prune
from cirweb.conversations.states import turn_sweep
from cirweb.transport.database_away import database_trouble
from cirweb.transport.queueing import broker_identity

log = logging.getLogger(__name__)


class BrokerWatch:
    """Notices that the broker came back as a new server (its identity changed): the queued turns' messages
    are gone with the old one, so the next sweep sends them again at once, not CIR_TURN_RESEND_AFTER later.
    The restart stays pending until a sweep has acted on it (a database blink must not forget it)."""

    def __init__(self) -> None:
        self.identity: str | None = None
        self.restarted: datetime | None = None

    def look(self) -> datetime | None:
        identity = broker_identity()
        if identity is not None:
            if self.identity is not None and identity != self.identity:
                self.restarted = timezone.now()
                log.warning("the broker restarted (a new Redis server): queued turns are sent again now")
            self.identity = identity
        return self.restarted

    def acted(self) -> None:
        self.restarted = None


def sweep_once(watch: BrokerWatch | None = None) -> str:
    turns = turn_sweep(broker_restarted=watch.look() if watch else None)
    if watch:
        watch.acted()
    jobs = reindex_job_sweep()
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


def prune_once() -> None:
    try:
        log.info("prune: %s", data_prune().summary())
    except Exception:  # a missing folder, a database blink: the next prune tries again
        log.exception("prune failed; trying again in %d s", settings.CIR_PRUNE_EVERY)
    finally:
        close_old_connections()


def sweep_forever(stop: threading.Event | None = None) -> None:
    stop = stop or threading.Event()
    log.info("sweeping every %.1f s, pruning every %d s", settings.CIR_SWEEP_EVERY, settings.CIR_PRUNE_EVERY)
    pruner: threading.Thread | None = None
    watch = BrokerWatch()
    next_prune = time.monotonic() + min(60, settings.CIR_PRUNE_EVERY)  # a restart loop must not prune in a loop
    while not stop.wait(settings.CIR_SWEEP_EVERY):
        try:
            close_old_connections()
            done = sweep_once(watch)
            if done:
                log.info("sweep: %s", done)
        except Exception as exc:  # a database or Redis blink: the next sweep tries again
            if (trouble := database_trouble(exc)) is not None:  # one line, not a traceback a second
                log.warning("sweep: %s (%s)", trouble[1].split(";")[0], str(exc).splitlines()[0])
            else:
                log.exception("sweep failed; trying again in %.1f s", settings.CIR_SWEEP_EVERY)
        if time.monotonic() >= next_prune and (pruner is None or not pruner.is_alive()):
            next_prune = time.monotonic() + settings.CIR_PRUNE_EVERY
            pruner = threading.Thread(target=prune_once, name="prune", daemon=True)
            pruner.start()
