"""Decoded pixels for training, cached once per split and resolution.

Decoding and resizing every image every epoch would cost more than the tiny models themselves; so each
image is decoded, resized and centre-cropped once into a uint8 array [n, 3, R, R] stored as `.npy` beside
the run (memory-mapped on reuse). Normalization happens per batch, on float tensors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray
from torchvision import transforms
from torchvision.transforms import InterpolationMode
from tqdm import tqdm

from retrieval.extraction.images import ImageError, open_image
from retrieval.models.preprocessing import CLIP_MEAN, CLIP_STD, TargetPad

_MEAN = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
_STD = torch.tensor(CLIP_STD).view(1, 3, 1, 1)


class PixelCache:
    """uint8 pixels of named images. `batch(names)` gives CLIP-normalized float tensors."""

    def __init__(self, names: Sequence[str], pixels: NDArray[np.uint8]) -> None:
        self.names = list(names)
        self.row = {n: i for i, n in enumerate(self.names)}
        self.pixels = pixels

    @classmethod
    def build(
        cls, images: dict[str, Path], resolution: int, cache_dir: Path, *, targetpad: bool = False, workers: int = 2
    ) -> PixelCache:
        names = sorted(images)
        key = hashlib.sha1("\n".join(f"{n}={images[n]}" for n in names).encode()).hexdigest()[:12]
        path = Path(cache_dir) / f"pixels-{resolution}{'-tp' if targetpad else ''}-{key}.npy"
        if path.is_file():
            return cls(names, np.load(path, mmap_mode="r"))
        steps = [TargetPad()] if targetpad else []
        shape = transforms.Compose(
            [
                *steps,
                transforms.Resize(resolution, interpolation=InterpolationMode.BICUBIC),
                transforms.CenterCrop(resolution),
            ]
        )

        def load(name: str) -> NDArray[np.uint8]:
            try:
                return np.asarray(shape(open_image(images[name], draft_size=resolution * 2)), np.uint8).transpose(
                    2, 0, 1
                )
            except ImageError:
                return np.zeros((3, resolution, resolution), np.uint8)  # unreadable: a blank the loss can ignore

        pixels = np.empty((len(names), 3, resolution, resolution), np.uint8)
        with ThreadPoolExecutor(workers) as pool:
            for i, arr in enumerate(tqdm(pool.map(load, names), total=len(names), desc="decoding", unit="img")):
                pixels[i] = arr
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, pixels)
        tmp.replace(path)
        return cls(names, pixels)

    def batch(self, names: Sequence[str]) -> torch.Tensor:
        rows = np.array([self.row[n] for n in names])
        return to_model_input(torch.from_numpy(np.ascontiguousarray(self.pixels[rows])))


def to_model_input(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 [b, 3, R, R] -> CLIP-normalized float32."""
    return (pixels.float() / 255.0 - _MEAN) / _STD
