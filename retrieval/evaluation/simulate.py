"""Multi-turn success of a simulated person (`retrieval.evaluation.sim_user`) on a shapes world, against baselines.

An episode: the person holds a hidden target and starts from a picture two or three edits away from it (a
family's reference R -> its double edit D, and its sibling S3 -> D). Each turn they read the current picture,
ask for one or two differences in held-out wordings, look at the `shown` results, and either recognise the
target there (success at this turn) or click the result they judge closest and go on from it, sometimes
rejecting one. Galleries: the split's images with the family's one-edit stepping stones (S1..S4), or
without them (every other member of the target's family removed), where the path must run through
pictures of other families.

Policies, all in the same run on the same episodes: `random` (a random page), `image` (the clicked picture
alone), `text` (the words alone), `combiner` (the product without memory: click + this turn's words) and
`memory` (the Combiner query steered by the conversation, `retrieval.fusion.memory`). "Not this" hides a rejected
picture in every policy, as the product does; only `memory` also steers away from it.

success@k is the share of episodes that saw the target within k turns, with a Wilson 95% interval; good@k
the share whose k-th page held a result doing what the person asked on that turn (judged from the scene
graphs, `retrieval.datasets.shapes_requests`; an episode already successful counts); mean_turns is over
successful episodes, with a normal 95% interval. "Not this" pushes the rejected pictures' look-alikes down in
every policy but `random`, as the product does (`retrieval.fusion.memory.push_away`); `not_this` reports the ranks
the last rejected picture's five closest look-alikes get on the next turn, without and with the push.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.datasets.cirr import load_cirr
from retrieval.datasets.shapes import Scene
from retrieval.datasets.shapes_requests import Request, SceneTable
from retrieval.datasets.shapes_world import load_scenes
from retrieval.evaluation.intervals import wilson
from retrieval.evaluation.recall import Gallery, encode_gallery
from retrieval.evaluation.sim_user import UserModel, judge, perceive, request_edits
from retrieval.fusion.fuser import Fuser, Mode
from retrieval.fusion.memory import DEFAULT_WEIGHTS, MemoryWeights, Remembered, demote, push_away, steer
from retrieval.models.clip_encoder import ClipEncoder
from retrieval.models.preprocessing import TargetPad
from retrieval.models.provenance import encoder_identity
from retrieval.vectors import normalize

POLICIES = ("random", "image", "text", "combiner", "memory")


@dataclass
class World:
    """A split's gallery, scenes and episodes, encoded once for every policy."""

    gallery: Gallery
    normed: np.ndarray
    scenes: dict[str, Scene]
    episodes: list[tuple[str, str, tuple[str, ...]]]  # (start, target, the target's family)
    table: SceneTable = field(init=False)  # the gallery's scenes, in gallery order, to judge each page
    # words -> text features, (picture, words) -> Combiner query: shared by every run on the world (`tune`)
    texts: dict[str, np.ndarray] = field(default_factory=dict)
    queries: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.table = SceneTable([self.scenes[n] for n in self.gallery.names])


def episodes_of(groups: list[tuple[str, ...]]) -> list[tuple[str, str, tuple[str, ...]]]:
    """(start, target, family) of R -> D and S3 -> D of every family (members ordered R, S1..S4, D)."""
    out: list[tuple[str, str, tuple[str, ...]]] = []
    for members in groups:
        if len(members) == 6:
            out += [(members[0], members[5], members), (members[3], members[5], members)]
    return out


def load_world(encoder: ClipEncoder, root: Path, split: str, limit: int | None, seed: int) -> World:
    """The split's episodes and gallery; gallery features are kept under the world (one folder per model)
    so the next run on the same world and model skips the encoding."""
    data = load_cirr(root, split, dataset="shapes")
    padded = any(isinstance(step, TargetPad) for step in getattr(encoder.preprocess, "transforms", []))
    model_key = encoder_identity(encoder.spec, encoder.dim) + ("-padded" if padded else "")
    cache = root / "features" / f"{split}-{model_key}"
    gallery = encode_gallery(encoder, data.images, work_dir=cache, show_progress=False)
    groups = {t.group for t in data.triplets if t.group and all(m in gallery.index for m in t.group)}
    ordered = [tuple(sorted(g, key=lambda n: int(n.rsplit("-", 1)[1]))) for g in sorted(groups)]
    episodes = episodes_of(ordered)
    if limit:
        episodes = random.Random(seed).sample(episodes, min(limit, len(episodes)))
    return World(gallery, normalize(gallery.features), load_scenes(root, split), episodes)


class Querier:
    """A policy's query for a turn, with the text features cached (the same words recur across policies)."""

    def __init__(self, encoder: ClipEncoder, fuser: Fuser, world: World, weights: MemoryWeights) -> None:
        self.encoder, self.fuser, self.world, self.weights = encoder, fuser, world, weights
        self._texts = world.texts
        self.rows = np.arange(len(world.normed), dtype=np.int64)  # the gallery's rows are the ids here

    def text(self, words: str) -> np.ndarray:
        if words not in self._texts:
            self._texts[words] = self.encoder.encode_texts([words])
        return self._texts[words]

    def image(self, name: str) -> np.ndarray:
        return self.world.gallery.features[[self.world.gallery.index[name]]]

    def combined(self, reference: str, words: str) -> np.ndarray:
        key = (reference, words)
        if key not in self.world.queries:
            self.world.queries[key] = self.fuser.fuse(Mode.COMBINER, self.image(reference), self.text(words))[0]
        return self.world.queries[key]

    def scores(self, policy: str, reference: str, words: str, memory: Remembered, rng: random.Random) -> np.ndarray:
        normed = self.world.normed
        if policy == "random":
            return np.random.default_rng(rng.getrandbits(32)).random(len(normed))
        if policy == "image":
            return normed @ normalize(self.image(reference))[0]
        if policy == "text":
            return normed @ normalize(self.text(words))[0]
        query = self.combined(reference, words)
        if policy != "memory":
            return normed @ query
        return demote(normed @ steer(query, memory, self.weights), self.rows, memory, self.weights)


@dataclass
class Episode:
    """How one episode went: the turn the target was recognised (None: not within the turns), whether each
    turn's page held a result doing what the person asked that turn, and, after each "Not this", the ranks
    the rejected picture's closest look-alikes got on the next turn without and with the push-away."""

    found: int | None
    good: list[bool] = field(default_factory=list)
    look_alikes: list[tuple[list[int], list[int]]] = field(default_factory=list)


LOOK_ALIKES = 5  # the rejected picture's nearest pictures whose ranks `simulate` reports


def run_episode(
    querier: Querier,
    policy: str,
    episode: tuple[str, str, tuple[str, ...]],
    *,
    siblings: bool,
    user: UserModel,
    max_turns: int,
    shown: int,
    rng: random.Random,
) -> Episode:
    """Plays one episode: the person refines until they see (and recognise) the target or give up."""
    start, target, family = episode
    world = querier.world
    scenes, index = world.scenes, world.gallery.index
    hidden = {index[start]} | ({index[m] for m in family if m not in (start, target)} if not siblings else set())
    current = start
    earlier: list[np.ndarray] = []
    chosen: list[str] = []
    rejected: list[str] = []
    seen: dict[int, int] = {}  # row -> times shown on earlier turns
    dim = world.gallery.features.shape[1]
    played = Episode(None)
    refused_last: str | None = None  # the picture rejected on the previous turn
    for turn in range(1, max_turns + 1):
        read = perceive(scenes[current], user, rng)
        said = request_edits(read, scenes[target], user, rng)
        if said is None:
            read = scenes[current]
            said = request_edits(read, scenes[target], user, rng)
        assert said is not None  # the current picture is never the target
        words, edits = said
        feats = world.gallery.features
        memory = Remembered(
            np.array(earlier, np.float32).reshape(-1, dim),
            feats[[index[n] for n in chosen]].reshape(-1, dim),
            feats[[index[n] for n in rejected]].reshape(-1, dim),
            querier.combined(start, words)[None] if policy == "memory" and current != start else feats[:0],
            {row: times for row, times in seen.items() if world.gallery.names[row] not in chosen},
        )
        scores = querier.scores(policy, current, words, memory, rng)
        scores[list(hidden | {index[current]})] = -np.inf
        if rejected and policy != "random":  # "Not this" pushes look-alikes down in every mode, as the product
            pushed = push_away(scores, world.normed, world.normed[[index[n] for n in rejected]])
            if refused_last is not None:
                played.look_alikes.append(look_alike_ranks(world.normed, index[refused_last], scores, pushed))
            scores = pushed
        refused_last = None
        rows = np.argsort(-scores, kind="stable")[:shown]
        top = [world.gallery.names[i] for i in rows]
        played.good.append(bool(world.table.judge(Request(read, edits)).good[rows].any()))
        for name in top:  # an overlooked target counts as seen too: the product cannot tell
            seen[index[name]] = seen.get(index[name], 0) + 1
        if target in top:
            if rng.random() >= user.miss_target:
                played.found = turn
                return played
            top.remove(target)  # overlooked: not a picture the person considers this turn
        clicked, refused = judge(top, scenes, read, scenes[target], user, rng)
        if refused is not None:
            rejected.append(refused)
            hidden.add(index[refused])
            refused_last = refused
        if policy == "memory":
            earlier.append(querier.combined(current, words))
            chosen.append(current)
        current = clicked
    return played


def look_alike_ranks(
    normed: np.ndarray, row: int, before: np.ndarray, after: np.ndarray
) -> tuple[list[int], list[int]]:
    """0-based ranks of the picture at `row`'s closest look-alikes under the scores `before` and `after`."""
    likeness = normed @ normed[row]
    likeness[row] = -np.inf
    alike = np.argsort(-likeness)[:LOOK_ALIKES]

    def ranks(scores: np.ndarray) -> list[int]:
        return [int((scores > scores[i]).sum()) for i in alike]

    return ranks(before), ranks(after)


def summarize(policy: str, siblings: bool, played: list[Episode], max_turns: int, shown: int) -> dict[str, Any]:
    """success@k (the target seen within k turns) and good@k (turn k's page held a result doing what the
    person asked that turn; an episode already successful counts as good), each with its Wilson interval,
    and what "Not this" did to the rejected pictures' look-alikes on the next turn."""
    turns = [p.found for p in played]
    found = [t for t in turns if t is not None]
    n = len(turns)
    out: dict[str, Any] = {"policy": policy, "siblings": siblings, "episodes": n, "shown": shown}
    for k in range(1, max_turns + 1):
        hits = sum(1 for t in found if t <= k)
        out[f"success@{k}"] = round(hits / max(n, 1), 4)
        out[f"success@{k}_ci95"] = wilson(hits, n)
    for k in range(1, max_turns + 1):
        good = sum(1 for p in played if (p.found is not None and p.found < k) or (len(p.good) >= k and p.good[k - 1]))
        out[f"good@{k}"] = round(good / max(n, 1), 4)
        out[f"good@{k}_ci95"] = wilson(good, n)
    pairs = [pair for p in played for pair in p.look_alikes]
    if pairs:
        before = np.array([r for b, _ in pairs for r in b])
        after = np.array([r for _, a in pairs for r in a])
        out["not_this"] = {
            "rejections_followed": len(pairs),
            "look_alike_median_rank_before": float(np.median(before)),
            "look_alike_median_rank_after": float(np.median(after)),
            "look_alikes_on_page_before": round(float((before < shown).mean()), 4),
            "look_alikes_on_page_after": round(float((after < shown).mean()), 4),
        }
    mean = float(np.mean(found)) if found else float("nan")
    half = 1.96 * float(np.std(found, ddof=1)) / math.sqrt(len(found)) if len(found) > 1 else float("nan")
    out["mean_turns"] = round(mean, 3)
    out["mean_turns_ci95"] = (round(mean - half, 3), round(mean + half, 3))
    return out


def simulate(
    encoder: ClipEncoder,
    fuser: Fuser,
    root: Path,
    *,
    split: str = "val",
    policies: tuple[str, ...] = POLICIES,
    siblings: tuple[bool, ...] = (True, False),
    max_turns: int = 10,
    shown: int = 10,
    limit: int | None = None,
    seed: int = 0,
    user: UserModel | None = None,
    weights: MemoryWeights = DEFAULT_WEIGHTS,
    world: World | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """One result per (gallery condition, policy); every policy runs the same episodes with the same seeds."""
    user = user or UserModel()
    world = world or load_world(encoder, root, split, limit, seed)
    querier = Querier(encoder, fuser, world, weights)
    results = []
    for with_siblings in siblings:
        for policy in policies:
            played = [
                run_episode(
                    querier,
                    policy,
                    ep,
                    siblings=with_siblings,
                    user=user,
                    max_turns=max_turns,
                    shown=shown,
                    rng=random.Random(f"{seed}-{i}"),
                )
                for i, ep in enumerate(world.episodes)
            ]
            results.append(summarize(policy, with_siblings, played, max_turns, shown))
            if progress:
                progress(f"{policy} siblings={with_siblings}: success@5={results[-1]['success@5']}")
    return results


# The coordinate search of `tune`: each weight in turn over these values, the others held at the best so far.
# The anchor and the demotion of seen results come first: the request weights were searched before they existed.
TUNING_GRID = {
    "anchor": (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5),
    "anchor_growth": (0.5, 0.75, 1.0, 1.5, 2.0),
    "seen": (0.0, 0.01, 0.02, 0.04, 0.08, 0.16),
    "requests": (0.0, 0.25, 0.5, 1.0, 2.0),
    "decay": (0.3, 0.6, 1.0),
    "rejected": (0.0, 0.15, 0.3, 0.6),
    "chosen": (0.0, 0.2, 0.5),
}


def tune(
    encoder: ClipEncoder,
    fuser: Fuser,
    world: World,
    *,
    user: UserModel,
    start: MemoryWeights = DEFAULT_WEIGHTS,
    max_turns: int = 10,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> tuple[MemoryWeights, list[dict[str, Any]]]:
    """Memory weights that maximise mean success@1..5 of the `memory` policy on `world`, which must be a
    training split (the figures are measured elsewhere). Both gallery conditions count."""
    best, best_score, trials = start, -1.0, []
    for name, values in TUNING_GRID.items():
        for value in values:
            weights = MemoryWeights(**{**best.as_dict(), name: value})
            results = simulate(
                encoder, fuser, Path("."), policies=("memory",), max_turns=max_turns, seed=seed, user=user,
                weights=weights, world=world,
            )  # fmt: skip
            score = float(np.mean([r[f"success@{k}"] for r in results for k in range(1, 6)]))
            trials.append({**weights.as_dict(), "score": round(score, 4)})
            if progress:
                progress(f"tune {weights.as_dict()}: {score:.4f}")
            if score > best_score:
                best, best_score = weights, score
    return best, trials
