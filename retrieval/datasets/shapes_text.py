"""Wording for the shapes world: how a person refers to an object and asks for an edit.

Referring expressions use the fewest attributes that single the object out in its scene ("the star",
"the red circle", "the small blue square", "the circle at the top left"), sometimes more, as people do.
Each edit kind has several phrasings so a model learns the edit, not one sentence pattern.
"""

from __future__ import annotations

import random

from retrieval.datasets.shapes import CELL_NAMES, SIZE_WORDS, Edit, Obj, Scene, where


def refer(obj: Obj, scene: Scene, rng: random.Random) -> str:
    """'the red circle': the shortest unambiguous description of `obj` in `scene` (sometimes a longer one)."""
    others = [o for o in scene if o != obj]

    def unique(keys: tuple[str, ...]) -> bool:
        return all(any(getattr(o, k) != getattr(obj, k) for k in keys) for o in others)

    options = []
    for keys in (("shape",), ("colour", "shape"), ("size", "shape"), ("size", "colour", "shape")):
        if unique(keys):
            options.append(keys)
    size = rng.choice(SIZE_WORDS[obj.size])
    words = {"shape": obj.shape, "colour": obj.colour, "size": size}
    if options:
        keys = options[0] if rng.random() < 0.7 else rng.choice(options)
        return "the " + " ".join(words[k] for k in ("size", "colour", "shape") if k in keys)
    # identical twins elsewhere: the place tells them apart
    return f"the {obj.colour} {obj.shape} {where(obj.cell, rng)}"


def a_noun(obj: Obj, rng: random.Random) -> str:
    return f"a {rng.choice(SIZE_WORDS[obj.size])} {obj.colour} {obj.shape}"


def phrase(edit: Edit, scene: Scene, rng: random.Random) -> str:
    """The request a person would type to make `edit` to `scene`."""
    b, a = edit.before, edit.after
    if edit.kind == "recolour":
        assert b and a
        ref = refer(b, scene, rng)
        return rng.choice([
            f"make {ref} {a.colour}", f"change {ref} to {a.colour}", f"turn {ref} {a.colour}",
            f"{ref} should be {a.colour}", f"paint {ref} {a.colour}", f"colour {ref} {a.colour}",
            f"same but {ref} is {a.colour}",
        ])  # fmt: skip
    if edit.kind == "resize":
        assert b and a
        ref = refer(b, scene, rng)
        bigger = a.size == "large"
        return rng.choice([
            f"make {ref} {rng.choice(SIZE_WORDS[a.size])}",
            f"make {ref} {'bigger' if bigger else 'smaller'}",
            f"{'enlarge' if bigger else 'shrink'} {ref}",
            f"{ref} should be {'bigger' if bigger else 'smaller'}",
        ])  # fmt: skip
    if edit.kind == "move":
        assert b and a
        ref, to = refer(b, scene, rng), where(a.cell, rng)
        name = CELL_NAMES[a.cell]
        return rng.choice([
            f"move {ref} to the {name}", f"put {ref} {to}", f"shift {ref} to the {name}",
            f"{ref} goes to the {name} instead", f"place {ref} {to}",
        ])  # fmt: skip
    if edit.kind == "add":
        assert a
        thing, at = a_noun(a, rng), where(a.cell, rng)
        return rng.choice([
            f"add {thing} {at}", f"put {thing} {at} too", f"also draw {thing} {at}",
            f"add {thing} {at} as well", f"include {thing} {at}",
        ])  # fmt: skip
    if edit.kind == "remove":
        assert b
        ref = refer(b, scene, rng)
        return rng.choice([
            f"remove {ref}", f"take away {ref}", f"delete {ref}", f"get rid of {ref}",
            f"without {ref}", f"no {ref.removeprefix('the ')}",
        ])  # fmt: skip
    if edit.kind == "replace":
        assert b and a
        ref, thing, at = refer(b, scene, rng), a_noun(a, rng), where(a.cell, rng)
        return rng.choice([
            f"replace {ref} with {thing}", f"put {thing} {at} instead", f"swap {ref} for {thing}",
            f"{thing} instead of {ref}", f"change {ref} into {thing}",
        ])  # fmt: skip
    raise ValueError(f"unknown edit kind {edit.kind!r}")


def phrase_all(edits: list[Edit], scene: Scene, rng: random.Random) -> str:
    """Several edits as one request, each phrased against the scene as it is when that edit is made."""
    parts = []
    for edit in edits:
        parts.append(phrase(edit, scene, rng))
        scene = edit.apply(scene)
    if len(parts) == 1:
        return parts[0]
    joiner = rng.choice([" and ", ", and ", ", then ", " and also "])
    return joiner.join(parts)
