"""Training settings per dataset: CLIP4Cir's published ones for CIRR and FashionIQ, the tiny model's for shapes.

CLIP4Cir (Baldrati et al., "Conditioned and composed image retrieval combining and partially fine-tuning
CLIP-based features", CVPR-W 2022; github.com/ABaldrati/CLIP4Cir, README "CLIP fine-tuning" and "Combiner
training", and src/clip_fine_tune.py, src/combiner_train.py) gives one command per stage for both datasets:

- stage 1: ``--num-epochs 100 --encoder both --learning-rate 2e-6 --batch-size 128 --transform targetpad
  --target-ratio 1.25``; AdamW with betas (0.9, 0.999), eps 1e-7 and PyTorch's default weight decay (0.01),
  a constant learning rate, element_wise_sum as the combining function, the best epoch by validation recall;
- stage 2: ``--projection-dim 2560 --hidden-dim 5120 --num-epochs 300 --combiner-lr 2e-5 --batch-size 4096
  --transform targetpad --target-ratio 1.25``; Adam, constant learning rate (the dimensions are 4x and 8x
  RN50x4's 640, our defaults).

A pretrained CLIP fine-tuned at the tiny model's 1e-4 with OneCycle would forget what it knew; these presets
are what `finetune-clip` and `train-combiner` use unless a flag overrides them.

The shapes preset is the committed model's recipe and stays as it was trained (so the manifest's command
reproduces it): a CLIP trained from scratch on one small world takes a learning rate 50x higher, and it was
fine-tuned with the per-side-normalized sum (`sum-normalized`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from retrieval.fusion.fuser import Mode
from retrieval.models.preprocessing import Preprocessing


@dataclass(frozen=True)
class FinetunePreset:
    """Stage 1. Batches are whole img_sets: `groups_per_batch` of them, or as many as make about
    `batch_size` triplets."""

    lr: float
    weight_decay: float
    schedule: Literal["constant", "onecycle"]
    batch_size: int
    epochs: int
    preprocessing: Preprocessing
    combining: Mode  # the sum the encoders are trained through (Mode.SUM or Mode.SUM_NORMALIZED)
    eps: float = 1e-8
    groups_per_batch: int | None = None


@dataclass(frozen=True)
class CombinerPreset:
    lr: float
    batch_size: int
    epochs: int
    preprocessing: Preprocessing


CLIP4CIR_FINETUNE = FinetunePreset(2e-6, 0.01, "constant", 128, 100, "targetpad", Mode.SUM, eps=1e-7)
CLIP4CIR_COMBINER = CombinerPreset(2e-5, 4096, 300, "targetpad")

FINETUNE_PRESETS: dict[str, FinetunePreset] = {
    "cirr": CLIP4CIR_FINETUNE,
    "fashioniq": CLIP4CIR_FINETUNE,
    "shapes": FinetunePreset(1e-4, 0.05, "onecycle", 0, 10, "clip", Mode.SUM_NORMALIZED, groups_per_batch=8),
}
COMBINER_PRESETS: dict[str, CombinerPreset] = {
    "cirr": CLIP4CIR_COMBINER,
    "fashioniq": CLIP4CIR_COMBINER,
    "shapes": CombinerPreset(2e-4, 256, 30, "clip"),
}


def finetune_preset(dataset: str) -> FinetunePreset:
    return FINETUNE_PRESETS.get(dataset, CLIP4CIR_FINETUNE)


def combiner_preset(dataset: str) -> CombinerPreset:
    return COMBINER_PRESETS.get(dataset, CLIP4CIR_COMBINER)


def describe(preset: FinetunePreset | CombinerPreset) -> dict[str, Any]:
    """The preset as JSON-friendly values, for logs and checkpoints."""
    return {k: (v.value if isinstance(v, Mode) else v) for k, v in asdict(preset).items()}
