"""Conversation memory: the query of turn t from the whole conversation, not only the last click and text.

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

from dataclasses import asdict, dataclass, field

import numpy as np
from numpy.typing import NDArray

from retrieval.combiner import normalize

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


def summary(texts: list[str], rejected: int, chosen: int = 0, seen: int = 0) -> str:
    """What the page says is remembered: 'remembering: make it red; no star · steering away from 3 rejected
    · 20 seen give way'."""
    parts = []
    if texts:
        parts.append("remembering: " + "; ".join(t.strip() for t in texts if t.strip()))
    if chosen:
        parts.append(f"following {chosen} chosen")
    if rejected:
        parts.append(f"steering away from {rejected} rejected")
    if seen:
        parts.append(f"{seen} seen give way")
    return " · ".join(parts)
