"""The judge, the second stage: regions, the model, its checkpoint, the stage that re-ranks a pool, the regions
a version keeps, and stage 4's training."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from retrieval.datasets.shapes import Obj, make_scene, render
from retrieval.errors import SearchIndexError
from retrieval.extraction.features import Item
from retrieval.extraction.regions import extract_regions, regions_for_version
from retrieval.fusion.judging import JudgeStage, fused, judge_for
from retrieval.index.versions import FeaturePart, load_version, write_version_parts
from retrieval.models.clip_encoder import ClipEncoder, load_clip
from retrieval.models.judge import Judge, JudgeConfig, image_regions, load_judge, save_judge
from retrieval.models.provenance import sha256

REPO = Path(__file__).resolve().parents[2]
CLIP = REPO / "models" / "shapes" / "shapes-clip.pt"


@pytest.fixture(scope="module")
def encoder() -> ClipEncoder:
    return load_clip(str(CLIP), force_fp32=True, compile_images=False)


def picture(tmp_path: Path, name: str, *objects: Obj) -> Path:
    path = tmp_path / f"{name}.png"
    render(make_scene(list(objects)), random.Random(0), 128).save(path)
    return path


def test_regions_are_the_cells_of_the_last_map_in_the_joint_space(encoder: ClipEncoder) -> None:
    pixels = torch.randn(2, 3, encoder.input_resolution, encoder.input_resolution)
    regions = image_regions(encoder.model, pixels)
    assert regions.shape == (2, 9, encoder.dim)  # a 96-pixel input: a 3x3 map, one region per cell of the grid
    assert torch.equal(regions, image_regions(encoder.model, pixels))
    vit = load_clip("random:ViT-B/32", force_fp32=True, compile_images=False)
    assert image_regions(vit.model, torch.randn(1, 3, 224, 224)).shape == (1, 49, vit.dim)


def test_a_changed_cell_changes_its_region_most(encoder: ClipEncoder, tmp_path: Path) -> None:
    star = Obj((0, 0), "star", "red", "large")
    circle = Obj((2, 2), "circle", "blue", "large")
    one = picture(tmp_path, "one", star, circle)
    two = picture(tmp_path, "two", Obj((0, 0), "star", "green", "large"), circle)  # the star recoloured
    ids, regions, skipped = extract_regions(encoder, [Item(1, one), Item(2, two), Item(3, tmp_path / "gone.png")])
    assert ids.tolist() == [1, 2] and list(skipped) == [3] and regions.dtype == np.float16
    moved = np.linalg.norm(regions[0].astype(np.float32) - regions[1].astype(np.float32), axis=-1)
    assert moved.argmax() == 0  # the top-left cell, where the star is


def small_judge(dim: int = 128, objects: int = 5) -> Judge:
    torch.manual_seed(0)
    return Judge(JudgeConfig(dim=dim, cells=9, context=40, width=32, heads=2, objects=objects)).eval()


def test_a_judge_checkpoint_round_trips_and_scores_a_pool(encoder: ClipEncoder, tmp_path: Path) -> None:
    judge = small_judge()
    save_judge(judge, tmp_path / "judge.pt", clip_sha256=sha256(CLIP))
    stage = JudgeStage(load_judge(tmp_path / "judge.pt"), encoder)
    rng = np.random.default_rng(0)
    reference = rng.standard_normal((9, 128)).astype(np.float32)
    pool = rng.standard_normal((30, 9, 128)).astype(np.float32)
    first = rng.uniform(0, 1, 30).astype(np.float32)
    scores = stage.rerank("make the star red", reference, pool, first)
    again = JudgeStage(judge, encoder).rerank("make the star red", reference, pool, first)
    assert scores.shape == (30,) and np.allclose(scores, again, atol=1e-5)
    many = stage.rerank_many(["make the star red"] * 2, reference[None].repeat(2, 0), pool[None].repeat(2, 0),
                             first[None].repeat(2, 0))  # fmt: skip
    assert np.allclose(many[0], scores, atol=1e-4) and np.allclose(many[1], scores, atol=1e-4)
    assert stage.rerank("x", reference, pool[:0], first[:0]).shape == (0,)


def test_a_judge_applies_only_to_the_clip_it_was_trained_for(encoder: ClipEncoder, tmp_path: Path) -> None:
    save_judge(small_judge(), tmp_path / "mine.pt", clip_sha256=sha256(CLIP))
    save_judge(small_judge(), tmp_path / "other.pt", clip_sha256="0" * 64)
    assert judge_for(tmp_path / "mine.pt", encoder, CLIP) is not None
    assert judge_for(tmp_path / "other.pt", encoder, CLIP) is None
    assert judge_for(tmp_path / "missing.pt", encoder, CLIP) is None
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="is not a judge checkpoint"):
        load_judge(tmp_path / "bad.pt")


def test_a_version_keeps_regions_row_for_row(encoder: ClipEncoder, tmp_path: Path) -> None:
    star = Obj((0, 0), "star", "red", "large")
    files = {i: picture(tmp_path, f"p{i}", Obj((i % 3, 1), "circle", "blue", "small"), star) for i in (5, 7, 9)}
    features = np.random.default_rng(0).standard_normal((3, 128)).astype(np.float32)
    ids = np.array([9, 5, 7], np.int64)  # given out of order: the version sorts by id
    part = FeaturePart(ids, lambda: features)
    calls: list[list[int]] = []

    def paths(wanted: list[int]) -> dict[int, Path]:
        calls.append(wanted)
        return {i: files[i] for i in wanted if i in files}

    def regions(sorted_ids: np.ndarray) -> np.ndarray:
        return regions_for_version(encoder, sorted_ids, paths)

    version = write_version_parts(tmp_path / "index", [part], dim=128, encoder="e", combiner="c", regions=regions)
    loaded = load_version(version.path)
    assert loaded.regions is not None and loaded.regions.shape == (3, 9, 128)
    direct = extract_regions(encoder, [Item(7, files[7])])[1][0].astype(np.float32)
    assert np.allclose(loaded.regions_of([7])[0], direct, atol=1e-2)  # float16, batched otherwise
    # the next version copies what the previous one holds, and reads only the new picture
    files[11] = picture(tmp_path, "p11", star)
    calls.clear()
    kept = (loaded.ids, loaded.regions)
    again = regions_for_version(encoder, np.array([5, 7, 9, 11]), paths, kept)
    assert calls == [[11]] and np.array_equal(again[:3], loaded.regions)
    # a picture unreadable now gets zero regions, not a failed build
    blank = regions_for_version(encoder, np.array([12]), paths)
    assert blank.shape == (1, 9, 128) and not blank.any()
    with pytest.raises(SearchIndexError, match="regions were made for 1 of 3"):
        write_version_parts(tmp_path / "index", [part], dim=128, encoder="e", combiner="c",
                            regions=lambda ids: np.zeros((1, 9, 128), np.float16))  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "index").iterdir()) == ["v1"]  # nothing half written appears


@pytest.mark.slow
def test_evaluate_with_a_judge_that_adds_nothing_reproduces_the_combiner(
    shapes_world: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A judge whose own part is zero scores by the first stage's cosine alone, so `combiner+judge` must
    give the Combiner's figures exactly: the pool, the reference left out, the order and the metrics; and
    words alone, judged against its empty picture, the text ranking's."""
    from retrieval.cli import main

    judge = small_judge()
    with torch.no_grad():
        judge.head[-1].weight.zero_()
        judge.head[-1].bias.zero_()
    save_judge(judge, tmp_path / "flat.pt", clip_sha256=sha256(CLIP), blank=torch.zeros(9, judge.config.dim))
    models = CLIP.parent
    argv = ["evaluate", "--dataset", "shapes", "--root", str(shapes_world), "--clip", str(CLIP), "--mode", "combiner"]
    argv += ["--combiner", str(models / "shapes-combiner.pt"), "--open-requests", "--requests", "60"]
    argv += ["--descriptions", "10", "--judge", str(tmp_path / "flat.pt"), "--json"]
    assert main(argv) == 0
    opened = json.loads(capsys.readouterr().out)["open_requests"]
    assert opened["modes"]["combiner+judge"] == opened["modes"]["combiner"]
    assert opened["closed_wording_judged"] == opened["closed_wording"]
    judged_words = opened["from_words_judged"]
    assert judged_words.pop("mode") == "text+judge" and opened["from_words"].pop("mode") == "text"
    assert judged_words == opened["from_words"]


@pytest.mark.slow
def test_stage_four_trains_a_judge_beside_the_models_and_records_it(tmp_path: Path, shapes_world: Path) -> None:
    """`train-judge` on a copy of the committed models: the judge lands beside them, the manifest records the
    run and its checksum, the CLIP and Combiner are untouched, and the judge applies to that CLIP."""
    from retrieval.training.judge_train import JudgeSettings
    from retrieval.training.recipe import (
        CLIP_FILE,
        COMBINER_FILE,
        JUDGE_FILE,
        MANIFEST,
        train_judge_stage,
        verify_models,
    )

    models = tmp_path / "models"
    models.mkdir()
    for name in (CLIP_FILE, COMBINER_FILE, MANIFEST):
        shutil.copy2(CLIP.parent / name, models / name)
    settings = JudgeSettings(steps=4, batch=4, candidates=12, hardest=4, pool=40, validate_every=2,
                             validate_requests=20, width=32)  # fmt: skip
    manifest = train_judge_stage(shapes_world, models, settings=settings, seed=1)
    stage4 = manifest["stage4"]
    assert [h["step"] for h in stage4["history"]] == [0, 2, 4]
    assert {"combiner", "judged", "ceiling", "words", "score"} <= set(stage4["history"][0])
    assert {"text", "served"} == set(stage4["history"][-1]["words"])  # words alone, trained and measured
    assert stage4["clip_sha256"] == sha256(CLIP) and stage4["wall_seconds"] > 0
    assert set(manifest["files"]) == {CLIP_FILE, COMBINER_FILE, JUDGE_FILE} and verify_models(models) is None
    assert sha256(models / CLIP_FILE) == sha256(CLIP)
    encoder = load_clip(str(models / CLIP_FILE), force_fp32=True, compile_images=False)
    stage = judge_for(models / JUDGE_FILE, encoder, models / CLIP_FILE)
    assert stage is not None and stage.judge.config.objects == 61


def test_a_data_directory_made_before_the_judge_adopts_it_only_for_its_own_clip(tmp_path: Path) -> None:
    from retrieval.training.recipe import CLIP_FILE, JUDGE_FILE, MANIFEST, adopt_judge

    source, mine, other = tmp_path / "repo", tmp_path / "mine", tmp_path / "other"
    for folder in (source, mine, other):
        folder.mkdir()
    shutil.copy2(CLIP, source / CLIP_FILE)
    shutil.copy2(CLIP, mine / CLIP_FILE)
    (other / CLIP_FILE).write_bytes(b"a CLIP retrained by its owner")
    save_judge(small_judge(), source / JUDGE_FILE, clip_sha256=sha256(CLIP))
    files = {name: {"sha256": sha256(source / name)} for name in (CLIP_FILE, JUDGE_FILE)}
    (source / MANIFEST).write_text(json.dumps({"files": files}))
    assert adopt_judge(source, mine) and (mine / JUDGE_FILE).read_bytes() == (source / JUDGE_FILE).read_bytes()
    assert not adopt_judge(source, mine)  # once
    assert not adopt_judge(source, other) and not (other / JUDGE_FILE).exists()


def test_the_served_order_keeps_the_judges_first_and_brings_the_first_stages_best_near_the_top() -> None:
    """The fusion of the two orders: the judge's first stays first and, on random orders, the first stage's
    best is in the first five (the closed benchmark's exact target, which the judge alone sometimes sent past
    the first page)."""
    rng = np.random.default_rng(0)
    for _ in range(50):
        judge, first = rng.normal(size=200).astype(np.float32), np.sort(rng.normal(size=200))[::-1].copy()
        order = np.argsort(-fused(judge, first), kind="stable")
        assert order[0] == np.argmax(judge)
        assert 0 in order[:5]
    same = np.linspace(1, 0, 200, dtype=np.float32)
    assert (np.argsort(-fused(same, same), kind="stable") == np.arange(200)).all()  # agreeing orders stay put
