"""Conversation memory: the query of turn t from the whole conversation, not only the last click and text.

Rocchio-style relevance feedback on CLIP features (arrays in, arrays out; no framework):

    q_t = normalize( q_now
                     + requests · Σ_k decay^k · q_{t-k}        earlier requests, each fused with its reference
                     + chosen   · mean(normalize(chosen))      pictures the person clicked earlier
                     − rejected · mean(normalize(rejected)) )  pictures the person said "Not this" to

An earlier request stays a constraint: its query (reference + words) points at pictures that have the change
asked for, and the target has every change asked for. Weights are tuned on the train split of the training
world only (`python -m retrieval simulate --tune`), never on the split the figures are measured on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import NDArray

from retrieval.combiner import normalize

Array = NDArray[np.float32]


@dataclass(frozen=True)
class MemoryWeights:
    requests: float = 0.5
    decay: float = 0.6
    chosen: float = 0.0
    rejected: float = 0.15

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


# Tuned on the train split of the seed-7 world (the committed model's training world: 150 episodes of its
# first 420 families, coordinate search, models/shapes/memory-tuning-train.json); see the README.
DEFAULT_WEIGHTS = MemoryWeights()


@dataclass
class Remembered:
    """What a conversation holds at a turn, as raw features (rows oldest first)."""

    earlier_queries: Array  # [m, dim] normalized fused queries of the earlier turns along the branch
    chosen: Array  # [c, dim] raw features of pictures clicked earlier (the current reference excluded)
    rejected: Array  # [r, dim] raw features of rejected pictures

    @classmethod
    def empty(cls, dim: int) -> Remembered:
        zero = np.zeros((0, dim), np.float32)
        return cls(zero, zero, zero)


def steer(query: Array, memory: Remembered, weights: MemoryWeights = DEFAULT_WEIGHTS) -> Array:
    """The query of this turn [dim] (normalized) moved by what the conversation remembers."""
    q = normalize(np.asarray(query, np.float32).reshape(1, -1))[0]
    m = len(memory.earlier_queries)
    if m and weights.requests:
        ages = np.arange(m, 0, -1, dtype=np.float32)  # the previous turn has age 1
        q = q + weights.requests * (weights.decay ** (ages - 1)) @ normalize(memory.earlier_queries)
    if len(memory.chosen) and weights.chosen:
        q = q + weights.chosen * normalize(memory.chosen).mean(axis=0)
    if len(memory.rejected) and weights.rejected:
        q = q - weights.rejected * normalize(memory.rejected).mean(axis=0)
    return normalize(q.reshape(1, -1))[0]


def summary(texts: list[str], rejected: int, chosen: int = 0) -> str:
    """What the page says is remembered: 'remembering: make it red; no star · steering away from 3 rejected'."""
    parts = []
    if texts:
        parts.append("remembering: " + "; ".join(t.strip() for t in texts if t.strip()))
    if chosen:
        parts.append(f"following {chosen} chosen")
    if rejected:
        parts.append(f"steering away from {rejected} rejected")
    return " · ".join(parts)
