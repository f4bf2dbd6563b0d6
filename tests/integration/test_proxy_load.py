"""The load of issue 23 through the real stack: 50 visitors x 10 turns at a person's pace (a second or two
between a turn's results and the next), every one arriving from one reverse proxy (this machine's address)
that names each visitor's own address in X-Forwarded-For, under the product's default limits (30 turns a
minute per visitor, an address allowed 10 visitors' worth). With the proxy trusted (CIR_TRUSTED_PROXIES)
every turn is answered and none refused; with the same load and the proxy not trusted, the visitors share the
proxy's address and its allowance, and turns are refused `rate_limited`: the setting is what makes the
difference. The untrusted run cuts the allowance to 5 visitors' worth (still 50 conversations a minute, one
each): the limiter counts in one-minute windows, and 500 turns in about 25 s can straddle two of them and fit
in twice the default 300 (it did once). The load client is the one of `manage.py bench_pipeline`
(cirweb/processes/load_client.py).
"""

from __future__ import annotations

from typing import Any

import pytest

from cirweb.processes.load_client import visitors_run
from tests.integration.test_trusted_proxies import server
from tests.live import LiveServices, ShapesCollection

pytestmark = [pytest.mark.integration, pytest.mark.slow]
VISITORS, TURNS, PACE = 50, 10, (1.0, 2.0)
DEFAULT_LIMITS = {  # the product's defaults (cirweb/settings.py), not the test settings' generous ones
    "CIR_RATE_TURNS": "30/m",
    "CIR_RATE_CONVERSATIONS": "10/m",
    "CIR_ADDRESS_FACTOR": "10",
    "CIR_TURNS_IN_FLIGHT": "3",
    "CIR_RATELIMIT_ENABLE": "1",
    "CIR_TURN_EXPIRES": "60",
}


def load(live: LiveServices, shapes: ShapesCollection, trusted: str, **limits: str) -> dict[str, Any]:
    with server(live, trusted, **(DEFAULT_LIMITS | limits)) as base:
        report = visitors_run(
            base, shapes.slug, sorted(shapes.ids.values()), visitors=VISITORS, turns=TURNS, pace=PACE, forwarded=True
        )
    print(f"\nLOAD trusted={trusted}: {report}")
    return report


def test_fifty_visitors_behind_a_trusted_proxy_are_all_answered(
    live_services: LiveServices, shapes: ShapesCollection
) -> None:
    trusted = load(live_services, shapes, "127.0.0.1,::1")
    assert trusted["answered"] == VISITORS * TURNS and not trusted["refused"], trusted
    # the same load, the proxy not trusted (a proxy elsewhere is): all visitors count as the proxy's address
    untrusted = load(live_services, shapes, "192.0.2.1", CIR_ADDRESS_FACTOR="5")
    assert untrusted["refused"].get("rate_limited", 0) > 0, untrusted
    assert untrusted["answered"] + sum(untrusted["refused"].values()) == VISITORS * TURNS, untrusted
