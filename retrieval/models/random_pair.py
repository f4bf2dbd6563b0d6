"""A CLIP and a Combiner of real size with random weights, written as checkpoints: what a served stack needs
to run at the cost of a trained pair where no trained weights exist (no registry ships CLIP's).

The CLIP is `build_random_clip(arch, seed)` saved as CLIP4Cir's ``{"CLIP": state_dict}`` in float16 (as the
committed shapes models are; loading widens it to float32), the Combiner CLIP4Cir's ``{"Combiner":
state_dict}`` (float16 too) at CLIP4Cir's size for that encoder (projection 4x and hidden 8x the feature width, as
`bench-turn` measures it). A `manifest.json` beside them records the architecture, the seed and each
file's SHA-256, so a second run recognises the pair (`random_pair_problem`) instead of writing it again.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from retrieval.models.clip_weights import build_random_clip
from retrieval.models.combiner_model import Combiner
from retrieval.models.provenance import sha256

CLIP_FILE, COMBINER_FILE, MANIFEST = "clip.pt", "combiner.pt", "manifest.json"


def random_pair_problem(folder: Path, *, arch: str, seed: int) -> str | None:
    """None when `folder` holds the pair for (`arch`, `seed`) matching its manifest's checksums; else what
    is wrong, in a sentence."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return f"{folder / MANIFEST} is missing or unreadable"
    if (manifest.get("arch"), manifest.get("seed")) != (arch, seed):
        return f"{folder} holds {manifest.get('arch')} seed {manifest.get('seed')}, not {arch} seed {seed}"
    for name in (CLIP_FILE, COMBINER_FILE):
        path, wanted = folder / name, manifest.get("files", {}).get(name, {}).get("sha256")
        if not path.is_file():
            return f"{path} is missing"
        if sha256(path) != wanted:
            return f"{path} does not match its checksum in {folder / MANIFEST}"
    return None


def random_pair_write(folder: Path, *, arch: str, seed: int, command_line: str = "") -> dict[str, Any]:
    """Write the pair and its manifest into `folder` (each file atomically); returns the manifest."""
    started = time.monotonic()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST).unlink(missing_ok=True)  # a pair half rewritten must never pass for the old one
    model = build_random_clip(arch, seed)
    half = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    tmp = folder / (CLIP_FILE + ".tmp")
    torch.save({"CLIP": half, "arch": arch, "seed": seed, "preprocessing": "clip"}, tmp)
    tmp.replace(folder / CLIP_FILE)
    dim = int(model.text_projection.shape[1])
    del model, half
    torch.manual_seed(seed + 1)
    combiner = Combiner(dim, dim * 4, dim * 8).eval()
    tmp = folder / (COMBINER_FILE + ".tmp")
    torch.save({"Combiner": {k: v.half() for k, v in combiner.state_dict().items()}, "arch": arch, "seed": seed}, tmp)
    tmp.replace(folder / COMBINER_FILE)
    manifest = {
        "what": f"{arch} CLIP and a CLIP4Cir Combiner ({dim}, {dim * 4}, {dim * 8}) with random weights: "
        "real size and real cost, no meaning",
        "arch": arch,
        "seed": seed,
        "dim": dim,
        "command": command_line,
        "seconds": round(time.monotonic() - started, 1),
        "files": {name: {"sha256": sha256(folder / name)} for name in (CLIP_FILE, COMBINER_FILE)},
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest
