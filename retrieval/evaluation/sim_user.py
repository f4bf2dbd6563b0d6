"""The simulated person of `python -m retrieval simulate`: what they see, what they say, what they click.

Stated assumptions (the README repeats them beside the figures):

- Perception. The person knows their target. Everything else they learn by looking at a picture shown to
  them, and looking is imperfect: each attribute of each object (shape, colour, size, place) is misread
  with probability `misread` (default 0.10: a random other value; a place becomes a neighbouring cell), and
  each object is overlooked with probability `overlook` (default 0.05). The reading is derived from the
  picture's stored scene graph, never used directly.
- Recognition. A shown target is recognised with probability 1 - `miss_target` (default 0.05).
- Words. The person names one or two differences between what they read in the current picture and the
  target, in wordings that appear nowhere in training (the held-out part of
  `retrieval.datasets.shapes_speech`). A misreading can make them ask for the wrong thing.
- Clicks. They click the shown result they judge closest to the target (fewest differences they read), and
  with probability `click_noise` (default 0.2) another one among those within one difference of it.
- Rejection. With probability `reject` (default 0.5) a turn, they press "Not this" on the highest-ranked
  result they read as farther from the target than the current picture.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from retrieval.datasets.shapes import CELLS, COLOURS, SHAPES, Edit, Obj, Scene, scene_diff
from retrieval.datasets.shapes_speech import word_edit


@dataclass(frozen=True)
class UserModel:
    misread: float = 0.10
    overlook: float = 0.05
    miss_target: float = 0.05
    click_noise: float = 0.2
    reject: float = 0.5
    max_edits_named: int = 2

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.__dict__.items()}


def _neighbour(cell: tuple[int, int], rng: random.Random) -> tuple[int, int]:
    near = [c for c in CELLS if c != cell and abs(c[0] - cell[0]) <= 1 and abs(c[1] - cell[1]) <= 1]
    return rng.choice(near)


def perceive(scene: Scene, user: UserModel, rng: random.Random) -> Scene:
    """What the person reads in a picture of `scene`: every attribute misread with probability
    `user.misread`, every object overlooked with probability `user.overlook`."""
    read: dict[tuple[int, int], Obj] = {}
    for o in scene:
        if rng.random() < user.overlook:
            continue
        shape = rng.choice([s for s in SHAPES if s != o.shape]) if rng.random() < user.misread else o.shape
        colour = rng.choice([c for c in COLOURS if c != o.colour]) if rng.random() < user.misread else o.colour
        size = ("large" if o.size == "small" else "small") if rng.random() < user.misread else o.size
        cell = _neighbour(o.cell, rng) if rng.random() < user.misread else o.cell
        if cell in read:
            cell = o.cell if o.cell not in read else next(c for c in CELLS if c not in read)
        read[cell] = Obj(cell, shape, colour, size)
    return tuple(sorted(read.values()))


def say(edit: Edit, scene: Scene, rng: random.Random) -> str:
    """One request in a held-out wording, referring to objects as they appear in `scene`."""
    return word_edit(edit, scene, "held-out", rng)


def request_edits(
    current: Scene, target: Scene, user: UserModel, rng: random.Random
) -> tuple[str, tuple[Edit, ...]] | None:
    """One or two differences between the picture as read (`current`) and the target, joined as a person
    would, with the edits they name; None when the person reads no difference (they think they are there)."""
    edits = scene_diff(current, target)
    if not edits:
        return None
    count = min(len(edits), rng.randint(1, user.max_edits_named))
    chosen = rng.sample(edits, count)
    parts, named = [], []
    scene = current
    for edit in chosen:
        parts.append(say(edit, scene, rng))
        try:
            scene = edit.apply(scene)
        except ValueError:  # said, but it collides with the first (same cell): judged on the first alone
            break
        named.append(edit)
    return (parts[0] if len(parts) == 1 else f"{parts[0]}; also {parts[1]}"), tuple(named)


def request(current: Scene, target: Scene, user: UserModel, rng: random.Random) -> str | None:
    """The words of `request_edits`."""
    said = request_edits(current, target, user, rng)
    return None if said is None else said[0]


def judge(
    shown: list[str], scenes: dict[str, Scene], current: Scene, target: Scene, user: UserModel, rng: random.Random
) -> tuple[str, str | None]:
    """(clicked, rejected or None) among `shown` result names, from the person's reading of each."""
    read = {name: perceive(scenes[name], user, rng) for name in shown}
    distance = {name: len(scene_diff(read[name], target)) for name in shown}
    best = min(distance.values())
    clicked = min(shown, key=lambda n: distance[n])  # rank order breaks ties
    if rng.random() < user.click_noise:
        clicked = rng.choice([n for n in shown if distance[n] <= best + 1])
    rejected = None
    if rng.random() < user.reject:
        here = len(scene_diff(current, target))
        rejected = next((n for n in shown if distance[n] > here and n != clicked), None)
    return clicked, rejected
