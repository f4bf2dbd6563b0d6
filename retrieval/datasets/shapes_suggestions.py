"""Requests worth suggesting on a shapes collection: for each picture, a few a person could type with it as the
reference whose exact result is another picture of the same collection.

A request is one edit (`shapes.Edit`) in the world's annotation wording (`shapes_text.phrase`, never the
held-out grammar of `shapes_speech`, which measures how the model copes with wording it never saw). The edited
scene must be in the collection, so a suggestion always has a right answer to find.

Finding every picture's one-edit neighbours by trying each edit (`all_edits`: hundreds a scene) or each pair
of pictures would take seconds to minutes on a demo collection. Instead each scene is filed under keys that a
one-edit neighbour shares with it: per cell, the scene without that cell (recolour, resize, replace, add and
remove change one cell only), and per object, the scene without it plus the object's look (a move changes
only the object's cell). Two pictures filed under one key are one edit apart (or twins, or a recolour and a
resize apart: left out), and the edit is read off their objects under it.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

from retrieval.datasets.shapes import CELLS, COLOURS, SHAPES, SIZES, Edit, EditKind, Obj, Scene
from retrieval.datasets.shapes_text import phrase

SUGGESTIONS = 4  # chips a page shows under the message box
SCANNED_PER_KEY = 64  # neighbours looked at per key: a demo's start pictures have ~60 under one cell's key


@dataclass(frozen=True)
class Suggestion:
    """A request (`text`) that turns the picture into `target` (another picture's name) by `edit`."""

    text: str
    target: str
    edit: Edit


_LOOKS = [(shape, colour, size) for shape in SHAPES for colour in COLOURS for size in SIZES]
_CODE = {look: 1 + i for i, look in enumerate(_LOOKS)}  # an object's look as a number, 0 for an empty cell
_BASE = len(_CODE) + 1
_PLACE = {cell: _BASE**i for i, cell in enumerate(CELLS)}  # a scene is one integer: a digit per cell

Entry = tuple[int, Obj | None, int]  # a key, my object under it (None: an empty cell) and the object's code


def _cell_kind(mine: int, theirs: int) -> EditKind | None:
    """The one edit that turns the object coded `mine` into `theirs` in one cell (0: none there); None when
    they are the same, or two edits apart (recolour and resize)."""
    if mine == theirs:
        return None
    if not mine or not theirs:
        return "add" if not mine else "remove"
    (shape, colour, size), (shape2, colour2, size2) = _LOOKS[mine - 1], _LOOKS[theirs - 1]
    if shape != shape2:
        return "replace"
    if colour != colour2 and size != size2:
        return None
    return "recolour" if colour != colour2 else "resize"


_CELL_KINDS = [[_cell_kind(mine, theirs) for theirs in range(_BASE)] for mine in range(_BASE)]


def _keys(scene: Scene) -> list[Entry]:
    """The scene's keys (integers: hashed at once, unlike tuples of dataclasses), each with my object there:
    the one at the key's cell (or None), or the one moved. A cell key is the scene without that cell, and
    the cell; a move key is the scene without the object, and the object's look (negative: apart)."""
    codes = {o.cell: (_CODE[o.shape, o.colour, o.size], o) for o in scene}
    whole = sum(code * _PLACE[cell] for cell, (code, _) in codes.items())
    keys: list[Entry] = []
    for i, cell in enumerate(CELLS):
        code, obj = codes.get(cell, (0, None))
        rest = whole - code * _PLACE[cell]
        keys.append((rest * len(CELLS) + i, obj, code))
        if obj is not None:
            keys.append((-(rest * _BASE + code) - 1, obj, code))
    return keys


def one_edit_requests(scenes: Mapping[str, Scene], count: int = SUGGESTIONS) -> dict[str, list[Suggestion]]:
    """For each picture of `scenes` (name -> scene: the whole collection), up to `count` requests whose one
    edit turns it into another picture of `scenes`: of different kinds where it can (a recolour, a move, an
    addition ...), worded and chosen the same way on every run (a random generator seeded by the name)."""
    names = sorted(scenes)
    keys = {name: _keys(scenes[name]) for name in names}
    filed: dict[int, list[tuple[str, Obj | None, int]]] = {}
    for name in names:
        for key, mine, code in keys[name]:
            filed.setdefault(key, []).append((name, mine, code))
    out: dict[str, list[Suggestion]] = {}
    for name in names:
        rng = random.Random(f"suggestions:{name}")
        mine_keys = keys[name]
        rng.shuffle(mine_keys)
        by_kind: dict[EditKind, list[tuple[Obj | None, Obj | None, str]]] = {}
        for key, mine, mine_code in mine_keys:
            others = filed[key]
            if len(others) == 1:  # only me: the common case
                continue
            if len(others) > SCANNED_PER_KEY:
                others = rng.sample(others, SCANNED_PER_KEY)
            kinds = _CELL_KINDS[mine_code]
            for other, theirs, their_code in others:
                if other == name:
                    continue
                # under a move key the objects look the same, in two cells (in one cell: a twin of this picture)
                kind = kinds[their_code] if key >= 0 else ("move" if mine != theirs else None)
                if kind is not None:
                    by_kind.setdefault(kind, []).append((mine, theirs, other))
            if len(by_kind) >= count:  # enough kinds to choose from: the rest would only add more of them
                break
        out[name] = _varied(scenes[name], by_kind, count, rng)
    return out


def _varied(
    scene: Scene, by_kind: dict[EditKind, list[tuple[Obj | None, Obj | None, str]]], count: int, rng: random.Random
) -> list[Suggestion]:
    """Up to `count` suggestions, one kind of edit after another (each candidate: my object, theirs, and their
    picture's name), each worded once."""
    chosen: list[Suggestion] = []
    texts: set[str] = set()
    while len(chosen) < count and any(by_kind.values()):
        for kind in list(by_kind):
            if not by_kind[kind] or len(chosen) == count:
                continue
            mine, theirs, target = by_kind[kind].pop(rng.randrange(len(by_kind[kind])))
            edit = Edit(kind, mine, theirs)
            text = phrase(edit, scene, rng)
            if text not in texts:
                texts.add(text)
                chosen.append(Suggestion(text, target, edit))
    return chosen
