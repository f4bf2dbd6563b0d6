"""Requests worth suggesting on a shapes collection: each one's exact result is another picture of it."""

from __future__ import annotations

import random
import time

from retrieval.datasets.shapes import Obj, all_edits, make_scene, random_scene, scene_diff
from retrieval.datasets.shapes_suggestions import one_edit_requests


def test_each_request_is_one_edit_to_another_picture_of_the_collection_and_varied() -> None:
    start = make_scene([Obj((0, 0), "circle", "red", "small"), Obj((1, 1), "square", "blue", "large")])
    rng = random.Random(5)
    lonely = random_scene(rng)
    # a start picture with its whole one-edit neighbourhood (as the demo's start grid), and a picture with none
    scenes = {f"n{i}": edit.apply(start) for i, edit in enumerate(all_edits(start))}
    scenes |= {"start": start, "lonely": lonely}
    assert all(len(scene_diff(lonely, s)) > 1 for name, s in scenes.items() if name != "lonely")

    requests = one_edit_requests(scenes)
    assert requests["lonely"] == []
    for name, suggestions in requests.items():
        assert len(suggestions) <= 4 and len({s.text for s in suggestions}) == len(suggestions)
        for s in suggestions:
            assert s.target != name and scene_diff(scenes[name], scenes[s.target]) == [s.edit]
            assert s.edit.apply(scenes[name]) == scenes[s.target]
    assert len({s.edit.kind for s in requests["start"]}) == 4, "four kinds of edit where there are more"
    assert all(len(requests[name]) >= 1 for name in scenes if name != "lonely"), "each neighbour has the start"
    assert one_edit_requests(dict(reversed(list(scenes.items())))) == requests, "the same on every run"


def test_a_demo_sized_collection_is_answered_in_seconds() -> None:
    """25,000 pictures, a fifth of them in the neighbourhoods of start pictures (the demo's val split)."""
    rng = random.Random(0)
    scenes = {f"r{i}": random_scene(rng) for i in range(20000)}
    for i in range(12):
        for j, edit in enumerate(all_edits(scenes[f"r{i}"])):
            scenes[f"n{i}-{j}"] = edit.apply(scenes[f"r{i}"])
    started = time.process_time()  # the processor's time: the suite's machines are shared
    requests = one_edit_requests(scenes)
    seconds = time.process_time() - started
    assert sum(1 for r in requests.values() if r) >= 12 * 200
    assert seconds < 20, f"{seconds:.1f} s"  # about 3 s: all pairs, or all edits of each picture, take minutes
