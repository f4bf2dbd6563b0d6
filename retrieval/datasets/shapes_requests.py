"""Open requests on the shapes world and their exact relevance: what a person asks of any picture, and which
pictures of a gallery do it.

The closed benchmark asks each family's reference for one of its few siblings. A person asks for any
change of any picture, and the exact edited scene is usually absent from a gallery; what they want then is
a picture that does what they asked ("satisfied") and keeps the rest of the reference ("kept"). Scenes are
graphs, so both are exact:

- satisfied: each edit's predicate holds in the candidate, judged against the scene the edit applies to.
  Recolour: one more object of the shape in the new colour and one fewer in the old; resize: likewise for
  the sizes; replace: one fewer of the old (shape, colour) and one more of the new object; remove: one
  fewer of the object's shape and of its (shape, colour); add: the new object at the cell named; move: the
  object at its new cell and no longer at its old one.
- kept: the share of the reference's untouched objects still there: an object of the same shape and colour
  (size and place are a person's second look; training also rewards them, as `placed`).
- good: satisfied and kept >= 0.5; exact: the candidate's scene is the edited scene.

`SceneTable` holds a gallery's scenes as arrays so each request is judged against every picture at once.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from retrieval.datasets.shapes import COLOURS, EDIT_KINDS, SHAPES, SIZES, Edit, Obj, Scene, possible_edits, scene_diff
from retrieval.datasets.shapes_speech import Wanted

RequestKind = Literal["recolour", "resize", "move", "add", "remove", "replace", "two"]
REQUEST_KINDS: tuple[RequestKind, ...] = (*EDIT_KINDS, "two")
GOOD_KEPT = 0.5  # "most of the rest kept"

_SHAPE = {s: i for i, s in enumerate(SHAPES)}
_COLOUR = {c: i for i, c in enumerate(COLOURS)}
_SIZE = {s: i for i, s in enumerate(SIZES)}
PAIRS = len(SHAPES) * len(COLOURS)  # (shape, colour) keys
TRIPLES = PAIRS * len(SIZES)  # (shape, colour, size) keys


def pair_key(shape: str, colour: str) -> int:
    return _SHAPE[shape] * len(COLOURS) + _COLOUR[colour]


def triple_key(o: Obj) -> int:
    return pair_key(o.shape, o.colour) * len(SIZES) + _SIZE[o.size]


def cell_index(cell: tuple[int, int]) -> int:
    return cell[0] * 3 + cell[1]


def code(o: Obj) -> int:
    """An object as one number (0 is an empty cell)."""
    return 1 + triple_key(o)


@dataclass(frozen=True)
class Request:
    """Edits asked of a reference scene, in the order they are said."""

    reference: Scene
    edits: tuple[Edit, ...]

    @property
    def target(self) -> Scene:
        scene = self.reference
        for edit in self.edits:
            scene = edit.apply(scene)
        return scene

    @property
    def kind(self) -> RequestKind:
        return "two" if len(self.edits) == 2 else self.edits[0].kind


def draw_request(scene: Scene, kind: RequestKind, rng: random.Random, tries: int = 20) -> Request | None:
    """A random edit of `kind` that applies to `scene` ("two": two edits of different kinds on different
    objects, both visible in the result and neither undoing the other), or None when none applies."""
    for _ in range(tries):
        if kind != "two":
            edit = next((e for e in possible_edits(scene, rng) if e.kind == kind), None)
            return None if edit is None else Request(scene, (edit,))
        first = possible_edits(scene, rng)
        if not first:
            return None
        e1 = first[0]
        middle = e1.apply(scene)
        e2 = next((e for e in possible_edits(middle, rng) if e.kind != e1.kind and e.before != e1.after), None)
        if e2 is None:
            continue
        request = Request(scene, (e1, e2))
        target = e2.apply(middle)
        # the second edit must not undo what the first asked (a blue star recoloured, another made blue)
        if len(scene_diff(scene, target)) == 2 and SceneTable([target]).judge(request).satisfied[0]:
            return request
    return None


def random_request(scene: Scene, rng: random.Random) -> Request:
    """A request of a kind drawn uniformly among those that apply to `scene`."""
    kinds = list(REQUEST_KINDS)
    rng.shuffle(kinds)
    for kind in kinds:
        request = draw_request(scene, kind, rng)
        if request is not None:
            return request
    raise ValueError(f"no edit applies to {scene}")


@dataclass
class Judgement:
    """A request judged against every picture of a gallery: arrays [n]."""

    satisfied: NDArray[np.bool_]
    kept: NDArray[np.float32]  # share of the untouched objects whose shape and colour are still there
    placed: NDArray[np.float32]  # share of them unchanged in every attribute, at the same cell
    exact: NDArray[np.bool_]
    extra: NDArray[np.int16]  # objects of the picture that the edited scene does not have

    @property
    def good(self) -> NDArray[np.bool_]:
        return self.satisfied & (self.kept >= GOOD_KEPT)

    def grade(self) -> NDArray[np.float32]:
        """Graded relevance for training, in [0, 1]: 1 for the exact scene; a satisfied picture 0.3 to 0.8 by
        what it keeps (more where kept in place), less for objects the person did not ask for; 0 for the
        rest. Orders exact > good > satisfied > other."""
        g = 0.3 + 0.35 * self.kept + 0.15 * self.placed - 0.1 * np.minimum(self.extra, 3)
        g = np.where(self.satisfied, np.maximum(g, 0.05), 0.0)
        return np.where(self.exact, 1.0, g).astype(np.float32)


class SceneTable:
    """A gallery's scenes as arrays: each picture's nine cells as object codes, and counts of each
    (shape, colour) and (shape, colour, size) in it."""

    def __init__(self, scenes: Sequence[Scene]) -> None:
        n = len(scenes)
        self.codes = np.zeros((n, 9), np.int16)
        self.pairs = np.zeros((n, PAIRS), np.int8)
        self.triples = np.zeros((n, TRIPLES), np.int8)
        self.shapes = np.zeros((n, len(SHAPES)), np.int8)
        for i, scene in enumerate(scenes):
            for o in scene:
                self.codes[i, cell_index(o.cell)] = code(o)
                self.pairs[i, pair_key(o.shape, o.colour)] += 1
                self.triples[i, triple_key(o)] += 1
                self.shapes[i, _SHAPE[o.shape]] += 1
        self.objects = (self.codes > 0).sum(axis=1).astype(np.int16)

    def __len__(self) -> int:
        return len(self.codes)

    def _at(self, o: Obj) -> NDArray[np.bool_]:
        return self.codes[:, cell_index(o.cell)] == code(o)

    def _holds(self, edit: Edit, before: Scene) -> NDArray[np.bool_]:
        """Where `edit`'s predicate holds, judged against `before`, the scene it applies to."""
        b, a = edit.before, edit.after

        def more_pairs(shape: str, colour: str) -> NDArray[np.bool_]:
            k = pair_key(shape, colour)
            return self.pairs[:, k] > sum(pair_key(o.shape, o.colour) == k for o in before)

        def fewer_pairs(shape: str, colour: str) -> NDArray[np.bool_]:
            k = pair_key(shape, colour)
            return self.pairs[:, k] < sum(pair_key(o.shape, o.colour) == k for o in before)

        def triples(o: Obj) -> tuple[NDArray[np.int8], int]:
            k = triple_key(o)
            return self.triples[:, k], sum(triple_key(x) == k for x in before)

        if edit.kind == "recolour":
            assert b and a
            return more_pairs(b.shape, a.colour) & fewer_pairs(b.shape, b.colour)
        if edit.kind == "resize":
            assert b and a
            (new, had_new), (old, had_old) = triples(a), triples(b)
            return (new > had_new) & (old < had_old)
        if edit.kind == "replace":
            assert b and a
            new, had_new = triples(a)
            return (new > had_new) & fewer_pairs(b.shape, b.colour)
        if edit.kind == "remove":
            assert b
            fewer_shapes = self.shapes[:, _SHAPE[b.shape]] < sum(o.shape == b.shape for o in before)
            return fewer_shapes & fewer_pairs(b.shape, b.colour)
        if edit.kind == "add":
            assert a
            return self._at(a)
        if edit.kind == "move":
            assert b and a
            return self._at(a) & ~self._at(b)
        raise ValueError(f"unknown edit kind {edit.kind!r}")

    def judge(self, request: Request) -> Judgement:
        satisfied = np.ones(len(self), bool)
        scene = request.reference
        for edit in request.edits:
            satisfied &= self._holds(edit, scene)
            scene = edit.apply(scene)
        target = scene
        touched = {e.before for e in request.edits if e.before is not None}
        untouched = [o for o in request.reference if o not in touched]
        kept, placed = np.ones(len(self), np.float32), np.ones(len(self), np.float32)
        if untouched:
            wanted: dict[int, int] = {}
            for o in untouched:
                wanted[pair_key(o.shape, o.colour)] = wanted.get(pair_key(o.shape, o.colour), 0) + 1
            found = np.sum([np.minimum(self.pairs[:, k], n) for k, n in wanted.items()], axis=0)
            kept = (found / len(untouched)).astype(np.float32)
            placed = np.mean([self._at(o) for o in untouched], axis=0).astype(np.float32)
        matched = np.sum([self._at(o) for o in target], axis=0) if target else np.zeros(len(self), np.int64)
        extra = (self.objects - matched).astype(np.int16)
        exact = (matched == len(target)) & (extra == 0)
        return Judgement(satisfied, kept, placed, exact, extra)

    def described(self, wanted: Sequence[Wanted]) -> NDArray[np.bool_]:
        """Pictures holding a distinct object for each of `wanted` (Hall's condition over the few objects)."""
        masks = [self._matching_cells(w) for w in wanted]
        ok = np.ones(len(self), bool)
        for size in range(1, len(masks) + 1):
            for subset in combinations(masks, size):
                ok &= np.logical_or.reduce(subset).sum(axis=1) >= size
        return ok

    def _matching_cells(self, w: Wanted) -> NDArray[np.bool_]:
        occupied = self.codes > 0
        key = self.codes.astype(np.int32) - 1
        mask = occupied & (key // (len(COLOURS) * len(SIZES)) == _SHAPE[w.shape])
        if w.colour is not None:
            mask &= (key // len(SIZES)) % len(COLOURS) == _COLOUR[w.colour]
        if w.size is not None:
            mask &= key % len(SIZES) == _SIZE[w.size]
        if w.cell is not None:
            only = np.zeros(9, bool)
            only[cell_index(w.cell)] = True
            mask &= only
        return mask
