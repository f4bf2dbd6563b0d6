"""The simulated person sees only what is shown, speaks in words training never used, and memory steers."""

from __future__ import annotations

import random
import re
from pathlib import Path

import numpy as np

from retrieval.datasets.cirr import load_cirr
from retrieval.datasets.shapes import (
    CELL_NAMES,
    COLOURS,
    SHAPES,
    SIZE_WORDS,
    Obj,
    make_scene,
    possible_edits,
    random_scene,
)
from retrieval.datasets.shapes_text import phrase
from retrieval.datasets.shapes_world import generate_world
from retrieval.evaluation.intervals import wilson
from retrieval.evaluation.recall import encode_gallery
from retrieval.evaluation.sim_user import UserModel, perceive, request
from retrieval.evaluation.simulate import TUNING_GRID, Episode, look_alike_ranks, summarize
from retrieval.fusion.fuser import Fuser, Mode
from retrieval.fusion.memory import (
    DEFAULT_WEIGHTS,
    LOOK_ALIKE,
    MemoryWeights,
    Remembered,
    demote,
    push_away,
    steer,
    summary,
)
from retrieval.models.clip_encoder import load_clip
from retrieval.models.combiner_model import load_combiner
from retrieval.vectors import normalize

CONTENT = (
    set(COLOURS) | set(SHAPES) | {w for ws in SIZE_WORDS.values() for w in ws}
    | {"larger", "bigger", "smaller", "enlarge", "grow", "shrink", "reduce"}
    | {w for name in CELL_NAMES.values() for w in name.split()}
    | {"middle", "corner", "the", "a", "an", "at", "in", "on"}
)  # fmt: skip


def skeleton(text: str) -> tuple[str, ...]:
    """A sentence's wording without its content: the words that are neither objects, colours nor places."""
    return tuple(w for w in re.findall(r"[a-z']+", text.lower()) if w not in CONTENT)


def test_requests_use_wordings_held_out_from_training() -> None:
    rng = random.Random(0)
    training = set()
    for _ in range(3000):
        scene = random_scene(rng)
        for edit in possible_edits(scene, rng):
            training.add(skeleton(phrase(edit, scene, rng)))
    user = UserModel(misread=0.0, overlook=0.0)
    for _ in range(500):
        a = random_scene(rng)
        edit = possible_edits(a, rng)[0]
        text = request(a, edit.apply(a), user, rng)
        assert text is not None
        for part in text.split("; also "):
            assert skeleton(part) not in training, part


def test_reading_errors_happen_at_the_stated_rate() -> None:
    rng = random.Random(2)
    scene = make_scene([Obj((0, 0), "circle", "red", "small"), Obj((2, 2), "star", "blue", "large")])
    user = UserModel(misread=0.1, overlook=0.0)
    wrong = sum(o.colour != "red" for o in (perceive(scene, user, rng)[0] for _ in range(4000)) if o.cell == (0, 0))
    assert 0.07 < wrong / 4000 < 0.13
    exact = UserModel(misread=0.0, overlook=0.0)
    assert perceive(scene, exact, rng) == scene


def test_memory_steers_away_from_a_rejected_look() -> None:
    rng = np.random.default_rng(0)
    query, rejected_look = rng.normal(size=8).astype(np.float32), rng.normal(size=8).astype(np.float32)
    memory = Remembered(np.zeros((0, 8), np.float32), np.zeros((0, 8), np.float32), rejected_look[None])
    unit = rejected_look / np.linalg.norm(rejected_look)
    before = float(query @ unit / np.linalg.norm(query))
    after = float(steer(query, memory, MemoryWeights(rejected=0.3)) @ unit)
    assert after < before
    assert summary(["make it red", "no star"], rejected=3) == (
        "remembering: make it red; no star · steering away from 3 rejected"
    )
    pasted = "make the star red " * 300  # a 5,400-character paste stays one short line
    line = summary([pasted], rejected=0)
    assert line == "remembering: make the star red make the star red make the star red make…"


def test_the_anchor_weighs_more_as_the_conversation_grows() -> None:
    rng = np.random.default_rng(1)
    query, anchor = rng.normal(size=8).astype(np.float32), rng.normal(size=8).astype(np.float32)
    unit = anchor / np.linalg.norm(anchor)
    none = np.zeros((0, 8), np.float32)
    pull = []
    for earlier in (1, 3):  # the second turn of a branch, then the fourth
        memory = Remembered(rng.normal(size=(earlier, 8)).astype(np.float32), none, none, anchor[None])
        weights = MemoryWeights(requests=0.0, anchor=0.5, anchor_growth=2.0)
        pull.append(float(steer(query, memory, weights) @ unit))
        if earlier == 1:  # growth starts after the first earlier request: the plain anchor weight
            assert pull[-1] == float(steer(query, memory, MemoryWeights(requests=0.0, anchor=0.5)) @ unit)
    assert pull[1] > pull[0]


def test_the_anchor_stops_growing_after_the_turns_it_was_tuned_on() -> None:
    """Ten turns at most in the simulation that chose the growth: a longer conversation is not pinned to its
    first picture ever harder (the tenth turn's pull and the thirtieth's are the same)."""
    from retrieval.fusion.memory import ANCHOR_GROWTH_TURNS

    rng = np.random.default_rng(2)
    query, anchor = rng.normal(size=8).astype(np.float32), rng.normal(size=8).astype(np.float32)
    none = np.zeros((0, 8), np.float32)
    weights = MemoryWeights(requests=0.0, anchor=0.25, anchor_growth=1.5)
    pulls = [
        steer(query, Remembered(np.ones((earlier, 8), np.float32), none, none, anchor[None]), weights)
        for earlier in (ANCHOR_GROWTH_TURNS, ANCHOR_GROWTH_TURNS + 1, 29)  # the ninth turn, the tenth, the 30th
    ]
    assert float(pulls[1] @ anchor) > float(pulls[0] @ anchor)
    np.testing.assert_allclose(pulls[2], pulls[1], rtol=1e-6)


def test_results_seen_before_give_way_by_how_often() -> None:
    ids = np.array([40, 7, 12, 99, 3], np.int64)  # a search's ids, in score order (not id order)
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5], np.float32)
    memory = Remembered.empty(4)
    memory.seen = {7: 2, 3: 1, 55: 4}  # 55 was shown before but is not among these results
    before = scores.copy()
    lowered = demote(scores, ids, memory, MemoryWeights(seen=0.1))
    assert np.allclose(lowered, [0.9, 0.6, 0.7, 0.6, 0.4])
    assert np.array_equal(scores, before)  # a copy: the caller's scores stay


def test_tuning_searches_every_memory_weight_around_the_default() -> None:
    assert set(TUNING_GRID) == set(DEFAULT_WEIGHTS.as_dict())
    assert all(getattr(DEFAULT_WEIGHTS, name) in values for name, values in TUNING_GRID.items())


def test_figures_carry_intervals() -> None:
    low, high = wilson(45, 50)
    assert low < 0.9 < high and high <= 1
    played = [
        Episode(1, [True]),
        Episode(2, [False, True], look_alikes=[([0, 1, 2, 3, 4], [12, 30, 40, 50, 60])]),
        Episode(None, [False, True, False, False, False]),
        Episode(3, [False, False, True]),
    ]
    result = summarize("combiner", True, played, max_turns=5, shown=10)
    assert result["success@2"] == 0.5 and result["success@5"] == 0.75 and result["mean_turns"] == 2.0
    assert result["success@5_ci95"][0] < 0.75 < result["success@5_ci95"][1]
    # good@k: turn k's page did what was asked, or the target was already found before turn k
    assert [result[f"good@{k}"] for k in range(1, 6)] == [0.25, 0.75, 0.75, 0.75, 0.75]
    assert result["not_this"]["look_alikes_on_page_before"] == 1.0
    assert result["not_this"]["look_alikes_on_page_after"] == 0.0


def test_a_rejected_look_ranks_lower_on_the_next_turn(shapes_world: Path) -> None:
    """Committed model, held-out shapes world: the person presses "Not this" on the top result. On the next
    turn (same picture, same words, same remembered request) the five pictures that look most like the
    rejected one rank lower than with the same memory minus the rejection. Would rejection do nothing, every
    rank would stay put. (Its scene-graph family does not reliably fall at the tuned weight: that family
    often holds the target's own stepping stones, which the words pull up.)"""
    models = Path(__file__).resolve().parents[2] / "models" / "shapes"
    encoder = load_clip(str(models / "shapes-clip.pt"))
    fuser = Fuser(load_combiner(models / "shapes-combiner.pt"), encoder.dim)
    data = load_cirr(shapes_world, "val", dataset="shapes")
    gallery = encode_gallery(encoder, data.images, show_progress=False)
    normed = normalize(gallery.features)
    none = np.zeros((0, encoder.dim), np.float32)
    drops: list[float] = []
    for t in data.triplets[:30]:
        ref = gallery.index[t.reference]
        query = fuser.fuse(Mode.COMBINER, gallery.features[[ref]], encoder.encode_texts([t.caption]))[0]
        first = normed @ query
        first[ref] = -np.inf
        rejected = int(np.argmax(first))  # "Not this" on the top result
        likeness = normed @ normed[rejected]
        likeness[[ref, rejected, gallery.index[t.target]]] = -np.inf
        look = list(np.argsort(-likeness)[:5])  # the pictures that look most like the rejected one
        ranks = []
        for said_no in (none, gallery.features[[rejected]]):
            scores = normed @ steer(query, Remembered(query[None], none, said_no))
            scores[[ref, rejected]] = -np.inf  # hidden either way: the reference, and the rejected image itself
            order = np.argsort(-scores, kind="stable")
            ranks.append(float(np.mean([np.where(order == i)[0][0] for i in look])))
        drops.append(ranks[1] - ranks[0])
    assert all(d >= 0 for d in drops)  # the rejected look never rises
    # It falls after a good share of rejections (13 of 30 here): the tuned weight (0.15) nudges, it does not
    # shove; with rejection doing nothing, no rank would move and this fails.
    assert sum(d > 0 for d in drops) >= len(drops) // 3


def test_not_this_pushes_the_rejected_look_out_of_the_next_page(tmp_path: Path) -> None:
    """Committed model, held-out world, every mode: "Not this" on the top result; on the next turn (same
    picture, same words) those of the five pictures most like the rejected one that look alike (image cosine
    above `LOOK_ALIKE`) leave the first page of ten (at most one in five stays), where without the push about
    half of them were on it. A gallery of 2,400 pictures (a world of its own, seed 12): in a tiny one the
    nearest pictures rarely look alike."""
    models = Path(__file__).resolve().parents[2] / "models" / "shapes"
    encoder = load_clip(str(models / "shapes-clip.pt"))
    fuser = Fuser(load_combiner(models / "shapes-combiner.pt"), encoder.dim)
    generate_world(tmp_path, 12000, seed=12, show_progress=False, workers=1, render_splits=("val",))
    data = load_cirr(tmp_path, "val", dataset="shapes")
    gallery = encode_gallery(encoder, data.images, show_progress=False)
    normed = normalize(gallery.features)
    on_page = {"before": [], "after": []}
    for t in data.triplets[:30]:
        ref = gallery.index[t.reference]
        for mode in (Mode.COMBINER, Mode.SUM_NORMALIZED, Mode.IMAGE):
            query = fuser.fuse(mode, gallery.features[[ref]], encoder.encode_texts([t.caption]))[0]
            scores = normed @ query
            scores[ref] = -np.inf
            rejected = int(np.argmax(scores))
            scores[rejected] = -np.inf  # a rejected picture never returns
            pushed = push_away(scores, normed, normed[[rejected]])
            before, after = look_alike_ranks(normed, rejected, scores, pushed)
            likeness = np.sort(normed @ normed[rejected])[::-1][1 : 1 + len(before)]
            alike = likeness > LOOK_ALIKE  # a 180-picture gallery: not every nearest picture looks alike
            on_page["before"] += [r < 10 for r, a in zip(before, alike, strict=True) if a]
            on_page["after"] += [r < 10 for r, a in zip(after, alike, strict=True) if a]
    before, after = np.mean(on_page["before"]), np.mean(on_page["after"])
    print(f"look-alikes on the next page: {before:.3f} without the push, {after:.3f} with it")
    assert before > 0.4 and after <= 0.2, (before, after)
