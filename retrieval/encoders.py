"""The public home of CLIP loading, kept where notebooks and other tools import it from:
`load_clip(spec)` returns a `ClipEncoder` (`.encode_images`, `.encode_texts`). The code lives in
`retrieval.models` (clip_encoder, clip_weights, preprocessing, text_int8)."""

from retrieval.models.clip_encoder import ClipEncoder, load_clip
from retrieval.models.clip_weights import ARCHITECTURES, build_random_clip
from retrieval.models.preprocessing import Preprocessing, make_preprocess

__all__ = ["ARCHITECTURES", "ClipEncoder", "Preprocessing", "build_random_clip", "load_clip", "make_preprocess"]
