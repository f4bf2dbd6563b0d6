"""Encoder precision per machine and per path: the levers keep features within cosine 0.999 of fp32, are
chosen only where they were measured to win, and the fp32 setting turns them all off."""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from retrieval.models import precision as prec
from retrieval.models.clip_encoder import ClipEncoder, load_clip
from retrieval.models.precision import Precision, choose_precision
from retrieval.models.preprocessing import make_preprocess
from retrieval.models.text_int8 import Bf16SelfAttention

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from clip.model import CLIP

CPU = torch.device("cpu")
TEXTS = ["make the dress red and shorter", "", "a much longer text about a blue square that moves to the left"]


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="module")
def wide_text_clip() -> CLIP:
    """A real-width text tower (512, as ViT-B/32's) on a tiny image tower: big enough for int8 to apply."""
    torch.manual_seed(0)
    return CLIP(64, 32, (1, 1, 1, 1), 8, None, 77, 49408, 512, 8, 2).eval()


def test_the_cpu_decides_bf16_and_size_decides_each_lever(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prec, "onnx_runtime_available", lambda: False)  # PyTorch's own text paths
    monkeypatch.setattr(prec, "cpu_flags", lambda: frozenset({"avx2", "amx_bf16", "amx_int8"}))
    rn50x4 = choose_precision(device=CPU, resnet=True, image_resolution=288, text_width=640)
    assert (rn50x4.image, rn50x4.channels_last, rn50x4.text) == ("bf16", True, "bf16-int8")
    vit = choose_precision(device=CPU, resnet=False, image_resolution=224, text_width=512)
    assert (vit.image, vit.channels_last) == ("bf16", False)
    tiny = choose_precision(device=CPU, resnet=True, image_resolution=96, text_width=128)
    assert tiny == Precision.fp32()
    assert choose_precision(device=CPU, resnet=True, image_resolution=288, text_width=640, force_fp32=True) == (
        Precision.fp32()
    )
    monkeypatch.setattr(prec, "cpu_flags", lambda: frozenset({"avx2"}))  # this project's AMD machines
    plain = choose_precision(device=CPU, resnet=True, image_resolution=288, text_width=640)
    assert (plain.image, plain.channels_last, plain.text) == ("fp32", False, "int8")


def test_the_committed_model_keeps_exact_features_on_every_machine() -> None:
    encoder = load_clip(str(Path(__file__).parents[2] / "models/shapes/shapes-clip.pt"))
    assert encoder.precision.image == "fp32" and encoder.precision.text == "fp32"


@pytest.mark.parametrize("name", ["int8", "bf16-int8"])
def test_int8_text_stays_within_cosine_0999_and_any_context_gives_the_same_features(
    wide_text_clip: CLIP, name: str
) -> None:
    """int8 MLP weights, and (bf16-int8, a CPU with bf16 units) bf16 attention projections as well."""
    preprocess = make_preprocess(32)
    exact = ClipEncoder(wide_text_clip, preprocess, CPU, "wide", Precision.fp32(text_cache=0))
    fast = ClipEncoder(wide_text_clip, preprocess, CPU, "wide", replace(Precision.named(name), text_cache=0))
    assert fast.precision.text == ("bf16-int8" if name == "bf16-int8" else "int8")
    reference = exact.encode_texts(TEXTS)
    assert cosine(fast.encode_texts(TEXTS), reference).min() >= 0.999
    one_by_one = np.concatenate([fast.encode_texts([t]) for t in reversed(TEXTS)])[::-1]  # other context cuts
    assert cosine(one_by_one, reference).min() >= 0.999
    assert exact.model.transformer is wide_text_clip.transformer  # the int8 copy never replaces the fp32 model
    assert isinstance(exact.model.transformer.resblocks[0].mlp.c_fc, torch.nn.Linear)
    assert type(wide_text_clip.transformer.resblocks[0].attn) is torch.nn.MultiheadAttention
    fast_block = fast._text_tower().transformer.resblocks[0]
    assert type(fast_block.mlp.c_fc) is not torch.nn.Linear
    assert (type(fast_block.attn) is Bf16SelfAttention) == (name == "bf16-int8")


def test_the_onnx_text_tower_stays_within_cosine_0999_and_is_exported_once_per_cache(
    wide_text_clip: CLIP, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from retrieval.models import onnx_text

    exact = ClipEncoder(wide_text_clip, make_preprocess(32), CPU, "wide", Precision.fp32(text_cache=0))
    reference = exact.encode_texts(TEXTS)
    uncached = replace(Precision.named("onnx-int8"), text_cache=0)  # each call below computes its texts
    fast = ClipEncoder(wide_text_clip, make_preprocess(32), CPU, "wide", uncached, tmp_path)
    # Without VNNI (an AVX2 EPYC: 0.9989) the automatic choice never takes this tower; forced, it stays close.
    fidelity = 0.999 if prec.cpu_has_vnni() else 0.998
    assert cosine(fast.encode_texts(TEXTS), reference).min() >= fidelity
    one_by_one = np.concatenate([fast.encode_texts([t]) for t in reversed(TEXTS)])[::-1]  # other lengths
    assert cosine(one_by_one, reference).min() >= fidelity
    assert fast.precision.text == "onnx-int8" and len(list(tmp_path.glob("text-*.onnx"))) == 1

    def no_export(*_: object) -> None:
        raise AssertionError("exported again")

    monkeypatch.setattr(onnx_text, "export_int8", no_export)  # a second process finds it in the cache
    again = ClipEncoder(wide_text_clip, make_preprocess(32), CPU, "wide", Precision.named("onnx-int8"), tmp_path)
    again.prepare_text()
    assert again.precision.text == "onnx-int8"
    np.testing.assert_allclose(again.encode_texts(TEXTS), fast.encode_texts(TEXTS), rtol=0, atol=1e-6)


def test_a_failing_onnx_export_leaves_the_text_on_pytorch_int8(
    wide_text_clip: CLIP, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from retrieval.models import onnx_text

    def broken(*_: object) -> None:
        raise RuntimeError("the exporter is missing")

    monkeypatch.setattr(onnx_text, "export_int8", broken)
    exact = ClipEncoder(wide_text_clip, make_preprocess(32), CPU, "wide", Precision.fp32(text_cache=0))
    fast = ClipEncoder(wide_text_clip, make_preprocess(32), CPU, "wide", Precision.named("onnx-int8"), tmp_path)
    assert cosine(fast.encode_texts(TEXTS), exact.encode_texts(TEXTS)).min() >= 0.999
    assert fast.precision.text in ("int8", "bf16-int8")
    assert "the ONNX text tower failed: the exporter is missing" in caplog.text


def test_onnx_runtime_is_chosen_for_real_size_text_where_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prec, "cpu_flags", lambda: frozenset({"avx2", "avx512_vnni"}))
    monkeypatch.setattr(prec, "onnx_runtime_available", lambda: True)
    assert choose_precision(device=CPU, resnet=True, image_resolution=288, text_width=640).text == "onnx-int8"
    assert choose_precision(device=CPU, resnet=True, image_resolution=96, text_width=128).text == "fp32"
    monkeypatch.setattr(prec, "cpu_flags", lambda: frozenset({"avx2"}))  # no VNNI: its int8 saturates (0.997)
    assert choose_precision(device=CPU, resnet=True, image_resolution=288, text_width=640).text == "int8"
    monkeypatch.setattr(prec, "onnx_runtime_available", lambda: False)
    assert choose_precision(device=CPU, resnet=True, image_resolution=288, text_width=640).text == "int8"


def test_repeated_texts_come_from_a_bounded_cache(wide_text_clip: CLIP) -> None:
    encoder = ClipEncoder(wide_text_clip, make_preprocess(32), CPU, "wide", Precision.fp32(text_cache=2))
    first = encoder.encode_texts(["a", "b", "a"])
    np.testing.assert_array_equal(first[0], first[2])
    again = encoder.encode_texts(["b", "a"])
    np.testing.assert_array_equal(again, first[[1, 0]])
    again[0] += 1  # a caller changing its result must not change the cache
    np.testing.assert_array_equal(encoder.encode_texts(["b"])[0], first[1])
    encoder.encode_texts(["c", "d"])
    assert len(encoder._text_cache) == 2


def test_bf16_images_stay_within_cosine_0999(tiny_clip_checkpoint: Path) -> None:
    """bf16 is emulated on CPUs without bf16 units: the numbers are those an AMX machine computes."""
    exact = load_clip(str(tiny_clip_checkpoint), precision=Precision.fp32())
    fast = load_clip(str(tiny_clip_checkpoint), precision=Precision.named("bf16"))
    images = [Image.new("RGB", (50, 40), c) for c in ("red", "navy", "white", "green")]
    assert fast.model.visual.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert cosine(fast.encode_images(images), exact.encode_images(images)).min() >= 0.999


def test_compilation_and_the_int8_combiner_are_chosen_only_where_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prec, "cpu_flags", lambda: frozenset({"avx2"}))
    monkeypatch.setattr(prec, "has_compiler", lambda: True)
    rn50x4 = choose_precision(device=CPU, resnet=True, image_resolution=288, text_width=640)
    assert (rn50x4.compile_images, rn50x4.combiner) == (True, "int8")
    vit = choose_precision(device=CPU, resnet=False, image_resolution=224, text_width=512)
    assert (vit.compile_images, vit.combiner) == (False, "int8")  # ViT-B/32 gained 1.2x: not worth 80 s
    tiny = choose_precision(device=CPU, resnet=True, image_resolution=96, text_width=128)
    assert (tiny.compile_images, tiny.combiner) == (False, "fp32")
    off = choose_precision(device=CPU, resnet=True, image_resolution=288, text_width=640, compile_images=False)
    assert (off.compile_images, off.combiner) == (False, "int8")
    plain = choose_precision(device=CPU, resnet=True, image_resolution=288, text_width=640, force_fp32=True)
    assert not plain.compile_images and plain.combiner == "fp32"
    monkeypatch.setattr(prec, "has_compiler", lambda: False)  # a slim container: no C++ compiler for Inductor
    assert not choose_precision(device=CPU, resnet=True, image_resolution=288, text_width=640).compile_images


def test_the_int8_combiner_stays_within_cosine_0999_of_the_trained_one() -> None:
    """On the committed (trained) Combiner and real features of rendered shapes: the weights the lever would
    quantize at real size are trained ones, not random."""
    import random

    from retrieval.datasets.shapes import describe, random_scene, render
    from retrieval.fusion.fuser import Fuser, Mode
    from retrieval.models.combiner_model import load_combiner

    models = Path(__file__).parents[2] / "models/shapes"
    encoder = load_clip(str(models / "shapes-clip.pt"))
    combiner = load_combiner(models / "shapes-combiner.pt")
    rng = random.Random(0)
    scenes = [random_scene(rng) for _ in range(32)]
    images = encoder.encode_images([render(scene, rng, 128) for scene in scenes[:16]])
    texts = encoder.encode_texts([describe(scene, rng) for scene in scenes[16:]])
    exact = Fuser(combiner, encoder.dim).fuse(Mode.COMBINER, images, texts)
    fast = Fuser(combiner, encoder.dim, int8=True)
    assert cosine(fast.fuse(Mode.COMBINER, images, texts), exact).min() >= 0.999
    assert type(combiner.combiner_layer) is torch.nn.Linear  # the int8 copy never replaces the fp32 one
    assert fast.combiner is not None and type(fast.combiner.combiner_layer) is not torch.nn.Linear


@pytest.mark.slow
def test_compiled_image_batches_match_eager_at_any_batch_size(tiny_clip_checkpoint: Path) -> None:
    """Only for a job big enough to pay the compile back; then one compile, at the first batch of 8 or more:
    smaller batches are padded to it, larger ones run in pieces, and batches under 8 (an upload) stay eager."""
    exact = load_clip(str(tiny_clip_checkpoint), precision=Precision.fp32())
    fast = load_clip(str(tiny_clip_checkpoint), precision=Precision.named("fp32-compile"))
    rng = np.random.default_rng(1)
    images = [Image.fromarray(rng.integers(0, 255, (40, 50, 3), np.uint8)) for _ in range(21)]
    fast.encode_images(images)
    assert fast._compiled is None  # 21 pictures: not worth a compile
    fast.expect_images(1000)  # a reindex's chunk
    assert cosine(fast.encode_images(images[:2]), exact.encode_images(images[:2])).min() >= 0.9999
    assert fast._compiled is None  # two pictures: eager
    for batch in (10, 9, 21):
        got = fast.encode_images(images[:batch], batch_size=batch)
        assert cosine(got, exact.encode_images(images[:batch])).min() >= 0.9999
    assert fast._compiled is not None and fast._compiled_batch == 10
    assert fast.precision.compile_images


@pytest.mark.slow
def test_a_failing_compiler_falls_back_to_eager(
    tiny_clip_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import torch._inductor.config as inductor

    monkeypatch.setattr(inductor.cpp, "cxx", (None, str(tmp_path / "no-such-compiler")))
    monkeypatch.setattr(inductor, "fx_graph_cache", False)  # nothing compiled earlier may be reused
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    torch._dynamo.reset()
    exact = load_clip(str(tiny_clip_checkpoint), precision=Precision.fp32())
    fast = load_clip(str(tiny_clip_checkpoint), precision=Precision.named("fp32-compile"))
    images = [Image.new("RGB", (50, 40), c) for c in ("red", "navy", "white", "green")] * 3
    fast.expect_images(1000)
    assert cosine(fast.encode_images(images), exact.encode_images(images)).min() >= 0.9999
    assert not fast.precision.compile_images and fast._compiled is None
    assert "encoding images eager" in caplog.text


def test_a_worker_runs_the_int8_combiner_at_real_width_and_search_processes_never_compile(
    wide_text_clip: CLIP, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from retrieval.models.combiner_model import Combiner, save_combiner
    from workers.runtime import Runtime

    monkeypatch.setattr(prec, "cpu_flags", lambda: frozenset({"avx2"}))
    monkeypatch.setattr(prec, "BF16_MIN_IMAGE_RESOLUTION", 32)  # the tiny image tower counts as real size here
    monkeypatch.setattr(prec, "has_compiler", lambda: True)
    torch.save(wide_text_clip.state_dict(), tmp_path / "wide.pt")
    save_combiner(Combiner(64, 128, 256), tmp_path / "combiner.pt")
    index_process = Runtime().models(str(tmp_path / "wide.pt"), str(tmp_path / "combiner.pt"))
    assert index_process.encoder.precision.combiner == "int8"
    assert type(index_process.fuser.combiner.combiner_layer) is not torch.nn.Linear  # type: ignore[union-attr]
    assert index_process.encoder.precision.compile_images
    search_process = Runtime()
    search_process.compile_images = False  # what a search process sets at start (workers/tasks.py)
    assert not search_process.models(str(tmp_path / "wide.pt"), "sum").encoder.precision.compile_images


def test_a_text_run_at_its_real_length_gives_the_features_of_the_full_context(
    wide_text_clip: CLIP, tmp_path: Path
) -> None:
    """CLIP's text transformer is causal and reads its feature at the end token, so the positions after it
    change nothing: a turn's 8-12 tokens are run, not 77. Cosine 0.9999 to all 77 positions in fp32, in
    PyTorch and through the exported ONNX graph (its sequence axis is dynamic). The int8 graph quantizes
    each call's activations on their own range, so there the cut is as close as int8 itself (0.999)."""
    import clip

    from retrieval.models.onnx_text import OnnxTextTower, export_fp32, onnx_text_tower

    full = clip.tokenize(TEXTS, context_length=77)
    encoder = ClipEncoder(wide_text_clip, make_preprocess(32), CPU, "wide", Precision.fp32(text_cache=0))
    assert encoder.tokenize(TEXTS).shape[1] < 20  # the longest text's tokens, not the context
    with torch.inference_mode():
        reference = wide_text_clip.encode_text(full).numpy()
        assert cosine(wide_text_clip.encode_text(encoder.tokenize(TEXTS)).numpy(), reference).min() >= 0.9999
    export_fp32(wide_text_clip, tmp_path / "fp32.onnx")
    graph = OnnxTextTower(tmp_path / "fp32.onnx", threads=1)
    int8 = onnx_text_tower(wide_text_clip, cache_dir=tmp_path, threads=1)
    fidelity = 0.999 if prec.cpu_has_vnni() else 0.998
    for text, tokens, exact in zip(TEXTS, full, reference, strict=True):  # alone, as a turn runs it
        alone = encoder.tokenize([text])
        assert alone.shape[1] == max(int(tokens.argmax()) + 1, 2)
        assert cosine(graph.encode(alone), exact[None]).min() >= 0.9999
        assert cosine(graph.encode(alone), graph.encode(tokens[None])).min() >= 0.9999
        assert cosine(int8.encode(alone), exact[None]).min() >= fidelity
        assert cosine(int8.encode(alone), int8.encode(tokens[None])).min() >= fidelity
