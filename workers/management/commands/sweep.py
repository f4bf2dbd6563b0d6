"""`python manage.py sweep [--once]`: the loop that fails or takes back lost turns and jobs (workers/sweep.py)."""

from __future__ import annotations

import signal
import threading
from typing import Any

from cirweb.processes.commandline import DocumentedCommand
from workers.sweep import sweep_forever, sweep_once


class Command(DocumentedCommand):
    help = "Fail stale turns and reindex jobs, and take back those whose worker or message was lost."
    example = "python manage.py sweep --once"

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--once", action="store_true", help="sweep once and exit")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["once"]:
            self.stdout.write(sweep_once() or "nothing to do")
            return
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        sweep_forever(stop)
