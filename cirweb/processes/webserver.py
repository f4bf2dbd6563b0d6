"""The web process: uvicorn serving cirweb.asgi. `python -m cirweb.processes.webserver [--host H] [--port P]`.

Why uvicorn and not daphne: daphne (twisted.web) reads a request's whole body, to a temporary file and
then into an unbounded in-memory queue, before the application sees its first byte, so no code of ours
can refuse a 1.5 GB chunked body early. uvicorn (which Channels supports as an ASGI server) hands the
body over in pieces and stops reading the socket while the application is not asking for more; the
`BodySizeLimit` middleware in cirweb/asgi.py can then answer 413 as soon as a limit is passed. One module
owns the command line so `serve`, the test fixtures, the Dockerfile and compose run the same server.
"""

from __future__ import annotations

import argparse
import os
import sys

# Websocket frames: the consumer answers frames up to twice its own 64 KB limit with an error frame; the
# server closes (1009) on anything larger before buffering it.
WS_MAX_BYTES = 128 * 1024


def web_command(*, host: str, port: int) -> list[str]:
    """The argv that starts the web process (used by `serve` and the test fixtures)."""
    return [sys.executable, "-m", "cirweb.processes.webserver", "--host", host, "--port", str(port)]


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m cirweb.processes.webserver")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cirweb.settings")
    os.environ["CIR_PROCESS"] = "web"  # settings: no persistent database connections under ASGI
    from django.conf import settings  # read now, after the process kind above is set

    uvicorn.run(
        "cirweb.asgi:application",
        host=args.host,
        port=args.port,
        http="h11",
        ws="websockets-sansio",
        ws_max_size=WS_MAX_BYTES,
        lifespan="off",  # Django and Channels do not speak the lifespan protocol
        proxy_headers=True,  # X-Forwarded-For/Proto, believed only from settings.CIR_TRUSTED_PROXIES
        forwarded_allow_ips=settings.CIR_TRUSTED_PROXIES,
        server_header=False,
        access_log=False,
        log_config=settings.LOGGING,  # uvicorn's own lines in the product's format (CIR_LOG_FORMAT), with ids
        log_level=settings.CIR_LOG_LEVEL.lower(),
    )


if __name__ == "__main__":
    main()
