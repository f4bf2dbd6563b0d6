"""Generating a shapes world on disk, in CIRR's layout and annotation format.

The world is made of families of six images: a reference R, four one-edit siblings S1..S4 (each a different
random edit of R) and D, which makes the edits of S1 and S2 both. A family is one CIRR `img_set`, so
Recall_subset asks the real question: which of these near-identical pictures did the words describe?

Queries (val, test1): R->S1..S4 (one edit), R->D (two edits), S1->D (one edit, from an edited picture).
Training pairs: every ordered pair within a family that differs by at most two edits.

Layout under OUT (the `--root` of the CIRR loader):
  dev/<name>.png  test1/<name>.png  train/<n>/<name>.png
  cirr/captions/cap.rc2.<split>.json      [{pairid, reference, target_hard, target_soft, caption, img_set}]
  cirr/image_splits/split.rc2.<split>.json {name: "./dev/<name>.png"}
  shapes/scenes.<split>.json               {name: {"objects": [...], "description": "..."}}
  shapes/world.json                        seed, counts, command line
"""

from __future__ import annotations

import json
import multiprocessing
import random
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from retrieval.datasets.cirr import read_json
from retrieval.datasets.shapes import (
    Edit,
    Scene,
    all_edits,
    describe,
    possible_edits,
    random_scene,
    render,
    scene_diff,
    scene_from_json,
    scene_to_json,
)
from retrieval.datasets.shapes_text import phrase_all

SPLITS = ("train", "val", "test1")
FOLDERS = {"train": "train", "val": "dev", "test1": "test1"}
FAMILY = 6


@dataclass
class Family:
    index: int
    scenes: list[Scene]  # R, S1, S2, S3, S4, D


def _family(rng: random.Random, seen: set[Scene]) -> list[Scene] | None:
    base = random_scene(rng)
    if base in seen:
        return None
    singles: list[tuple[Edit, Scene]] = []
    for edit in possible_edits(base, rng) + possible_edits(base, rng):
        scene = edit.apply(base)
        if scene not in seen and all(scene != s for _, s in singles) and len(scene_diff(base, scene)) == 1:
            singles.append((edit, scene))
        if len(singles) == 4:
            break
    if len(singles) < 4:
        return None
    try:
        double = singles[1][0].apply(singles[0][1])  # S1's edit and S2's edit together
    except ValueError:
        return None  # the two edits collide (same object or cell): draw another family
    scenes = [base] + [s for _, s in singles] + [double]
    if len(set(scenes)) != FAMILY or double in seen or len(scene_diff(base, double)) != 2:
        return None
    return scenes


def plan_families(count: int, rng: random.Random, seen: set[Scene]) -> list[Family]:
    """`count` families whose scenes appear nowhere else in the world (so no query has a twin target)."""
    families: list[Family] = []
    while len(families) < count:
        scenes = _family(rng, seen)
        if scenes is not None:
            seen.update(scenes)
            families.append(Family(len(families), scenes))
    return families


def image_name(split: str, family: int, member: int) -> str:
    return f"{FOLDERS[split]}-{family}-{member}"


def image_path(split: str, family: int, member: int) -> str:
    name = image_name(split, family, member)
    return f"./train/{family // 500}/{name}.png" if split == "train" else f"./{FOLDERS[split]}/{name}.png"


def query_pairs(split: str) -> list[tuple[int, int]]:
    """Which (reference, target) members of a family become annotations."""
    if split != "train":
        return [(0, 1), (0, 2), (0, 3), (0, 4), (0, 5), (1, 5)]
    return [(a, b) for a in range(FAMILY) for b in range(FAMILY) if a != b]


def caption_entries(split: str, families: list[Family], seed: int, first_pairid: int) -> list[dict[str, object]]:
    rng = random.Random(f"{seed}-{split}-captions")
    out: list[dict[str, object]] = []
    for fam in families:
        members = [image_name(split, fam.index, m) for m in range(FAMILY)]
        for a, b in query_pairs(split):
            edits = scene_diff(fam.scenes[a], fam.scenes[b])
            if len(edits) > 2:
                continue
            entry: dict[str, object] = {
                "pairid": first_pairid + len(out),
                "reference": members[a],
                "caption": phrase_all(edits, fam.scenes[a], rng),
                "img_set": {"id": fam.index, "members": members},
                "edits": len(edits),
            }
            if split != "test1":  # like CIRR, the test split's targets are not published
                entry["target_hard"] = members[b]
                entry["target_soft"] = {members[b]: 1.0}
            out.append(entry)
    return out


def neighbourhoods(scenes: dict[str, dict[str, Any]], count: int) -> dict[str, Scene]:
    """The one-edit neighbours of the first `count` pictures of a split (name order) that the split does not
    hold yet, each scene once: `dev-n<i>-<j>` is the j-th new neighbour of the i-th picture."""
    have = {scene_from_json(entry["objects"]) for entry in scenes.values()}
    out: dict[str, Scene] = {}
    for i, name in enumerate(sorted(scenes)[:count]):
        scene = scene_from_json(scenes[name]["objects"])
        j = 0
        for edit in all_edits(scene):
            neighbour = edit.apply(scene)
            if neighbour not in have:
                have.add(neighbour)
                out[f"dev-n{i}-{j}"] = neighbour
                j += 1
    return out


def _render_job(job: tuple[str, Scene, int, int]) -> None:
    path, scene, seed, size = job
    render(scene, random.Random(seed), size).save(path, optimize=False, compress_level=1)


def generate_world(
    out: str | Path,
    images: int,
    seed: int = 0,
    *,
    ratios: tuple[float, float, float] = (0.7, 0.2, 0.1),
    size: int = 128,
    workers: int = 2,
    command_line: str = "",
    show_progress: bool = True,
    render_splits: tuple[str, ...] = SPLITS,
    render_families: int | None = None,
    start_neighbourhoods: int = 0,
) -> dict[str, int]:
    """Write a world of about `images` pictures (rounded to whole families) split train/val/test1.

    `render_splits` and `render_families` draw only part of the pictures (the first families of the named
    splits); annotations are always complete, and the loaders skip entries whose images are absent. The
    drawn part is identical to the same part of the whole world: that is how a test re-checks published
    figures on a fixed subset without drawing 25,000 pictures.

    `start_neighbourhoods` N adds to the val split the whole one-edit neighbourhood of its first N pictures
    in name order (what a browsing page shows first), named `dev-n<i>-<j>`, so that any single edit a
    person asks of those pictures has its exact result in the gallery (the demo's start grid)."""
    out = Path(out)
    if images < FAMILY * 3:
        raise ValueError(f"a shapes world needs at least {FAMILY * 3} images (one family per split)")
    rng = random.Random(seed)
    seen: set[Scene] = set()
    counts = [max(1, round(images * r / FAMILY)) for r in ratios]
    plans = {split: plan_families(n, rng, seen) for split, n in zip(SPLITS, counts, strict=True)}
    (out / "cirr" / "captions").mkdir(parents=True, exist_ok=True)
    (out / "cirr" / "image_splits").mkdir(parents=True, exist_ok=True)
    (out / "shapes").mkdir(parents=True, exist_ok=True)
    jobs: list[tuple[str, Scene, int, int]] = []
    pairid, summary = 0, {}
    for split, families in plans.items():
        describe_rng = random.Random(f"{seed}-{split}-descriptions")
        split_map, scenes = {}, {}
        for fam in families:
            for m, scene in enumerate(fam.scenes):
                name, rel = image_name(split, fam.index, m), image_path(split, fam.index, m)
                split_map[name] = rel
                scenes[name] = {"objects": scene_to_json(scene), "description": describe(scene, describe_rng)}
                if split in render_splits and (render_families is None or fam.index < render_families):
                    crc = zlib.crc32(f"{seed}-{split}-{fam.index}-{m}".encode())
                    jobs.append((str(out / rel), scene, crc, size))
        if split == "val" and start_neighbourhoods:
            extra = neighbourhoods(scenes, start_neighbourhoods)
            for name, scene in extra.items():
                split_map[name] = f"./{FOLDERS[split]}/{name}.png"
                scenes[name] = {"objects": scene_to_json(scene), "description": describe(scene, describe_rng)}
                if split in render_splits and render_families is None:
                    crc = zlib.crc32(f"{seed}-{name}".encode())
                    jobs.append((str(out / split_map[name]), scene, crc, size))
            summary["start_neighbourhood_images"] = len(extra)
        captions = caption_entries(split, families, seed, pairid)
        pairid += len(captions)
        _write_json(out / "cirr" / "captions" / f"cap.rc2.{split}.json", captions)
        _write_json(out / "cirr" / "image_splits" / f"split.rc2.{split}.json", split_map)
        _write_json(out / "shapes" / f"scenes.{split}.json", scenes)
        summary[f"{split}_images"], summary[f"{split}_queries"] = len(split_map), len(captions)
    for folder in {str(Path(j[0]).parent) for j in jobs}:
        Path(folder).mkdir(parents=True, exist_ok=True)
    _render_all(jobs, workers, show_progress)
    partial = tuple(render_splits) != SPLITS or render_families is not None
    _write_json(
        out / "shapes" / "world.json",
        {
            "seed": seed,
            "images": images,
            "size": size,
            "command": command_line,
            **summary,
            **({"start_neighbourhoods": start_neighbourhoods} if start_neighbourhoods else {}),
            **({"drawn": {"splits": list(render_splits), "families": render_families}} if partial else {}),
        },
    )
    return summary


def _render_all(jobs: list[tuple[str, Scene, int, int]], workers: int, show_progress: bool) -> None:
    bar = tqdm(total=len(jobs), unit="img", desc="drawing", disable=not show_progress)
    if workers > 1:
        # forkserver, not fork: a process with threads (a web server's, a test runner's) can be forked while
        # one of them holds a lock, and the child then waits on it forever (seen once in the test suite)
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver")) as pool:
            for _ in pool.map(_render_job, jobs, chunksize=64):
                bar.update()
    else:
        for job in jobs:
            _render_job(job)
            bar.update()
    bar.close()


def _write_json(path: Path, data: object) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=None, separators=(",", ":")))
    tmp.replace(path)


def load_scenes(root: str | Path, split: str) -> dict[str, Scene]:
    """The scene graph of every image of a split: name -> Scene."""
    data = read_json(Path(root) / "shapes" / f"scenes.{split}.json", "shapes scene file")
    return {name: scene_from_json(entry["objects"]) for name, entry in data.items()}


def start_grid_coverage(root: str | Path, split: str, count: int, draws: int = 100, seed: int = 0) -> float:
    """The share of random single edits (kind uniform among those that apply, as `possible_edits` draws them)
    of the split's first `count` pictures in name order whose exact result is in the split."""
    scenes = load_scenes(root, split)
    have = set(scenes.values())
    rng = random.Random(seed)
    hits = total = 0
    for name in sorted(scenes)[:count]:
        for _ in range(draws):
            edit = possible_edits(scenes[name], rng)[0]
            hits += edit.apply(scenes[name]) in have
            total += 1
    return hits / total if total else 0.0
