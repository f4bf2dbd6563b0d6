"""A tiny shapes world trains and evaluates end to end through the command line, well above chance."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "retrieval", *args], cwd=REPO, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_tiny_world_trains_evaluates_and_submits(tmp_path: Path) -> None:
    world, models = tmp_path / "world", tmp_path / "models"
    assert cli("shapes", "--out", str(world), "--images", "900", "--seed", "3").returncode == 0
    steps = [
        (
            "train-clip",
            "--root",
            str(world),
            "--out",
            str(models / "clip0.pt"),
            "--epochs",
            "3",
            "--embed-dim",
            "64",
            "--resolution",
            "64",
        ),
        (
            "finetune-clip",
            "--dataset",
            "shapes",
            "--root",
            str(world),
            "--clip",
            str(models / "clip0.pt"),
            "--out",
            str(models / "clip1.pt"),
            "--epochs",
            "2",
        ),
        (
            "train-combiner",
            "--dataset",
            "shapes",
            "--root",
            str(world),
            "--clip",
            str(models / "clip1.pt"),
            "--out",
            str(models / "combiner.pt"),
            "--epochs",
            "3",
        ),
    ]
    for step in steps:
        done = cli(*step)
        assert done.returncode == 0, done.stderr[-2000:]
    assert (models / "clip1.last.pt").is_file()  # the resume point of an interrupted run
    done = cli(
        "evaluate",
        "--dataset",
        "shapes",
        "--root",
        str(world),
        "--split",
        "val",
        "--clip",
        str(models / "clip1.pt"),
        "--combiner",
        str(models / "combiner.pt"),
        "--mode",
        "combiner",
        "image",
        "--json",
        "--plot",
        str(tmp_path / "recall.png"),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)  # one JSON object on stdout; progress went to stderr
    chance_at_10 = 10 / (result["gallery"] - 1)
    assert result["mode"] == "combiner" and result["recall@10"] > 4 * chance_at_10  # the first mode, on top
    assert result["queries"] == 180 and "recall_subset@1" in result
    assert set(result["modes"]) == {"combiner", "image"}
    assert (tmp_path / "recall.png").stat().st_size > 1000

    done = cli(
        "cirr-submission",
        "--dataset",
        "shapes",
        "--root",
        str(world),
        "--clip",
        str(models / "clip1.pt"),
        "--combiner",
        str(models / "combiner.pt"),
        "--out",
        str(tmp_path / "submission"),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    recall = json.loads(Path(json.loads(done.stdout)["recall"]).read_text())
    assert recall["version"] == "rc2" and recall["metric"] == "recall" and len(recall) == 2 + 90


def test_bad_dataset_input_is_one_sentence(tmp_path: Path) -> None:
    done = cli("evaluate", "--dataset", "coco", "--root", str(tmp_path), "--clip", "x.pt", "--mode", "sum")
    assert done.returncode == 2 and "'coco'" in done.stderr  # refused by --dataset's choices, which it lists
    assert all(f"'{name}'" in done.stderr for name in ("cirr", "fashioniq", "shapes"))
    assert "Traceback" not in done.stderr
    done = cli("evaluate", "--dataset", "cirr", "--root", str(tmp_path / "nowhere"), "--clip", "x.pt", "--mode", "sum")
    assert done.returncode == 2 and "nowhere" in done.stderr and "layout" in done.stderr


@pytest.mark.slow
def test_stage_three_trains_on_a_models_folder_and_records_itself(tmp_path: Path, shapes_world: Path) -> None:
    """`train-open` on a copy of the committed models: CLIP4Cir-format checkpoints come back, the manifest
    records the stage (what it started from, its validation at step 0 and after), the image tower is
    untouched, and the models load and run."""
    import shutil

    import torch

    from retrieval.models.clip_encoder import load_clip
    from retrieval.models.combiner_model import load_combiner
    from retrieval.training.open_train import OpenSettings
    from retrieval.training.recipe import CLIP_FILE, COMBINER_FILE, MANIFEST, train_open_stage, verify_models

    models = tmp_path / "models"
    models.mkdir()
    for name in (CLIP_FILE, COMBINER_FILE, MANIFEST):
        shutil.copy2(REPO / "models" / "shapes" / name, models / name)
    settings = OpenSettings(steps=4, validate_every=2, open_per_image=1, description_pool=50, positives=32)
    manifest = train_open_stage(shapes_world, models, settings=settings, seed=1)
    stage3 = manifest["stage3"]
    assert [h["step"] for h in stage3["history"]] == [0, 2, 4]
    assert set(stage3["started_from"]) == {CLIP_FILE, COMBINER_FILE} and stage3["wall_seconds"] > 0
    assert manifest["stage3_runs"][-1] == stage3
    assert verify_models(models) is None  # the checksums are the new files'
    before = torch.load(REPO / "models" / "shapes" / CLIP_FILE, weights_only=True)["CLIP"]
    after = torch.load(models / CLIP_FILE, weights_only=True)["CLIP"]
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("visual."))
    encoder = load_clip(str(models / CLIP_FILE))
    assert load_combiner(models / COMBINER_FILE).dims[0] == encoder.dim
    assert encoder.encode_texts(["make the star red"]).shape == (1, encoder.dim)
