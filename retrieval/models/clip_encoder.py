"""CLIP loading and batched encoding.

One entry point, `load_clip(spec)`, whatever the weights are:

- an OpenAI model name (``"RN50x4"``, ``"ViT-B/32"`` ...): the `clip` package's file, downloaded into its
  cache when online; offline, a `ModelNotAvailable` names the file to fetch and where to put it;
- a checkpoint path: a TorchScript archive or a state dict as `clip.load` accepts, or CLIP4Cir's
  fine-tuned ``{"CLIP": state_dict}``; the architecture is read from the tensor shapes;
- ``"random:<name>"``: the named architecture with random weights, which costs exactly what the trained
  model costs to run (used for speed measurements on machines without the weights).

Features come back as float32 arrays, unnormalized, as CLIP4Cir feeds them to its Combiner. How each path
computes them (precision, layout, text cache) is chosen per machine by `retrieval.models.precision`.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image

with warnings.catch_warnings():  # clip imports pkg_resources, which warns about its own deprecation
    warnings.simplefilter("ignore")
    import clip
    from clip.model import CLIP, convert_weights

from retrieval.models.clip_weights import (
    ARCHITECTURES,
    build_clip,
    build_random_clip,
    named_model_file,
    read_clip_state_dict,
)
from retrieval.models.confine import confined_checkpoint
from retrieval.models.onnx_text import OnnxTextTower, onnx_text_tower
from retrieval.models.precision import COMPILE_MIN_BATCH, COMPILE_MIN_IMAGES, Precision, precision_for, torch_int8_text
from retrieval.models.preprocessing import Preprocessing, make_preprocess
from retrieval.models.text_int8 import quantized_text_view

log = logging.getLogger(__name__)


def trim_context(tokens: torch.Tensor) -> torch.Tensor:
    """Cut token ids [n, L] after the last end-of-text token of the batch. The end token is found as the
    ids' argmax (it has the largest id), exactly as CLIP reads its feature there: counting non-zero ids
    would be wrong, because id 0 is a real token ("!"), and "wow!(" would lose its end token."""
    longest = int(tokens.argmax(dim=1).max()) + 1 if len(tokens) else 1
    return tokens[:, : max(longest, 2)]


def resolve_device(device: str) -> torch.device:
    """'auto' picks CUDA when present; anything else is passed to torch."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass
class ClipEncoder:
    """A loaded CLIP model with its preprocessing: the one object that turns pixels and words into features."""

    model: CLIP
    preprocess: Callable[[Image.Image], torch.Tensor]
    device: torch.device
    spec: str
    precision: Precision = field(default_factory=Precision.fp32)
    _text_model: CLIP | None = field(default=None, init=False, repr=False)
    onnx_cache: Path | None = None  # where the ONNX text tower is kept (retrieval.models.onnx_text; None: its default)
    _onnx_text: OnnxTextTower | None = field(default=None, init=False, repr=False)
    _compiled: Callable[[torch.Tensor], torch.Tensor] | None = field(default=None, init=False, repr=False)
    _compiled_batch: int = field(default=0, init=False, repr=False)  # the one batch shape it was compiled for
    _expected: int = field(default=0, init=False, repr=False)  # the most images a caller said were coming
    _text_cache: OrderedDict[str, NDArray[np.float32]] = field(default_factory=OrderedDict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.precision.channels_last:
            self.model.visual.to(memory_format=torch.channels_last)

    @property
    def dim(self) -> int:
        return int(self.model.text_projection.shape[1])

    @property
    def input_resolution(self) -> int:
        return int(self.model.visual.input_resolution)

    @property
    def context_length(self) -> int:
        return int(self.model.context_length)

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """Token ids, shape [n, L]: truncated past the context, never an error; the context is cut to the
        longest text in the batch, which gives the same features (the text encoder is causal) much faster."""
        return trim_context(clip.tokenize(list(texts), context_length=self.context_length, truncate=True))

    @torch.inference_mode()
    def encode_image_batch(self, pixels: torch.Tensor) -> NDArray[np.float32]:
        """Features of preprocessed images, shape [n, dim], unnormalized, in the image path's precision."""
        pixels = pixels.to(self.device, self.dtype)
        if self.precision.channels_last:
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision.image == "bf16"):
            features = self._compiled_images(pixels) if self._compile_wanted(len(pixels)) else None
            if features is None:
                features = self.model.encode_image(pixels)
        return features.float().cpu().numpy()

    def expect_images(self, count: int) -> None:
        """Say how many images are coming (a chunk, a gallery): the image tower is compiled, where the
        precision says so, only for work of COMPILE_MIN_IMAGES or more, which pays its compile back."""
        self._expected = max(self._expected, count)

    def _compile_wanted(self, n: int) -> bool:
        if not self.precision.compile_images or n < COMPILE_MIN_BATCH or self.device.type != "cpu":
            return False
        return self._compiled is not None or self._expected >= COMPILE_MIN_IMAGES

    def _compiled_images(self, pixels: torch.Tensor) -> torch.Tensor | None:
        """The image tower compiled for one batch shape (the first batch of COMPILE_MIN_BATCH or more): a
        smaller batch is padded to it, a larger one runs in pieces, so nothing ever compiles twice. None
        when compiling failed (no working compiler): the caller runs eager, now and from then on."""
        with self._lock:
            if self._compiled is None and self.precision.compile_images:
                self._compiled_batch = len(pixels)
                self._compiled = torch.compile(self.model.visual, options={"freezing": True}, dynamic=False)
            compiled, size = self._compiled, self._compiled_batch
        if compiled is None:
            return None
        pieces = []
        try:
            for start in range(0, len(pixels), size):
                piece = pixels[start : start + size]
                padded = torch.cat([piece, piece.new_zeros((size - len(piece), *piece.shape[1:]))])
                pieces.append(compiled(padded)[: len(piece)])
        except Exception as exc:  # Inductor raises many types when the compiler or its toolchain is missing
            reason = (str(exc).splitlines() or [type(exc).__name__])[0]
            log.warning("compiling the image tower failed (%s); encoding images eager", reason)
            with self._lock:
                self._compiled, self.precision = None, replace(self.precision, compile_images=False)
            return None
        return torch.cat(pieces)

    def encode_images(self, images: Sequence[Image.Image], batch_size: int = 32) -> NDArray[np.float32]:
        """Features of PIL images, shape [n, dim], unnormalized."""
        self.expect_images(len(images))
        out = [
            self.encode_image_batch(torch.stack([self.preprocess(im) for im in images[i : i + batch_size]]))
            for i in range(0, len(images), batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def encode_texts(self, texts: Sequence[str], batch_size: int = 32) -> NDArray[np.float32]:
        """Features of texts, shape [n, dim], unnormalized. Any string is accepted: empty, emoji, control
        characters, or longer than the context (truncated). Texts seen recently come from the LRU."""
        texts = list(texts)
        found = self._cached(texts)
        missing = list(dict.fromkeys(t for t in texts if t not in found))
        if missing:
            computed = self._encode_texts_now(missing, batch_size)
            found.update(zip(missing, computed, strict=True))
            self._remember(missing, computed)
        return np.stack([found[t] for t in texts]) if texts else np.zeros((0, self.dim), np.float32)

    @torch.inference_mode()
    def _encode_texts_now(self, texts: list[str], batch_size: int) -> NDArray[np.float32]:
        onnx = self._onnx_tower() if self.precision.text == "onnx-int8" else None
        if onnx is not None:
            batches = range(0, len(texts), batch_size)
            return np.concatenate([onnx.encode(self.tokenize(texts[i : i + batch_size])) for i in batches])
        model = self._text_tower()
        out = []
        for i in range(0, len(texts), batch_size):
            tokens = self.tokenize(texts[i : i + batch_size]).to(self.device)
            out.append(model.encode_text(tokens).float().cpu().numpy())
        return np.concatenate(out)

    def _cached(self, texts: list[str]) -> dict[str, NDArray[np.float32]]:
        if not self.precision.text_cache:
            return {}
        with self._lock:
            found = {t: self._text_cache[t] for t in texts if t in self._text_cache}
            for t in found:
                self._text_cache.move_to_end(t)
        return found

    def _remember(self, texts: list[str], features: NDArray[np.float32]) -> None:
        if not self.precision.text_cache:
            return
        with self._lock:
            for t, f in zip(texts, features, strict=True):
                f.flags.writeable = False  # shared between callers: nobody may change it in place
                self._text_cache[t] = f
            while len(self._text_cache) > self.precision.text_cache:
                self._text_cache.popitem(last=False)

    def prepare_text(self) -> None:
        """Build the text path now (the int8 copy, or the ONNX graph: an export the first time on a host)
        rather than on the first turn."""
        if self._onnx_tower() is None:
            self._text_tower()

    def _onnx_tower(self) -> OnnxTextTower | None:
        """The ONNX Runtime text tower, exported on first use; None, and PyTorch's int8 path from then on,
        when exporting or loading it fails."""
        with self._lock:
            if self._onnx_text is None and self.precision.text == "onnx-int8":
                try:
                    self._onnx_text = onnx_text_tower(self.model, cache_dir=self.onnx_cache)
                except Exception as exc:  # the exporter and the runtime raise many types
                    fallback = torch_int8_text()
                    log.warning("text stays on PyTorch (%s): the ONNX text tower failed: %s", fallback, exc)
                    self.precision = replace(self.precision, text=fallback)
            return self._onnx_text

    def _text_tower(self) -> CLIP:
        """The model the text path runs: `model` itself, or (int8) a view of it whose transformer has
        int8 Linear weights, built on first use so that indexing-only processes never pay for it."""
        if self.precision.text == "fp32":
            return self.model
        with self._lock:
            if self._text_model is None:
                self._text_model = quantized_text_view(self.model, bf16_attention=self.precision.text == "bf16-int8")
        return self._text_model


def load_clip(
    spec: str,
    *,
    device: str = "cpu",
    preprocessing: Preprocessing = "clip",
    download_root: str | None = None,
    model_roots: Sequence[str | Path] | None = None,
    precision: Precision | None = None,
    force_fp32: bool = False,
    compile_images: bool = True,
    onnx_cache: Path | None = None,
) -> ClipEncoder:
    """Load CLIP from a model name, a checkpoint path, or ``random:<architecture>``; see the module doc.
    `precision` None: the fastest fidelity-keeping choice for this machine, or plain fp32 with `force_fp32`;
    `compile_images` False keeps image batches eager whatever the machine; `onnx_cache`: where the ONNX text
    tower is kept (`retrieval.models.onnx_text`)."""
    torch_device = resolve_device(device)
    if spec.startswith("random:"):
        model = build_random_clip(spec.removeprefix("random:"))
    elif spec in ARCHITECTURES and not os.path.isfile(spec):
        model = build_clip(read_clip_state_dict(named_model_file(spec, download_root)), spec)
    else:
        confined_checkpoint(spec, model_roots, "CLIP checkpoint")  # before TorchScript may run its code
        model = build_clip(read_clip_state_dict(spec), spec)
    if torch_device.type == "cuda":
        convert_weights(model)  # fp16 on CUDA, as OpenAI's models run there
    else:
        model.float()
    model = model.to(torch_device).eval()
    if precision is None:
        precision = precision_for(model, device=torch_device, force_fp32=force_fp32, compile_images=compile_images)
    preprocess = make_preprocess(model.visual.input_resolution, preprocessing)
    return ClipEncoder(model, preprocess, torch_device, spec, precision, onnx_cache=onnx_cache)
