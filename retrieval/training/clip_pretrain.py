"""Stage 0 (shapes only): contrastive pretraining of a tiny CLIP on (scene, description) pairs.

The model is `clip.model.CLIP` with small dimensions, so it saves, loads and runs through exactly the
code path of OpenAI's weights. Batches are made of whole families (a scene and its one-edit siblings),
so each description meets the near-identical pictures it must tell apart.
"""

from __future__ import annotations

import random
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from retrieval.datasets.cirr import load_cirr
from retrieval.datasets.shapes import describe
from retrieval.datasets.shapes_world import load_scenes
from retrieval.models.clip_encoder import trim_context
from retrieval.training.common import (
    Run,
    grouped_batches,
    log,
    seed_everything,
    train_epochs,
)
from retrieval.training.pixels import PixelCache

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import clip
    from clip.model import CLIP


@dataclass
class TinyClipConfig:
    """`clip.model.CLIP` arguments. Text width must be a multiple of 64 (CLIP derives heads from it)."""

    embed_dim: int = 128
    image_resolution: int = 96
    vision_layers: tuple[int, int, int, int] | int = (1, 1, 1, 1)
    vision_width: int = 8
    vision_patch_size: int | None = None
    context_length: int = 40
    vocab_size: int = 49408
    transformer_width: int = 128
    transformer_heads: int = 2
    transformer_layers: int = 3

    def build(self) -> CLIP:
        return CLIP(**asdict(self))


def families_of(names: list[str]) -> list[list[str]]:
    """Group image names `<split>-<family>-<member>` by family."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(name.rsplit("-", 1)[0], []).append(name)
    return list(groups.values())


def tokens(texts: list[str], context: int) -> torch.Tensor:
    return trim_context(clip.tokenize(texts, context_length=context, truncate=True))


@torch.no_grad()
def description_accuracy(model: CLIP, cache: PixelCache, scenes: dict, context: int, limit: int = 1200) -> float:
    """Image -> description top-1 accuracy among `limit` validation images (siblings included)."""
    model.eval()
    names = sorted(scenes)[:limit]
    rng = random.Random(0)
    img = torch.cat(
        [F.normalize(model.encode_image(cache.batch(names[i : i + 256])), dim=-1) for i in range(0, len(names), 256)]
    )
    txt = torch.cat(
        [
            F.normalize(
                model.encode_text(tokens([describe(scenes[n], rng) for n in names[i : i + 256]], context)), dim=-1
            )
            for i in range(0, len(names), 256)
        ]
    )
    model.train()
    return float(((img @ txt.T).argmax(1) == torch.arange(len(names))).float().mean())


def train_clip(
    root: Path,
    out: Path,
    *,
    config: TinyClipConfig | None = None,
    epochs: int = 20,
    families_per_batch: int = 24,
    lr: float = 1e-3,
    seed: int = 0,
    max_minutes: float | None = None,
    restart: bool = False,
    max_families: int | None = None,
) -> dict[str, float]:
    """Pretrain a tiny CLIP on the shapes world at `root`; the best epoch (by validation accuracy) goes to
    `out` as ``{"CLIP": state_dict}``; `<out>.last.pt` lets an interrupted run resume."""
    seed_everything(seed)
    config = config or TinyClipConfig()
    train, val = load_cirr(root, "train", dataset="shapes"), load_cirr(root, "val", dataset="shapes")
    scenes, val_scenes = load_scenes(root, "train"), load_scenes(root, "val")
    cache_dir = out.parent / "cache"
    cache = PixelCache.build(train.images, config.image_resolution, cache_dir)
    val_cache = PixelCache.build(val.images, config.image_resolution, cache_dir)
    groups = families_of(sorted(train.images))[:max_families]
    model = config.build().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    steps_per_epoch = -(-len(groups) // families_per_batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=epochs * steps_per_epoch, pct_start=0.05)

    def loss(batch: list[int], rng: random.Random) -> torch.Tensor:
        names = [n for g in batch for n in groups[g]]
        texts = [describe(scenes[n], rng, shuffle=True) for n in names]
        img = F.normalize(model.encode_image(cache.batch(names)), dim=-1)
        txt = F.normalize(model.encode_text(tokens(texts, config.context_length)), dim=-1)
        logits = model.logit_scale.exp().clamp(max=100) * img @ txt.T
        labels = torch.arange(len(names))
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2

    def validate(epoch: int, last_loss: float) -> tuple[float, dict[str, Any]]:
        accuracy = description_accuracy(model, val_cache, val_scenes, config.context_length)
        log(f"stage 0 epoch {epoch + 1}: validation image->description accuracy {accuracy:.3f}")
        return accuracy, {"loss": last_loss}

    flat = [[i] for i in range(len(groups))]
    run = Run("stage 0", "CLIP", model, optimizer, out, epochs, seed, max_minutes, restart, schedule)
    state = train_epochs(
        run, batches=lambda _epoch, rng: grouped_batches(flat, families_per_batch, rng), loss=loss, validate=validate
    )
    return {"best_val_description_accuracy": state.best, "epochs": float(state.epoch)}
