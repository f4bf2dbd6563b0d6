"""A simulated user refining turn by turn, on the shapes world where the truth is known.

The user holds a hidden target. Starting from a reference, each turn they describe one difference between
the current reference and the target (read off the scene graphs, worded as a person would), look at the
`shown` results, and either find the target there (success at this turn) or click the shown result closest
to the target (fewest edits away) and go on from it. Episodes start two or three edits from the target:
from a family's reference R to its double edit D, and from a sibling S3 to D.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retrieval.combiner import Fuser, Mode, normalize
from retrieval.datasets.cirr import load_cirr
from retrieval.datasets.shapes import scene_diff
from retrieval.datasets.shapes_text import phrase
from retrieval.datasets.shapes_world import load_scenes
from retrieval.encoders import ClipEncoder
from retrieval.evaluate import Gallery, encode_gallery


@dataclass
class SimulationResult:
    mode: str
    episodes: int
    success_at: dict[int, float]  # turn -> share of episodes that found the target within that many turns
    mean_turns: float  # over successful episodes
    shown: int

    def as_dict(self) -> dict[str, object]:
        return {
            "mode": self.mode,
            "episodes": self.episodes,
            "shown": self.shown,
            "mean_turns_to_target": self.mean_turns,
            **{f"success@{t}": v for t, v in self.success_at.items()},
        }


def episodes_of(groups: list[tuple[str, ...]]) -> list[tuple[str, str]]:
    """(start, target) pairs: R -> D and S3 -> D of every family (members ordered R, S1..S4, D)."""
    out = []
    for members in groups:
        if len(members) == 6:
            out += [(members[0], members[5]), (members[3], members[5])]
    return out


def run_episode(
    start: str,
    target: str,
    gallery: Gallery,
    normed: np.ndarray,
    scenes: dict,
    query: Callable[[str, str], np.ndarray],
    max_turns: int,
    shown: int,
    rng: random.Random,
) -> int | None:
    """Turns needed to see the target (None if not within `max_turns`)."""
    current = start
    for turn in range(1, max_turns + 1):
        edits = scene_diff(scenes[current], scenes[target])
        if not edits:
            return turn - 1 if turn > 1 else None
        text = phrase(rng.choice(edits), scenes[current], rng)
        scores = normed @ query(current, text)
        scores[gallery.index[current]] = -np.inf  # the reference itself is never a result
        top = [gallery.names[i] for i in np.argsort(-scores)[:shown]]
        if target in top:
            return turn
        current = min(top, key=lambda n: len(scene_diff(scenes[n], scenes[target])))  # stable: rank breaks ties
    return None


def simulate(
    encoder: ClipEncoder,
    fuser: Fuser,
    root: Path,
    *,
    split: str = "val",
    modes: tuple[Mode, ...] = (Mode.COMBINER,),
    max_turns: int = 5,
    shown: int = 10,
    limit: int | None = None,
    seed: int = 0,
) -> list[SimulationResult]:
    data = load_cirr(root, split, dataset="shapes")
    scenes = load_scenes(root, split)
    gallery = encode_gallery(encoder, data.images)
    normed = normalize(gallery.features)
    groups = sorted({t.group for t in data.triplets if t.group}, key=lambda g: g[0])
    episodes = episodes_of([tuple(sorted(g, key=lambda n: int(n.rsplit("-", 1)[1]))) for g in groups])
    if limit:
        episodes = random.Random(seed).sample(episodes, min(limit, len(episodes)))
    results = []
    for mode in modes:
        rng = random.Random(seed)

        def query(reference: str, text: str, mode: Mode = mode) -> np.ndarray:
            image = gallery.features[[gallery.index[reference]]]
            return fuser.fuse(mode, image, encoder.encode_texts([text]))[0]

        turns = [run_episode(s, t, gallery, normed, scenes, query, max_turns, shown, rng) for s, t in episodes]
        found = [t for t in turns if t is not None]
        success = {k: sum(1 for t in found if t <= k) / max(len(turns), 1) for k in range(1, max_turns + 1)}
        results.append(
            SimulationResult(mode.value, len(turns), success, float(np.mean(found)) if found else float("nan"), shown)
        )
    return results
