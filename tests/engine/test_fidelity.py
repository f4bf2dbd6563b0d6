"""CLIP4Cir fidelity beyond the formulas: presets, recorded preprocessing, and the training negatives."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from retrieval.datasets.base import Triplet
from retrieval.fusion.fuser import Mode
from retrieval.index.versions import load_version, write_version
from retrieval.models.preprocessing import TargetPad
from retrieval.models.provenance import model_record, recorded_preprocessing
from retrieval.training.clip_finetune import LOGIT_SCALE, sum_batch_loss
from retrieval.training.pixels import PixelCache
from retrieval.training.presets import combiner_preset, finetune_preset
from tests.conftest import make_tiny_clip, write_images
from workers.runtime import Runtime

MODELS = Path(__file__).resolve().parents[2] / "models" / "shapes"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "retrieval", *args], cwd=MODELS.parents[1], capture_output=True, text=True, timeout=900
    )


def test_real_datasets_get_clip4cirs_published_settings() -> None:
    for dataset in ("cirr", "fashioniq"):
        stage1, stage2 = finetune_preset(dataset), combiner_preset(dataset)
        assert (stage1.lr, stage1.batch_size, stage1.schedule) == (2e-6, 128, "constant")
        assert stage1.preprocessing == "targetpad"
        assert stage1.combining is Mode.SUM
        assert (stage2.lr, stage2.batch_size, stage2.preprocessing) == (2e-5, 4096, "targetpad")
    assert finetune_preset("shapes").lr == 1e-4  # the tiny model trained from scratch keeps its recipe


def test_recorded_preprocessing_is_what_workers_load(tmp_path: Path) -> None:
    path = tmp_path / "finetuned.pt"
    torch.save({"CLIP": make_tiny_clip().state_dict(), "epoch": 7, "preprocessing": "targetpad"}, path)
    assert recorded_preprocessing(str(path)) == "targetpad"
    assert recorded_preprocessing("RN50x4") == "clip"  # OpenAI's own weights: CLIP's preprocessing
    assert model_record(str(path))["best_epoch"] == 7
    models = Runtime().models(str(path), "sum")
    assert models.preprocessing == "targetpad"
    assert any(isinstance(step, TargetPad) for step in models.encoder.preprocess.transforms)  # type: ignore[attr-defined]
    ids, features = np.arange(3), np.eye(3, 32, dtype=np.float32)
    write_version(tmp_path / "v", ids, features, encoder=str(path), combiner="sum", preprocessing=models.preprocessing)
    assert load_version(tmp_path / "v" / "v1").meta.preprocessing == "targetpad"


def test_a_querys_own_reference_is_not_a_training_negative(tmp_path: Path) -> None:
    """The reference is usually the nearest image to the prediction; evaluation never ranks it, so the loss
    must not push away from it either: the loss equals cross-entropy over the other images only."""
    paths = write_images(tmp_path / "img", 4, size=32)
    images = {p.stem: p for p in paths}
    torch.manual_seed(0)
    model = make_tiny_clip().float()
    cache = PixelCache.build(images, 32, tmp_path / "cache")
    batch = [Triplet(0, "img0000", "make it red", "img0001"), Triplet(1, "img0002", "add a star", "img0003")]
    with torch.no_grad():
        loss = sum_batch_loss(model, cache, batch, random.Random(0), 77, Mode.SUM)
        names = sorted(images)
        feats = model.encode_image(cache.batch(names))
        import clip

        texts = model.encode_text(clip.tokenize(["make it red", "add a star"]))
        expected = []
        for q, (ref, target) in enumerate([(0, 1), (2, 3)]):
            predicted = F.normalize(feats[ref] + texts[q], dim=-1)
            scores = LOGIT_SCALE * F.normalize(feats, dim=-1) @ predicted
            keep = [i for i in range(4) if i != ref]
            expected.append(F.cross_entropy(scores[keep][None], torch.tensor([keep.index(target)])))
    np.testing.assert_allclose(float(loss), float(torch.stack(expected).mean()), rtol=1e-4)


@pytest.mark.slow
def test_committed_model_figures_recomputed_on_a_fixed_subset(tmp_path: Path) -> None:
    """The committed model, evaluated again on the first 100 val families of its world (seed 7, drawn
    again here), gives the committed figures (models/shapes/eval-val-subset.json) within 0.01."""
    committed = json.loads((MODELS / "eval-val-subset.json").read_text())
    world = committed["provenance"]["world"]
    drawn = world["drawn"]
    done = cli("shapes", "--out", str(tmp_path), "--images", str(world["images"]), "--seed", str(world["seed"]),
               "--render-splits", *drawn["splits"], "--render-families", str(drawn["families"]))  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    done = cli("evaluate", "--dataset", "shapes", "--root", str(tmp_path), "--split", "val",
               "--clip", str(MODELS / "shapes-clip.pt"), "--combiner", str(MODELS / "shapes-combiner.pt"),
               "--mode", *committed["modes"], "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    again = json.loads(done.stdout)
    assert again["queries"] == committed["queries"] == 600
    for mode, figures in committed["modes"].items():
        for key in ("recall@1", "recall@5", "recall@10", "recall@50", "recall_subset@1"):
            assert abs(again["modes"][mode][key] - figures[key]) <= 0.01, (mode, key)
    for name in ("clip", "combiner"):
        assert again["provenance"][name]["sha256"] == committed["provenance"][name]["sha256"]
    assert again["provenance"]["world"]["seed"] == 7
