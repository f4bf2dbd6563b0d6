"""What the training stages share: seeding, the two training loops (by epochs, with resumable checkpoints and
a time budget; by steps, for the stages that draw a fresh batch each step), one optimizer step, batches built
from groups."""

from __future__ import annotations

import json
import os
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from tqdm import tqdm

Batch = TypeVar("Batch")


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


@dataclass
class Run:
    """One stage's training run: what it trains, where the best weights and the resume point go, how long.
    `key` names the weights in the checkpoint (CLIP4Cir's "CLIP" or "Combiner"); `recorded` is saved beside
    them (the preprocessing they expect)."""

    name: str  # "stage 1", for progress lines
    key: str
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    out: Path
    epochs: int
    seed: int
    max_minutes: float | None = None
    restart: bool = False
    schedule: torch.optim.lr_scheduler.LRScheduler | None = None
    recorded: dict[str, str] | None = None


def train_epochs(
    run: Run,
    *,
    batches: Callable[[int, random.Random], Iterable[Batch]],
    loss: Callable[[Batch, random.Random], torch.Tensor],
    validate: Callable[[int, float], tuple[float, dict[str, Any]]],
) -> RunState:
    """The one training loop: resume where `<out>.last.pt` left off, then per epoch draw `batches(epoch, rng)`,
    step the optimizer on `loss(batch, rng)`, and close the epoch with `validate(epoch, last_loss)` ->
    (score, figures): the best epoch's weights go to `out`. The rng of epoch e is seeded `seed * 1000 + e`,
    so a resumed run draws what an uninterrupted one would. Out of time, the epoch under way is validated
    and saved, and the run stops."""
    resume = run.out.with_suffix(".last.pt")
    state = (None if run.restart else load_resume(resume, run.model, run.optimizer, run.key)) or RunState()
    for _ in range(state.step if run.schedule is not None else 0):
        run.schedule.step()  # type: ignore[union-attr]
    budget = Budget(run.max_minutes)
    for epoch in range(state.epoch, run.epochs):
        rng = random.Random(run.seed * 1000 + epoch)
        run.model.train()
        bar = tqdm(list(batches(epoch, rng)), desc=f"{run.name} epoch {epoch + 1}/{run.epochs}")
        last = float("nan")
        for batch in bar:
            value = loss(batch, rng)
            optimizer_step(run.optimizer, value, run.schedule)
            state.step += 1
            last = float(value.item())
            bar.set_postfix(loss=f"{last:.3f}")
            if budget.spent():
                break  # out of time: finish this epoch here (validate, save) and stop
        run.model.eval()
        score, record = validate(epoch, last)
        close_epoch(
            state,
            epoch,
            score,
            record,
            best=run.out,
            resume=resume,
            key=run.key,
            model=run.model,
            optimizer=run.optimizer,
            recorded=run.recorded,
        )
        if budget.spent():
            log(f"stopping after {run.max_minutes} minutes (resume with the same command)")
            break
    return state


def optimizer_step(
    optimizer: torch.optim.Optimizer,
    loss: torch.Tensor,
    schedule: torch.optim.lr_scheduler.LRScheduler | None = None,
    clip_norm: float | None = None,
) -> None:
    """One step on `loss`: gradients, an optional clip of their norm over the optimizer's parameters, the
    update, the schedule."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip_norm is not None:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, clip_norm)
    optimizer.step()
    if schedule is not None:
        schedule.step()


@dataclass
class Steps:
    """A run by steps (stages 3 and 4): each step draws its own batch, so there is no epoch to resume."""

    name: str  # "stage 3", for progress lines
    modules: Sequence[torch.nn.Module]  # put in training mode before each step
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    steps: int
    validate_every: int
    max_minutes: float | None
    log_every: int = 50
    clip_norm: float | None = None
    started: float = field(default_factory=time.monotonic)  # the time budget counts from here


def train_steps(
    run: Steps,
    *,
    step_loss: Callable[[], tuple[torch.Tensor, str]],
    validate: Callable[[], dict[str, Any]],
    score: Callable[[dict[str, Any]], float],
    save: Callable[[int], None],
) -> tuple[float, list[dict[str, Any]]]:
    """The step loop: validate first (the bar the run must beat; its weights saved as step 0), then step on
    `step_loss()` -> (loss, words for the progress line), validating every `validate_every` steps, at the last
    and when out of time; `save(step)` keeps each step whose `score(figures)` beats the best. Returns the best
    score and the validation history."""
    budget = Budget(run.max_minutes, run.started)
    first = validate()
    log(f"{run.name} validation before training: {first}")
    best, history = score(first), [{"step": 0, **first}]
    save(0)
    for step in range(1, run.steps + 1):
        for module in run.modules:
            module.train()
        loss, parts = step_loss()
        optimizer_step(run.optimizer, loss, run.schedule, run.clip_norm)
        out_of_time = budget.spent()
        if step % run.log_every == 0:
            minutes = (time.monotonic() - budget.started) / 60
            log(f"{run.name} step {step}/{run.steps}: loss {loss.item():.3f} {parts} ({minutes:.1f} min)")
        if step % run.validate_every == 0 or step == run.steps or out_of_time:
            figures = validate()
            history.append({"step": step, **figures})
            log(f"{run.name} validation at step {step}: {figures}")
            if score(figures) > best:
                best = score(figures)
                save(step)
        if out_of_time:
            break
    return best, history


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
