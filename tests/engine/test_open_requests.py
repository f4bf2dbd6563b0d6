"""Open requests: the grammar's held-out part is never trained on, relevance from scene graphs is exact, the
measurement's figures are what they say, and the demo's start grid has its neighbourhoods."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from retrieval.cli import main
from retrieval.datasets.shapes import (
    Edit,
    Obj,
    all_edits,
    make_scene,
    possible_edits,
    random_scene,
    scene_diff,
)
from retrieval.datasets.shapes_requests import REQUEST_KINDS, Request, SceneTable, draw_request, random_request
from retrieval.datasets.shapes_speech import (
    PARTS,
    Unknown,
    Wanted,
    grammar_words,
    typo,
    wanted_from,
    word_description,
    word_edit,
    word_request,
)
from retrieval.datasets.shapes_text import phrase
from retrieval.datasets.shapes_world import generate_world, load_scenes, start_grid_coverage
from retrieval.evaluation.open_requests import average_precision
from tests.engine.test_simulate import skeleton

RED_STAR = Obj((0, 0), "star", "red", "small")
BLUE_STAR = Obj((0, 0), "star", "blue", "small")
CIRCLE = Obj((1, 1), "circle", "green", "large")
SQUARE = Obj((2, 2), "square", "yellow", "small")


def test_no_held_out_wording_can_come_out_of_the_training_part() -> None:
    rng = random.Random(0)
    training = set()
    for _ in range(4000):
        scene = random_scene(rng)
        for edit in possible_edits(scene, rng):
            training.add(skeleton(word_edit(edit, scene, "train", rng)))
            training.add(skeleton(phrase(edit, scene, rng)))  # the annotations' wording is training's too
    for _ in range(1500):
        scene = random_scene(rng)
        for edit in possible_edits(scene, rng):
            held_out = word_edit(edit, scene, "held-out", rng)
            assert skeleton(held_out) not in training, held_out


def test_unknown_words_replace_a_templates_own_words_and_keep_what_it_names() -> None:
    scene = make_scene([BLUE_STAR, CIRCLE])
    recolour = Edit("recolour", BLUE_STAR, Obj((0, 0), "star", "red", "small"))
    named = {"the", "star", "blue", "red", "small", "little"}  # what the slots can say of this edit
    every = Unknown(("zorb",), share=1.0, rate=1.0)
    for seed in range(40):
        said = word_edit(recolour, scene, "train", random.Random(seed), every)
        words = said.replace(":", " ").replace(",", " ").split()
        assert "red" in words and "star" in words, said
        assert set(words) <= named | {"zorb"} and "zorb" in words, said
    half = Unknown(("zorb",), share=0.5, rate=1.0)
    blurred = sum("zorb" in word_request([recolour], scene, "train", random.Random(s), half) for s in range(400))
    assert 150 < blurred < 250  # a share of requests, not all


def test_the_unknown_pool_holds_no_word_of_the_world_and_its_halves_are_apart() -> None:
    from retrieval.training.unknown_words import unknown_words, world_words

    used = world_words(samples=500)
    assert grammar_words() <= used
    assert {"lose", "dye", "slide", "trade", "becomes", "thanks", "red", "star", "top"} <= used  # held-out too
    train, val = unknown_words("train"), unknown_words("val")
    assert len(train) > 5000 and len(val) > 5000
    assert not set(train) & set(val)
    assert not (set(train) | set(val)) & used


def test_requests_read_as_people_type_them() -> None:
    rng = random.Random(4)
    scene = make_scene([BLUE_STAR, CIRCLE])
    recolour = Edit("recolour", BLUE_STAR, RED_STAR)
    words = {word_request([recolour], scene, part, rng) for part in PARTS for _ in range(200)}
    assert all("red" in w or any(t in w for t in ("rde", "ed", "rred")) for w in words)
    assert any(w.startswith(("please", "could you", "would you mind", "hmm")) for w in words)  # polite frames
    two = word_request([recolour, Edit("remove", CIRCLE, None)], scene, "train", rng)
    assert "red" in two and "circle" in two
    assert typo("make the star red", random.Random(1)) != "make the star red"
    assert typo("a b c", random.Random(1)) == "a b c"  # no word long enough to slip on


@pytest.mark.parametrize("kind", REQUEST_KINDS)
def test_every_kind_of_request_is_drawn_and_its_exact_target_satisfies_it(kind: str) -> None:
    rng = random.Random(kind)
    scenes = [random_scene(rng) for _ in range(300)]
    drawn = [r for r in (draw_request(s, kind, rng) for s in scenes) if r is not None]  # type: ignore[arg-type]
    assert len(drawn) > 100
    for request in drawn[:60]:
        target = request.target
        assert len(scene_diff(request.reference, target)) == len(request.edits)
        table = SceneTable([request.reference, target])
        judged = table.judge(request)
        assert not judged.satisfied[0], "the reference does not do what was asked"
        assert judged.satisfied[1] and judged.exact[1] and judged.kept[1] == 1 and judged.good[1]
        assert judged.grade()[1] == 1.0 and judged.grade()[0] == 0.0


def test_relevance_follows_what_was_asked() -> None:
    reference = make_scene([BLUE_STAR, CIRCLE, SQUARE])
    request = Request(reference, (Edit("recolour", BLUE_STAR, RED_STAR),))  # "make the star red"
    moved_red_star = Obj((0, 2), "star", "red", "large")
    gallery = [
        make_scene([RED_STAR, CIRCLE, SQUARE]),  # exact
        make_scene([moved_red_star, CIRCLE]),  # did it, kept one of two: good, not exact
        make_scene([moved_red_star]),  # did it, kept nothing: satisfied only
        make_scene([BLUE_STAR, CIRCLE, SQUARE]),  # the reference: not what was asked
        make_scene([RED_STAR, Obj((0, 1), "star", "blue", "small"), CIRCLE]),  # a blue star is still there
    ]
    judged = SceneTable(gallery).judge(request)
    assert judged.exact.tolist() == [True, False, False, False, False]
    assert judged.satisfied.tolist() == [True, True, True, False, False]
    assert judged.good.tolist() == [True, True, False, False, False]
    grades = judged.grade()
    assert grades[0] > grades[1] > grades[2] > grades[3] == grades[4] == 0
    removal = SceneTable([*gallery, make_scene([CIRCLE, SQUARE])]).judge(
        Request(reference, (Edit("remove", BLUE_STAR, None),))
    )
    assert removal.satisfied.tolist() == [False] * 5 + [True]  # "remove the star": a red star is still a star
    assert removal.exact.tolist() == [False] * 5 + [True]


def test_words_alone_match_pictures_holding_every_object() -> None:
    gallery = [make_scene([RED_STAR, CIRCLE]), make_scene([RED_STAR]), make_scene([CIRCLE, SQUARE])]
    table = SceneTable(gallery)
    assert table.described([Wanted("star", "red"), Wanted("circle")]).tolist() == [True, False, False]
    assert table.described([Wanted("star"), Wanted("star")]).tolist() == [False, False, False]  # two stars
    assert table.described([Wanted("circle", size="large", cell=(1, 1))]).tolist() == [True, False, True]
    rng = random.Random(2)
    wanted = wanted_from(gallery[0], rng)
    assert table.described(wanted)[0]
    assert "an orange star" in word_description((Wanted("star", "orange"),), "train", random.Random(9))


def test_circo_average_precision() -> None:
    relevant = np.array([False, True, True, False, True])
    assert average_precision(relevant, np.array([1, 0, 2, 3, 4]), 3, k=10) == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    assert average_precision(relevant, np.array([0, 3]), 3) == 0.0
    assert average_precision(np.zeros(3, bool), np.array([0, 1]), 0) == 0.0


def test_a_random_request_applies_to_any_scene() -> None:
    rng = random.Random(5)
    for _ in range(200):
        scene = random_scene(rng)
        assert random_request(scene, rng).target != scene


def test_the_start_grid_holds_its_whole_one_edit_neighbourhood(tmp_path: Path) -> None:
    summary = generate_world(tmp_path, 600, seed=3, show_progress=False, workers=1, start_neighbourhoods=4)
    scenes = load_scenes(tmp_path, "val")
    first = sorted(scenes)[:4]
    assert all(not name.startswith("dev-n") for name in first), "the neighbours sort after the grid"
    have = set(scenes.values())
    for name in first:
        assert all(edit.apply(scenes[name]) in have for edit in all_edits(scenes[name]))
    assert summary["start_neighbourhood_images"] > 4 * 200
    assert (tmp_path / "dev" / "dev-n0-0.png").is_file()
    assert start_grid_coverage(tmp_path, "val", 4, draws=50) == 1.0
    plain = tmp_path / "plain"
    generate_world(plain, 600, seed=3, show_progress=False, workers=1)
    assert start_grid_coverage(plain, "val", 4, draws=50) < 0.3
    assert load_scenes(plain, "train") == load_scenes(tmp_path, "train"), "the rest of the world is unchanged"


def test_all_edits_is_what_possible_edits_draws_from() -> None:
    rng = random.Random(8)
    for _ in range(100):
        scene = random_scene(rng)
        every = set(all_edits(scene))
        assert all(e in every for e in possible_edits(scene, rng))


@pytest.mark.slow
def test_evaluate_reports_open_requests_beside_the_benchmark(
    shapes_world: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models = Path(__file__).resolve().parents[2] / "models" / "shapes"
    argv = ["evaluate", "--dataset", "shapes", "--root", str(shapes_world), "--clip", str(models / "shapes-clip.pt")]
    argv += ["--combiner", str(models / "shapes-combiner.pt"), "--open-requests", "--requests", "60"]
    assert main([*argv, "--descriptions", "40", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    opened = out["open_requests"]
    assert "synthetic" in opened["synthetic"] or "shapes world" in opened["synthetic"]
    assert set(opened["modes"]) == {"image", "text", "sum", "sum-normalized", "combiner"}
    for figures in opened["modes"].values():
        for key in ("satisfied@1", "good@1", "good@5", "mAP@10", "exact@10_where_exists"):
            low, high = figures[key]["ci95"]
            assert low <= figures[key]["value"] <= high
        assert figures["good@1"]["value"] <= figures["good@5"]["value"] <= figures["good@10"]["value"]
        assert figures["good@1"]["value"] <= opened["limit"]["value"] + 1e-9
    assert opened["from_words"]["good@1"]["value"] <= opened["from_words"]["good@10"]["value"]
    assert set(opened["closed_wording"]) == {"training", "held-out", "queries"}
    assert out["recall@1"] == opened["closed_wording"]["training"]["recall@1"]
    assert main([*argv[:-2], "--requests", "20", "--descriptions", "10"]) == 0
    assert "good@1" in capsys.readouterr().out
