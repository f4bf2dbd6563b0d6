"""What the three training stages share: seeding, resumable checkpoints, batches built from groups."""

from __future__ import annotations

import json
import os
import random
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(max(1, os.cpu_count() or 1))


def log(message: str) -> None:
    """Progress lines go to stderr so `--json` output on stdout stays clean."""
    print(message, file=sys.stderr, flush=True)


@dataclass
class RunState:
    """Where a training run is, saved beside its output as `<out>.last.pt` after every epoch."""

    epoch: int = 0
    step: int = 0
    best: float = -1.0
    best_epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


@dataclass
class Budget:
    """An optional time limit for a run: checked after every step, so a run stops mid-epoch when it must."""

    minutes: float | None
    started: float = field(default_factory=time.monotonic)

    def spent(self) -> bool:
        return bool(self.minutes) and (time.monotonic() - self.started) / 60 > (self.minutes or 0)


def save_weights(path: Path, key: str, model: torch.nn.Module, **extra: Any) -> None:
    """``{key: state_dict, **extra}`` (CLIP4Cir's format), written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({key: model.state_dict(), **extra}, tmp)
    tmp.replace(path)


def close_epoch(
    state: RunState,
    epoch: int,
    score: float,
    record: dict[str, Any],
    *,
    best: Path,
    resume: Path,
    key: str,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    recorded: dict[str, str] | None = None,
) -> None:
    """Record an epoch's validation figures, keep its weights if they are the best so far (with the epoch
    and `recorded`: the preprocessing the weights expect), and write the resume point. Every stage ends its
    epochs here."""
    state.epoch = epoch + 1
    state.history.append({"epoch": epoch + 1, "score": score, **record})
    if score > state.best:
        state.best, state.best_epoch = score, epoch + 1
        save_weights(best, key, model, epoch=epoch + 1, score=score, **(recorded or {}))
    save_resume(resume, model, optimizer, state, key, {})


def save_resume(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: RunState,
    key: str,
    extra: dict[str, Any],
) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            key: model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "epoch": state.epoch,
            "step": state.step,
            "best": state.best,
            "best_epoch": state.best_epoch,
            "history": json.dumps(state.history),
            "rng": torch.get_rng_state(),
            **extra,
        },
        tmp,
    )
    tmp.replace(path)


def load_resume(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, key: str) -> RunState | None:
    """Restore a run from `<out>.last.pt` if there is one; None when starting fresh."""
    if not path.is_file():
        return None
    saved = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(saved[key])
    optimizer.load_state_dict(saved["optimizer"])
    torch.set_rng_state(saved["rng"])
    state = RunState(
        int(saved["epoch"]),
        int(saved["step"]),
        float(saved["best"]),
        int(saved.get("best_epoch", 0)),
        json.loads(saved["history"]),
    )
    log(f"resuming from {path} after epoch {state.epoch} (best so far {state.best:.4f})")
    return state


def grouped_batches(groups: Sequence[Sequence[int]], groups_per_batch: int, rng: random.Random) -> Iterator[list[int]]:
    """Batches of whole groups (CIRR img_sets, shapes families): near-identical images land in the same
    batch, so each query meets its hardest negatives in the in-batch loss. One pass over all groups."""
    order = list(range(len(groups)))
    rng.shuffle(order)
    for i in range(0, len(order), groups_per_batch):
        yield [member for g in order[i : i + groups_per_batch] for member in groups[g]]


def group_triplets(triplets: Sequence[Any]) -> list[list[int]]:
    """Indices of `triplets` grouped by their img_set (or one group each when there is none)."""
    by_group: dict[tuple[str, ...], list[int]] = {}
    for i, t in enumerate(triplets):
        by_group.setdefault(tuple(sorted(t.group)) or (str(i),), []).append(i)
    return list(by_group.values())
