"""torch.hub entry points, for loading cirweb's models from a local clone without the web project:

    import torch
    combiner = torch.hub.load("path/to/cirweb", "combiner", source="local",
                              checkpoint="models/shapes/shapes-combiner.pt")
    clip = torch.hub.load("path/to/cirweb", "clip", source="local", spec="models/shapes/shapes-clip.pt")
    features = clip.encode_texts(["make the circle red"])

Everything comes from local files (or CLIP's own cache for a model name); nothing is downloaded by these
entry points themselves. Relative checkpoint paths are taken from the current directory, then from the clone.
"""

from __future__ import annotations

from pathlib import Path

dependencies = ["torch", "numpy", "PIL", "clip", "faiss"]

_HERE = Path(__file__).resolve().parent
DEFAULT_CLIP = _HERE / "models" / "shapes" / "shapes-clip.pt"
DEFAULT_COMBINER = _HERE / "models" / "shapes" / "shapes-combiner.pt"


def _local(path: str | Path) -> Path:
    """`path` as given when it exists (or is absolute), else relative to this clone."""
    candidate = Path(path).expanduser()
    if candidate.is_absolute() or candidate.exists():
        return candidate
    return _HERE / candidate


def combiner(checkpoint: str | Path = DEFAULT_COMBINER, device: str = "cpu"):  # type: ignore[no-untyped-def]
    """A CLIP4Cir Combiner (`retrieval.combiner.Combiner`, eval mode) from a `{"Combiner": state_dict}`
    checkpoint; dimensions are read from the weights. Default: the committed shapes Combiner."""
    from retrieval.models.combiner_model import load_combiner

    return load_combiner(_local(checkpoint), device=device)


def clip(spec: str | Path = DEFAULT_CLIP, device: str = "cpu", preprocessing: str = "clip"):  # type: ignore[no-untyped-def]
    """A `retrieval.encoders.ClipEncoder` (`.model`, `.preprocess`, `.encode_images`, `.encode_texts`) from a
    checkpoint path (TorchScript archive, state dict or CLIP4Cir's `{"CLIP": ...}`), a CLIP model name
    already in CLIP's cache, or `random:<arch>`. Default: the committed tiny shapes CLIP."""
    from retrieval.models.clip_encoder import load_clip

    local = _local(spec)
    text = str(local) if local.is_file() else str(spec)  # else a model name or random:<arch>
    return load_clip(text, device=device, preprocessing=preprocessing)  # type: ignore[arg-type]
