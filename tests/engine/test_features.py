"""Extraction: resumable after an interruption, bad files skipped with their reason, never aborting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from retrieval.extraction.features import ExtractionCancelled, Item, extract_features
from retrieval.extraction.images import ImageError, open_image
from retrieval.models.clip_encoder import load_clip
from tests.conftest import write_images


@pytest.fixture(scope="module")
def bomb_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 20000x20000 PNG (1-bit, so it is small on disk): 400 megapixels if decoded."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    Image.new("1", (20_000, 20_000)).save(path, optimize=False)
    return path


def bad_files(folder: Path, bomb: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.jpg").write_text("this is not an image")
    good = folder / "good.png"
    Image.new("RGB", (64, 64), "green").save(good)
    (folder / "truncated.png").write_bytes(good.read_bytes()[:60])
    return {
        "empty": folder / "empty.png",
        "text": folder / "text.jpg",
        "truncated": folder / "truncated.png",
        "bomb": bomb,
        "missing": folder / "gone.png",
    }


def test_open_image_explains_each_bad_file(tmp_path: Path, bomb_png: Path) -> None:
    files = bad_files(tmp_path, bomb_png)
    expected = {
        "empty": "empty",
        "text": "not an image",
        "truncated": "corrupt or truncated",
        "bomb": "megapixel limit",
        "missing": "does not exist",
    }
    for name, phrase in expected.items():
        with pytest.raises(ImageError, match=phrase):
            open_image(files[name])
    with pytest.raises(ImageError, match="empty"):
        open_image(b"")
    assert open_image(tmp_path / "good.png").size == (64, 64)
    gif = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (20, 20), c) for c in ("red", "blue")]
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    assert open_image(gif).getpixel((0, 0))[0] > 200  # the first frame, red


def test_extraction_skips_bad_files_and_resumes_after_interruption(
    tmp_path: Path, tiny_clip_checkpoint: Path, bomb_png: Path
) -> None:
    encoder = load_clip(str(tiny_clip_checkpoint))
    good = write_images(tmp_path / "images", 45)
    bad = bad_files(tmp_path / "bad", bomb_png)
    items = [Item(i, p) for i, p in enumerate(good)]
    bad_ids = {1000 + n: name for n, name in enumerate(bad)}
    items[10:10] = [Item(i, bad[name]) for i, name in bad_ids.items()]

    calls: list[int] = []

    def encode(pixels: torch.Tensor) -> np.ndarray:
        calls.append(len(pixels))
        return encoder.encode_image_batch(pixels)

    kwargs = dict(dim=encoder.dim, chunk_size=16, batch_size=8, show_progress=False)
    with pytest.raises(ExtractionCancelled):
        extract_features(
            items, encode, encoder.preprocess, tmp_path / "work", should_stop=lambda: len(calls) >= 5, **kwargs
        )  # type: ignore[arg-type]
    encoded_before = sum(calls)
    calls.clear()
    progress = []
    resumed = extract_features(
        items, encode, encoder.preprocess, tmp_path / "work", on_progress=progress.append, **kwargs
    )  # type: ignore[arg-type]
    assert resumed.resumed_chunks == 2  # two whole chunks of 16 were written before the stop
    assert sum(calls) == 45 - (32 - len(bad_ids))  # only what the written chunks did not hold
    assert encoded_before >= 32 - len(bad_ids)
    assert progress[-1].done == progress[-1].total == 50 and progress[-1].skipped == 5

    fresh = extract_features(items, encoder.encode_image_batch, encoder.preprocess, tmp_path / "fresh", **kwargs)  # type: ignore[arg-type]
    np.testing.assert_array_equal(resumed.ids, np.arange(45))
    np.testing.assert_allclose(resumed.features, fresh.features, atol=1e-6)
    assert set(resumed.skipped) == set(bad_ids)
    reasons = {bad_ids[i]: r for i, r in resumed.skipped.items()}
    assert "megapixel" in reasons["bomb"] and "empty" in reasons["empty"] and "does not exist" in reasons["missing"]

    # a changed input list is never mistaken for finished work
    changed = [Item(i + 5000, it.path) for i, it in enumerate(items)]
    again = extract_features(changed, encoder.encode_image_batch, encoder.preprocess, tmp_path / "work", **kwargs)  # type: ignore[arg-type]
    assert again.resumed_chunks == 0 and again.ids.min() == 5000
