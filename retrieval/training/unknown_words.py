"""Words the shapes world never uses, for training a model to read requests worded with verbs it never met
(`retrieval.datasets.shapes_speech.Unknown`).

The pool is CLIP's vocabulary of whole words, less every word a text of the world can contain in either
part of the grammar (the held-out part included, so that no held-out word is ever trained on, not even as
noise). It is split in two by a fixed hash: one half for training, the other for validation, so validation
measures words the model has not met as noise either, as a person's own words would be.
"""

from __future__ import annotations

import random
import zlib
from functools import cache
from typing import Literal

from retrieval.datasets.shapes import COLOURS, SHAPES, random_scene
from retrieval.datasets.shapes_requests import random_request
from retrieval.datasets.shapes_speech import PARTS, Unknown, grammar_words, wanted_from, word_description, word_request
from retrieval.datasets.shapes_text import phrase_all

Half = Literal["train", "val"]


def world_words(samples: int = 4000) -> frozenset[str]:
    """Every word the world's texts use: the grammar's own, the names of its shapes and colours, and every
    word of `samples` random requests and descriptions in each wording (the annotation files' included)."""
    words = set(grammar_words()) | set(SHAPES) | set(COLOURS) | {"a", "an", "the"}
    rng = random.Random("world-words")
    for _ in range(samples):
        scene = random_scene(rng)
        request = random_request(scene, rng)
        texts = [phrase_all(list(request.edits), scene, rng)]
        texts += [word_request(request.edits, scene, part, rng) for part in PARTS]
        texts += [word_description(wanted_from(scene, rng), part, rng) for part in PARTS]
        words.update(w.strip(".,;:!?-'").lower() for t in texts for w in t.split())
    return frozenset(words)


@cache
def unknown_words(half: Half) -> tuple[str, ...]:
    """`half` of CLIP's whole-word vocabulary (alphabetic, three letters or more) that the world never uses."""
    from clip.simple_tokenizer import SimpleTokenizer

    used = world_words()
    vocabulary = sorted(
        w[: -len("</w>")] for w in SimpleTokenizer().encoder if w.endswith("</w>") and len(w) >= 7
    )  # "</w>" plus at least three letters
    pool = [w for w in vocabulary if w.isascii() and w.isalpha() and w not in used]
    wanted = 0 if half == "train" else 1
    return tuple(w for w in pool if zlib.crc32(w.encode()) % 2 == wanted)


def unknown(half: Half, share: float) -> Unknown | None:
    """The blurring of `half`'s pool for a `share` of requests, or None for no blurring."""
    return Unknown(unknown_words(half), share) if share > 0 else None
