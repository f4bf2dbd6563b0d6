"""CLIP's weights: the published architectures, a model built from a state dict (architecture read from the
tensor shapes), random weights for speed measurements, and OpenAI's files by name when online."""

from __future__ import annotations

import os
import urllib.error
import warnings
from pathlib import Path
from typing import Any

import torch

with warnings.catch_warnings():  # clip imports pkg_resources, which warns about its own deprecation
    warnings.simplefilter("ignore")
    import clip
    from clip.model import CLIP, build_model

from retrieval.errors import CheckpointError, ModelNotAvailable

_NON_WEIGHT_KEYS = ("input_resolution", "context_length", "vocab_size")  # buffers in OpenAI's TorchScript files

# The published architectures, as `clip.model.CLIP` arguments: (embed_dim, image_resolution, vision_layers,
# vision_width, vision_patch_size, context_length, vocab_size, text_width, text_heads, text_layers).
ARCHITECTURES: dict[str, tuple[Any, ...]] = {
    "RN50": (1024, 224, (3, 4, 6, 3), 64, None, 77, 49408, 512, 8, 12),
    "RN101": (512, 224, (3, 4, 23, 3), 64, None, 77, 49408, 512, 8, 12),
    "RN50x4": (640, 288, (4, 6, 10, 6), 80, None, 77, 49408, 640, 10, 12),
    "RN50x16": (768, 384, (6, 8, 18, 8), 96, None, 77, 49408, 768, 12, 12),
    "RN50x64": (1024, 448, (3, 15, 36, 10), 128, None, 77, 49408, 1024, 16, 12),
    "ViT-B/32": (512, 224, 12, 768, 32, 77, 49408, 512, 8, 12),
    "ViT-B/16": (512, 224, 12, 768, 16, 77, 49408, 512, 8, 12),
    "ViT-L/14": (768, 224, 24, 1024, 14, 77, 49408, 768, 12, 12),
    "ViT-L/14@336px": (768, 336, 24, 1024, 14, 77, 49408, 768, 12, 12),
}


def build_clip(state_dict: dict[str, torch.Tensor], source: str) -> CLIP:
    """`clip.model.build_model` (architecture read from the tensor shapes), keeping float32 weights exact:
    build_model casts to fp16 before loading, which would round our fp32 checkpoints."""
    try:
        model = build_model(dict(state_dict)).float()
        model.load_state_dict({k: v for k, v in state_dict.items() if k not in _NON_WEIGHT_KEYS})
    except (KeyError, RuntimeError, AssertionError, ValueError, IndexError) as exc:
        detail = str(exc).splitlines()[0][:200]
        raise CheckpointError(f"{source} does not hold CLIP weights of a known shape ({detail})") from None
    return model.eval()


def build_random_clip(name: str, seed: int = 0) -> CLIP:
    """The named architecture with random weights: for speed and memory measurements only."""
    if name not in ARCHITECTURES:
        raise ModelNotAvailable(f"unknown CLIP architecture {name!r}; known: {', '.join(ARCHITECTURES)}")
    torch.manual_seed(seed)
    return CLIP(*ARCHITECTURES[name]).eval()


def named_model_file(name: str, download_root: str | None) -> str:
    """The path of an OpenAI model's file, downloading it when it is missing and the network allows."""
    root = download_root or os.path.expanduser("~/.cache/clip")
    url = clip.clip._MODELS[name]
    target = Path(root) / os.path.basename(url)
    if target.is_file():
        return str(target)
    try:
        return str(clip.clip._download(url, root))
    except (urllib.error.URLError, OSError, RuntimeError) as exc:
        raise ModelNotAvailable(
            f"CLIP model {name!r} is not on this machine and could not be downloaded ({exc}). "
            f"Fetch {url} on a connected machine and put it at {target}, or pass a checkpoint path instead."
        ) from None


def read_clip_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The CLIP state dict in `path`: a TorchScript archive, a plain state dict or CLIP4Cir's {"CLIP": ...}."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"CLIP checkpoint {path} does not exist; give an existing file or one of: {', '.join(ARCHITECTURES)}"
        )
    try:
        with warnings.catch_warnings():  # torch.jit.load warns that TorchScript is deprecated
            warnings.simplefilter("ignore", FutureWarning)
            archive = torch.jit.load(str(path), map_location="cpu")
        return dict(archive.state_dict().items())
    except (RuntimeError, ValueError):
        pass  # not TorchScript: a pickled state dict
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a file that is not a checkpoint
        raise CheckpointError(f"{path} is not a PyTorch checkpoint ({type(exc).__name__})") from None
    if isinstance(obj, dict) and isinstance(obj.get("CLIP"), dict):
        obj = obj["CLIP"]
    if not isinstance(obj, dict) or "text_projection" not in obj or "visual.conv1.weight" not in obj:
        raise CheckpointError(f"{path} is a checkpoint but not of a CLIP model (no 'text_projection' weights)")
    return dict(obj)
