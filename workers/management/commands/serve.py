"""`python manage.py serve [--port 8000] [--search-workers N] [--index-workers M]`: everything the product
needs, supervised, on one machine."""

from __future__ import annotations

import os
import sys
from typing import Any

from django.conf import settings

from cirweb.processes.commandline import DocumentedCommand, require_migrated_database
from workers.supervisor import Supervisor, build_children


class Command(DocumentedCommand):
    help = "Start Redis (private unless CIR_REDIS_URL is set), a search worker, an index worker and the web server."
    example = "python manage.py serve --port 8000 --search-workers 2"

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--port", type=int, default=8000, help="port of the web server")
        parser.add_argument("--host", default="127.0.0.1", help="address the web server listens on")
        parser.add_argument("--no-colour", action="store_true", help="print the children's logs without colours")
        parser.add_argument("--search-workers", type=int, default=1, help="search processes (each loads the models)")
        parser.add_argument("--index-workers", type=int, default=1, help="index processes")

    def handle(self, *args: Any, **options: Any) -> None:
        require_migrated_database(then="serve again")
        env = dict(os.environ)
        redis_port = settings.CIR_PRIVATE_REDIS_PORT if settings.CIR_REDIS_IS_PRIVATE else None
        env["CIR_REDIS_URL"] = settings.CIR_REDIS_URL  # children agree on the one Redis
        env["CIR_DATA_DIR"] = str(settings.CIR_DATA_DIR)
        env.setdefault("PYTHONUNBUFFERED", "1")
        children = build_children(
            port=options["port"],
            host=options["host"],
            redis_port=redis_port,
            data_dir=settings.CIR_DATA_DIR,
            search_workers=options["search_workers"],
            index_workers=options["index_workers"],
        )
        shown_host = "localhost" if options["host"] in ("127.0.0.1", "0.0.0.0") else options["host"]
        url = f"http://{shown_host}:{options['port']}/"
        colour = not options["no_colour"] and sys.stdout.isatty()
        supervisor = Supervisor(children, env, colour=colour, json_lines=settings.CIR_LOG_FORMAT == "json")
        supervisor.say("serve", f"starting {', '.join(c.name for c in children)}; Ctrl-C stops them all")
        sys.exit(supervisor.run(ready_url=url))
