"""Visitors behind a reverse proxy are counted by the address the proxy forwards, but only when the proxy is
one the settings trust (CIR_TRUSTED_PROXIES): a company of visitors behind one proxy is not refused as one
address, and a visitor talking to the server directly cannot pick an address to escape the limits.

Each case runs its own web server (the product's command, cirweb/processes/webserver.py) over the live
stack's database and Redis, with small limits: 2 new conversations a minute per visitor, twice that per
address."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.core.exceptions import ImproperlyConfigured

from tests.integration.clients import Api
from tests.live import LiveServices, ShapesCollection, free_port, wait_healthy, web_server

pytestmark = pytest.mark.integration
VISITORS = 8  # each starts one conversation; an address may start 4 a minute


@contextmanager
def server(live: LiveServices, trusted: str, **limits: str) -> Iterator[str]:
    """A web server of its own over the live stack, trusting `trusted`, with small limits unless `limits` (more
    environment variables) says otherwise."""
    port = free_port()
    env = {
        **live.env,
        "CIR_RATE_CONVERSATIONS": "2/m",
        "CIR_ADDRESS_FACTOR": "2",
        "CIR_TRUSTED_PROXIES": trusted,
        **limits,
    }
    process = web_server(port, live.processes["web"].log.parent)
    process.log = process.log.with_name(f"web-{port}.log")
    process.start(env)
    try:
        wait_healthy(LiveServices(f"http://127.0.0.1:{port}", "", env, {"web": process}))
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stop()


def start_conversations(base: str, collection: str, forwarded: list[str | None]) -> list[int]:
    """One new visitor per entry, each starting one conversation, with that X-Forwarded-For (or none)."""
    codes = []
    for address in forwarded:
        visitor = Api(base)
        headers = {"X-Forwarded-For": address} if address else {}
        answer = visitor.request("POST", "/api/conversations", json={"collection": collection}, headers=headers)
        codes.append(answer.status_code)
    return codes


def test_visitors_behind_a_trusted_proxy_are_counted_each_by_their_own_address(
    live_services: LiveServices, shapes: ShapesCollection
) -> None:
    with server(live_services, "127.0.0.1,::1") as base:
        behind = start_conversations(base, shapes.slug, [f"203.0.113.{i}" for i in range(1, VISITORS + 1)])
        assert behind == [201] * VISITORS  # eight visitors, eight addresses: none past a limit
        direct = start_conversations(base, shapes.slug, [None] * VISITORS)  # eight visitors of one address
        assert direct[:4] == [201] * 4 and direct[4:] == [429] * 4
        # the forwarded address is what is counted: a ninth visitor at an address already used four times
        again = start_conversations(base, shapes.slug, ["198.51.100.7"] * 5)
        assert again == [201] * 4 + [429]


def test_a_forwarded_address_from_an_untrusted_peer_is_ignored(
    live_services: LiveServices, shapes: ShapesCollection
) -> None:
    with server(live_services, "192.0.2.1") as base:  # a proxy elsewhere: this test's requests are not from it
        spoofed = start_conversations(base, shapes.slug, [f"203.0.113.{i}" for i in range(101, 101 + VISITORS)])
        # all counted as this one address (which the test above may have used up already this minute)
        assert spoofed.count(201) <= 4 and spoofed[4:] == [429] * 4


def test_a_misspelt_trusted_proxy_is_refused_with_a_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    from cirweb.settings import env_networks

    monkeypatch.setenv("CIR_TRUSTED_PROXIES", "10.0.0.5, 10.0.0.0/8, localhost")
    with pytest.raises(ImproperlyConfigured, match="'localhost' is not an address or a network"):
        env_networks("CIR_TRUSTED_PROXIES", "127.0.0.1")
    monkeypatch.setenv("CIR_TRUSTED_PROXIES", "10.0.0.5, 10.1.0.0/16,::1")
    assert env_networks("CIR_TRUSTED_PROXIES", "127.0.0.1") == ["10.0.0.5", "10.1.0.0/16", "::1"]
