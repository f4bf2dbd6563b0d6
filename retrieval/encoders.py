"""CLIP loading and batched encoding.

One entry point, `load_clip(spec)`, whatever the weights are:

- an OpenAI model name (``"RN50x4"``, ``"ViT-B/32"`` ...): the `clip` package's file, downloaded into its
  cache when online; offline, a `ModelNotAvailable` names the file to fetch and where to put it;
- a checkpoint path: a TorchScript archive or a state dict as `clip.load` accepts, or CLIP4Cir's
  fine-tuned ``{"CLIP": state_dict}``; the architecture is read from the tensor shapes;
- ``"random:<name>"``: the named architecture with random weights, which costs exactly what the trained
  model costs to run (used for speed measurements on machines without the weights).

Features come back as float32 arrays, unnormalized, as CLIP4Cir feeds them to its Combiner. How each path
computes them (precision, layout, text cache) is chosen per machine by `retrieval.precision`.
"""

from __future__ import annotations

import copy
import logging
import os
import threading
import urllib.error
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from PIL import Image
from torchvision import transforms
from torchvision.transforms import InterpolationMode

with warnings.catch_warnings():  # clip imports pkg_resources, which warns about its own deprecation
    warnings.simplefilter("ignore")
    import clip
    from clip.model import CLIP, build_model, convert_weights

from retrieval.confine import confined_checkpoint
from retrieval.errors import CheckpointError, ModelNotAvailable
from retrieval.onnx_text import OnnxTextTower, onnx_text_tower
from retrieval.precision import COMPILE_MIN_BATCH, COMPILE_MIN_IMAGES, Precision, precision_for, torch_int8_text

log = logging.getLogger(__name__)

Preprocessing = Literal["clip", "targetpad"]
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
TARGETPAD_RATIO = 1.25
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


class TargetPad:
    """CLIP4Cir's TargetPad: pad images whose aspect ratio exceeds `target_ratio` so the centre crop
    keeps the whole picture instead of cutting its sides off."""

    def __init__(self, target_ratio: float = TARGETPAD_RATIO) -> None:
        self.target_ratio = target_ratio

    def __call__(self, image: Image.Image) -> Image.Image:
        w, h = image.size
        if max(w, h) / min(w, h) < self.target_ratio:
            return image
        scaled_max_wh = max(w, h) / self.target_ratio
        hp = max(int((scaled_max_wh - w) / 2), 0)
        vp = max(int((scaled_max_wh - h) / 2), 0)
        padded = Image.new(image.mode, (w + 2 * hp, h + 2 * vp))
        padded.paste(image, (hp, vp))
        return padded


class NormalizedTensor:
    """An RGB picture as CLIP's normalized [3, H, W] float tensor: torchvision's ToTensor then Normalize
    (equal to within 3e-7), in one pass over the pixels instead of four. Indexing decodes on the encoder's
    cores, so this is worth it: at 288 px, 0.45 ms a picture instead of 1.9."""

    def __init__(self, mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD) -> None:
        self.scale = torch.tensor([1 / (255 * s) for s in std]).view(3, 1, 1)
        self.shift = torch.tensor([-m / s for m, s in zip(mean, std, strict=True)]).view(3, 1, 1)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        pixels = torch.from_numpy(np.array(image.convert("RGB"), np.uint8)).permute(2, 0, 1).contiguous()
        return torch.addcmul(self.shift, pixels.float(), self.scale)


def make_preprocess(resolution: int, kind: Preprocessing = "clip") -> Callable[[Image.Image], torch.Tensor]:
    """CLIP's own transform (bicubic resize, centre crop, normalize), optionally after TargetPad."""
    if kind not in ("clip", "targetpad"):
        raise ValueError(f"unknown preprocessing {kind!r}: use 'clip' or 'targetpad'")
    steps: list[Callable[..., Any]] = [TargetPad()] if kind == "targetpad" else []
    steps += [
        transforms.Resize(resolution, interpolation=InterpolationMode.BICUBIC),
        transforms.CenterCrop(resolution),
        NormalizedTensor(),
    ]
    return transforms.Compose(steps)


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
    onnx_cache: Path | None = None  # where the ONNX text tower is kept (retrieval.onnx_text; None: its default)
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
                self._text_model = quantized_text_view(self.model, bf16_attention=self.precision.text == "int8+bf16")
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
    tower is kept (`retrieval.onnx_text`)."""
    torch_device = resolve_device(device)
    if spec.startswith("random:"):
        model = build_random_clip(spec.removeprefix("random:"))
    elif spec in ARCHITECTURES and not os.path.isfile(spec):
        model = build_clip(read_clip_state_dict(_named_model_file(spec, download_root)), spec)
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


class Bf16SelfAttention(torch.nn.Module):
    """CLIP's text self-attention (`nn.MultiheadAttention`, sequence first, with CLIP's causal mask) with its
    two projections held in bf16: half the bytes a turn's text reads from them, computed on the CPU's bf16
    units. The weights are bf16 tensors, not Linear layers, so dynamic int8 quantization leaves them alone."""

    in_weight: torch.Tensor
    in_bias: torch.Tensor
    out_weight: torch.Tensor
    out_bias: torch.Tensor

    def __init__(self, attention: torch.nn.MultiheadAttention) -> None:
        super().__init__()
        self.heads = attention.num_heads
        self.register_buffer("in_weight", attention.in_proj_weight.detach().to(torch.bfloat16))
        self.register_buffer("in_bias", attention.in_proj_bias.detach().to(torch.bfloat16))
        self.register_buffer("out_weight", attention.out_proj.weight.detach().to(torch.bfloat16))
        self.register_buffer("out_bias", attention.out_proj.bias.detach().to(torch.bfloat16))

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        need_weights: bool = False,
        attn_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, None]:  # `nn.MultiheadAttention`'s signature, as CLIP calls it (self-attention)
        length, batch, width = query.shape
        qkv = F.linear(query.to(torch.bfloat16), self.in_weight, self.in_bias).float()
        q, k, v = qkv.view(length, batch, 3, self.heads, width // self.heads).permute(2, 1, 3, 0, 4)
        heads = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # fp32 softmax; [n, heads, length, w]
        merged = heads.permute(2, 0, 1, 3).reshape(length, batch, width)
        return F.linear(merged.to(torch.bfloat16), self.out_weight, self.out_bias).float(), None


def quantized_text_view(model: CLIP, *, bf16_attention: bool = False) -> CLIP:
    """A shallow copy of `model` sharing every weight except the text transformer's: its MLP Linear layers
    hold int8 weights, one scale per output channel (dynamic quantization: activations are quantized per
    call). The attention projections stay fp32, as PyTorch's quantization leaves them, or with
    `bf16_attention` (CPUs with bf16 units) are held in bf16 (`Bf16SelfAttention`)."""
    transformer = copy.deepcopy(model.transformer)
    if bf16_attention:
        for block in transformer.resblocks:
            block.attn = Bf16SelfAttention(block.attn)
    with warnings.catch_warnings():  # torch.ao.quantization is deprecated in favour of torchao, not installed
        warnings.simplefilter("ignore")
        transformer = torch.ao.quantization.quantize_dynamic(
            transformer,
            {torch.nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig},
            dtype=torch.qint8,
        )
    view = copy.copy(model)
    view._modules = dict(model._modules)  # copy.copy shares the dict; replace the transformer in ours only
    view._modules["transformer"] = transformer
    return view


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


def _named_model_file(name: str, download_root: str | None) -> str:
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
