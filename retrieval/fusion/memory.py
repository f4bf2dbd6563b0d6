"""Conversation memory: the query of turn t from the whole conversation, not only the last click and text.

The one home of memory: the arithmetic below, and `remember` / `rerank`, which a worker calls with plain ids
(a conversation's history as image ids and texts) and the index version it searches.

Relevance feedback on CLIP features and on what was shown (arrays in, arrays out; no framework):

    q_t = normalize( q_now
                     + requests · Σ_k decay^k · q_{t-k}        earlier requests, each fused with its reference
                     + anchor · growth^min(m-1, 8) · f(first picture, words now)   this turn's words applied
                                                                 to where the branch began (m earlier requests)
                     + chosen   · mean(normalize(chosen))      pictures the person clicked earlier
                     − rejected · mean(normalize(rejected)) )  pictures the person said "Not this" to
    score(x) = q_t · normalize(x) − seen · (times x was shown earlier and not chosen)

Why each term: an earlier request stays a constraint (the target has every change asked for). A person who
clicks the closest of ten wrong results often lands farther from the target than where they began, so this
turn's words are also applied to the branch's first picture. A result shown before and passed over is
probably not the target, so it gives way to pictures not yet seen (softly: a target overlooked once can come
back). Weights were chosen on the train split of the training world only (the design comparison in
`models/shapes/memory-tuning-train.json`), never on the world the figures are measured on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from retrieval.fusion.fuser import Fuser, Mode
from retrieval.vectors import normalize

Array = NDArray[np.float32]


@dataclass(frozen=True)
class MemoryWeights:
    requests: float = 0.5
    decay: float = 1.0
    chosen: float = 0.0
    rejected: float = 0.15
    anchor: float = 0.25
    anchor_growth: float = 1.5  # the anchor's weight is multiplied by this for each earlier request past the first
    seen: float = 0.08

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


# The anchor grows for the turns the weights were tuned and measured on (10: `simulate`'s max_turns) and no
# further: past them nothing says more pull helps, and unbounded growth (1.5^18 by turn 20) would pin a long
# conversation to its first picture whatever the person asked since.
ANCHOR_GROWTH_TURNS = 8  # growth steps, from the third turn to the tenth

# Chosen on the train split of the seed-7 world (the committed model's training world) by `simulate --tune`: a
# coordinate search over every weight on all 1,680 episodes of its first 840 families, maximising mean
# success@1..5 over both galleries (models/shapes/memory-tuning-train.json); see the README.
DEFAULT_WEIGHTS = MemoryWeights()


@dataclass
class Remembered:
    """What a conversation holds at a turn, as raw features (rows oldest first) and ids."""

    earlier_queries: Array  # [m, dim] normalized fused queries of the earlier turns along the branch
    chosen: Array  # [c, dim] raw features of pictures clicked earlier (the current reference excluded)
    rejected: Array  # [r, dim] raw features of rejected pictures
    anchor: Array = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # [0 or 1, dim] this turn's
    # words fused with the branch's first picture (none on the first turn, or when it is this turn's picture)
    seen: dict[int, int] = field(default_factory=dict)  # id -> times shown earlier on the branch, never chosen

    @classmethod
    def empty(cls, dim: int) -> Remembered:
        zero = np.zeros((0, dim), np.float32)
        return cls(zero, zero, zero, zero)


def steer(query: Array, memory: Remembered, weights: MemoryWeights = DEFAULT_WEIGHTS) -> Array:
    """The query of this turn [dim] (normalized) moved by what the conversation remembers."""
    q = normalize(np.asarray(query, np.float32).reshape(1, -1))[0]
    m = len(memory.earlier_queries)
    if m and weights.requests:
        ages = np.arange(m, 0, -1, dtype=np.float32)  # the previous turn has age 1
        q = q + weights.requests * (weights.decay ** (ages - 1)) @ normalize(memory.earlier_queries)
    if len(memory.anchor) and weights.anchor:
        grown = weights.anchor_growth ** min(max(m - 1, 0), ANCHOR_GROWTH_TURNS)
        q = q + weights.anchor * grown * normalize(memory.anchor)[0]
    if len(memory.chosen) and weights.chosen:
        q = q + weights.chosen * normalize(memory.chosen).mean(axis=0)
    if len(memory.rejected) and weights.rejected:
        q = q - weights.rejected * normalize(memory.rejected).mean(axis=0)
    return normalize(q.reshape(1, -1))[0]


def demote(
    scores: Array, ids: NDArray[np.int64], memory: Remembered, weights: MemoryWeights = DEFAULT_WEIGHTS
) -> Array:
    """`scores` [n] of the images `ids` [n], lowered by `weights.seen` for each earlier showing (a copy)."""
    out = np.array(scores, np.float32, copy=True)
    if memory.seen and weights.seen and len(ids):
        seen = np.fromiter(memory.seen, np.int64, len(memory.seen))
        times = np.fromiter(memory.seen.values(), np.float32, len(memory.seen))
        order = np.argsort(ids, kind="stable")  # ids are distinct (one id space)
        at = np.minimum(np.searchsorted(ids, seen, sorter=order), len(ids) - 1)
        found = ids[order[at]] == seen
        out[order[at[found]]] -= weights.seen * times[found]
    return out


# "Not this", in every mode: a candidate as like a rejected picture as its near-duplicates are (image cosine
# above LOOK_ALIKE; on the shapes model a picture's 100th-nearest neighbour is at about 0.78, its nearest at
# 0.95) loses up to REJECT_PUSH of its score, in proportion to how far above the floor its likeness is. A
# linear step away from the rejected picture's feature (`steer`'s `rejected` weight) moves scores by
# thousandths; this moves its look-alikes out of the page. Set before any measurement, not tuned.
LOOK_ALIKE = 0.8
REJECT_PUSH = 0.2


def push_away(
    scores: Array, candidates: Array, rejected: Array, strength: float = REJECT_PUSH, floor: float = LOOK_ALIKE
) -> Array:
    """`scores` [n] of the pictures whose raw features are `candidates` [n, dim], lowered by their likeness to
    the closest of the `rejected` pictures [r, dim]: strength · max(0, (cos − floor) / (1 − floor)). A copy."""
    out = np.array(scores, np.float32, copy=True)
    if not len(rejected) or not len(candidates):
        return out
    likeness = (normalize(np.asarray(candidates, np.float32)) @ normalize(np.asarray(rejected, np.float32)).T).max(1)
    return out - strength * np.clip((likeness - floor) / (1 - floor), 0.0, None)


SUMMARY_REQUEST_CHARS = 60  # each earlier request, shortened: the turns above show them whole


def shortened(text: str, limit: int = SUMMARY_REQUEST_CHARS) -> str:
    """`text` on one line, cut at a word boundary to at most `limit` characters, with "…" when cut."""
    line = " ".join(text.split())
    if len(line) <= limit:
        return line
    cut = line[: limit - 1].rsplit(" ", 1)[0] or line[: limit - 1]
    return cut.rstrip(" ,;.") + "…"


def summary(texts: list[str], rejected: int, chosen: int = 0, seen: int = 0) -> str:
    """What the page says is remembered: 'remembering: make it red; no star · steering away from 3 rejected
    · 20 seen give way'. Each request is shortened to SUMMARY_REQUEST_CHARS (a pasted page stays one line)."""
    parts = []
    if texts:
        parts.append("remembering: " + "; ".join(shortened(t) for t in texts if t.strip()))
    if chosen:
        parts.append(f"following {chosen} chosen")
    if rejected:
        parts.append(f"steering away from {rejected} rejected")
    if seen:
        parts.append(f"{seen} seen give way")
    return " · ".join(parts)


# -- a turn's memory from plain ids, over the index version the turn searches -----------------------------------


class FeatureSource(Protocol):
    """Stored features by image id: an index version (`retrieval.index.versions.LoadedVersion`)."""

    ids: NDArray[np.int64]  # sorted

    def features_of(self, ids: list[int] | NDArray[np.int64]) -> Array: ...


class History(Protocol):
    """A conversation's memory as plain ids (the web's `conversations.selectors.TurnHistory`): earlier turns
    along the branch, oldest first, as (reference image id or None, text); images chosen and rejected; how
    many times each earlier result was shown and passed over."""

    earlier: list[tuple[int | None, str]]
    chosen: list[int]
    rejected: list[int]
    seen: dict[int, int]

    @property
    def texts(self) -> list[str]: ...


def _indexed(source: FeatureSource, image_id: int) -> bool:
    row = int(np.searchsorted(source.ids, image_id))
    return row < len(source.ids) and int(source.ids[row]) == image_id


def indexed_features(source: FeatureSource, ids: list[int], dim: int) -> Array:
    """Features [n, dim] of the `ids` the source holds (images no longer indexed are left out)."""
    known = [i for i in ids if _indexed(source, i)]
    return source.features_of(known) if known else np.zeros((0, dim), np.float32)


def _fused(fuser: Fuser, mode: Mode, image: Array | None, words: Array | None) -> Array | None:
    """The query of an earlier picture and words, or None where the mode lacks what it needs."""
    if mode.needs_image and (image is None or not len(image)):
        return None
    if mode.needs_text and words is None:
        return None
    return fuser.fuse(mode, image, words)[0]


def remember(
    fuser: Fuser,
    encode_texts: Callable[[list[str]], Array],
    source: FeatureSource,
    mode: Mode,
    query: Array,
    history: History,
    *,
    image_id: int | None = None,
    words: Array | None = None,
) -> tuple[Array, Remembered, str]:
    """(the steered query [1, dim], what it remembered, what the page shows as remembered), for the turn
    whose reference is `image_id` and whose words' features are `words` [1, dim] (None without text).
    Earlier requests are fused again with their own references; chosen and rejected pictures are read from
    `source` too, and pictures it no longer holds are left out."""
    dim = query.shape[-1]
    earlier = []
    for earlier_image, text in history.earlier:
        image = indexed_features(source, [earlier_image], dim) if earlier_image is not None else None
        fused = _fused(fuser, mode, image, encode_texts([text]) if text else None)
        if fused is not None:
            earlier.append(fused)
    first = history.earlier[0][0] if history.earlier else None
    anchor = None
    if first is not None and first != image_id and words is not None:  # this turn's words, where it began
        anchor = _fused(fuser, mode, indexed_features(source, [first], dim), words)
    memory = Remembered(
        np.array(earlier, np.float32).reshape(-1, dim),
        indexed_features(source, history.chosen, dim),
        indexed_features(source, history.rejected, dim),
        np.zeros((0, dim), np.float32) if anchor is None else anchor[None],
        {image: times for image, times in history.seen.items() if _indexed(source, image)},
    )
    steered = steer(query[0], memory, DEFAULT_WEIGHTS)[None, :]
    said = summary(history.texts, rejected=len(memory.rejected), seen=len(memory.seen))
    return steered, memory, said


def rerank(
    scores: Array,
    ids: NDArray[np.int64],
    memory: Remembered | None,
    k: int,
    *,
    candidates: Callable[[NDArray[np.int64]], Array] | None = None,
    rejected: Array | None = None,
) -> tuple[Array, NDArray[np.int64]]:
    """The best `k` of a search that asked for more (rows [1, n]): results seen before demoted (with memory),
    and look-alikes of `rejected` pictures pushed down (their features read by `candidates(ids)`). Both only
    lower scores, so no picture outside the n can enter the top k unless more than n - k were lowered."""
    valid = ids[0] >= 0
    kept_ids = ids[0][valid]
    lowered = scores[0][valid]
    if memory is not None:
        lowered = demote(lowered, kept_ids, memory, DEFAULT_WEIGHTS)
    if rejected is not None and len(rejected) and candidates is not None and len(kept_ids):
        lowered = push_away(lowered, candidates(kept_ids), rejected)
    order = np.argsort(-lowered, kind="stable")[:k]
    return lowered[order][None], kept_ids[order][None]
