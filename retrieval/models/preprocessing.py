"""The pixels CLIP sees: CLIP's own preprocessing, or CLIP4Cir's target pad (the image padded to a square
before resizing, so wide pictures keep their edges)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar

import numpy as np
import torch
from PIL import Image
from torchvision import transforms
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as tv

with warnings.catch_warnings():  # clip imports pkg_resources, which warns about its own deprecation
    warnings.simplefilter("ignore")


Preprocessing = Literal["clip", "targetpad"]
ImageOrPixels = TypeVar("ImageOrPixels", Image.Image, torch.Tensor)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
TARGETPAD_RATIO = 1.25


class TargetPad:
    """CLIP4Cir's TargetPad: pad images whose aspect ratio exceeds `target_ratio` so the centre crop
    keeps the whole picture instead of cutting its sides off."""

    def __init__(self, target_ratio: float = TARGETPAD_RATIO) -> None:
        self.target_ratio = target_ratio

    def __call__(self, image: Image.Image) -> Image.Image:
        w, h = image.size
        if max(w, h) / min(w, h) < self.target_ratio:
            return image
        scaled_max_wh = max(w, h) / self.target_ratio
        hp = max(int((scaled_max_wh - w) / 2), 0)
        vp = max(int((scaled_max_wh - h) / 2), 0)
        padded = Image.new(image.mode, (w + 2 * hp, h + 2 * vp))
        padded.paste(image, (hp, vp))
        return padded


class ClipPixels:
    """What torchvision's Resize(resolution, bicubic), CenterCrop(resolution), ToTensor and Normalize make of a
    picture: CLIP's normalized [3, resolution, resolution] float32 tensor, the short side resized to
    `resolution` with Pillow's antialiased bicubic filter and the middle kept.

    An RGB picture (every decoded file is one: `open_image`) is resized by torch's uint8 port of Pillow's
    filter rather than by Pillow: the same kernel in the same fixed point, its results equal to Pillow's but
    for rounding (one level in under 1% of values; tests/engine/test_pixels.py), 4-8x faster (320x288 to
    224: 1.2 ms of a core in Pillow, 0.2 in torch). Indexing decodes on the encoder's cores, so this is
    worth it. Other modes take Pillow's path, which resizes some its own way (a palette by nearest pixel).
    The normalization is one pass from uint8 to float32 (equal to ToTensor then Normalize within 3e-7).
    Torch runs these operations with the calling thread's intra-op threads: a decoding thread should have
    one (`compute_threads_set_here`)."""

    def __init__(self, resolution: int, mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD) -> None:
        self.resolution = resolution
        self.scale = torch.tensor([1 / (255 * s) for s in std]).view(3, 1, 1)
        self.shift = torch.tensor([-m / s for m, s in zip(mean, std, strict=True)]).view(3, 1, 1)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        if image.mode == "RGB":  # [3, H, W] uint8, a view of the picture's H, W, 3
            pixels = self.resized(torch.from_numpy(np.array(image, np.uint8)).permute(2, 0, 1))
        else:
            pixels = torch.from_numpy(np.array(self.resized(image).convert("RGB"), np.uint8)).permute(2, 0, 1)
        # uint8 in, float32 out, in one pass: torch converts each value as it goes
        out = torch.empty(3, self.resolution, self.resolution)
        return torch.addcmul(self.shift, pixels, self.scale, out=out)

    def resized(self, image: ImageOrPixels) -> ImageOrPixels:
        """`image` resized (short side `resolution`, bicubic, antialiased) and centre-cropped, as it came: a
        Pillow image by Pillow, a [3, H, W] uint8 tensor by torch."""
        resized = tv.resize(image, [self.resolution], InterpolationMode.BICUBIC, antialias=True)
        return tv.center_crop(resized, [self.resolution])


def make_preprocess(resolution: int, kind: Preprocessing = "clip") -> Callable[[Image.Image], torch.Tensor]:
    """CLIP's own transform (bicubic resize, centre crop, normalize), optionally after TargetPad."""
    if kind not in ("clip", "targetpad"):
        raise ValueError(f"unknown preprocessing {kind!r}: use 'clip' or 'targetpad'")
    steps: list[Callable[..., Any]] = [TargetPad()] if kind == "targetpad" else []
    return transforms.Compose([*steps, ClipPixels(resolution)])
