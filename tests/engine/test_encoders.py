"""CLIP loading: checkpoints the project builds load through the same path as OpenAI's weights."""

from __future__ import annotations

import urllib.error
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms
from torchvision.transforms import InterpolationMode

from retrieval.errors import CheckpointError, ModelNotAvailable
from retrieval.models import clip_weights, preprocessing
from retrieval.models.clip_encoder import load_clip
from retrieval.models.preprocessing import TargetPad, make_preprocess
from tests.conftest import make_tiny_clip

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import clip


def test_state_dict_checkpoint_gives_the_models_own_features(tiny_clip_checkpoint: Path) -> None:
    encoder = load_clip(str(tiny_clip_checkpoint))
    model = make_tiny_clip()
    images = [Image.new("RGB", (50, 40), c) for c in ("red", "navy", "white")]
    texts = ["a red circle", "make it blue", "remove the small square"]
    with torch.no_grad():
        direct_img = model.encode_image(torch.stack([encoder.preprocess(im) for im in images])).numpy()
        direct_txt = model.encode_text(clip.tokenize(texts)).numpy()
    assert encoder.dim == 32 and encoder.input_resolution == 32
    np.testing.assert_allclose(encoder.encode_images(images), direct_img, atol=1e-5)
    np.testing.assert_allclose(encoder.encode_texts(texts), direct_txt, atol=1e-5)


def test_torchscript_and_clip4cir_checkpoints_load(tmp_path: Path, tiny_clip_checkpoint: Path) -> None:
    model = make_tiny_clip()
    tokens = clip.tokenize(["x"])
    with torch.no_grad():
        traced = torch.jit.trace(model, (torch.zeros(1, 3, 32, 32), tokens))
    traced.save(str(tmp_path / "jit.pt"))
    torch.save({"CLIP": model.state_dict(), "epoch": 3}, tmp_path / "finetuned.pt")
    reference = load_clip(str(tiny_clip_checkpoint)).encode_texts(["two green triangles"])
    for name in ("jit.pt", "finetuned.pt"):
        features = load_clip(str(tmp_path / name)).encode_texts(["two green triangles"])
        np.testing.assert_allclose(features, reference, atol=1e-5)


def test_cutting_the_context_to_the_longest_text_changes_nothing(tiny_clip_checkpoint: Path) -> None:
    encoder = load_clip(str(tiny_clip_checkpoint))
    texts = ["short", "a considerably longer modification text about a blue square moving left"]
    trimmed = encoder.tokenize(texts)
    assert trimmed.shape[1] < 77
    with torch.no_grad():
        full = encoder.model.encode_text(clip.tokenize(texts)).numpy()
    np.testing.assert_allclose(encoder.encode_texts(texts), full, atol=1e-5)


def test_texts_holding_token_zero_keep_their_end_token(tiny_clip_checkpoint: Path) -> None:
    """Id 0 is a real BPE token ("!"): the end token is found by the ids' argmax, as CLIP reads it."""
    encoder = load_clip(str(tiny_clip_checkpoint))
    texts = ["wow!(", "!$ make it red"]
    assert (clip.tokenize(texts) == 0)[:, :5].any()  # the texts really hold token 0
    with torch.no_grad():
        full = encoder.model.encode_text(clip.tokenize(texts)).numpy()
    np.testing.assert_allclose(encoder.encode_texts(texts), full, atol=1e-5)
    for text, expected in zip(texts, full, strict=True):  # alone in a batch, too
        np.testing.assert_allclose(encoder.encode_texts([text])[0], expected, atol=1e-5)


def test_any_text_is_encoded(tiny_clip_checkpoint: Path) -> None:
    encoder = load_clip(str(tiny_clip_checkpoint))
    texts = ["", "x" * 5000, "word " * 200, "🎉 make it 🔴 \x00\x07\x1b[31m", "<script>alert(1)</script>"]
    features = encoder.encode_texts(texts)
    assert features.shape == (5, 32) and features.dtype == np.float32
    assert np.isfinite(features).all()
    assert encoder.tokenize(["word " * 200]).shape[1] == 77  # truncated at the context, not an error


def test_missing_and_wrong_checkpoints_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_clip(str(tmp_path / "nope.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_clip(str(tmp_path / "junk.pt"))
    torch.save({"Combiner": {"output_layer.weight": torch.zeros(2, 2)}}, tmp_path / "combiner.pt")
    with pytest.raises(CheckpointError, match="not of a CLIP model"):
        load_clip(str(tmp_path / "combiner.pt"))
    state = make_tiny_clip().state_dict()
    state["visual.proj"] = torch.zeros(3, 3)  # wrong shape
    torch.save(state, tmp_path / "bent.pt")
    with pytest.raises(CheckpointError, match="known shape"):
        load_clip(str(tmp_path / "bent.pt"))


def test_named_model_offline_names_the_missing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(url: str, root: str) -> str:
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(clip_weights.clip.clip, "_download", offline)
    with pytest.raises(ModelNotAvailable) as err:
        load_clip("ViT-B/32", download_root=str(tmp_path))
    assert str(tmp_path / "ViT-B-32.pt") in str(err.value)
    assert "https://openaipublic.azureedge.net" in str(err.value)


def test_targetpad_keeps_wide_images_whole() -> None:
    wide = Image.new("RGB", (300, 100), "red")
    padded = TargetPad(1.25)(wide)
    assert padded.size == (300, 240)
    assert TargetPad(1.25)(Image.new("RGB", (110, 100))).size == (110, 100)  # close to square: untouched
    pixels = make_preprocess(32, "targetpad")(wide)
    assert pixels.shape == (3, 32, 32)
    with pytest.raises(ValueError, match="unknown preprocessing"):
        make_preprocess(32, "squash")  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P"])
def test_preprocessing_gives_torchvisions_normalized_tensor(mode: str) -> None:
    """The one-pass conversion stands in for ToTensor + Normalize, so features of an index built before it
    still match queries encoded after it. An RGB picture (what every decoded file is) is resized by torch's
    port of Pillow's filter: rounding apart, the same (tests/engine/test_pixels.py); other modes by Pillow."""
    rng = np.random.default_rng(3)
    picture = Image.fromarray(rng.integers(0, 255, (45, 61, 3), np.uint8)).convert(mode)
    reference = transforms.Compose(
        [
            transforms.Resize(32, interpolation=InterpolationMode.BICUBIC),
            transforms.CenterCrop(32),
            lambda image: image.convert("RGB"),
            transforms.ToTensor(),
            transforms.Normalize(preprocessing.CLIP_MEAN, preprocessing.CLIP_STD),
        ]
    )(picture)
    pixels = make_preprocess(32)(picture)
    assert pixels.shape == reference.shape == (3, 32, 32) and pixels.dtype == torch.float32
    levels = (pixels - reference).abs() * torch.tensor(preprocessing.CLIP_STD).view(3, 1, 1) * 255
    assert float(levels.max()) < (1.001 if mode == "RGB" else 1e-4)


def test_random_architecture_has_the_published_dimensions() -> None:
    model = clip_weights.build_random_clip("ViT-B/32")
    assert model.text_projection.shape == (512, 512) and model.visual.input_resolution == 224
    with pytest.raises(ModelNotAvailable, match="unknown CLIP architecture"):
        clip_weights.build_random_clip("RN9000")
