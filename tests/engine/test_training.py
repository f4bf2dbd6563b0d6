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
