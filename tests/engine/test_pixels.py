"""The pixels the model sees, made cheaper to make (issue 24): torch's resize of a decoded photo against
Pillow's, and a JPEG decoded at a fraction of its size against the whole decode, on photo-like JPEGs of
several sizes. The features must stay within cosine 0.9999 of those of the pixels made before."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFilter
from torchvision import transforms
from torchvision.transforms import InterpolationMode

from retrieval.extraction.features import ImageReader, Item, encoder_reader
from retrieval.extraction.images import open_image
from retrieval.models.clip_encoder import load_clip
from retrieval.models.preprocessing import CLIP_MEAN, CLIP_STD, make_preprocess
from retrieval.vectors import normalize

SHAPES_CLIP = Path(__file__).parents[2] / "models/shapes/shapes-clip.pt"  # trained, 96 px


def photo(width: int, height: int, seed: int) -> Image.Image:
    """A picture with what a JPEG codec sees in a photograph: smooth regions, edges softened by a lens,
    sensor grain."""
    rng = np.random.default_rng(seed)
    field = rng.integers(0, 256, (max(height // 64, 2), max(width // 64, 2), 3), np.uint8)
    picture = Image.fromarray(field).resize((width, height), Image.Resampling.BICUBIC)
    draw, longest = ImageDraw.Draw(picture), max(width, height)
    for _ in range(30):
        x, y, r = rng.integers(0, width), rng.integers(0, height), rng.integers(longest // 40, longest // 6)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.ellipse((x - r, y - r, x + r, y + r * rng.uniform(0.5, 1.5)), fill=colour)
    picture = picture.filter(ImageFilter.GaussianBlur(longest / 800))
    grain = rng.normal(0, 4, (height, width, 3))
    return Image.fromarray(np.clip(np.asarray(picture) + grain, 0, 255).astype(np.uint8))


def jpeg(folder: Path, width: int, height: int, seed: int = 0) -> Path:
    path = folder / f"photo-{width}x{height}-{seed}.jpg"
    photo(width, height, seed).save(path, quality=90)
    return path


def pixels_before(resolution: int) -> transforms.Compose:
    """The pixels the model saw before: torchvision's CLIP transform, every step on Pillow."""
    return transforms.Compose(
        [
            transforms.Resize(resolution, interpolation=InterpolationMode.BICUBIC),
            transforms.CenterCrop(resolution),
            transforms.ToTensor(),
            transforms.Normalize(CLIP_MEAN, CLIP_STD),
        ]
    )


def grey_levels(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|a - b| of normalized pixels [..., 3, H, W], in grey levels of 0..255."""
    return (a - b).abs() * torch.tensor(CLIP_STD).view(3, 1, 1) * 255


@pytest.mark.parametrize("size", [(320, 288), (500, 375), (375, 500), (1024, 768), (224, 300), (100, 80)])
def test_a_decoded_photo_is_resized_as_pillow_resizes_it(tmp_path: Path, size: tuple[int, int]) -> None:
    picture = open_image(jpeg(tmp_path, *size))
    now, before = make_preprocess(224)(picture), pixels_before(224)(picture)
    levels = grey_levels(now, before)
    assert now.shape == before.shape == (3, 224, 224) and now.dtype == torch.float32
    assert float(levels.max()) < 1.001  # rounding: at most one level
    assert float((levels > 0.5).float().mean()) < 0.01  # in under 1% of the values


@pytest.mark.parametrize("size", [(1600, 1200), (1200, 1600), (3000, 2000)])
def test_a_drafted_jpeg_gives_the_pixels_and_features_of_the_whole_decode(
    tmp_path: Path, size: tuple[int, int]
) -> None:
    """An index worker decodes a large JPEG at a power-of-two fraction of its size, never under twice the
    model's input, then resizes it with torch: against the whole decode resized by Pillow (the pixels of
    before), the model's pixels move by a fifth of a grey level on average, its features not at all."""
    path = jpeg(tmp_path, *size)
    assert open_image(path, draft_size=448).size < open_image(path).size  # it was drafted
    now, before = make_preprocess(224)(open_image(path, draft_size=448)), pixels_before(224)(open_image(path))
    assert float(grey_levels(now, before).mean()) < 0.5

    encoder = load_clip(str(SHAPES_CLIP))  # a trained model, of its own size: 96 px, drafted to 192
    resolution = encoder.input_resolution
    (batch,) = encoder_reader(encoder, batch_size=4).batches([Item(0, path)])  # as an index worker reads
    assert batch.pixels is not None and open_image(path, draft_size=2 * resolution).size < open_image(path).size
    features_now = encoder.encode_image_batch(batch.pixels)
    features_before = encoder.encode_image_batch(pixels_before(resolution)(open_image(path))[None])
    assert float((normalize(features_now) * normalize(features_before)).sum()) >= 0.9999


def test_decoding_threads_run_torch_on_one_thread_and_leave_the_encoders_alone(tmp_path: Path) -> None:
    """Each decoding thread resizes with one intra-op thread: with more it would start an OpenMP team of its
    own, whose threads spin on the cores the encoder's team uses. The encoder's thread keeps its number."""
    seen: list[int] = []
    preprocess = make_preprocess(32)

    def recording(picture: Image.Image) -> torch.Tensor:
        seen.append(torch.get_num_threads())
        return preprocess(picture)

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        items = [Item(i, jpeg(tmp_path, 64, 48, seed=i)) for i in range(6)]
        batches = list(ImageReader(recording, batch_size=3).batches(items))
        assert [len(b.ids) for b in batches] == [3, 3]
        assert seen == [1] * 6
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


def test_an_encoder_on_the_cpu_has_its_pictures_read_between_its_batches(tmp_path: Path) -> None:
    """Decoding beside a CPU encoder stalls its whole team of threads, so the index worker's reader reads a
    batch only when the encoder asks for it, on as many threads as the encoder has."""
    events: list[str] = []
    encoder = load_clip(str(SHAPES_CLIP))
    reader = encoder_reader(encoder, batch_size=2)
    preprocess = reader.preprocess

    def recording(picture: Image.Image) -> torch.Tensor:
        events.append("read")
        return preprocess(picture)

    reader.preprocess = recording
    items = [Item(i, jpeg(tmp_path, 64, 48, seed=i)) for i in range(6)]
    for batch in reader.batches(items):
        assert batch.pixels is not None
        encoder.encode_image_batch(batch.pixels)
        events.append("encode")
    assert events == ["read", "read", "encode"] * 3
    assert reader.workers == torch.get_num_threads() and reader.draft_size == 2 * encoder.input_resolution
