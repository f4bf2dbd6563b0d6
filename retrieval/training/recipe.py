"""The whole recipe for the offline default model: world -> stage 0 -> stage 1 -> stage 2 -> stage 3 -> export.

Presets: "full" (the committed model; about 1.5 hours on 2 cores, and stage 3 after it) and "quick" (what
`bootstrap_demo` trains when the committed weights are absent: under 10 minutes on 2 cores, lower quality,
no stage 3). The exported checkpoints are stored in half precision (CLIP's own release format) to stay
small; `manifest.json` records the command, seed, wall time, checksums and validation figures.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from retrieval.datasets import load_dataset
from retrieval.datasets.base import SplitData
from retrieval.models.provenance import sha256
from retrieval.training.clip_finetune import finetune_clip
from retrieval.training.clip_pretrain import TinyClipConfig, train_clip
from retrieval.training.combiner_train import train_combiner
from retrieval.training.common import log
from retrieval.training.judge_train import JudgeSettings, train_judge
from retrieval.training.open_train import OpenSettings, train_open


@dataclass(frozen=True)
class RecipePreset:
    stage0_epochs: int
    stage1_epochs: int
    stage2_epochs: int
    stage0_max_minutes: float | None = None
    stage1_max_minutes: float | None = None
    stage2_max_minutes: float | None = None
    max_families: int | None = None  # train on the first N families of the train split only
    stage3: OpenSettings | None = field(default_factory=OpenSettings)  # None: no stage 3


PRESETS = {
    "full": RecipePreset(16, 8, 20),
    # sized to finish in under 10 minutes on 2 cores, world and index included; the time limits are a net
    # no stage 3: measured, it judged its pools and validated for the whole 1.5 minutes it could be given and
    # trained 29 steps, while the preset already took 9 min 20 s without the world and the index
    "quick": RecipePreset(
        6, 1, 8, stage0_max_minutes=4.0, stage1_max_minutes=2.0, stage2_max_minutes=1.5, max_families=1000,
        stage3=None,
    ),
}  # fmt: skip
CLIP_FILE, COMBINER_FILE, MANIFEST = "shapes-clip.pt", "shapes-combiner.pt", "manifest.json"
JUDGE_FILE = "shapes-judge.pt"  # the second stage (retrieval.models.judge), made by `train-judge`
# The world the committed default model was trained on (its train split) and the demo serves (its val split).
DEFAULT_WORLD_SEED, DEFAULT_WORLD_IMAGES = 7, 25200


def export_half(source: Path, target: Path, key: str) -> None:
    """The weights in float16 (floating tensors) under CLIP4Cir's key, with what the checkpoint records
    (best epoch, preprocessing, combining)."""
    saved = torch.load(source, map_location="cpu", weights_only=True)
    half = {k: v.half() if v.is_floating_point() else v for k, v in saved[key].items()}
    recorded = {k: v for k, v in saved.items() if isinstance(v, str | int | float)}
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    torch.save({key: half, **recorded}, tmp)
    tmp.replace(target)


def train_default_models(
    root: Path, out_dir: Path, *, preset: str = "full", seed: int = 0, work_dir: Path | None = None
) -> dict[str, Any]:
    """Train the shapes world's CLIP and Combiner into `out_dir` (the two checkpoints and manifest.json)."""
    p = PRESETS[preset]
    work = work_dir or out_dir / "training"
    started = time.monotonic()
    log(f"training the default models ({preset} preset) on {root}")
    stage0 = train_clip(
        root,
        work / "stage0-clip.pt",
        config=TinyClipConfig(),
        epochs=p.stage0_epochs,
        seed=seed,
        max_minutes=p.stage0_max_minutes,
        max_families=p.max_families,
    )
    train, val = load_dataset("shapes", root, "train"), load_dataset("shapes", root, "val")
    if p.max_families is not None:
        train = first_families(train, p.max_families)
    stage1 = finetune_clip(
        train,
        val,
        str(work / "stage0-clip.pt"),
        work / "stage1-clip.pt",
        epochs=p.stage1_epochs,
        seed=seed,
        max_minutes=p.stage1_max_minutes,
    )
    export_half(work / "stage1-clip.pt", out_dir / CLIP_FILE, "CLIP")
    stage2 = train_combiner(
        train,
        val,
        str(out_dir / CLIP_FILE),
        work / "stage2-combiner.pt",
        epochs=p.stage2_epochs,
        seed=seed,
        max_minutes=p.stage2_max_minutes,
    )
    stage3: dict[str, Any] | None = None
    if p.stage3 is None:
        export_half(work / "stage2-combiner.pt", out_dir / COMBINER_FILE, "Combiner")
    else:
        stage3 = train_open(
            root,
            train,
            val,
            str(out_dir / CLIP_FILE),
            str(work / "stage2-combiner.pt"),
            work / "stage3-clip.pt",
            work / "stage3-combiner.pt",
            settings=p.stage3,
            seed=seed,
        )
        export_half(work / "stage3-clip.pt", out_dir / CLIP_FILE, "CLIP")
        export_half(work / "stage3-combiner.pt", out_dir / COMBINER_FILE, "Combiner")
    manifest = {
        "preset": preset,
        "seed": seed,
        "world": str(root),
        "command": " ".join(sys.argv),
        "wall_seconds": round(time.monotonic() - started, 1),
        "tiny_clip": asdict(TinyClipConfig()),
        "stage0": stage0,
        "stage1": stage1,
        "stage2": stage2,
        "stage3": stage3,
        "files": {
            name: {"sha256": sha256(out_dir / name), "bytes": (out_dir / name).stat().st_size}
            for name in (CLIP_FILE, COMBINER_FILE)
        },
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest


def train_open_stage(root: Path, out_dir: Path, *, settings: OpenSettings, seed: int = 0) -> dict[str, Any]:
    """Stage 3 alone, on the CLIP and Combiner already in `out_dir` (trained by stages 0-2, and perhaps an
    earlier stage 3, on `root`): the checkpoints are replaced and the manifest records the run, what it
    started from and the new checksums."""
    started = time.monotonic()
    manifest = json.loads((out_dir / MANIFEST).read_text())
    before = {name: sha256(out_dir / name) for name in (CLIP_FILE, COMBINER_FILE)}
    work = out_dir / "training"
    train, val = load_dataset("shapes", root, "train"), load_dataset("shapes", root, "val")
    stage3 = train_open(
        root, train, val, str(out_dir / CLIP_FILE), str(out_dir / COMBINER_FILE), work / "stage3-clip.pt",
        work / "stage3-combiner.pt", settings=settings, seed=seed,
    )  # fmt: skip
    export_half(work / "stage3-clip.pt", out_dir / CLIP_FILE, "CLIP")
    export_half(work / "stage3-combiner.pt", out_dir / COMBINER_FILE, "Combiner")
    stage3 |= {
        "command": " ".join(sys.argv),
        "seed": seed,
        "started_from": before,
        "wall_seconds": round(time.monotonic() - started, 1),
    }
    manifest["stage3"] = stage3  # the latest run; every run on these weights, oldest first, in stage3_runs
    manifest["stage3_runs"] = [*manifest.get("stage3_runs", []), stage3]
    manifest["wall_seconds"] = round(manifest.get("wall_seconds", 0) + stage3["wall_seconds"], 1)
    manifest["files"] = {
        name: {"sha256": sha256(out_dir / name), "bytes": (out_dir / name).stat().st_size}
        for name in (CLIP_FILE, COMBINER_FILE)
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest


def train_judge_stage(
    root: Path, out_dir: Path, *, settings: JudgeSettings, seed: int = 0, start: Path | None = None
) -> dict[str, Any]:
    """Stage 4 alone: the judge for the CLIP and Combiner in `out_dir` (trained on `root`, from `start` when
    given), written there as JUDGE_FILE; the manifest records every run (`stage4_runs`) and the judge's
    checksum beside the other files'."""
    started = time.monotonic()
    manifest = json.loads((out_dir / MANIFEST).read_text())
    train, val = load_dataset("shapes", root, "train"), load_dataset("shapes", root, "val")
    stage4 = train_judge(
        root, train, val, out_dir / CLIP_FILE, out_dir / COMBINER_FILE, out_dir / JUDGE_FILE, settings=settings,
        seed=seed, start=start,
    )  # fmt: skip
    stage4 |= {"command": " ".join(sys.argv), "seed": seed, "wall_seconds": round(time.monotonic() - started, 1)}
    manifest["stage4"] = stage4  # the latest run; every run, oldest first, in stage4_runs
    manifest["stage4_runs"] = [*manifest.get("stage4_runs", []), stage4]
    manifest["wall_seconds"] = round(manifest.get("wall_seconds", 0) + stage4["wall_seconds"], 1)
    manifest["files"] = {
        name: {"sha256": sha256(out_dir / name), "bytes": (out_dir / name).stat().st_size}
        for name in (CLIP_FILE, COMBINER_FILE, JUDGE_FILE)
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest


def record_blank(out_dir: Path) -> dict[str, Any]:
    """Give the judge in `out_dir` the regions of an empty picture (`blank`: what words alone are said of), as
    every stage-4 run now saves; the manifest records it and the judge's new checksum. For a judge trained
    before runs saved it; its weights are unchanged."""
    from retrieval.models.clip_encoder import load_clip
    from retrieval.models.judge import read_judge
    from retrieval.training.judge_train import blank_regions

    manifest = json.loads((out_dir / MANIFEST).read_text())
    path = out_dir / JUDGE_FILE
    data = read_judge(path)
    encoder = load_clip(str(out_dir / CLIP_FILE), force_fp32=True, compile_images=False, preprocessing="clip")
    data["blank"] = blank_regions(encoder)
    before = sha256(path)
    tmp = path.with_suffix(".tmp")
    torch.save(data, tmp)
    tmp.replace(path)
    manifest.setdefault("stage4", {})["blank"] = {
        "what": "the regions of an empty shapes picture, added to the judge (its weights unchanged)",
        "command": "python -c 'from pathlib import Path; from retrieval.training.recipe import record_blank; "
        'record_blank(Path("models/shapes"))\'',
        "judge_sha256_before": before,
    }
    manifest["files"][JUDGE_FILE] = {"sha256": sha256(path), "bytes": path.stat().st_size}
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest


def first_families(data: SplitData, count: int) -> SplitData:
    """The part of a split that holds its first `count` img_sets (families), images and queries."""
    groups = sorted({t.group for t in data.triplets if t.group}, key=lambda g: sorted(g)[0])[:count]
    keep = {name for g in groups for name in g}
    triplets = [t for t in data.triplets if t.reference in keep and (t.target is None or t.target in keep)]
    return SplitData(data.dataset, data.split, {n: p for n, p in data.images.items() if n in keep}, triplets)


def adopt_judge(source: Path, target: Path) -> bool:
    """Copy `source`'s judge into the models folder `target` when `target` has none and its CLIP is the one
    the judge was made for (a data directory set up before the judge was committed); True when copied."""
    files = json.loads((source / MANIFEST).read_text()).get("files", {})
    made_for = files.get(CLIP_FILE, {}).get("sha256")
    if (target / JUDGE_FILE).exists() or JUDGE_FILE not in files or not (target / CLIP_FILE).is_file():
        return False
    if sha256(target / CLIP_FILE) != made_for:
        return False
    shutil.copy2(source / JUDGE_FILE, target / JUDGE_FILE)
    return True


def verify_models(out_dir: Path) -> str | None:
    """None when the two checkpoints match the manifest's checksums; else what is wrong."""
    try:
        manifest = json.loads((out_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return f"{out_dir / MANIFEST} is missing or unreadable"
    for name, info in manifest.get("files", {}).items():
        path = out_dir / name
        if not path.is_file():
            return f"{path} is missing"
        if sha256(path) != info["sha256"]:
            return f"{path} does not match its checksum in the manifest"
    return None
