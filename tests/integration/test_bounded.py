"""Against the running web server: huge request bodies are refused as they arrive, and probes are cheap."""

from __future__ import annotations

import select
import socket
import time
from urllib.parse import urlparse

import pytest
import requests

from tests.live import LiveServices

pytestmark = pytest.mark.integration

MB = 1 << 20


def resident_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def read_answer(sock: socket.socket, first: bytes = b"") -> bytes:
    """The whole response: its headers and then the body its Content-Length announces (one recv() may
    return the headers alone; the body comes in another segment), or whatever came before the close."""
    answer = first
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        head, found, body = answer.partition(b"\r\n\r\n")
        if found:
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                None,
            )
            if length is None or len(body) >= length:
                return answer
        try:
            more = sock.recv(65536)
        except OSError:
            return answer
        if not more:
            return answer
        answer += more
    return answer


def stream_chunked(base_url: str, path: str, total: int) -> tuple[float, int, bytes]:
    """POST `total` bytes to `path` as a chunked body, a megabyte per chunk, until the server answers.
    Returns (seconds until the answer, bytes sent by then, the answer's first bytes)."""
    url = urlparse(base_url)
    chunk = b"x" * MB
    frame = b"%x\r\n" % len(chunk) + chunk + b"\r\n"
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {url.hostname}\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
        started, sent, answer = time.monotonic(), 0, b""
        try:
            while sent < total and not answer:
                if select.select([sock], [], [], 0)[0]:
                    answer = read_answer(sock)
                    break
                sock.sendall(frame)
                sent += len(chunk)
        except OSError:  # the server closed the connection after answering: read what it said
            pass
        if not answer:
            answer = read_answer(sock)
        return time.monotonic() - started, sent, answer


@pytest.mark.parametrize("path", ["/healthz", "/api/uploads", "/api/search"])
def test_a_huge_chunked_body_is_refused_at_once_without_growing_the_web_process(
    live_services: LiveServices, path: str
) -> None:
    web = live_services.processes["web"].popen
    assert web is not None
    requests.get(live_services.base_url + "/livez", timeout=5)
    before = resident_mb(web.pid)
    seconds, sent, answer = stream_chunked(live_services.base_url, path, int(1.5e9))
    after = resident_mb(web.pid)
    print(f"{path}: 413 after {seconds:.2f}s and {sent / MB:.0f} MB sent; web RSS {before:.0f} -> {after:.0f} MB")
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"the limit is" in answer
    assert seconds < 2.0
    assert after - before < 50
    assert requests.get(live_services.base_url + "/livez", timeout=5).status_code == 200


def test_a_declared_length_over_the_limit_is_refused_before_the_body(live_services: LiveServices) -> None:
    url = urlparse(live_services.base_url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(b"POST /api/uploads HTTP/1.1\r\nHost: x\r\nContent-Length: 1500000000\r\n\r\n")
        answer = read_answer(sock)  # nothing of the body was sent
    assert answer.startswith(b"HTTP/1.1 413") and b"The request body is 1430.5 MB" in answer


def test_readiness_asks_the_search_worker_at_most_once_per_period(live_services: LiveServices) -> None:
    """With the search worker stopped, every ping a readiness check sends stays on the queue: count them."""
    import redis
    from django.conf import settings

    queue = redis.Redis.from_url(settings.CIR_REDIS_URL)
    live_services.processes["search"].stop()
    try:
        time.sleep(settings.CIR_READY_CACHE_SECONDS + 0.5)  # the last cached answer is gone
        before = queue.llen("search")
        started = time.monotonic()
        answers = [requests.get(live_services.base_url + "/healthz", timeout=10) for _ in range(30)]
        elapsed = time.monotonic() - started
        pushed = queue.llen("search") - before
        assert all(a.status_code == 503 and a.json()["search_worker"] is False for a in answers)
        assert requests.get(live_services.base_url + "/livez", timeout=5).json() == {"ok": True}
        periods = int(elapsed // settings.CIR_READY_CACHE_SECONDS) + 1
        assert pushed <= periods, f"30 checks in {elapsed:.1f}s left {pushed} ping tasks on the search queue"
    finally:
        queue.delete("search")  # the pings would only expire there
        live_services.restart("search")
