"""Through the real worker: pictures in words (alt text, suggested requests) as the index worker stored them,
and a "Not this" taken back."""

from __future__ import annotations

from typing import Any

import pytest

from retrieval.datasets.shapes import describe
from retrieval.datasets.shapes_suggestions import one_edit_requests
from tests.integration.clients import Api
from tests.live import LiveServices, ShapesCollection

pytestmark = pytest.mark.integration


def result_ids(frame: dict[str, Any]) -> list[int]:
    return [r["image"] for r in frame["results"]]


def test_suggested_requests_find_their_picture_and_every_result_says_what_it_shows(
    live_services: LiveServices, shapes: ShapesCollection
) -> None:
    api = Api(live_services.base_url)
    names = {image_id: name for name, image_id in shapes.ids.items()}
    page = api.request("GET", f"/api/collections/{shapes.slug}/images?limit=200").json()["images"]
    assert len(page) == len(shapes.ids)
    assert all(image["alt"] == describe(shapes.scenes[image["name"]]) for image in page)
    # the index worker stored the requests the engine finds for the collection: each has its exact answer here
    expected = one_edit_requests({name: shapes.scenes[name] for name in shapes.ids})
    assert {i["name"]: i["suggestions"] for i in page} == {n: [s.text for s in r] for n, r in expected.items()}

    conversation = api.conversation(shapes.slug)
    ws = api.socket(live_services.ws_url, conversation["ws"])
    found, first = [], []
    for family in range(6):  # what a person meets who clicks a suggestion under a family's reference
        reference = f"dev-{family}-0"
        for suggestion in expected[reference]:
            _, frame = ws.turn(suggestion.text, {"image": shapes.ids[reference]}, exclude_seen=False)
            found.append(shapes.ids[suggestion.target] in result_ids(frame)[:10])
            first.append(shapes.ids[suggestion.target] == result_ids(frame)[0])
            assert [r["alt"] for r in frame["results"]] == [
                describe(shapes.scenes[names[i]]) for i in result_ids(frame)
            ]
    print(f"suggested requests whose picture is first: {sum(first)}, in the top 10: {sum(found)} of {len(found)}")
    assert sum(found) >= 0.75 * len(found), found
    ws.close()


def test_not_this_taken_back_lets_the_picture_come_back(live_services: LiveServices, shapes: ShapesCollection) -> None:
    api = Api(live_services.base_url)
    conversation = api.conversation(shapes.slug)
    ws = api.socket(live_services.ws_url, conversation["ws"])
    reference = {"image": shapes.ids["dev-2-0"]}
    first_turn, first = ws.turn("make the circle red", reference, exclude_seen=False)
    rejected = result_ids(first)[0]
    ws.send({"type": "feedback", "turn": first_turn, "image": rejected, "value": "rejected"})
    _, second = ws.turn("make the circle red", reference, exclude_seen=False)
    assert rejected not in result_ids(second)
    ws.send({"type": "feedback", "turn": first_turn, "image": rejected, "value": "none"})
    _, third = ws.turn("make the circle red", reference, exclude_seen=False)
    assert result_ids(third) == result_ids(first), "taken back, the rejection leaves no trace on the ranking"
    ws.send({"type": "feedback", "turn": first_turn, "image": rejected, "value": "maybe", "client_id": "f"})
    refused = ws.until("error")
    assert refused["code"] == "bad_message" and "'none'" in refused["error"]
    ws.close()
    turns = api.request("GET", f"/api/conversations/{conversation['id']}").json()["turns"]
    assert turns[0]["rejected"] == [] and turns[0]["results"][0]["alt"] == first["results"][0]["alt"]
