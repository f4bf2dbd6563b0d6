"""Shared fixtures: tiny real models (never mocks of the model) and generated images."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.live import live_services, shapes, shapes_world  # noqa: F401  (session fixtures, shared)
from tests.s3server import aws_env, new_bucket, s3_endpoint  # noqa: F401  (a local S3-compatible server)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from clip.model import CLIP


def make_tiny_clip(seed: int = 0) -> CLIP:
    """A real `clip.model.CLIP` with small dimensions: ViT vision tower, 32 px input, 32-d features."""
    torch.manual_seed(seed)
    return CLIP(32, 32, 2, 64, 8, 77, 49408, 64, 1, 2).eval()


@pytest.fixture(scope="session")
def tiny_clip_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("models") / "tiny-clip.pt"
    torch.save(make_tiny_clip().state_dict(), path)
    return path


def write_images(folder: Path, count: int, size: int = 40, seed: int = 0) -> list[Path]:
    """`count` distinct random-coloured PNGs."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        path = folder / f"img{i:04d}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths
