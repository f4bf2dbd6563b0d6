"""Stage 2: the Combiner on frozen, precomputed stage-1 features (Adam, logit scale 100, best checkpoint
by validation recall), as CLIP4Cir trains it.

With the features precomputed, scoring a prediction against the whole training gallery costs less than
the Combiner itself, so every step's softmax runs over all training images rather than the batch only:
the same cross-entropy, with every sibling of every target among the negatives; the query's own reference
is left out of them, as the evaluation never ranks it. Settings come from the dataset's preset
(`retrieval.training.presets`: CLIP4Cir's for CIRR and FashionIQ).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from retrieval.datasets.base import SplitData
from retrieval.evaluation.recall import encode_gallery, evaluate_split, format_metrics
from retrieval.fusion.fuser import Fuser, Mode
from retrieval.models.clip_encoder import load_clip
from retrieval.models.combiner_model import Combiner
from retrieval.training.clip_finetune import LOGIT_SCALE, selection_score
from retrieval.training.common import Run, log, seed_everything, train_epochs
from retrieval.training.presets import CombinerPreset, combiner_preset, describe


def train_combiner(
    train: SplitData,
    val: SplitData,
    clip_spec: str,
    out: Path,
    *,
    preset: CombinerPreset | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    projection_dim: int | None = None,
    hidden_dim: int | None = None,
    seed: int = 0,
    preprocessing: str | None = None,
    max_minutes: float | None = None,
    restart: bool = False,
) -> dict[str, Any]:
    """Train a Combiner for the CLIP at `clip_spec` with the dataset's preset (arguments given override it);
    the best epoch goes to `out` as ``{"Combiner": ..., "epoch", "preprocessing"}``."""
    p = preset or combiner_preset(train.dataset)
    epochs, batch_size, lr = epochs or p.epochs, batch_size or p.batch_size, lr or p.lr
    kind = preprocessing or p.preprocessing
    seed_everything(seed)
    chosen = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "preprocessing": kind}
    log(f"stage 2 settings: {describe(p) | chosen}")
    encoder = load_clip(clip_spec, preprocessing=kind)  # type: ignore[arg-type]
    dim = encoder.dim
    log("encoding the training and validation images with the frozen CLIP")
    gallery = encode_gallery(encoder, train.images)
    val_gallery = encode_gallery(encoder, val.images)
    triplets = [t for t in train.triplets if t.target in gallery.index and t.reference in gallery.index]
    captions = sorted({c for t in triplets for c in (t.captions or (t.caption,))})
    log(f"encoding {len(captions)} training captions")
    caption_row = {c: i for i, c in enumerate(captions)}
    caption_features = torch.from_numpy(encoder.encode_texts(captions, batch_size=256))
    images = torch.from_numpy(gallery.features)
    targets_all = F.normalize(images, dim=-1)
    ref_rows = torch.from_numpy(gallery.rows([t.reference for t in triplets]))
    target_rows = torch.from_numpy(gallery.rows([t.target for t in triplets]))  # type: ignore[misc]

    combiner = Combiner(dim, projection_dim or 4 * dim, hidden_dim or 8 * dim)
    optimizer = torch.optim.Adam(combiner.parameters(), lr=lr)

    def batches(epoch: int, _rng: random.Random) -> list[torch.Tensor]:
        order = torch.from_numpy(np.random.default_rng(seed * 1000 + epoch).permutation(len(triplets)))
        return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]

    def loss(idx: torch.Tensor, rng: random.Random) -> torch.Tensor:
        text_rows = [caption_row[rng.choice(triplets[i].captions or (triplets[i].caption,))] for i in idx.tolist()]
        predicted = combiner.combine_features(images[ref_rows[idx]], caption_features[text_rows])
        logits = LOGIT_SCALE * predicted @ targets_all.T
        logits[torch.arange(len(idx)), ref_rows[idx]] = -torch.inf  # the own reference is never a candidate
        return F.cross_entropy(logits, target_rows[idx])

    def validate(epoch: int, _loss: float) -> tuple[float, dict[str, Any]]:
        fuser = Fuser(combiner, dim)
        metrics = evaluate_split(encoder, fuser, val, Mode.COMBINER, gallery=val_gallery, show_progress=False)
        log(f"stage 2 epoch {epoch + 1}: validation (combiner) {format_metrics(metrics)}")
        return selection_score(metrics), metrics

    run = Run("stage 2", "Combiner", combiner, optimizer, out, epochs, seed, max_minutes, restart)
    run.recorded = {"preprocessing": kind}
    state = train_epochs(run, batches=batches, loss=loss, validate=validate)
    return {
        "best_score": state.best,
        "best_epoch": float(state.best_epoch),
        "epochs": float(state.epoch),
        "preprocessing": kind,
    }
