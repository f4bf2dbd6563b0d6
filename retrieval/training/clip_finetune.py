"""Stage 1: fine-tune CLIP's two encoders on triplets, combining with the element-wise sum (CLIP4Cir).

This is where the text encoder learns the language of edits. For each batch of triplets, every distinct
image in the batch (references and targets) is encoded once; a query's prediction
normalize(normalize(reference) + normalize(text)) is scored against all of them at logit scale 100 and
trained with cross-entropy towards its target. Batches hold whole img_sets, so the siblings of a target
(and its own reference) are in the denominator: the negatives that decide Recall@1.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from retrieval.combiner import Fuser, Mode
from retrieval.datasets.base import SplitData, Triplet
from retrieval.encoders import ClipEncoder, load_clip
from retrieval.evaluate import evaluate_split, format_metrics
from retrieval.training.common import (
    Budget,
    RunState,
    close_epoch,
    group_triplets,
    grouped_batches,
    load_resume,
    log,
    seed_everything,
)
from retrieval.training.pixels import PixelCache

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
    model: torch.nn.Module, cache: PixelCache, triplets: list[Triplet], rng: random.Random, context: int
) -> torch.Tensor:
    """The stage-1 loss of one batch (see the module docstring)."""
    import clip

    names = sorted({t.reference for t in triplets} | {t.target for t in triplets if t.target})
    row = {n: i for i, n in enumerate(names)}
    images = model.encode_image(cache.batch(names))  # type: ignore[operator]
    tokens = clip.tokenize([caption_for(t, rng) for t in triplets], context_length=context, truncate=True)
    tokens = tokens[:, : int((tokens != 0).sum(1).max())]
    texts = model.encode_text(tokens)  # type: ignore[operator]
    refs = images[[row[t.reference] for t in triplets]]
    predicted = F.normalize(F.normalize(refs, dim=-1) + F.normalize(texts, dim=-1), dim=-1)
    logits = LOGIT_SCALE * predicted @ F.normalize(images, dim=-1).T
    labels = torch.tensor([row[t.target] for t in triplets if t.target])
    return F.cross_entropy(logits, labels)


def finetune_clip(
    train: SplitData,
    val: SplitData,
    clip_spec: str,
    out: Path,
    *,
    epochs: int = 10,
    groups_per_batch: int = 8,
    lr: float = 1e-4,
    seed: int = 0,
    targetpad: bool = False,
    max_minutes: float | None = None,
    restart: bool = False,
) -> dict[str, float]:
    """Fine-tune `clip_spec` on `train`; the best epoch by validation recall (sum mode) goes to `out`
    as ``{"CLIP": state_dict}``; `<out>.last.pt` lets an interrupted run resume."""
    seed_everything(seed)
    encoder = load_clip(clip_spec, preprocessing="targetpad" if targetpad else "clip")
    model = encoder.model.float().train()
    cache = PixelCache.build(train.images, encoder.input_resolution, out.parent / "cache", targetpad=targetpad)
    triplets = [t for t in train.triplets if t.target]
    groups = group_triplets(triplets)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    steps_per_epoch = -(-len(groups) // groups_per_batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=epochs * steps_per_epoch, pct_start=0.05)
    resume_path = out.with_suffix(".last.pt")
    state = (None if restart else load_resume(resume_path, model, optimizer, "CLIP")) or RunState()
    for _ in range(state.step):
        schedule.step()
    budget = Budget(max_minutes)
    for epoch in range(state.epoch, epochs):
        rng = random.Random(seed * 1000 + epoch)
        batches = list(grouped_batches(groups, groups_per_batch, rng))
        bar = tqdm(batches, desc=f"stage 1 epoch {epoch + 1}/{epochs}")
        for batch in bar:
            loss = sum_batch_loss(model, cache, [triplets[i] for i in batch], rng, encoder.context_length)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            state.step += 1
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if budget.spent():
                break  # out of time: finish this epoch here (validate, save) and stop
        model.eval()
        metrics = evaluate_split(
            ClipEncoder(model, encoder.preprocess, encoder.device, clip_spec),
            Fuser(None, encoder.dim),
            val,
            Mode.SUM,
            show_progress=False,
        )
        model.train()
        log(f"stage 1 epoch {epoch + 1}: validation (sum) {format_metrics(metrics)}")
        close_epoch(
            state,
            epoch,
            selection_score(metrics),
            metrics,
            best=out,
            resume=resume_path,
            key="CLIP",
            model=model,
            optimizer=optimizer,
        )
        if budget.spent():
            log(f"stopping after {max_minutes} minutes (resume with the same command)")
            break
    return {"best_score": state.best, "epochs": float(state.epoch)}
