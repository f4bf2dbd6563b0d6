"""Stage 1: fine-tune CLIP's two encoders on triplets, combining with an element-wise sum (CLIP4Cir).

This is where the text encoder learns the language of edits. For each batch of triplets, every distinct
image in the batch (references and targets) is encoded once; a query's prediction (the preset's sum of
reference and text features: CLIP4Cir's `sum`, or `sum-normalized`) is scored against all of them at logit
scale 100 and trained with cross-entropy towards its target. Batches hold whole img_sets, so the siblings of
a target are in the denominator: the negatives that decide Recall@1. A query's own reference is not: the
evaluation never ranks it (CIRR's protocol), so training does not push the prediction away from it either.
Settings come from the dataset's preset (`retrieval.training.presets`).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from retrieval.datasets.base import SplitData, Triplet
from retrieval.evaluation.recall import evaluate_split, format_metrics
from retrieval.fusion.fuser import Fuser, Mode
from retrieval.models.clip_encoder import ClipEncoder, load_clip, trim_context
from retrieval.training.common import (
    Run,
    group_triplets,
    grouped_batches,
    log,
    seed_everything,
    train_epochs,
)
from retrieval.training.pixels import PixelCache
from retrieval.training.presets import FinetunePreset, describe, finetune_preset

LOGIT_SCALE = 100.0


def selection_score(metrics: dict[str, float]) -> float:
    """The validation figure that picks the best epoch: CIRR-format data weighs the hardest question
    (Recall_subset@1) with Recall@1 and @10; FashionIQ-like data uses the mean of Recall@10 and @50."""
    if "recall_subset@1" in metrics:
        return (metrics["recall@1"] + metrics["recall@10"] + metrics["recall_subset@1"]) / 3
    return (metrics["recall@10"] + metrics["recall@50"]) / 2


def caption_for(t: Triplet, rng: random.Random) -> str:
    return rng.choice(t.captions) if t.captions else t.caption


def sum_batch_loss(
    model: torch.nn.Module,
    cache: PixelCache,
    triplets: list[Triplet],
    rng: random.Random,
    context: int,
    combining: Mode = Mode.SUM,
) -> torch.Tensor:
    """The stage-1 loss of one batch (see the module docstring)."""
    import clip

    names = sorted({t.reference for t in triplets} | {t.target for t in triplets if t.target})
    row = {n: i for i, n in enumerate(names)}
    images = model.encode_image(cache.batch(names))  # type: ignore[operator]
    tokens = trim_context(clip.tokenize([caption_for(t, rng) for t in triplets], context_length=context, truncate=True))
    texts = model.encode_text(tokens)  # type: ignore[operator]
    ref_rows = torch.tensor([row[t.reference] for t in triplets])
    refs = images[ref_rows]
    if combining is Mode.SUM_NORMALIZED:
        predicted = F.normalize(F.normalize(refs, dim=-1) + F.normalize(texts, dim=-1), dim=-1)
    else:
        predicted = F.normalize(refs + texts, dim=-1)  # CLIP4Cir's element_wise_sum
    logits = LOGIT_SCALE * predicted @ F.normalize(images, dim=-1).T
    logits[torch.arange(len(triplets)), ref_rows] = -torch.inf  # the own reference is never a candidate
    labels = torch.tensor([row[t.target] for t in triplets if t.target])
    return F.cross_entropy(logits, labels)


def groups_per_batch_for(preset: FinetunePreset, groups: list[list[int]]) -> int:
    """Whole img_sets per batch: the preset's count, or as many as make about its batch size in triplets."""
    if preset.groups_per_batch:
        return preset.groups_per_batch
    mean = sum(len(g) for g in groups) / max(len(groups), 1)
    return max(1, round(preset.batch_size / max(mean, 1.0)))


def finetune_clip(
    train: SplitData,
    val: SplitData,
    clip_spec: str,
    out: Path,
    *,
    preset: FinetunePreset | None = None,
    epochs: int | None = None,
    groups_per_batch: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    preprocessing: str | None = None,
    max_minutes: float | None = None,
    restart: bool = False,
) -> dict[str, Any]:
    """Fine-tune `clip_spec` on `train` with the dataset's preset (arguments given override it); the best
    epoch by validation recall goes to `out` as ``{"CLIP": state_dict, "epoch", "preprocessing",
    "combining"}``; `<out>.last.pt` lets an interrupted run resume."""
    p = preset or finetune_preset(train.dataset)
    epochs = epochs or p.epochs
    lr = lr or p.lr
    kind = preprocessing or p.preprocessing
    seed_everything(seed)
    log(f"stage 1 settings: {describe(p) | {'epochs': epochs, 'lr': lr, 'preprocessing': kind}}")
    encoder = load_clip(clip_spec, preprocessing=kind)  # type: ignore[arg-type]
    model = encoder.model.float().train()
    targetpad = kind == "targetpad"
    cache = PixelCache.build(train.images, encoder.input_resolution, out.parent / "cache", targetpad=targetpad)
    triplets = [t for t in train.triplets if t.target]
    groups = group_triplets(triplets)
    per_batch = groups_per_batch or groups_per_batch_for(p, groups)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=p.weight_decay, eps=p.eps)
    steps_per_epoch = -(-len(groups) // per_batch)
    schedule = (
        torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=epochs * steps_per_epoch, pct_start=0.05)
        if p.schedule == "onecycle"
        else torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    )
    recorded = {"preprocessing": kind, "combining": p.combining.value}

    def validate(epoch: int, _loss: float) -> tuple[float, dict[str, Any]]:
        probe = ClipEncoder(model, encoder.preprocess, encoder.device, clip_spec)
        metrics = evaluate_split(probe, Fuser(None, encoder.dim), val, p.combining, show_progress=False)
        log(f"stage 1 epoch {epoch + 1}: validation ({p.combining.value}) {format_metrics(metrics)}")
        return selection_score(metrics), metrics

    run = Run("stage 1", "CLIP", model, optimizer, out, epochs, seed, max_minutes, restart, schedule, recorded)
    state = train_epochs(
        run,
        batches=lambda _epoch, rng: grouped_batches(groups, per_batch, rng),
        loss=lambda batch, rng: sum_batch_loss(
            model, cache, [triplets[i] for i in batch], rng, encoder.context_length, p.combining
        ),
        validate=validate,
    )
    return {"best_score": state.best, "best_epoch": float(state.best_epoch), "epochs": float(state.epoch), **recorded}
