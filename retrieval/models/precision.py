"""How each CLIP path runs on this machine: numeric precision, memory layout, and the text-feature cache.

The fastest choice differs by processor and by path, so it is made per path, not once for the model:

- images in batches (indexing): bf16 autocast pays off where the CPU has bf16 matrix units (AMX tiles or
  AVX-512 BF16); ResNet encoders also want channels_last there, since oneDNN's bf16 convolutions run on that
  layout. Without those units bf16 is emulated and slower than fp32, so images stay fp32.
- one short text (a turn): the work is a dozen tiny matrix products, bound by reading the weights, so
  bf16 autocast loses (it casts the fp32 weights on every call: 59 ms vs 40 ms on RN50x4 with AMX).
  int8 dynamic quantization of the MLP's Linear layers (one scale per output channel) reads a quarter of
  their bytes and wins on any x86 CPU with AVX2; PyTorch leaves the attention projections (a third of the
  weights) in fp32. Where the CPU has bf16 units those are held in bf16 too, converted once
  (`bf16-int8`): RN50x4 one text 17.6 ms against 23.7 int8 and 46.4 fp32, ViT-B/32 11.7 / 15.9 / 30.1, on
  one thread of an AMX Xeon, cosine 0.9993 either way (int8 for the attention too was 15 ms but cosine
  0.9986: not kept). Where ONNX Runtime is installed (requirements.txt), the whole text tower runs there with
  int8 MatMuls instead (`onnx-int8`, retrieval/models/onnx_text.py): 4.4 ms, cosine 0.9991, on the same machine.
  Used for real-size text towers only (width >= 512), where it was measured. PyTorch's int8 wins at
  one thread per process (RN50x4 19 ms vs 37 ms fp32 on a busy 2-core AMD EPYC); with two threads on cores
  that other work also wants, both paths stall waiting for the second thread (60-73 ms vs 100 ms), which
  is why search processes run one (`compute_threads_set`).
- the Combiner of a turn: one query through three wide Linear layers (RN50x4's reads 236 MB of fp32
  weights), bound by memory like the text; int8 dynamic quantization reads a quarter (RN50x4 size: 25.7 ms
  -> 9.8 ms at one thread on a busy AVX2 EPYC, cosine 0.99999 against fp32). Real sizes only, as for text.
- repeated texts (the same refinement asked again, another user's identical wording) come from an LRU.
- images in batches, ResNet towers: `torch.compile` (Inductor, with freezing: batch norms folded into the
  convolutions, weights pre-packed) on top of the precision above. RN50x4 fp32 at batch 8, one thread:
  1.87x eager, cosine 1.0; ViT-B/32 gained only 1.21x, not worth its compile time. Compiling costs about
  80 s once per process (Inductor's disk cache makes later processes faster) and needs a C++ compiler, so it
  is chosen only where one is found, happens only for work of `COMPILE_MIN_IMAGES` or more (where it pays for
  itself: RN50x4 eager encodes about 2 images/s on 2 cores, so compiling saves its cost back from about 400
  images), runs only batches of `COMPILE_MIN_BATCH` or more (an upload's single picture stays eager), and
  falls back to eager if compiling fails.

`choose_precision` makes the choice from the CPU's flags; `force_fp32` (the setting CIR_FORCE_FP32)
turns every lever off, leaving the plain fp32 eager model; `compile_images` False (CIR_COMPILE_IMAGES=0)
turns compilation alone off. Nothing here reads settings.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import os
import shutil
import warnings
from dataclasses import dataclass
from typing import Literal

import torch

with warnings.catch_warnings():  # clip imports pkg_resources, which warns about its own deprecation
    warnings.simplefilter("ignore")
    from clip.model import CLIP, ModifiedResNet

ImagePrecision = Literal["fp32", "bf16"]
# The turn's memory-bound paths. "int8": the text MLP's Linear layers int8 (the attention projections fp32);
# "bf16-int8": the same with the attention projections in bf16 (CPUs with bf16 units); "onnx-int8": the
# whole text tower on ONNX Runtime with int8 MatMuls (retrieval.models.onnx_text), where it is installed.
TextPrecision = Literal["fp32", "int8", "bf16-int8", "onnx-int8"]
CombinerPrecision = Literal["fp32", "int8"]
BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo flags of CPUs with native bf16 dot products
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # and of CPUs with int8 dot products (no 16-bit saturation)
# Levers are used only at the sizes where they were measured to win (the published architectures); the tiny
# shapes model keeps exact fp32 features on every machine.
INT8_MIN_TEXT_WIDTH = 512
BF16_MIN_IMAGE_RESOLUTION = 224
BASE_PRECISION_NAMES = ("fp32", "bf16", "int8", "bf16-int8", "onnx-int8")
PRECISION_NAMES = BASE_PRECISION_NAMES + tuple(f"{name}-compile" for name in BASE_PRECISION_NAMES)
COMPILE_MIN_BATCH = 8  # smaller image batches (an upload, a warm-up) run eager: never worth a compile
COMPILE_MIN_IMAGES = 512  # a smaller job (`ClipEncoder.expect_images`) runs eager unless already compiled
TEXT_CACHE_SIZE = 4096  # texts; a 640-d feature is 2.5 kB, so at most ~10 MB


@dataclass(frozen=True)
class Precision:
    """The per-path choice for one encoder.

    `image`: dtype the image tower computes in (features always come back as float32).
    `channels_last`: convolution layout for ResNet image towers.
    `text`: fp32; int8 weights in the text transformer's MLP Linear layers (activations quantized on the
    fly), its attention projections fp32 or (`bf16-int8`) bf16; or (`onnx-int8`) the whole text tower on
    ONNX Runtime with int8 MatMuls. `combiner`: int8 likewise for the Combiner's Linear layers (the Fuser
    applies it).
    `text_cache`: how many text features to keep (0: none).
    `compile_images`: run image batches through `torch.compile` (ResNet towers; see the module doc).
    """

    image: ImagePrecision = "fp32"
    channels_last: bool = False
    text: TextPrecision = "fp32"
    text_cache: int = TEXT_CACHE_SIZE
    combiner: CombinerPrecision = "fp32"
    compile_images: bool = False

    @classmethod
    def fp32(cls, text_cache: int = TEXT_CACHE_SIZE) -> Precision:
        """The plain model: every number as fp32 eager PyTorch computes it."""
        return cls("fp32", False, "fp32", text_cache)

    @classmethod
    def named(cls, name: str) -> Precision:
        """An explicit choice, for measuring each lever on any machine: fp32, bf16 (images in bf16 with
        channels_last), int8 (int8 text MLP and Combiner), bf16-int8 (both, and the text attention's
        projections in bf16) or onnx-int8 (the text on ONNX Runtime, the Combiner int8), each also with
        `-compile` (compiled image batches). On a CPU without bf16 units bf16 is emulated: the numbers are
        the same as on one that has them, the speed is not."""
        if name not in PRECISION_NAMES:
            raise ValueError(f"unknown precision {name!r}; choose one of {', '.join(PRECISION_NAMES)}")
        bf16, int8 = "bf16" in name, "int8" in name
        text: TextPrecision = ("bf16-int8" if bf16 else "int8") if int8 else "fp32"
        return cls(
            "bf16" if bf16 else "fp32",
            bf16,
            "onnx-int8" if name.startswith("onnx") else text,
            combiner="int8" if int8 else "fp32",
            compile_images=name.endswith("-compile"),
        )

    def describe(self) -> str:
        layout = "+channels_last" if self.channels_last else ""
        compiled = " compiled" if self.compile_images else ""
        return (
            f"image {self.image}{layout}{compiled}, text {self.text}, combiner {self.combiner}, "
            f"text cache {self.text_cache}"
        )


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags Linux reports (empty where /proc/cpuinfo is missing, e.g. macOS)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_bf16() -> bool:
    """Native bf16 matrix arithmetic: AMX tiles or AVX-512 BF16 (`lscpu` shows amx_bf16 / avx512_bf16)."""
    return any(flag in cpu_flags() for flag in BF16_FLAGS) and torch.backends.mkldnn.is_available()


def cpu_has_vnni() -> bool:
    """int8 dot products that accumulate in 32 bits: what ONNX Runtime's int8 text tower needs to keep cosine
    0.999 to fp32 (`retrieval.models.onnx_text`)."""
    return any(flag in cpu_flags() for flag in VNNI_FLAGS)


def cpu_has_int8_gemm() -> bool:
    """x86 int8 dynamic-quantized Linear kernels (fbgemm/x86 engine, AVX2 or better)."""
    engines = torch.backends.quantized.supported_engines
    return ("x86" in engines or "fbgemm" in engines) and "avx2" in cpu_flags()


def torch_int8_text() -> TextPrecision:
    """PyTorch's int8 text path for this CPU (also where ONNX Runtime is missing or its export failed)."""
    return "bf16-int8" if cpu_has_bf16() else "int8"


def onnx_runtime_available() -> bool:
    """ONNX Runtime and its exporter's dependencies are installed (requirements.txt has them)."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnx", "onnxscript"))


def has_compiler() -> bool:
    """A C++ compiler for Inductor's CPU kernels (`CXX` if set, else the usual names)."""
    names = [os.environ["CXX"]] if os.environ.get("CXX") else ["g++", "c++", "clang++"]
    return any(shutil.which(name) for name in names)


def choose_precision(
    *,
    device: torch.device,
    resnet: bool,
    image_resolution: int,
    text_width: int,
    force_fp32: bool = False,
    compile_images: bool = True,
    text_cache: int = TEXT_CACHE_SIZE,
) -> Precision:
    """The fastest fidelity-keeping choice for an encoder on `device` (see the module doc)."""
    if force_fp32 or device.type != "cpu":
        return Precision.fp32(text_cache)  # CUDA keeps OpenAI's fp16 weights, converted at load
    bf16 = cpu_has_bf16() and image_resolution >= BF16_MIN_IMAGE_RESOLUTION
    int8 = cpu_has_int8_gemm() and text_width >= INT8_MIN_TEXT_WIDTH
    compiled = compile_images and resnet and image_resolution >= BF16_MIN_IMAGE_RESOLUTION and has_compiler()
    return Precision(
        image="bf16" if bf16 else "fp32",
        channels_last=resnet and bf16,
        text=("onnx-int8" if onnx_runtime_available() and cpu_has_vnni() else torch_int8_text()) if int8 else "fp32",
        text_cache=text_cache,
        combiner="int8" if int8 else "fp32",
        compile_images=compiled,
    )


def precision_for(
    model: CLIP, *, device: torch.device, force_fp32: bool = False, compile_images: bool = True
) -> Precision:
    """`choose_precision` for a loaded CLIP model: its image tower's kind and size, its text width."""
    return choose_precision(
        device=device,
        resnet=isinstance(model.visual, ModifiedResNet),
        image_resolution=int(model.visual.input_resolution),
        text_width=int(model.transformer.width),
        force_fp32=force_fp32,
        compile_images=compile_images,
    )


def compute_threads_set(threads: int) -> None:
    """Intra-op threads of torch and Faiss in this process. A turn is one short text and one query: too
    little work per operation to share between threads, so a search process wants one (measured on a 2-core
    machine shared with other work: RN50x4's single text 37 ms with one thread, 100 ms with two; the demo's
    whole turn 2 ms vs 14 ms), and a second search process, not a second thread, uses a second core."""
    import faiss  # the engine's own dependency; imported here so that precision stays light to import

    torch.set_num_threads(max(1, threads))
    faiss.omp_set_num_threads(max(1, threads))


def compute_threads_set_here(threads: int) -> None:
    """Intra-op threads of torch for the calling thread alone: OpenMP keeps the number per thread, and
    `torch.set_num_threads` would change the whole process's. A thread that decodes pictures beside the
    encoder wants one: with more, each decoding thread starts an OpenMP team of its own, whose threads spin on
    the cores the encoder's team is using (a 1024x768 resize in a decoding thread: 2.8 ms with its own team
    of two on a busy 2-core EPYC, 1.0 ms alone). Where torch has no OpenMP runtime loaded, nothing changes."""
    torch.get_num_threads()  # torch sets a thread's number at its first parallel operation: let it, then ours
    runtime = _openmp_runtime()
    if runtime is not None:
        runtime.omp_set_num_threads(max(1, threads))


@functools.cache
def _openmp_runtime() -> ctypes.CDLL | None:
    """The OpenMP runtime already in this process (torch's), by the names its builds use; None if none is."""
    for name in ("libgomp.so.1", "libiomp5.so", "libomp.so"):
        try:
            return ctypes.CDLL(name, mode=os.RTLD_NOLOAD | os.RTLD_LAZY)  # only one already loaded
        except OSError:
            continue
    return None
