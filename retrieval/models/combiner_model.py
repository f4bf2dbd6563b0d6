"""The CLIP4Cir Combiner (Baldrati et al., CVPR 2022): the network, its checkpoints, and its int8 copy.

Parameter names are CLIP4Cir's, so its published checkpoints (``{"Combiner": state_dict}``) load unchanged.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from retrieval.errors import CheckpointError
from retrieval.models.confine import confined_checkpoint

CHECKPOINT_KEYS = (
    "text_projection_layer.weight",
    "text_projection_layer.bias",
    "image_projection_layer.weight",
    "image_projection_layer.bias",
    "combiner_layer.weight",
    "combiner_layer.bias",
    "output_layer.weight",
    "output_layer.bias",
    "dynamic_scalar.0.weight",
    "dynamic_scalar.0.bias",
    "dynamic_scalar.3.weight",
    "dynamic_scalar.3.bias",
)


class Combiner(nn.Module):
    """CLIP4Cir's Combiner.

    Both inputs are CLIP features as CLIP outputs them (unnormalized), shape [batch, clip_dim]. The output,
    shape [batch, clip_dim], is L2-normalized and compared by inner product with normalized gallery features.
    """

    def __init__(self, clip_feature_dim: int, projection_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.text_projection_layer = nn.Linear(clip_feature_dim, projection_dim)
        self.image_projection_layer = nn.Linear(clip_feature_dim, projection_dim)
        self.dropout1 = nn.Dropout(0.5)
        self.dropout2 = nn.Dropout(0.5)
        self.combiner_layer = nn.Linear(projection_dim * 2, hidden_dim)
        self.output_layer = nn.Linear(hidden_dim, clip_feature_dim)
        self.dropout3 = nn.Dropout(0.5)
        # Indices 0 and 3 are the two Linear layers: the names CLIP4Cir's checkpoints use.
        self.dynamic_scalar = nn.Sequential(
            nn.Linear(projection_dim * 2, hidden_dim),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(hidden_dim, 1),
            nn.Sigmoid(),
        )
        self.logit_scale = 100

    @property
    def dims(self) -> tuple[int, int, int]:
        """(clip_feature_dim, projection_dim, hidden_dim)."""
        w = self.text_projection_layer.weight
        return int(w.shape[1]), int(w.shape[0]), int(self.combiner_layer.weight.shape[0])

    def combine_features(self, image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        """normalize(output + λ·text + (1−λ)·image), λ predicted from the projected pair."""
        text_projected = self.dropout1(F.relu(self.text_projection_layer(text_features)))
        image_projected = self.dropout2(F.relu(self.image_projection_layer(image_features)))
        raw_combined = torch.cat((text_projected, image_projected), -1)
        combined = self.dropout3(F.relu(self.combiner_layer(raw_combined)))
        dynamic_scalar = self.dynamic_scalar(raw_combined)
        output = self.output_layer(combined) + dynamic_scalar * text_features + (1 - dynamic_scalar) * image_features
        return F.normalize(output, dim=-1)

    def forward(
        self, image_features: torch.Tensor, text_features: torch.Tensor, target_features: torch.Tensor
    ) -> torch.Tensor:
        """Training logits [batch, batch]: each query against every target in the batch, scaled by 100."""
        predicted = self.combine_features(image_features, text_features)
        return self.logit_scale * predicted @ F.normalize(target_features, dim=-1).T


def save_combiner(combiner: Combiner, path: str | Path, **extra: Any) -> None:
    """Write CLIP4Cir's checkpoint format, ``{"Combiner": state_dict, ...extra}``, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"Combiner": combiner.state_dict(), **extra}, tmp)
    tmp.replace(path)


def load_combiner(
    path: str | Path, *, device: str | torch.device = "cpu", model_roots: Sequence[str | Path] | None = None
) -> Combiner:
    """Load a CLIP4Cir Combiner checkpoint (state dict, `weights_only`); the three dimensions are read from
    the weights. With `model_roots`, a file outside them is refused unread."""
    confined_checkpoint(path, model_roots, "Combiner checkpoint")
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Combiner checkpoint {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a file that is not a checkpoint
        raise CheckpointError(f"{path} is not a PyTorch checkpoint ({type(exc).__name__})") from None
    state = obj.get("Combiner", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds no Combiner state dict")
    missing = [k for k in CHECKPOINT_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{path} is not a CLIP4Cir Combiner checkpoint: missing {', '.join(missing[:3])}")
    projection_dim, clip_dim = state["text_projection_layer.weight"].shape
    hidden_dim = state["combiner_layer.weight"].shape[0]
    combiner = Combiner(int(clip_dim), int(projection_dim), int(hidden_dim))
    try:
        combiner.load_state_dict({k: state[k] for k in CHECKPOINT_KEYS})
    except RuntimeError as exc:
        raise CheckpointError(f"{path} has inconsistent Combiner shapes: {str(exc).splitlines()[-1].strip()}") from None
    return combiner.to(device).eval()


def quantized_combiner(combiner: Combiner) -> Combiner:
    """A copy of `combiner` whose Linear layers hold int8 weights (activations quantized per call)."""
    with warnings.catch_warnings():  # torch.ao.quantization is deprecated in favour of torchao, not installed
        warnings.simplefilter("ignore")
        quantized: Combiner = torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(combiner), {nn.Linear}, dtype=torch.qint8
        )
    return quantized.eval()
