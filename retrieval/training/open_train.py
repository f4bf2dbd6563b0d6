"""Stage 3: open requests. The text tower and the Combiner learn to rank by what was asked, on frozen image
features, with graded relevance from the scene graphs over the whole training gallery.

Stages 1 and 2 teach the model to find a family's one sibling among near-identical pictures. A person asks
for any change of any picture, and the exact edited scene is rarely in a gallery; then the best result is
a picture that does what was asked and keeps the rest (`retrieval.datasets.shapes_requests`). Each step:

- composed queries, half the annotated family pairs (the closed task, exact target present) and half open
  requests (a random training picture, a random edit of any kind, two at once included), worded afresh in
  the training part of `retrieval.datasets.shapes_speech` (the held-out part is never sampled);
- family pairs keep stage 2's loss (cross-entropy on the exact sibling over all training pictures, the own
  reference left out), so the closed task is not traded away;
- open requests: minus the log of the softmax mass (CLIP4Cir's logit scale, over all training pictures)
  that falls on the best-graded pictures, each weighted by exp(tau · (grade − 1)) (exact 1; satisfied
  0.3-0.8 by what is kept; others 0): any good picture on top pays, the exact one most. The reference
  itself is a candidate with no mass: the picture that merely looks like the reference must rank below
  what was asked;
- descriptions from words alone ("a big green triangle at the top"), whose targets are the pictures holding
  every described object, through the raw text feature: a conversation can start from words;
- a share of all these texts (`--unknown`) with words the world never uses in place of the templates' own
  (`retrieval.training.unknown_words`): a request is read from what it names when its verb is new.

The image tower stays as stage 1 left it, so indexes built with it keep their features; CLIP4Cir's
architecture and checkpoint formats are unchanged. Model selection uses the training world's val split
and the training wording only, and the stage keeps its starting weights unless a step beats them there.
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from retrieval.datasets.base import SplitData
from retrieval.datasets.shapes import Scene, scene_diff
from retrieval.datasets.shapes_requests import Request, SceneTable, random_request
from retrieval.datasets.shapes_speech import Unknown, Wanted, wanted_from, word_description, word_request
from retrieval.datasets.shapes_world import load_scenes
from retrieval.evaluation.recall import Gallery, encode_gallery, evaluate_split
from retrieval.fusion.fuser import Fuser, Mode
from retrieval.models.clip_encoder import load_clip
from retrieval.models.combiner_model import Combiner, load_combiner
from retrieval.training.clip_finetune import LOGIT_SCALE
from retrieval.training.clip_pretrain import tokens
from retrieval.training.common import Steps, log, save_weights, seed_everything, train_steps
from retrieval.training.unknown_words import unknown
from retrieval.vectors import normalize


@dataclass(frozen=True)
class OpenSettings:
    steps: int = 3000
    batch: int = 192  # composed queries a step
    descriptions: int = 64  # words-alone queries a step
    lr_text: float = 3e-5
    lr_combiner: float = 5e-5
    tau: float = 8.0  # sharpness of the target distribution over grades
    positives: int = 256  # best-graded pictures that get target mass
    open_per_image: int = 3  # open requests drawn per training picture for the pool
    description_pool: int = 8000
    words_weight: float = 0.5
    open_weight: float = 0.5
    validate_every: int = 750
    max_minutes: float | None = None
    unknown: float = 0.5  # share of training texts with unknown words in place of the templates' own


@dataclass
class Pool:
    """Training queries with their best-graded pictures: reference rows, requests, and [q, positives] targets."""

    refs: np.ndarray
    requests: list[Request]
    rows: np.ndarray  # gallery rows of the positives (-1 pads)
    grades: np.ndarray


def build_pool(requests: list[tuple[int, Request]], table: SceneTable, positives: int) -> Pool:
    rows = np.full((len(requests), positives), -1, np.int64)
    grades = np.zeros((len(requests), positives), np.float32)
    for i, (_, request) in enumerate(requests):
        grade = table.judge(request).grade()
        top = np.argpartition(-grade, positives)[:positives]
        top = top[grade[top] > 0]
        rows[i, : len(top)], grades[i, : len(top)] = top, grade[top]
    return Pool(np.array([r for r, _ in requests], np.int64), [q for _, q in requests], rows, grades)


def positive_mass_loss(
    logits: torch.Tensor, pool_rows: np.ndarray, pool_grades: np.ndarray, tau: float
) -> torch.Tensor:
    """−log of the softmax mass on the positives, each weighted by exp(tau · grade):
    logsumexp(all) − logsumexp(positives + tau · grade). Unlike a cross-entropy with a soft target, it does
    not ask for the mass to be spread over every good picture (a query cannot be near all of them); any good
    picture on top pays, the exact one (grade 1) most."""
    rows, grades = torch.from_numpy(pool_rows), torch.from_numpy(pool_grades)
    picked = logits.gather(1, rows.clamp(min=0)) + tau * (grades - 1)  # weights at most 1: the loss is >= 0
    picked = torch.where(rows >= 0, picked, torch.full_like(picked, -torch.inf))
    some = (rows >= 0).any(dim=1)  # a request no training picture satisfies teaches nothing here
    return (torch.logsumexp(logits[some], dim=1) - torch.logsumexp(picked[some], dim=1)).mean()


def train_open(
    root: Path,
    train: SplitData,
    val: SplitData,
    clip_spec: str,
    combiner_spec: str,
    out_clip: Path,
    out_combiner: Path,
    *,
    settings: OpenSettings = OpenSettings(),
    seed: int = 0,
) -> dict[str, Any]:
    """Fine-tune the text tower of `clip_spec` and the Combiner `combiner_spec` for open requests; the best
    validation step's weights go to `out_clip` and `out_combiner` (full precision): the starting weights
    when no step beats them."""
    seed_everything(seed)
    s = settings
    started = time.monotonic()
    encoder = load_clip(clip_spec, force_fp32=True, compile_images=False, preprocessing="clip")
    model = encoder.model
    combiner = load_combiner(combiner_spec)
    context = model.context_length
    log("stage 3: encoding the training and validation pictures with the frozen image tower")
    gallery = encode_gallery(encoder, train.images, show_progress=False)
    val_gallery = encode_gallery(encoder, val.images, show_progress=False)
    scenes = load_scenes(root, "train")
    names = [n for n in gallery.names if n in scenes]
    assert names == gallery.names, "every training picture needs its scene"
    table = SceneTable([scenes[n] for n in names])
    rng = random.Random(seed)
    log("stage 3: judging the training requests against every training picture")
    family = _family_requests(train, gallery, scenes)
    open_requests = [
        (row, random_request(scenes[name], rng))
        for row, name in enumerate(names)
        for _ in range(s.open_per_image)
        if scenes[name]
    ]
    pools = {"family": build_pool(family, table, s.positives), "open": build_pool(open_requests, table, s.positives)}
    words = _description_pool(scenes, names, table, s.description_pool, s.positives, rng)
    log(f"stage 3: {len(family)} family pairs, {len(open_requests)} open requests, {len(words[0])} descriptions")

    images = torch.from_numpy(gallery.features)
    candidates = F.normalize(images, dim=-1)
    text_params = [p for n, p in model.named_parameters() if not n.startswith("visual.") and n != "logit_scale"]
    for p in model.visual.parameters():
        p.requires_grad_(False)
    optimizer = torch.optim.AdamW(
        [{"params": text_params, "lr": s.lr_text}, {"params": combiner.parameters(), "lr": s.lr_combiner}],
        weight_decay=0.01,
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.05, 1 - step / s.steps))
    out_clip.parent.mkdir(parents=True, exist_ok=True)

    def save(step: int) -> None:
        save_weights(out_clip, "CLIP", model, step=step)
        save_weights(out_combiner, "Combiner", combiner, step=step)

    # the first validation is the bar: stage 3 keeps its starting weights unless a step beats them
    best, history = train_steps(
        Steps("stage 3", [model, combiner], optimizer, schedule, s.steps, s.validate_every, s.max_minutes,
              log_every=100, started=started),
        step_loss=lambda: _step_loss(model, combiner, pools, words, images, candidates, context, s, rng),
        validate=lambda: validate(encoder, combiner, val, val_gallery, root, seed),
        score=lambda figures: figures["score"],
        save=save,
    )  # fmt: skip
    return {
        "settings": asdict(s),
        "best_score": best,
        "history": history,
        "pool": {"family": len(family), "open": len(open_requests), "descriptions": len(words[0])},
        "minutes": round((time.monotonic() - started) / 60, 1),
    }


def _family_requests(train: SplitData, gallery: Gallery, scenes: dict[str, Scene]) -> list[tuple[int, Request]]:
    out = []
    for t in train.triplets:
        if t.target is None or t.reference not in gallery.index or t.target not in gallery.index:
            continue
        edits = scene_diff(scenes[t.reference], scenes[t.target])
        if 0 < len(edits) <= 2:
            out.append((gallery.index[t.reference], Request(scenes[t.reference], tuple(edits))))
    return out


def _description_pool(
    scenes: dict[str, Scene], names: list[str], table: SceneTable, count: int, positives: int, rng: random.Random
) -> tuple[list[tuple[Wanted, ...]], np.ndarray, np.ndarray]:
    wanted: list[tuple[Wanted, ...]] = []
    rows, grades = np.full((count, positives), -1, np.int64), np.zeros((count, positives), np.float32)
    while len(wanted) < count:
        scene = scenes[rng.choice(names)]
        if not scene:
            continue
        w = wanted_from(scene, rng)
        grade = np.where(table.described(w), 1.0 - 0.15 * np.minimum(table.objects - len(w), 3), 0.0)
        top = np.argpartition(-grade, positives)[:positives]
        top = top[grade[top] > 0]
        i = len(wanted)
        rows[i, : len(top)], grades[i, : len(top)] = top, grade[top]
        wanted.append(w)
    return wanted, rows, grades


def _draw(rng: random.Random, population: int, k: int) -> list[int]:
    """k indices below `population`: distinct where there are enough (a small pool repeats some)."""
    return rng.sample(range(population), k) if population >= k else rng.choices(range(population), k=k)


def _step_loss(
    model: Any,
    combiner: Combiner,
    pools: dict[str, Pool],
    words: tuple[list[tuple[Wanted, ...]], np.ndarray, np.ndarray],
    images: torch.Tensor,
    candidates: torch.Tensor,
    context: int,
    s: OpenSettings,
    rng: random.Random,
) -> tuple[torch.Tensor, str]:
    half = s.batch // 2
    blur: Unknown | None = unknown("train", s.unknown)
    picks = {name: _draw(rng, len(pool.refs), half) for name, pool in pools.items()}
    texts, refs, rows, grades = [], [], [], []
    for name, idx in picks.items():
        pool = pools[name]
        for i in idx:
            request = pool.requests[i]
            texts.append(word_request(request.edits, request.reference, "train", rng, blur))
        refs.append(pool.refs[idx])
        rows.append(pool.rows[idx])
        grades.append(pool.grades[idx])
    d = _draw(rng, len(words[0]), s.descriptions)
    texts += [word_description(words[0][i], "train", rng, blur) for i in d]
    features = model.encode_text(tokens(texts, context)).float()
    ref_rows = torch.from_numpy(np.concatenate(refs))
    composed = combiner.combine_features(images[ref_rows], features[: 2 * half])
    logits = LOGIT_SCALE * composed @ candidates.T
    # the closed task as stage 2 poses it: the exact sibling (graded 1), the own reference never a candidate
    family_logits = logits[:half].clone()
    family_logits[torch.arange(half), ref_rows[:half]] = -torch.inf
    exact = torch.from_numpy(rows[0][np.arange(half), grades[0].argmax(axis=1)])
    loss_family = F.cross_entropy(family_logits, exact)
    loss_open = positive_mass_loss(logits[half:], rows[1], grades[1], s.tau)
    said = F.normalize(features[2 * half :], dim=-1)
    loss_words = positive_mass_loss(LOGIT_SCALE * said @ candidates.T, words[1][d], words[2][d], 4.0)
    loss = loss_family + s.open_weight * loss_open + s.words_weight * loss_words
    return loss, f"family {loss_family.item():.3f} open {loss_open.item():.3f} words {loss_words.item():.3f}"


@torch.no_grad()
def validate(
    encoder: Any, combiner: Combiner, val: SplitData, gallery: Gallery, root: Path, seed: int
) -> dict[str, float]:
    """Closed Recall@1 (as annotated, re-worded from the grammar's training part, and re-worded with unknown
    words from validation's half of the pool in place of the templates' own) and @10, open good@1 and
    mAP@10, and words-alone good@10 on the training world's val split, all in training wording (the
    held-out wording and the measurement's world are never looked at); `score` is their mean."""
    from retrieval.evaluation.open_requests import closed_wording, open_request_figures

    model = encoder.model
    model.eval()
    combiner.eval()
    encoder._text_cache.clear()  # the text tower has changed since those features were computed
    fuser = Fuser(combiner, encoder.dim)
    closed = evaluate_split(encoder, fuser, val, Mode.COMBINER, gallery=gallery, show_progress=False)
    scenes = load_scenes(root, "val")
    figures = open_request_figures(
        encoder, fuser, val, scenes, gallery, modes=(Mode.COMBINER,), requests=300, descriptions=300,
        seed=seed + 1000, part="train", closed=False,
    )  # fmt: skip
    opened = figures["modes"]["combiner"]
    reworded = closed_wording(encoder, fuser, val, scenes, gallery, seed, part="train")["train"]
    blurred = closed_wording(encoder, fuser, val, scenes, gallery, seed, part="train", unknown=unknown("val", 1.0))
    out = {
        "recall@1": round(closed["recall@1"], 4),
        "recall@1_reworded": round(reworded["recall@1"], 4),
        "recall@1_unknown": round(blurred["train"]["recall@1"], 4),
        "recall@10": round(closed["recall@10"], 4),
        "good@1": opened["good@1"]["value"],
        "mAP@10": opened["mAP@10"]["value"],
        "words_good@10": figures["from_words"]["good@10"]["value"],
    }
    out["score"] = round(sum(out.values()) / len(out), 4)
    return out


__all__ = ["OpenSettings", "normalize", "train_open"]
