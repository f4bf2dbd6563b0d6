"""What a figure was measured on: the world (seed, counts), the models (checksums, best epoch) and the
preprocessing the CLIP expects. Evaluation and simulation JSON carry `provenance(...)`; workers and
evaluation read the preprocessing a checkpoint records through `recorded_preprocessing`, so an index built
by one and the queries of the other see the same pixels.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any, cast

import torch

from retrieval.models.preprocessing import Preprocessing


@functools.lru_cache(maxsize=32)
def _digest(path: str, size: int, mtime_ns: int, algorithm: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """A file's digest, cached by its real path, size and modification time (a file rewritten is read again)."""
    stat = os.stat(path)
    return _digest(os.path.realpath(path), stat.st_size, stat.st_mtime_ns, algorithm)


def sha256(path: str | Path) -> str:
    """A file's SHA-256: what manifests record and what a judge checks its CLIP by."""
    return file_digest(path, "sha256")


def encoder_identity(clip_spec: str, dim: int) -> str:
    """The one identity of the encoder that makes a feature: for a checkpoint file a hash of its bytes (the
    same weights copied to another host or another path are the same encoder; weights retrained at the same
    path are not), for a model name the name. Keys upload features, a reindex's chunks and `simulate`'s
    gallery features."""
    spec = clip_spec
    with contextlib.suppress(OSError):  # a model name, not a file
        spec = "sha1:" + file_digest(clip_spec, "sha1")
    return hashlib.sha1(f"{spec}\0{dim}".encode()).hexdigest()[:12]


def checkpoint_record(path: str | Path) -> dict[str, Any]:
    """The non-tensor entries a checkpoint file records beside its weights (epoch, score, preprocessing,
    combining); empty for a model name, a TorchScript archive or a file that is not a checkpoint."""
    if not os.path.isfile(path):
        return {}
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # TorchScript, or not a checkpoint: nothing recorded (loading reports the real problem)
        return {}
    if not isinstance(obj, dict):
        return {}
    return {k: v for k, v in obj.items() if isinstance(v, str | int | float | bool)}


def recorded_preprocessing(clip_spec: str, default: Preprocessing = "clip") -> Preprocessing:
    """The preprocessing the CLIP at `clip_spec` was trained with, as its checkpoint records it (our stage 1
    writes it); `default` (CLIP's own) for OpenAI's files and checkpoints that record none."""
    kind = checkpoint_record(clip_spec).get("preprocessing", default)
    return cast(Preprocessing, kind if kind in ("clip", "targetpad") else default)


def model_record(spec: str) -> dict[str, Any]:
    """A model's identity for a results file: the spec, and for a file its checksum and what it records."""
    if not spec or not os.path.isfile(spec):
        return {"spec": spec}
    record = checkpoint_record(spec)
    return {
        "spec": spec,
        "sha256": sha256(spec),
        "best_epoch": record.get("epoch"),
        **{k: record[k] for k in ("preprocessing", "combining", "score") if k in record},
    }


def world_record(root: str | Path) -> dict[str, Any] | None:
    """A shapes world's seed and counts (its `shapes/world.json`); None for other datasets."""
    path = Path(root) / "shapes" / "world.json"
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict):
        return None
    # the command as anyone would type it (the recorded one holds this machine's paths)
    info["command"] = f"python -m retrieval shapes --out WORLD --images {info.get('images')} --seed {info.get('seed')}"
    return info


def provenance(
    root: str | Path, clip_spec: str, combiner_spec: str | None, preprocessing: str, manifest: Path | None = None
) -> dict[str, Any]:
    """The block every evaluation and simulation JSON carries. `manifest` (a training manifest beside the
    checkpoints) adds the training world and each stage's best epoch when the checkpoints do not record it."""
    out: dict[str, Any] = {
        "world": world_record(root),
        "clip": model_record(clip_spec),
        "combiner": model_record(combiner_spec or ""),
        "preprocessing": preprocessing,
    }
    manifest = manifest or Path(clip_spec).parent / "manifest.json"
    try:
        trained = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return out
    out["training"] = {
        "world": trained.get("world"),
        "seed": trained.get("seed"),
        **{stage: trained.get(stage) for stage in ("stage1", "stage2") if stage in trained},
    }
    return out
