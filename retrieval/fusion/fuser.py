"""A turn's query from its image and text features: the Combiner, or the simpler fusions behind the same
interface (`Mode`: combiner | sum | sum-normalized | text | image)."""

from __future__ import annotations

from enum import StrEnum

import numpy as np
import torch
from numpy.typing import NDArray

from retrieval.errors import CheckpointError
from retrieval.models.combiner_model import Combiner, quantized_combiner
from retrieval.vectors import normalize


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


class Fuser:
    """Query features from (reference image features, text features) in any `Mode`: the engine's one
    place that knows how to combine. Inputs are raw CLIP features [n, dim]; outputs are normalized.

    `int8`: the Combiner's Linear layers get int8 weights (dynamic quantization, on a copy; CPU only), the
    choice `retrieval.models.precision` makes for real-size models: a turn's Combiner is bound by reading weights."""

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


def sum_features(mode: Mode, image: NDArray[np.float32], text: NDArray[np.float32]) -> NDArray[np.float32]:
    """The two sums. `sum` is CLIP4Cir's element_wise_sum, exactly: what its fine-tuned CLIPs were trained
    with, so the side with the larger norm weighs more. `sum-normalized` weighs both sides equally: what the
    committed shapes CLIP was fine-tuned with (its text features are ~3x longer than its image features),
    and the better choice for it (see the README's model figures)."""
    image, text = np.asarray(image, np.float32), np.asarray(text, np.float32)
    if Mode(mode) is Mode.SUM_NORMALIZED:
        return normalize(normalize(image) + normalize(text))
    return normalize(image + text)
