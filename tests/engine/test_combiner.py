"""The Combiner computes exactly CLIP4Cir's formula and loads CLIP4Cir's checkpoints unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from retrieval.errors import CheckpointError
from retrieval.fusion.fuser import Fuser, Mode
from retrieval.models.combiner_model import CHECKPOINT_KEYS, Combiner, load_combiner, save_combiner
from retrieval.vectors import normalize


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0)


def formula(state: dict[str, torch.Tensor], image: np.ndarray, text: np.ndarray) -> np.ndarray:
    """CLIP4Cir's combine_features, written again in numpy from the parameter names alone."""
    w = {k: v.numpy().astype(np.float64) for k, v in state.items()}

    def linear(name: str, x: np.ndarray) -> np.ndarray:
        return x @ w[f"{name}.weight"].T + w[f"{name}.bias"]

    t = relu(linear("text_projection_layer", text))
    i = relu(linear("image_projection_layer", image))
    raw = np.concatenate([t, i], axis=-1)  # text first, then image
    combined = relu(linear("combiner_layer", raw))
    lam = 1 / (1 + np.exp(-linear("dynamic_scalar.3", relu(linear("dynamic_scalar.0", raw)))))
    out = linear("output_layer", combined) + lam * text + (1 - lam) * image
    return out / np.linalg.norm(out, axis=-1, keepdims=True)


def test_output_matches_an_independent_computation() -> None:
    torch.manual_seed(0)
    combiner = Combiner(24, 40, 56).eval()
    rng = np.random.default_rng(0)
    image, text = rng.normal(size=(5, 24)).astype(np.float32), rng.normal(size=(5, 24)).astype(np.float32)
    fused = Fuser(combiner, 24).fuse(Mode.COMBINER, image, text)
    expected = formula(combiner.state_dict(), image.astype(np.float64), text.astype(np.float64))
    np.testing.assert_allclose(fused, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(fused, axis=1), 1.0, atol=1e-6)


def test_clip4cir_checkpoint_loads_unchanged_with_dimensions_inferred(tmp_path: Path) -> None:
    torch.manual_seed(1)
    original = Combiner(32, 48, 80).eval()
    # CLIP4Cir saves {"epoch": n, "Combiner": state_dict}; the state dict holds exactly these names.
    assert sorted(original.state_dict()) == sorted(CHECKPOINT_KEYS)
    torch.save({"epoch": 7, "Combiner": original.state_dict()}, tmp_path / "combiner.pt")
    loaded = load_combiner(tmp_path / "combiner.pt")
    assert loaded.dims == (32, 48, 80) and not loaded.training
    x, y = torch.randn(3, 32), torch.randn(3, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.combine_features(x, y), original.combine_features(x, y))


def test_save_load_round_trip(tmp_path: Path) -> None:
    combiner = Combiner(16, 20, 24).eval()
    save_combiner(combiner, tmp_path / "sub" / "c.pt", epoch=2, recall=0.5)
    raw = torch.load(tmp_path / "sub" / "c.pt", weights_only=True)
    assert raw["epoch"] == 2 and set(raw["Combiner"]) == set(CHECKPOINT_KEYS)
    loaded = load_combiner(tmp_path / "sub" / "c.pt")
    for key, value in combiner.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)


def test_bad_checkpoints_are_refused_with_a_reason(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_combiner(tmp_path / "missing.pt")
    state = Combiner(16, 20, 24).state_dict()
    del state["dynamic_scalar.3.weight"]
    torch.save({"Combiner": state}, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match=r"missing dynamic_scalar\.3\.weight"):
        load_combiner(tmp_path / "partial.pt")
    state = Combiner(16, 20, 24).state_dict()
    state["output_layer.weight"] = torch.zeros(7, 24)
    torch.save({"Combiner": state}, tmp_path / "bent.pt")
    with pytest.raises(CheckpointError, match="inconsistent"):
        load_combiner(tmp_path / "bent.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_combiner(tmp_path / "text.pt")
    with pytest.raises(CheckpointError, match="16-d CLIP features but the encoder gives 32-d"):
        Fuser(Combiner(16, 20, 24), 32)


def test_the_other_modes() -> None:
    rng = np.random.default_rng(3)
    image, text = rng.normal(size=(2, 8)).astype(np.float32), rng.normal(size=(2, 8)).astype(np.float32)
    fuser = Fuser(None, 8)
    text *= 5  # CLIP4Cir's element_wise_sum adds the raw features: the longer one weighs more
    clip4cir_sum = (image + text) / np.linalg.norm(image + text, axis=1, keepdims=True)
    np.testing.assert_allclose(fuser.fuse(Mode.SUM, image, text), clip4cir_sum, atol=1e-6)
    per_side = normalize(normalize(image) + normalize(text))
    np.testing.assert_allclose(fuser.fuse(Mode.SUM_NORMALIZED, image, text), per_side, atol=1e-6)
    assert not np.allclose(clip4cir_sum, per_side, atol=1e-3)
    np.testing.assert_allclose(fuser.fuse(Mode.TEXT, None, text), normalize(text), atol=1e-6)
    np.testing.assert_allclose(fuser.fuse(Mode.IMAGE, image, None), normalize(image), atol=1e-6)
    with pytest.raises(ValueError, match="needs a reference image"):
        fuser.fuse(Mode.SUM, None, text)
    with pytest.raises(ValueError, match="no Combiner is loaded"):
        fuser.fuse(Mode.COMBINER, image, text)
    assert np.all(normalize(np.zeros((1, 4), np.float32)) == 0)  # no NaN from a zero vector
