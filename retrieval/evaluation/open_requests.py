"""Open requests: does the top result do what the person asked? (`evaluate --open-requests`, shapes world)

The closed benchmark asks each family's reference for one of its siblings, whose exact scene is in the
gallery by construction. Here a request is what a person types of any picture: a random reference of the
split's gallery, one random applicable edit of a kind drawn uniformly among recolour, resize, move, add,
remove, replace and two edits at once, worded in the held-out part of `retrieval.datasets.shapes_speech`
(templates, frames and joiners no training saw). Every result is judged from the scene graphs
(`retrieval.datasets.shapes_requests`):

- exists: the exact edited scene is in the gallery; exact@10: it is in the top 10, where it exists;
- satisfied@1: the first result does what was asked; good@k: a result in the top k does it and keeps at
  least half of the untouched objects;
- mAP@10 (CIRCO's): every good picture of the gallery is a ground truth;
- limit: the share of requests for which the gallery holds any good picture (what a perfect ranking gets
  for good@k).

Starting from words alone: a description of one to three objects of a random gallery picture (shape, and
at random colour, size and place), held-out wording, ranked by the text feature; good = the picture holds
every object described.

The reference is left out of each ranking (as in CIRR's protocol and as the product does). Intervals are 95%:
Wilson's for shares, normal for mAP. The world is synthetic: these figures measure the model on the world's
own pictures and words, not on photographs.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from retrieval.datasets.base import SplitData, Triplet
from retrieval.datasets.shapes import Scene, scene_diff
from retrieval.datasets.shapes_requests import REQUEST_KINDS, Request, SceneTable, random_request
from retrieval.datasets.shapes_speech import Part, Unknown, Wanted, wanted_from, word_description, word_request
from retrieval.evaluation.intervals import mean_interval, wilson
from retrieval.evaluation.judged import judged_ranked
from retrieval.evaluation.recall import Gallery, query_features, ranked, recall_at, target_ranks
from retrieval.fusion.fuser import Fuser, Mode
from retrieval.fusion.judging import JudgeStage
from retrieval.models.clip_encoder import ClipEncoder
from retrieval.vectors import normalize

TOP = 10
OPEN_MODES = (Mode.IMAGE, Mode.TEXT, Mode.SUM, Mode.SUM_NORMALIZED, Mode.COMBINER)
JUDGED = "combiner+judge"  # the Combiner's pool ordered by the judge: what the product serves with a judge


@dataclass(frozen=True)
class OpenQuery:
    reference: str  # gallery name
    request: Request
    text: str


def share(flags: Sequence[bool] | NDArray[np.bool_]) -> dict[str, Any]:
    flags = np.asarray(flags, bool)
    return {"value": round(float(flags.mean()), 4) if len(flags) else 0.0, "ci95": wilson(int(flags.sum()), len(flags))}


def mean_ci(values: Sequence[float] | NDArray[np.float64]) -> dict[str, Any]:
    v = np.asarray(values, np.float64)
    return {"value": round(float(v.mean()), 4) if len(v) else 0.0, "ci95": mean_interval(v)}


def average_precision(relevant: NDArray[np.bool_], top: NDArray[np.int64], total: int, k: int = TOP) -> float:
    """CIRCO's AP@k: precision at each relevant rank of the top k, over min(k, number of ground truths)."""
    if total == 0:
        return 0.0
    hits = relevant[top[:k]]
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision * hits).sum() / min(k, total))


def draw_open_queries(
    scenes: dict[str, Scene],
    names: Sequence[str],
    count: int,
    seed: int,
    part: Part = "held-out",
    unknown: Unknown | None = None,
) -> list[OpenQuery]:
    """`count` requests of random references among `names`, kinds drawn uniformly, worded in `part` (with
    `unknown`'s words in place of the templates' own in its share of them)."""
    rng = random.Random(f"open-requests-{seed}")
    out = []
    for _ in range(count):
        name = rng.choice(names)
        request = random_request(scenes[name], rng)
        out.append(OpenQuery(name, request, word_request(request.edits, request.reference, part, rng, unknown)))
    return out


def draw_descriptions(
    scenes: dict[str, Scene], names: Sequence[str], count: int, seed: int, part: Part = "held-out"
) -> list[tuple[tuple[Wanted, ...], str]]:
    rng = random.Random(f"descriptions-{seed}")
    out: list[tuple[tuple[Wanted, ...], str]] = []
    while len(out) < count:
        scene = scenes[rng.choice(names)]
        if scene:
            wanted = wanted_from(scene, rng)
            out.append((wanted, word_description(wanted, part, rng)))
    return out


def _top(scores: torch.Tensor, exclude: NDArray[np.int64] | None, k: int) -> NDArray[np.int64]:
    if exclude is not None:
        scores[torch.arange(len(scores)), torch.from_numpy(exclude)] = -torch.inf
    return torch.topk(scores, k, dim=1).indices.numpy()


def open_request_figures(
    encoder: ClipEncoder,
    fuser: Fuser,
    data: SplitData,
    scenes: dict[str, Scene],
    gallery: Gallery,
    *,
    modes: Sequence[Mode] | None = None,
    requests: int = 400,
    descriptions: int = 400,
    seed: int = 0,
    part: Part = "held-out",
    closed: bool = True,
    judge: JudgeStage | None = None,
    regions: NDArray[np.float16] | None = None,
) -> dict[str, Any]:
    """Every figure of the module doc, per mode, plus (with `closed`) the closed benchmark's Recall@K in
    training and in held-out wording (the same queries, re-worded from their scene difference). `part`
    "train" words the requests as training does: for model selection, which must not see held-out words.
    With a `judge` (and the gallery's `regions`, row for row), the Combiner's pool ordered by it is one
    more mode, `combiner+judge`, in the open requests and the closed benchmark."""
    if modes is None:
        modes = [m for m in OPEN_MODES if m is not Mode.COMBINER or fuser.combiner is not None]
    names = [n for n in gallery.names if n in scenes]
    rows = gallery.rows(names)
    table = SceneTable([scenes[n] for n in names])
    feats = torch.from_numpy(normalize(gallery.features[rows]))
    position = {n: i for i, n in enumerate(names)}
    queries = draw_open_queries(scenes, names, requests, seed, part)
    judged = [table.judge(q.request) for q in queries]
    refs = np.array([position[q.reference] for q in queries], np.int64)
    exists = np.array([j.exact.any() for j in judged])
    good_total = np.array([int(j.good.sum()) for j in judged])
    out: dict[str, Any] = {
        "synthetic": "shapes world: figures judged from generated scene graphs, not photographs",
        "requests": requests,
        "seed": seed,
        "wording": part,
        "kinds": {k: sum(q.request.kind == k for q in queries) for k in REQUEST_KINDS},
        "exists": share(exists),
        "limit": share(good_total > 0),
        "modes": {},
    }
    local = Gallery(names, gallery.features[rows])
    for mode in modes:
        fused = _fuse(encoder, fuser, local, queries, mode)
        top = _top(torch.from_numpy(fused) @ feats.T, refs, TOP)
        out["modes"][mode.value] = _request_metrics(top, judged, queries, exists, good_total)
    if judge is not None and regions is not None and fuser.combiner is not None:
        fused = _fuse(encoder, fuser, local, queries, Mode.COMBINER)
        top = judged_ranked(
            judge, fused, local, regions[rows], [q.reference for q in queries], [q.text for q in queries]
        )
        out["modes"][JUDGED] = _request_metrics(top, judged, queries, exists, good_total)
    words = draw_descriptions(scenes, names, descriptions, seed, part)
    text = torch.from_numpy(normalize(encoder.encode_texts([t for _, t in words])))
    top = _top(text @ feats.T, None, TOP)
    relevant = [table.described(w) for w, _ in words]
    out["from_words"] = {"descriptions": descriptions, "mode": "text", **_words_metrics(top, relevant)}
    if judge is not None and judge.blank is not None and regions is not None:  # as the worker serves words alone
        top = judged_ranked(judge, normalize(text.numpy()), local, regions[rows], None, [t for _, t in words])
        out["from_words_judged"] = {"descriptions": descriptions, "mode": "text+judge", **_words_metrics(top, relevant)}
    if closed:
        out["closed_wording"] = closed_wording(encoder, fuser, data, scenes, gallery, seed)
        if judge is not None and regions is not None and fuser.combiner is not None:
            out["closed_wording_judged"] = closed_wording(
                encoder, fuser, data, scenes, gallery, seed, judge=(judge, regions)
            )
    return out


def _words_metrics(top: NDArray[np.int64], relevant: Sequence[NDArray[np.bool_]]) -> dict[str, Any]:
    return {
        "good@1": share([r[t[0]] for r, t in zip(relevant, top, strict=True)]),
        "good@10": share([r[t].any() for r, t in zip(relevant, top, strict=True)]),
        "mAP@10": mean_ci([average_precision(r, t, int(r.sum())) for r, t in zip(relevant, top, strict=True)]),
    }


def _fuse(encoder: ClipEncoder, fuser: Fuser, gallery: Gallery, queries: Sequence[OpenQuery], mode: Mode) -> Any:
    triplets = [Triplet(i, q.reference, q.text, None) for i, q in enumerate(queries)]
    return query_features(encoder, fuser, gallery, triplets, mode)


def _request_metrics(
    top: NDArray[np.int64], judged: list[Any], queries: Sequence[OpenQuery], exists: NDArray[np.bool_], good_total: Any
) -> dict[str, Any]:
    sat1 = [j.satisfied[t[0]] for j, t in zip(judged, top, strict=True)]
    good1 = np.array([j.good[t[0]] for j, t in zip(judged, top, strict=True)])
    good5 = [j.good[t[:5]].any() for j, t in zip(judged, top, strict=True)]
    good10 = [j.good[t].any() for j, t in zip(judged, top, strict=True)]
    exact10 = [j.exact[t].any() for j, t, e in zip(judged, top, exists, strict=True) if e]
    aps = [average_precision(j.good, t, int(g)) for j, t, g in zip(judged, top, good_total, strict=True)]
    by_kind = {}
    for kind in REQUEST_KINDS:
        mine = np.array([q.request.kind == kind for q in queries])
        if mine.any():
            by_kind[kind] = round(float(good1[mine].mean()), 4)
    return {
        "satisfied@1": share(sat1),
        "good@1": share(good1),
        "good@5": share(good5),
        "good@10": share(good10),
        "mAP@10": mean_ci(aps),
        "exact@10_where_exists": share(exact10),
        "good@1_by_kind": by_kind,
    }


def closed_wording(
    encoder: ClipEncoder,
    fuser: Fuser,
    data: SplitData,
    scenes: dict[str, Scene],
    gallery: Gallery,
    seed: int,
    part: Part = "held-out",
    judge: tuple[JudgeStage, NDArray[np.float16]] | None = None,
    unknown: Unknown | None = None,
) -> dict[str, Any]:
    """Recall@1/10 of the Combiner on the split's benchmark queries, worded as annotated (the first training
    templates) and re-worded in `part` of the grammar: words the model never saw should cost little. With
    `judge` (the stage and the gallery's regions), the Combiner's pool is ordered by it; with `unknown`, the
    re-wording has its words in place of the templates' own in its share of queries."""
    rng = random.Random(f"closed-held-out-{seed}")
    triplets = [
        t
        for t in data.triplets
        if t.target in gallery.index and t.reference in gallery.index and t.reference in scenes and t.target in scenes
    ]
    reworded = []
    for t in triplets:
        edits = scene_diff(scenes[t.reference], scenes[t.target])  # type: ignore[index]
        words = word_request(edits, scenes[t.reference], part, rng, unknown)
        reworded.append(Triplet(t.pairid, t.reference, words, t.target, t.group))
    out: dict[str, Any] = {}
    for name, chosen in (("training", triplets), (part, reworded)):
        q = query_features(encoder, fuser, gallery, chosen, Mode.COMBINER)
        refs, texts = [t.reference for t in chosen], [t.caption for t in chosen]
        if judge is None:
            top = ranked(q, gallery, refs, top=10)
        else:
            top = judged_ranked(judge[0], q, gallery, judge[1], refs, texts)
        out[name] = recall_at(target_ranks(top, gallery, [t.target for t in chosen]), (1, 10))  # type: ignore[misc]
    out["queries"] = len(triplets)
    return out


def format_open(figures: dict[str, Any]) -> str:
    """The figures as a table for people, each with its 95% interval."""

    def cell(x: dict[str, Any]) -> str:
        lo, hi = x["ci95"]
        return f"{x['value']:.3f} [{lo:.2f}-{hi:.2f}]"

    lines = [
        f"open requests ({figures['requests']}, {figures['wording']} wording; {figures['synthetic']}):",
        f"  exact scene in the gallery {cell(figures['exists'])}; "
        f"gallery holds a good picture {cell(figures['limit'])}",
    ]
    columns = ("satisfied@1", "good@1", "good@5", "mAP@10", "exact@10_where_exists")
    lines.append("  " + f"{'mode':>15} " + " ".join(f"{c:>22}" for c in columns))
    for mode, m in figures["modes"].items():
        lines.append("  " + f"{mode:>15} " + " ".join(f"{cell(m[c]):>22}" for c in columns))
    for key in ("from_words", "from_words_judged"):
        if key in figures:
            words = figures[key]
            lines.append(
                f"  from words alone ({words['descriptions']}, {words['mode']}): good@1 {cell(words['good@1'])} "
                f"good@10 {cell(words['good@10'])} mAP@10 {cell(words['mAP@10'])}"
            )
    for key, name in (("closed_wording", "combiner"), ("closed_wording_judged", JUDGED)):
        if key in figures:
            c = figures[key]
            lines.append(
                f"  closed benchmark, {name}: R@1 {c['training']['recall@1']:.3f} (training wording) vs "
                f"{c['held-out']['recall@1']:.3f} (held-out); R@10 {c['training']['recall@10']:.3f} vs "
                f"{c['held-out']['recall@10']:.3f}"
            )
    return "\n".join(lines)
