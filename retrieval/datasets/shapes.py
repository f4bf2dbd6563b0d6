"""The shapes world: scenes of coloured shapes, their descriptions, edits between scenes and their wording.

A scene is a few objects (shape, colour, size) on a 3x3 grid, at most one per cell. Everything a
composed-retrieval model must learn is here in small: attributes (recolour, resize, replace), space (move),
and composition (add, remove). Because scenes are graphs, the difference between any two of them is exact
(`scene_diff`), which gives ground truth for training triplets and for the simulated multi-turn user.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from typing import Literal

from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "star", "cross")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 165, 60),
    "blue": (40, 80, 225),
    "yellow": (240, 205, 30),
    "purple": (140, 60, 190),
    "orange": (250, 130, 20),
}
SIZES = ("small", "large")
CELLS = tuple((r, c) for r in range(3) for c in range(3))
CELL_NAMES = {
    (0, 0): "top left", (0, 1): "top", (0, 2): "top right",
    (1, 0): "left", (1, 1): "centre", (1, 2): "right",
    (2, 0): "bottom left", (2, 1): "bottom", (2, 2): "bottom right",
}  # fmt: skip
CELL_ALIASES = {
    "top": ["top", "top middle"],
    "centre": ["centre", "middle"],
    "bottom": ["bottom", "bottom middle"],
    "left": ["left", "middle left"],
    "right": ["right", "middle right"],
}
SIZE_WORDS = {"small": ["small", "little"], "large": ["large", "big"]}

Cell = tuple[int, int]


@dataclass(frozen=True, order=True)
class Obj:
    cell: Cell
    shape: str
    colour: str
    size: str

    def noun(self, with_size: bool = True) -> str:
        return f"{self.size} {self.colour} {self.shape}" if with_size else f"{self.colour} {self.shape}"


Scene = tuple[Obj, ...]  # sorted by cell: reading order, and a canonical form to compare scenes


def make_scene(objects: list[Obj] | tuple[Obj, ...]) -> Scene:
    cells = [o.cell for o in objects]
    if len(set(cells)) != len(cells):
        raise ValueError("two objects in one cell")
    return tuple(sorted(objects))


def scene_to_json(scene: Scene) -> list[dict[str, object]]:
    return [{"shape": o.shape, "colour": o.colour, "size": o.size, "cell": list(o.cell)} for o in scene]


def scene_from_json(data: list[dict[str, object]]) -> Scene:
    return make_scene([Obj(tuple(d["cell"]), str(d["shape"]), str(d["colour"]), str(d["size"])) for d in data])  # type: ignore[arg-type]


def where(cell: Cell, rng: random.Random | None = None) -> str:
    """A prepositional phrase for a cell: 'at the top left', 'in the centre', 'on the left'."""
    name = CELL_NAMES[cell]
    if rng is not None:
        name = rng.choice(CELL_ALIASES.get(name, [name]))
    if name in ("left", "right", "middle left", "middle right"):
        return f"on the {name}"
    if name in ("centre", "middle"):
        return f"in the {name}"
    corner = " corner" if rng is not None and " " in name and "middle" not in name and rng.random() < 0.3 else ""
    return f"{'in' if corner else 'at'} the {name}{corner}"


def describe(scene: Scene, rng: random.Random | None = None, shuffle: bool = False) -> str:
    """One sentence naming every object with its size, colour and place: in reading order, or in a random
    order with `shuffle` (training varies it so the text encoder learns a set, not a sequence)."""
    objects = list(scene)
    if shuffle and rng is not None:
        rng.shuffle(objects)
    parts = [f"a {o.noun()} {where(o.cell, rng)}" for o in objects]
    if not parts:
        return "an empty picture"
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


# -- drawing ---------------------------------------------------------------------------------------------


def render(scene: Scene, rng: random.Random, size: int = 128) -> Image.Image:
    """Draw the scene with small jitter of place, size, angle and background, so no two renders are alike."""
    tint = rng.randint(-8, 8)
    image = Image.new("RGB", (size, size), (236 + tint, 236 + tint, 232 + tint))
    draw = ImageDraw.Draw(image)
    cell = size / 3
    for o in scene:
        r = cell * (0.26 if o.size == "small" else 0.44) * rng.uniform(0.94, 1.06)
        cx = (o.cell[1] + 0.5) * cell + rng.uniform(-0.05, 0.05) * cell
        cy = (o.cell[0] + 0.5) * cell + rng.uniform(-0.05, 0.05) * cell
        angle = rng.uniform(-0.15, 0.15)
        jitter = rng.randint(-12, 12)
        fill = tuple(max(0, min(255, v + jitter)) for v in COLOURS[o.colour])
        if o.shape == "circle":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
        else:
            draw.polygon(_outline(o.shape, cx, cy, r, angle), fill=fill)
    return image


def _outline(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    def ring(radii: list[float], start: float) -> list[tuple[float, float]]:
        n = len(radii)
        return [
            (
                cx + rad * math.cos(start + angle + 2 * math.pi * i / n),
                cy + rad * math.sin(start + angle + 2 * math.pi * i / n),
            )
            for i, rad in enumerate(radii)
        ]

    if shape == "square":
        return ring([r * 0.95] * 4, math.pi / 4)
    if shape == "triangle":
        return ring([r * 1.1] * 3, -math.pi / 2)
    if shape == "star":
        return ring([r * 1.1, r * 0.45] * 5, -math.pi / 2)
    if shape == "cross":
        w = r * 0.36
        pts = [
            (-w, -r),
            (w, -r),
            (w, -w),
            (r, -w),
            (r, w),
            (w, w),
            (w, r),
            (-w, r),
            (-w, w),
            (-r, w),
            (-r, -w),
            (-w, -w),
        ]
        c, s = math.cos(angle), math.sin(angle)
        return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts]
    raise ValueError(f"unknown shape {shape!r}")


# -- edits -----------------------------------------------------------------------------------------------

EditKind = Literal["recolour", "resize", "move", "add", "remove", "replace"]
EDIT_KINDS: tuple[EditKind, ...] = ("recolour", "resize", "move", "add", "remove", "replace")


@dataclass(frozen=True)
class Edit:
    """One change to a scene. `before` is the object edited (None for add); `after` the result (None for remove)."""

    kind: EditKind
    before: Obj | None
    after: Obj | None

    def apply(self, scene: Scene) -> Scene:
        objects = [o for o in scene if o != self.before]
        if self.before is not None and len(objects) == len(scene):
            raise ValueError(f"{self.before} is not in the scene")
        if self.after is not None:
            if any(o.cell == self.after.cell for o in objects):
                raise ValueError(f"cell {self.after.cell} is taken")
            objects.append(self.after)
        return make_scene(objects)


def scene_diff(a: Scene, b: Scene) -> list[Edit]:
    """The edits that turn scene `a` into scene `b`: as few as possible, in reading order."""
    by_cell_a, by_cell_b = {o.cell: o for o in a}, {o.cell: o for o in b}
    edits: list[Edit] = []
    for cell in CELLS:
        x, y = by_cell_a.get(cell), by_cell_b.get(cell)
        if x is None or y is None or x == y:
            continue
        if x.shape != y.shape:
            edits.append(Edit("replace", x, y))
        elif x.colour != y.colour and x.size != y.size:  # two changes to one object: recolour, then resize
            mid = replace(x, colour=y.colour)
            edits += [Edit("recolour", x, mid), Edit("resize", mid, y)]
        else:
            edits.append(Edit("recolour" if x.colour != y.colour else "resize", x, y))
    gone = [o for c, o in by_cell_a.items() if c not in by_cell_b]
    new = [o for c, o in by_cell_b.items() if c not in by_cell_a]
    for o in list(gone):  # an object that vanished here and reappeared there, unchanged, has moved
        twin = next((n for n in new if (n.shape, n.colour, n.size) == (o.shape, o.colour, o.size)), None)
        if twin is not None:
            edits.append(Edit("move", o, twin))
            gone.remove(o)
            new.remove(twin)
    edits += [Edit("remove", o, None) for o in gone] + [Edit("add", None, n) for n in new]
    return edits


def possible_edits(scene: Scene, rng: random.Random, max_objects: int = 4) -> list[Edit]:
    """A shuffled list with one random edit of each kind that applies to `scene`."""
    free = [c for c in CELLS if all(o.cell != c for o in scene)]
    out: list[Edit] = []
    if scene:
        o = rng.choice(scene)
        out.append(Edit("recolour", o, replace(o, colour=rng.choice([c for c in COLOURS if c != o.colour]))))
        o = rng.choice(scene)
        out.append(Edit("resize", o, replace(o, size="large" if o.size == "small" else "small")))
        o = rng.choice(scene)
        out.append(Edit("replace", o, random_object(rng, o.cell, exclude_shape=o.shape)))
        if free:
            o = rng.choice(scene)
            out.append(Edit("move", o, replace(o, cell=rng.choice(free))))
        if len(scene) > 1:
            out.append(Edit("remove", rng.choice(scene), None))
    if free and len(scene) < max_objects:
        out.append(Edit("add", None, random_object(rng, rng.choice(free))))
    rng.shuffle(out)
    return out


def all_edits(scene: Scene, max_objects: int = 4) -> list[Edit]:
    """Every single edit `possible_edits` can draw for `scene`: its one-edit neighbourhood."""
    free = [c for c in CELLS if all(o.cell != c for o in scene)]
    objects = [Obj(cell, s, c, z) for cell in CELLS for s in SHAPES for c in COLOURS for z in SIZES]
    out: list[Edit] = []
    for o in scene:
        out += [Edit("recolour", o, replace(o, colour=c)) for c in COLOURS if c != o.colour]
        out.append(Edit("resize", o, replace(o, size="large" if o.size == "small" else "small")))
        out += [Edit("replace", o, n) for n in objects if n.cell == o.cell and n.shape != o.shape]
        out += [Edit("move", o, replace(o, cell=c)) for c in free]
        if len(scene) > 1:
            out.append(Edit("remove", o, None))
    if len(scene) < max_objects:
        out += [Edit("add", None, n) for n in objects if n.cell in free]
    return out


def random_object(rng: random.Random, cell: Cell, exclude_shape: str | None = None) -> Obj:
    shape = rng.choice([s for s in SHAPES if s != exclude_shape])
    return Obj(cell, shape, rng.choice(list(COLOURS)), rng.choice(SIZES))


def random_scene(rng: random.Random) -> Scene:
    count = rng.choices([1, 2, 3, 4], weights=[1, 3, 3, 3])[0]
    return make_scene([random_object(rng, cell) for cell in rng.sample(CELLS, count)])
