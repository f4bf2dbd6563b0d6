"""The CLIP4Cir Combiner (Baldrati et al., CVPR 2022) and the simpler fusions behind the same interface.

Parameter names are CLIP4Cir's, so its published checkpoints (``{"Combiner": state_dict}``) load unchanged.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from torch import nn

from retrieval.confine import confined_checkpoint
from retrieval.errors import CheckpointError

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


class Mode(StrEnum):
    """How a query's image and text features become one query feature."""

    COMBINER = "combiner"  # the trained Combiner
    SUM = "sum"  # CLIP4Cir's element_wise_sum: normalize(image + text), raw features added
    SUM_NORMALIZED = "sum-normalized"  # normalize(normalize(image) + normalize(text)): each side weighs the same
    TEXT = "text"  # the text alone
    IMAGE = "image"  # the reference image alone

    @property
    def needs_image(self) -> bool:
        return self is not Mode.TEXT

    @property
    def needs_text(self) -> bool:
        return self is not Mode.IMAGE


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


class Fuser:
    """Query features from (reference image features, text features) in any `Mode`: the engine's one
    place that knows how to combine. Inputs are raw CLIP features [n, dim]; outputs are normalized.

    `int8`: the Combiner's Linear layers get int8 weights (dynamic quantization, on a copy; CPU only), the
    choice `retrieval.precision` makes for real-size models: a turn's Combiner is bound by reading weights."""

    def __init__(self, combiner: Combiner | None, dim: int, *, int8: bool = False) -> None:
        if combiner is not None and combiner.dims[0] != dim:
            raise CheckpointError(
                f"the Combiner expects {combiner.dims[0]}-d CLIP features but the encoder gives {dim}-d ones"
            )
        self.device = next(combiner.parameters()).device if combiner is not None else torch.device("cpu")
        if combiner is not None and int8 and self.device.type == "cpu":
            combiner = quantized_combiner(combiner)  # int8 modules hold packed weights, no parameters
        self.combiner = combiner
        self.dim = dim

    @torch.inference_mode()
    def fuse(
        self, mode: Mode, image: NDArray[np.float32] | None, text: NDArray[np.float32] | None
    ) -> NDArray[np.float32]:
        mode = Mode(mode)
        if mode.needs_image and image is None:
            raise ValueError(f"mode {mode.value!r} needs a reference image")
        if mode.needs_text and text is None:
            raise ValueError(f"mode {mode.value!r} needs a text")
        if mode is Mode.COMBINER:
            if self.combiner is None:
                raise ValueError("no Combiner is loaded: use mode 'sum', 'sum-normalized', 'text' or 'image'")
            out = self.combiner.combine_features(
                torch.from_numpy(np.asarray(image, np.float32)).to(self.device),
                torch.from_numpy(np.asarray(text, np.float32)).to(self.device),
            )
            return out.cpu().numpy().astype(np.float32)
        if mode in (Mode.SUM, Mode.SUM_NORMALIZED):
            assert image is not None and text is not None
            return sum_features(mode, image, text)
        only = text if mode is Mode.TEXT else image
        assert only is not None
        return normalize(only)


def quantized_combiner(combiner: Combiner) -> Combiner:
    """A copy of `combiner` whose Linear layers hold int8 weights (activations quantized per call)."""
    with warnings.catch_warnings():  # torch.ao.quantization is deprecated in favour of torchao, not installed
        warnings.simplefilter("ignore")
        quantized: Combiner = torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(combiner), {nn.Linear}, dtype=torch.qint8
        )
    return quantized.eval()


def sum_features(mode: Mode, image: NDArray[np.float32], text: NDArray[np.float32]) -> NDArray[np.float32]:
    """The two sums. `sum` is CLIP4Cir's element_wise_sum, exactly: what its fine-tuned CLIPs were trained
    with, so the side with the larger norm weighs more. `sum-normalized` weighs both sides equally: what the
    committed shapes CLIP was fine-tuned with (its text features are ~3x longer than its image features),
    and the better choice for it (see the README's model figures)."""
    image, text = np.asarray(image, np.float32), np.asarray(text, np.float32)
    if Mode(mode) is Mode.SUM_NORMALIZED:
        return normalize(normalize(image) + normalize(text))
    return normalize(image + text)


def normalize(x: NDArray[np.float32]) -> NDArray[np.float32]:
    """Row-wise L2 normalization; zero rows stay zero instead of becoming NaN."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)
