"""Stage 4: the judge (`retrieval.models.judge`) learns, on a shapes world's training split, to order the
Combiner's first candidates by what a request asked (`python -m retrieval train-judge`).

CLIP and the Combiner stay frozen: indexes keep their features, and the judge reads the towers' regions and
tokens. Each step draws requests (a random training picture, a random applicable edit of any kind, worded
from the training part of the grammar), takes a list from the Combiner's first 200 among all training
pictures, as a turn is served (its best, the answers the pool holds, others from further down; never an
answer from outside the pool, which would teach the judge that a low first-stage score means an answer),
and grades each candidate from the scene graphs (`Judgement.grade`). The losses:

- listwise: cross-entropy between the judge's softmax over the list and a target that puts the mass on the
  graded answers, exp(8 (grade - 1)) (the exact scene most, a picture that merely satisfies least);
- "satisfied" and "good", one logistic loss each on the summary (sharper signals than the list alone);
- the object in each region of each candidate (one of 61: empty, or shape x colour x size): the judge's
  object vocabulary, through which it compares a candidate with the reference;
- the object the request wants in each cell: the edited scene's, read from the words and the reference.

Training texts may have words the world never uses in place of the templates' own (`--unknown`, a share of
them; `retrieval.training.unknown_words`), so the judge reads an edit from what it names when the verb is new.

Selection (`validate`): the judged ranking's good@1 on the world's val split in training wording, the same
with unknown words from validation's half of the pool, and words alone's good@10 (held-out words and other
worlds are for measurement only). The best step's weights are kept; the starting point is the
Combiner's own order (the judge's score starts as its cosine).
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
from numpy.typing import NDArray

from retrieval.datasets.base import SplitData
from retrieval.datasets.shapes import Scene, make_scene, render
from retrieval.datasets.shapes_requests import TRIPLES, Request, SceneTable, random_request
from retrieval.datasets.shapes_speech import Part, Unknown, wanted_from, word_description, word_request
from retrieval.datasets.shapes_world import load_scenes
from retrieval.evaluation.open_requests import average_precision
from retrieval.evaluation.recall import encode_gallery
from retrieval.extraction.features import Item
from retrieval.extraction.regions import extract_regions
from retrieval.fusion.judging import fused
from retrieval.models.clip_encoder import ClipEncoder, load_clip
from retrieval.models.combiner_model import Combiner, load_combiner
from retrieval.models.judge import Judge, JudgeConfig, image_regions, load_judge, save_judge, text_tokens
from retrieval.models.provenance import sha256
from retrieval.training.common import Steps, log, optimizer_step, seed_everything, train_steps
from retrieval.training.unknown_words import unknown

OBJECTS = 1 + TRIPLES  # the judge's object vocabulary: an empty cell, or one (shape, colour, size)


@dataclass(frozen=True)
class JudgeSettings:
    steps: int = 3000
    batch: int = 32  # requests per step
    candidates: int = 48  # per request, all from the Combiner's pool: its best `hardest`, answers, others
    hardest: int = 24
    pool: int = 200  # the first stage's candidates, as served (retrieval.fusion.judging.POOL)
    lr: float = 3e-4
    warmup: int = 100
    validate_every: int = 250
    validate_requests: int = 300
    max_minutes: float | None = None
    width: int = 128
    descriptions: int = 16  # per step, lists for words alone (said of the empty picture) beside the edits
    unknown: float = 0.5  # share of training texts with unknown words in place of the templates' own


@dataclass
class Split:
    """A split's pictures as the judge trains on them: features, regions, scenes."""

    names: list[str]
    features: torch.Tensor  # raw CLIP features [n, dim]
    unit: torch.Tensor  # the same, normalized
    regions: torch.Tensor  # [n, cells, dim]
    scenes: list[Scene]
    table: SceneTable

    @property
    def usable(self) -> list[int]:
        return [i for i, s in enumerate(self.scenes) if s]


def load_split(encoder: ClipEncoder, root: Path, data: SplitData) -> Split:
    gallery = encode_gallery(encoder, data.images, show_progress=False)
    scenes = load_scenes(root, data.split)
    names = [n for n in gallery.names if n in scenes]
    assert names == gallery.names, "every picture of the split needs its scene"
    read, regions, _ = extract_regions(encoder, [Item(i, data.images[n]) for i, n in enumerate(names)])
    assert len(read) == len(names), "every picture whose features were read has regions"
    features = torch.from_numpy(gallery.features)
    picked = [scenes[n] for n in names]
    return Split(names, features, F.normalize(features, dim=-1), torch.from_numpy(regions.astype(np.float32)),
                 picked, SceneTable(picked))  # fmt: skip


class Requests:
    """Drawn requests with what the frozen first stage makes of them."""

    def __init__(
        self,
        encoder: ClipEncoder,
        combiner: Combiner,
        split: Split,
        count: int,
        part: Part,
        rng: random.Random,
        blur: Unknown | None = None,
    ) -> None:
        pool = split.usable
        self.refs = [rng.choice(pool) for _ in range(count)]
        self.requests: list[Request] = [random_request(split.scenes[r], rng) for r in self.refs]
        self.texts = [word_request(q.edits, q.reference, part, rng, blur) for q in self.requests]
        with torch.no_grad():
            tokens = encoder.tokenize(self.texts)
            self.words, self.real = text_tokens(encoder.model, tokens)
            said = self.words[torch.arange(count), tokens.argmax(-1)]
            query = combiner.combine_features(split.features[self.refs], said)
            self.cosine = query @ split.unit.T
            self.cosine[torch.arange(count), torch.tensor(self.refs)] = -2.0  # the reference is never an answer


class Descriptions:
    """Drawn descriptions of one to three objects (words alone), with the text ranking's cosine: the first
    stage of a turn without a reference."""

    def __init__(
        self,
        encoder: ClipEncoder,
        split: Split,
        count: int,
        part: Part,
        rng: random.Random,
        blur: Unknown | None = None,
    ) -> None:
        scenes = [split.scenes[rng.choice(split.usable)] for _ in range(count)]
        self.wanted = [wanted_from(scene, rng) for scene in scenes]
        self.texts = [word_description(w, part, rng, blur) for w in self.wanted]
        self.relevant = [split.table.described(w) for w in self.wanted]
        with torch.no_grad():
            tokens = encoder.tokenize(self.texts)
            self.words, self.real = text_tokens(encoder.model, tokens)
            said = self.words[torch.arange(count), tokens.argmax(-1)]
            self.cosine = F.normalize(said, dim=-1) @ split.unit.T


def train_judge(
    root: Path,
    train: SplitData,
    val: SplitData,
    clip_file: Path,
    combiner_file: Path,
    out: Path,
    *,
    settings: JudgeSettings = JudgeSettings(),
    seed: int = 0,
    start: Path | None = None,
) -> dict[str, Any]:
    """Train the judge for the CLIP and Combiner given; the best validation step goes to `out`, recording
    the CLIP's SHA-256 (the judge applies to that CLIP only). `start`: a judge checkpoint to go on from
    (a run cut by its time budget). Returns the run's record."""
    seed_everything(seed)
    s, started = settings, time.monotonic()
    encoder = load_clip(str(clip_file), force_fp32=True, compile_images=False, preprocessing="clip")
    combiner = load_combiner(str(combiner_file)).eval()
    log("stage 4: features and regions of the training and validation pictures")
    tr, va = load_split(encoder, root, train), load_split(encoder, root, val)
    config = JudgeConfig(encoder.dim, tr.regions.shape[1], encoder.context_length, s.width, objects=OBJECTS)
    judge = load_judge(start).train() if start is not None else Judge(config)
    optimizer = torch.optim.AdamW(judge.parameters(), lr=s.lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / s.warmup) * max(0.05, 1 - step / s.steps)
    )
    codes = torch.from_numpy(tr.table.codes.astype(np.int64))
    if start is None:
        log(f"stage 4: the object vocabulary first: {read_objects(judge, tr, codes, va)}")
    rng = random.Random(seed)
    stamp = {"clip_sha256": sha256(clip_file), "combiner_sha256": sha256(combiner_file)}
    blank = blank_regions(encoder)
    started_from = sha256(start) if start is not None else None
    best, history = train_steps(
        Steps("stage 4", [judge], optimizer, schedule, s.steps, s.validate_every, s.max_minutes, clip_norm=1.0,
              started=started),
        step_loss=lambda: _step_loss(judge, encoder, combiner, tr, codes, s, rng, blank),
        validate=lambda: validate(judge, encoder, combiner, va, s, seed, blank),
        score=lambda figures: figures["score"],
        save=lambda step: save_judge(judge, out, step=step, blank=blank, **stamp),
    )  # fmt: skip
    return {
        "settings": asdict(s),
        "best_score": best,  # validate()["score"]; runs before words alone recorded it as best_good@1
        "history": history,
        "minutes": round((time.monotonic() - started) / 60, 1),
        "started_from": started_from,
        **stamp,
    }


def blank_regions(encoder: ClipEncoder) -> torch.Tensor:
    """The regions [cells, dim] of an empty picture of the shapes world (its background, no object): what
    the judge reads as the reference of a request made from words alone."""
    pixels = encoder.preprocess(render(make_scene([]), random.Random(0)))[None].to(encoder.device)
    with torch.no_grad():
        return image_regions(encoder.model, pixels)[0].cpu().float()


def read_objects(judge: Judge, tr: Split, codes: torch.Tensor, va: Split, epochs: int = 30) -> str:
    """Fit the judge's region projection and object head alone to name every training cell's object (a
    linear read of the regions, quick with a high rate), so the judge starts with its vocabulary; returns the
    val split's accuracy."""
    assert judge.objects is not None
    params = [*judge.region_in.parameters(), *judge.objects.parameters()]
    optimizer = torch.optim.Adam(params, lr=1e-2)
    cells = F.normalize(tr.regions.reshape(-1, tr.regions.shape[-1]), dim=-1)
    wanted = codes.reshape(-1)
    for _ in range(epochs):
        for part in torch.randperm(len(cells)).split(8192):
            optimizer_step(optimizer, F.cross_entropy(judge.objects(judge.region_in(cells[part])), wanted[part]))
    with torch.no_grad():
        named = judge.objects(judge.region_in(F.normalize(va.regions, dim=-1))).argmax(dim=-1)
        accuracy = (named == torch.from_numpy(va.table.codes.astype(np.int64))).float().mean().item()
    return f"val cells named right {accuracy:.4f}"


def _step_loss(
    judge: Judge, encoder: ClipEncoder, combiner: Combiner, tr: Split, codes: torch.Tensor, s: JudgeSettings,
    rng: random.Random, blank: torch.Tensor | None = None,
) -> tuple[torch.Tensor, str]:  # fmt: skip
    drawn = Requests(encoder, combiner, tr, s.batch, "train", rng, unknown("train", s.unknown))
    rows, grades, goods = [], [], []
    wanted = torch.from_numpy(SceneTable([q.target for q in drawn.requests]).codes.astype(np.int64))
    for j, request in enumerate(drawn.requests):
        judged = tr.table.judge(request)
        grade = judged.grade()
        rows.append(_candidates(drawn.cosine[j], grade, drawn.refs[j], s, rng))
        grades.append(grade[rows[-1]])
        goods.append(judged.good[rows[-1]])
    chosen = torch.from_numpy(np.array(rows))
    grade_t = torch.from_numpy(np.array(grades))
    good_t = torch.from_numpy(np.array(goods)).float()
    read = judge.encode_request(drawn.words, drawn.real, tr.regions[drawn.refs])
    scores = judge.score(read, tr.regions[chosen], drawn.cosine.gather(1, chosen))
    answered = (grade_t > 0).any(dim=1)  # a list without answers teaches the two logistic losses only
    target = torch.where(grade_t > 0, 8 * (grade_t - 1), torch.full_like(grade_t, -1e4)).softmax(dim=1)
    listwise = -(target * scores.log_softmax(dim=1)).sum(dim=1)[answered].sum() / max(1, int(answered.sum()))
    satisfied = F.binary_cross_entropy_with_logits(judge.last["satisfied"], (grade_t > 0).float())
    good = F.binary_cross_entropy_with_logits(judge.last["good"], good_t)
    cells = F.cross_entropy(judge.last["objects"].reshape(-1, OBJECTS), codes[chosen].reshape(-1))
    asked = F.cross_entropy(judge.last["wanted"].reshape(-1, OBJECTS), wanted.reshape(-1))
    loss = listwise + satisfied + good + cells + asked
    parts = (
        f"list {listwise.item():.3f} satisfied {satisfied.item():.3f} good {good.item():.3f} "
        f"objects {cells.item():.3f} wanted {asked.item():.3f}"
    )
    if s.descriptions and blank is not None:
        alone, said = _words_loss(judge, encoder, tr, codes, s, rng, blank)
        loss, parts = loss + alone, f"{parts} words {said}"
    return loss, parts


def _words_loss(
    judge: Judge, encoder: ClipEncoder, tr: Split, codes: torch.Tensor, s: JudgeSettings, rng: random.Random,
    blank: torch.Tensor,
) -> tuple[torch.Tensor, str]:  # fmt: skip
    """Lists for words alone: the text ranking's pool, said of the empty picture; a picture holding what was
    described is an answer (no cell is asked for, so no loss on the objects wanted per cell)."""
    drawn = Descriptions(encoder, tr, s.descriptions, "train", rng, unknown("train", s.unknown))
    rows = [
        _candidates(drawn.cosine[j], relevant.astype(np.float32), -1, s, rng)
        for j, relevant in enumerate(drawn.relevant)
    ]
    chosen = torch.from_numpy(np.array(rows))
    good_t = torch.from_numpy(np.array([r[row] for r, row in zip(drawn.relevant, rows, strict=True)])).float()
    read = judge.encode_request(drawn.words, drawn.real, blank.expand(len(rows), *blank.shape))
    scores = judge.score(read, tr.regions[chosen], drawn.cosine.gather(1, chosen))
    answered = good_t.any(dim=1)
    target = torch.where(good_t > 0, 0.0, -1e4).softmax(dim=1)
    listwise = -(target * scores.log_softmax(dim=1)).sum(dim=1)[answered].sum() / max(1, int(answered.sum()))
    satisfied = F.binary_cross_entropy_with_logits(judge.last["satisfied"], good_t)
    good = F.binary_cross_entropy_with_logits(judge.last["good"], good_t)
    cells = F.cross_entropy(judge.last["objects"].reshape(-1, OBJECTS), codes[chosen].reshape(-1))
    return listwise + satisfied + good + cells, f"list {listwise.item():.3f}"


def _candidates(
    cosine: torch.Tensor, grade: NDArray[np.float32], reference: int, s: JudgeSettings, rng: random.Random
) -> list[int]:
    """A list from the Combiner's pool: its `hardest`, up to a quarter of the list of the answers the rest
    of the pool holds, then others drawn from the rest."""
    pool = [row for row in cosine.topk(s.pool + 1).indices.tolist() if row != reference][: s.pool]
    chosen = pool[: s.hardest]
    rest = pool[s.hardest :]
    answers = [row for row in rest if grade[row] > 0]
    chosen += rng.sample(answers, min(len(answers), s.candidates // 4))
    others = [row for row in rest if row not in set(chosen)]
    chosen += rng.sample(others, s.candidates - len(chosen))
    return chosen


@torch.no_grad()
def validate(
    judge: Judge, encoder: ClipEncoder, combiner: Combiner, va: Split, s: JudgeSettings, seed: int,
    blank: torch.Tensor | None = None,
) -> dict[str, Any]:  # fmt: skip
    """satisfied@1, good@1, good@5 and mAP@10 of the Combiner alone and judged, on drawn val requests in
    training wording; `ceiling`: the share whose pool holds a good picture; `unknown`: the judged figures of
    the same draw with words the model never met in place of the templates' own (validation's half of the
    pool, never trained on). With `blank` and description lists in training, `words`: good@1 and good@10 of
    words alone, the text ranking and as served. `score`, what selection keeps: the mean of the edits'
    judged good@1, the same with unknown words (when training blurs words) and words alone's good@10."""
    judge.eval()
    drawn = Requests(encoder, combiner, va, s.validate_requests, "train", random.Random(f"judge-val-{seed}"))
    result, ceiling = _validate_edits(judge, va, s, drawn)
    result["ceiling"] = ceiling
    scores = [result["judged"]["good@1"]]
    if s.unknown:
        blurred = Requests(
            encoder, combiner, va, s.validate_requests, "train", random.Random(f"judge-val-{seed}"), unknown("val", 1.0)
        )
        result["unknown"] = _validate_edits(judge, va, s, blurred)[0]["judged"]
        scores.append(result["unknown"]["good@1"])
    if s.descriptions and blank is not None:
        result["words"] = _validate_words(judge, encoder, va, s, seed, blank)
        scores.append(result["words"]["served"]["good@10"])
    result["score"] = round(sum(scores) / len(scores), 4)
    return result


def _validate_edits(judge: Judge, va: Split, s: JudgeSettings, drawn: Requests) -> tuple[dict[str, Any], float]:
    """The Combiner's and the judge's figures on `drawn`, and the share whose pool holds a good picture."""
    out: dict[str, list[tuple[float, ...]]] = {"combiner": [], "judged": []}
    ceiling = []
    for start in range(0, len(drawn.refs), 50):
        part = slice(start, start + 50)
        first = drawn.cosine[part].topk(min(s.pool, len(va.names) - 1), dim=1)
        request = judge.encode_request(drawn.words[part], drawn.real[part], va.regions[drawn.refs[part]])
        scores = judge.score(request, va.regions[first.indices], first.values)
        order = first.indices.gather(1, scores.argsort(dim=1, descending=True))
        for j in range(len(first.indices)):
            judged = va.table.judge(drawn.requests[start + j])
            good, total = judged.good, int(judged.good.sum())
            ceiling.append(float(good[first.indices[j].numpy()].any()))
            for name, top in (("combiner", first.indices[j].numpy()), ("judged", order[j].numpy())):
                ap = average_precision(good, top, total)
                out[name].append((float(judged.satisfied[top[0]]), float(good[top[0]]), float(good[top[:5]].any()), ap))
    keys = ("satisfied@1", "good@1", "good@5", "mAP@10")
    result: dict[str, Any] = {
        name: dict(zip(keys, [round(float(v), 4) for v in np.mean(rows, axis=0)], strict=True))
        for name, rows in out.items()
    }
    return result, round(float(np.mean(ceiling)), 4)


def _validate_words(
    judge: Judge, encoder: ClipEncoder, va: Split, s: JudgeSettings, seed: int, blank: torch.Tensor
) -> dict[str, Any]:
    drawn = Descriptions(encoder, va, s.validate_requests, "train", random.Random(f"judge-words-{seed}"))
    out: dict[str, list[tuple[float, float]]] = {"text": [], "served": []}
    for start in range(0, len(drawn.texts), 50):
        part = slice(start, start + 50)
        first = drawn.cosine[part].topk(min(s.pool, len(va.names)), dim=1)
        said_of = blank.expand(len(first.indices), *blank.shape)
        request = judge.encode_request(drawn.words[part], drawn.real[part], said_of)
        scores = fused(judge.score(request, va.regions[first.indices], first.values).numpy(), first.values.numpy())
        order = np.take_along_axis(first.indices.numpy(), np.argsort(-scores, axis=1, kind="stable"), 1)
        for j in range(len(first.indices)):
            relevant = drawn.relevant[start + j]
            for name, top in (("text", first.indices[j].numpy()), ("served", order[j])):
                out[name].append((float(relevant[top[0]]), float(relevant[top[:10]].any())))
    return {
        name: dict(zip(("good@1", "good@10"), [round(float(v), 4) for v in np.mean(rows, axis=0)], strict=True))
        for name, rows in out.items()
    }
