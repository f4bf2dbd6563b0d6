"""GET /metrics on the live stack: a turn answered by the real search worker is counted with its stages,
the open socket, the worker answering a ping and the queues' depth are read, all from the web process."""

from __future__ import annotations

import pytest
import requests

from tests.integration.clients import Api
from tests.live import LiveServices, ShapesCollection
from tests.web.test_metrics import sample

pytestmark = pytest.mark.integration


def test_a_turn_through_the_workers_shows_up_in_the_metrics(
    live_services: LiveServices, shapes: ShapesCollection
) -> None:
    def scrape() -> str:
        return requests.get(live_services.base_url + "/metrics", timeout=30).text

    before = scrape()
    api = Api(live_services.base_url)
    socket = api.socket(live_services.ws_url, api.conversation(shapes.slug)["ws"])
    _, results = socket.turn("make it red", {"image": next(iter(shapes.ids.values()))})
    assert results["type"] == "turn.results"
    after = scrape()
    done = "cirweb_turns_total"
    assert sample(after, done, outcome="done") >= sample(before, done, outcome="done") + 1  # recorded by the worker
    count = "cirweb_turn_seconds_count"
    assert sample(after, count, stage="end_to_end") >= sample(before, count, stage="end_to_end") + 1
    assert sample(after, count, stage="text") >= sample(before, count, stage="text") + 1
    assert sample(after, "cirweb_sockets") >= 1  # this socket, open in the web process
    assert sample(after, "cirweb_workers", kind="search") >= 1
    assert 'cirweb_queue_depth{queue="search"}' in after
