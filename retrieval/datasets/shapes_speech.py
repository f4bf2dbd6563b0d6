"""How people word requests in the shapes world: a grammar in two parts, one to train on, one held out.

`retrieval.datasets.shapes_text` is the world's first wording (one short template list per edit kind, what the
annotation files carry). People type more than that: polite frames ("could you ...?"), negations ("not
blue: make the star red"), other verbs and word orders, several edits in one request, and typos. This
module words an edit, several edits, or a description of a scene ("a big green triangle at the top") from
one of two disjoint template sets:

- "train": what the open-request training stage (`retrieval.training.open_train`) samples from; it contains
  every template of `shapes_text` as well;
- "held-out": what the open-request measurement (`retrieval.evaluation.open_requests`) and the simulated person speak;
  no template, frame or joiner of it is used in training (a test checks that none can come out of `TRAIN`).

Typos are a noise process, not a wording: both parts make them at the same rate. So are unknown words
(`Unknown`): training may put words the world never uses in place of a template's own, so that a model
reads an edit from what it names (a colour, a place, an object) when the verb is one it never met.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from retrieval.datasets.shapes import CELL_NAMES, SIZE_WORDS, Edit, Obj, Scene, where
from retrieval.datasets.shapes_text import a_noun, refer

Part = Literal["train", "held-out"]
PARTS: tuple[Part, ...] = ("train", "held-out")

# Slots: {ref} the object as referred to in the scene; {colour}/{old} the new/old colour; {size} a word for
# the new size, {comparative} bigger/smaller, {oldsize} a word for the old size; {cell} a place's name and
# {at} a phrase for it; {thing} the new object with its article ("a big red star").
_TRAIN_EDITS: dict[str, list[str]] = {
    "recolour": [
        "make {ref} {colour}", "change {ref} to {colour}", "turn {ref} {colour}", "{ref} should be {colour}",
        "paint {ref} {colour}", "colour {ref} {colour}", "same but {ref} is {colour}", "recolour {ref} {colour}",
        "{ref} in {colour}", "I want {ref} to be {colour}", "switch {ref} to {colour}",
        "{ref} {colour} instead of {old}", "not {old}: make {ref} {colour}", "the same picture with {ref} {colour}",
    ],
    "resize": [
        "make {ref} {size}", "make {ref} {comparative}", "{grow} {ref}", "{ref} should be {comparative}",
        "{ref} {comparative}", "same but with {ref} {comparative}", "{ref} is too {oldsize}",
        "make {ref} {comparative} than it is", "{ref} should be {size}",
    ],
    "move": [
        "move {ref} to the {cell}", "put {ref} {at}", "shift {ref} to the {cell}", "{ref} goes to the {cell} instead",
        "place {ref} {at}", "{ref} to the {cell}", "move {ref} {at}", "relocate {ref} to the {cell}",
        "{ref} should be {at}", "{ref} over to the {cell}",
    ],
    "add": [
        "add {thing} {at}", "put {thing} {at} too", "also draw {thing} {at}", "add {thing} {at} as well",
        "include {thing} {at}", "{thing} {at} too", "also {thing} {at}", "with {thing} {at}",
        "same plus {thing} {at}", "draw {thing} {at}", "insert {thing} {at}",
    ],
    "remove": [
        "remove {ref}", "take away {ref}", "delete {ref}", "get rid of {ref}", "without {ref}", "no {bare}",
        "erase {ref}", "{ref} should go", "same without {ref}", "I don't want {ref}", "take out {ref}",
        "leave out {ref}",
    ],
    "replace": [
        "replace {ref} with {thing}", "put {thing} {at} instead", "swap {ref} for {thing}",
        "{thing} instead of {ref}", "change {ref} into {thing}", "{thing} in place of {ref}",
        "replace {ref} by {thing}", "instead of {ref}, {thing}", "turn {ref} into {thing}",
        "exchange {ref} for {thing}",
    ],
}  # fmt: skip
_HELD_OUT_EDITS: dict[str, list[str]] = {
    "recolour": [
        "I'd like {ref} in {colour}", "can {ref} be {colour}?", "{colour} for {ref}, please", "let {ref} be {colour}",
        "how about {ref} in {colour}", "{ref} ought to be {colour}, not {old}", "dye {ref} {colour}",
        "{ref}, but {colour}",
    ],
    "resize": [
        "I want {ref} {comparative}", "{ref} needs to be {comparative}", "could {ref} be {comparative}?",
        "a {comparative} version of {ref}", "{ref} looks too {oldsize}", "{ref} at {size} size",
    ],
    "move": [
        "{ref} belongs at the {cell}", "I'd rather have {ref} at the {cell}", "could {ref} sit at the {cell}?",
        "slide {ref} to the {cell}", "{ref} would look better at the {cell}", "have {ref} at the {cell} instead",
    ],
    "add": [
        "there should also be {thing} at the {cell}", "I need {thing} at the {cell} too",
        "throw in {thing} at the {cell}", "{thing} at the {cell} would be nice",
    ],
    "remove": [
        "lose {ref}", "{ref} shouldn't be there", "drop {ref}, please", "get {ref} out of there", "{ref} has to go",
        "everything except {ref}",
    ],
    "replace": [
        "I'd prefer {thing} where {ref} is", "use {thing} rather than {ref}", "{ref} becomes {thing}",
        "trade {ref} for {thing}", "where {ref} is, draw {thing}",
    ],
}  # fmt: skip
_FRAMES: dict[Part, list[str]] = {
    "train": ["please {r}", "{r} please", "could you {r}", "can you {r}?", "{r}!", "now {r}", "ok, {r}"],
    "held-out": ["would you mind: {r}", "{r}, thanks", "hmm, {r}", "alright, {r}", "{r}. thank you"],
}
_JOINERS: dict[Part, list[str]] = {
    "train": [" and ", ", and ", ", then ", " and also ", "; ", " plus ", ". ", " and then "],
    "held-out": ["; also ", ", as well as that ", ", besides that ", " - and ", " with also "],
}
# Asking for a picture from words alone: the objects, then a frame.
_DESCRIPTION_FRAMES: dict[Part, list[str]] = {
    "train": ["{d}", "a picture of {d}", "show me {d}", "find {d}", "an image with {d}", "I want {d}", "{d} please"],
    "held-out": ["I'm looking for {d}", "something with {d}", "do you have {d}?", "any picture containing {d}"],
}
TEMPLATES: dict[Part, dict[str, list[str]]] = {"train": _TRAIN_EDITS, "held-out": _HELD_OUT_EDITS}
FRAME_RATE = 0.35  # share of requests wrapped in a polite frame
TYPO_RATE = 0.1  # share of requests with one typo


@dataclass(frozen=True)
class Unknown:
    """Words the world never uses (`retrieval.training.unknown_words` draws them), put in place of a template's
    own words: in a `share` of requests, each of the template's, frame's and joiner's words becomes one of
    `words` with probability `rate`; the slots (the objects, colours, sizes and places) are kept."""

    words: tuple[str, ...]
    share: float = 0.5
    rate: float = 0.5

    def blur(self, template: str, rng: random.Random) -> str:
        def swap(m: re.Match[str]) -> str:
            word = m.group(0)
            if word.startswith("{") or rng.random() >= self.rate:
                return word
            return rng.choice(self.words)

        return _WORD_OR_SLOT.sub(swap, template)


_WORD_OR_SLOT = re.compile(r"\{[a-z]+\}|[A-Za-z']+")


def grammar_words() -> frozenset[str]:
    """Every word of both parts' templates, frames and joiners and of the slots' fixed vocabulary (sizes,
    places), lower case."""
    texts: list[str] = [w for words in SIZE_WORDS.values() for w in words] + list(CELL_NAMES.values())
    texts += ["bigger larger smaller enlarge grow shrink reduce"]
    for part in PARTS:
        texts += [t for kind in TEMPLATES[part].values() for t in kind]
        texts += _FRAMES[part] + _JOINERS[part] + _DESCRIPTION_FRAMES[part]
    return frozenset(w.lower() for t in texts for w in _WORD_OR_SLOT.findall(t) if not w.startswith("{"))


def _slots(edit: Edit, scene: Scene, rng: random.Random) -> dict[str, str]:
    b, a = edit.before, edit.after
    words: dict[str, str] = {}
    if b is not None:
        words["ref"] = refer(b, scene, rng)
        words["bare"] = words["ref"].removeprefix("the ")
        words["old"] = b.colour
        words["oldsize"] = rng.choice(SIZE_WORDS[b.size])
    if a is not None:
        bigger = a.size == "large"
        words |= {
            "colour": a.colour,
            "size": rng.choice(SIZE_WORDS[a.size]),
            "comparative": rng.choice(["bigger", "larger"]) if bigger else "smaller",
            "grow": rng.choice(["enlarge", "grow"]) if bigger else rng.choice(["shrink", "reduce"]),
            "cell": CELL_NAMES[a.cell],
            "at": where(a.cell, rng),
            "thing": a_noun(a, rng),
        }
    return words


def typo(text: str, rng: random.Random) -> str:
    """One slip of the keyboard in one word of four or more letters: two letters swapped, one dropped or
    one doubled. Text without such a word comes back unchanged."""
    words = text.split(" ")
    long = [i for i, w in enumerate(words) if len(w) >= 4 and w.isalpha()]
    if not long:
        return text
    i = rng.choice(long)
    w, j = words[i], rng.randrange(1, len(words[i]) - 1)
    kind = rng.randrange(3)
    if kind == 0:
        w = w[:j] + w[j + 1] + w[j] + w[j + 2 :]
    elif kind == 1:
        w = w[:j] + w[j + 1 :]
    else:
        w = w[:j] + w[j] + w[j:]
    words[i] = w
    return " ".join(words)


def _dress(text: str, part: Part, rng: random.Random, unknown: Unknown | None = None) -> str:
    if rng.random() < FRAME_RATE:
        frame = rng.choice(_FRAMES[part])
        text = (unknown.blur(frame, rng) if unknown else frame).format(r=text)
    if rng.random() < TYPO_RATE:
        text = typo(text, rng)
    return text


def word_edit(edit: Edit, scene: Scene, part: Part, rng: random.Random, unknown: Unknown | None = None) -> str:
    """One edit of `scene` as a person would type it, in a template of `part` (without frame or typo); with
    `unknown`, the template's own words blurred (`Unknown.blur`)."""
    template = rng.choice(TEMPLATES[part][edit.kind])
    if unknown:
        template = unknown.blur(template, rng)
    return template.format(**_slots(edit, scene, rng))


def word_request(
    edits: Sequence[Edit], scene: Scene, part: Part, rng: random.Random, unknown: Unknown | None = None
) -> str:
    """One request for all of `edits` (applied in order to `scene`), framed and with typos as people type;
    with `unknown`, a share of requests have words the world never uses in place of the templates' own."""
    blurred = unknown if unknown and rng.random() < unknown.share else None
    parts = []
    for edit in edits:
        parts.append(word_edit(edit, scene, part, rng, blurred))
        scene = edit.apply(scene)
    joiner = rng.choice(_JOINERS[part])
    return _dress((blurred.blur(joiner, rng) if blurred else joiner).join(parts), part, rng, blurred)


@dataclass(frozen=True)
class Wanted:
    """One object asked for by words alone: a shape, and the colour, size and place when they are said."""

    shape: str
    colour: str | None = None
    size: str | None = None
    cell: tuple[int, int] | None = None

    def matches(self, o: Obj) -> bool:
        return (
            o.shape == self.shape
            and self.colour in (None, o.colour)
            and self.size in (None, o.size)
            and self.cell in (None, o.cell)
        )


def wanted_from(scene: Scene, rng: random.Random, most: int = 3) -> tuple[Wanted, ...]:
    """One to `most` objects of `scene`, each with the shape and, at random, its colour, size and place (the
    colour most often: it is what people say first)."""
    count = rng.randint(1, min(most, len(scene)))
    out = []
    for o in rng.sample(list(scene), count):
        out.append(
            Wanted(
                o.shape,
                o.colour if rng.random() < 0.85 else None,
                o.size if rng.random() < 0.5 else None,
                o.cell if rng.random() < 0.3 else None,
            )
        )
    return tuple(out)


def word_description(wanted: tuple[Wanted, ...], part: Part, rng: random.Random, unknown: Unknown | None = None) -> str:
    """'a big green triangle at the top and a red star', framed as a request of `part` (with `unknown`, a
    share of frames blurred)."""
    phrases = []
    for w in wanted:
        size = rng.choice(SIZE_WORDS[w.size]) if w.size else None
        noun = " ".join(x for x in (size, w.colour, w.shape) if x)
        article = "an" if noun[0] in "aeiou" else "a"
        phrases.append(f"{article} {noun}" + (f" {where(w.cell, rng)}" if w.cell else ""))
    joined = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    frame = rng.choice(_DESCRIPTION_FRAMES[part])
    if unknown and rng.random() < unknown.share:
        frame = unknown.blur(frame, rng)
    text = frame.format(d=joined)
    return typo(text, rng) if rng.random() < TYPO_RATE else text
