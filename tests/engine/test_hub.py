"""The engine as researchers use it: torch.hub entry points over a local clone, offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from retrieval.errors import CheckpointError
from retrieval.fusion.fuser import Fuser, Mode
from retrieval.models.clip_encoder import ClipEncoder
from retrieval.models.combiner_model import Combiner

REPO = Path(__file__).resolve().parents[2]


def test_torch_hub_loads_the_committed_models_from_the_clone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO.parent)  # a relative checkpoint path falls back to the clone
    combiner = torch.hub.load(str(REPO), "combiner", source="local", checkpoint="models/shapes/shapes-combiner.pt")
    clip = torch.hub.load(str(REPO), "clip", source="local")  # the committed tiny shapes CLIP
    assert isinstance(combiner, Combiner) and not combiner.training
    assert isinstance(clip, ClipEncoder)

    text = clip.encode_texts(["make the circle red"])
    image = clip.encode_texts(["a small blue square"])  # stands in for an image feature of the same size
    query = Fuser(combiner, clip.dim).fuse(Mode.COMBINER, image, text)

    assert query.shape == (1, clip.dim)
    assert np.isclose(np.linalg.norm(query), 1.0, atol=1e-4)


def test_torch_hub_names_a_missing_checkpoint() -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        torch.hub.load(str(REPO), "combiner", source="local", checkpoint="models/none.pt")


def test_torch_hub_builds_a_random_architecture() -> None:
    clip = torch.hub.load(str(REPO), "clip", source="local", spec="random:RN50")
    assert clip.dim == 1024
