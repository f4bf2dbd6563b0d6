"""Answering a turn: reference feature, text feature, fusion, search, results stored and published.

Glue between the database (through the conversation and catalog services) and the engine (through the
process's `runtime`). Every failure a user can cause ends as a `turn.failed` with a readable message.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import OperationalError
from django.utils import timezone
from numpy.typing import NDArray
from redis.exceptions import ConnectionError as RedisConnectionError

from cirweb.catalog import selectors as catalog
from cirweb.catalog.models import IndexVersion
from cirweb.conversations import selectors
from cirweb.conversations import states as turns
from cirweb.conversations.selectors import TurnHistory, turn_history
from cirweb.files import storage
from cirweb.processes.faults import fault_point
from cirweb.processes.liveness import process_identity
from cirweb.processes.metrics import turn_observed
from cirweb.transport import protocol
from foundation.explained_error import ExplainedError
from foundation.log_lines import log_ids_bind
from retrieval.extraction.images import ImageError
from retrieval.fusion.fuser import Mode
from retrieval.fusion.judging import JudgeStage
from retrieval.fusion.memory import indexed_features, remember, rerank
from retrieval.index.versions import LoadedVersion
from workers.publish import HeldProgress, publish
from workers.runtime import Models, runtime

TRANSIENT = (OperationalError, RedisConnectionError)  # worth a retry: the database or Redis blinked


class SearchFailed(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass
class SearchOutcome:
    ranked: list[tuple[int, float]]
    timings_ms: dict[str, float]
    version: IndexVersion
    remembered: str = ""  # what the conversation memory used, in words ("" without memory)


# A turn answered within this long sends no progress frame, only its outcome (workers/publish.py).
PROGRESS_AFTER_S = 0.25
# How many pages' worth of extra candidates a search with rejected pictures re-ranks: the look-alikes it pushes
# down are replaced from these.
PUSHED_EXTRA = 2


class QueueClock:
    """When this process last finished a task, to tell the time a turn waited behind earlier turns (a busy
    worker: capacity, solved by more workers) from the pipeline's own hand-off time; stored and sent with
    the turn's timings as `queue_wait` (ms), which `bench_pipeline` reports apart."""

    def __init__(self) -> None:
        self.idle_since = 0.0  # time.time(); the web and the workers of one host share the clock

    def waited_ms(self, queued_at: datetime) -> float:
        return round(max(0.0, self.idle_since - queued_at.timestamp()) * 1000, 2)

    def task_done(self) -> None:
        self.idle_since = time.time()


queue_clock = QueueClock()


def collection_of(conversation_id: Any) -> int:
    return runtime.rows.get_or_make(
        ("conversation collection", conversation_id),
        lambda: selectors.conversation_collection_id(conversation_id=conversation_id),
    )


def result_alts(*, version_id: int, image_ids: list[int]) -> dict[int, str]:
    """The alt text of a page of results: from this process's rows, the missing ones read in one query. Keyed
    by the index version too, so words a reindex changed are read again once it is active."""
    keys = {i: ("image alt", (version_id, i)) for i in image_ids}
    missing = [i for i, key in keys.items() if key not in runtime.rows]
    read = catalog.image_alts(ids=missing) if missing else {}
    return {i: runtime.rows.get_or_make(key, functools.partial(read.get, i, "")) for i, key in keys.items()}


def active_index(collection_id: int) -> tuple[IndexVersion, LoadedVersion]:
    """The collection's active version (read on every turn, so a switch takes effect on the next one)."""
    version_id = catalog.collection_active_version_id(collection_id=collection_id)
    if version_id is None:
        name = catalog.collection_name(collection_id=collection_id) or "?"
        raise SearchFailed("not_indexed", f"The collection {name!r} has no index yet; ask staff to reindex it.")
    version: IndexVersion = runtime.rows.get_or_make(
        ("index version", version_id), lambda: catalog.index_version_get(version_id=version_id)
    )
    try:
        return version, runtime.index(
            collection_id, version.number, lambda: storage.index_version_hold(path=version.path)
        )
    except (OSError, ExplainedError) as exc:
        raise SearchFailed("index_unavailable", f"Index version {version.number} cannot be read ({exc}).") from None


def models_for(version: IndexVersion) -> Models:
    """The models the active version was built with: a collection's new settings take effect with the
    reindex that builds a version from them, never against an index made by other models."""
    try:
        return runtime.models(version.encoder, version.combiner)
    except ExplainedError as exc:
        raise SearchFailed("model_unavailable", str(exc)) from None


def reference_feature(
    models: Models, loaded: LoadedVersion, image_id: int | None, upload_id: int | None
) -> NDArray[np.float32] | None:
    if image_id is not None:
        try:
            return loaded.features_of([image_id])
        except KeyError:
            raise SearchFailed(
                "reference_missing",
                f"Image {image_id} is not in the collection's current index; pick another reference or reindex.",
            ) from None
    if upload_id is not None:
        row = catalog.upload_file(upload_id=upload_id)
        if row is None or row[1]:
            raise SearchFailed("reference_missing", "The uploaded reference was deleted.")
        file = row[0]
        try:
            feature = runtime.upload_feature(
                upload_id,
                models,
                image=lambda: storage.upload_local(file=file),
                cache_dir=Path(settings.CIR_CACHE_DIR) / storage.UPLOAD_FEATURES,
                store=storage.shared_store(),
                prefix=storage.UPLOAD_FEATURES,
            )
        except ImageError as exc:
            raise SearchFailed("reference_missing", f"The uploaded image cannot be read: {exc}") from None
        except FileNotFoundError:
            raise SearchFailed("reference_missing", "The uploaded reference's file is gone.") from None
        return feature[None, :]
    return None


@dataclass
class Judging:
    """A turn the judge orders: its stage and the reference's regions."""

    stage: JudgeStage
    reference: NDArray[np.float32]


def judged_turn(
    models: Models, loaded: LoadedVersion, mode: Mode, text: str, image_id: int | None, upload_id: int | None
) -> Judging | None:
    """The judge reads a request said of a reference in the Combiner's mode, or words alone (in the Combiner's
    mode or words-only) said of an empty picture (the judge's `blank`), where the models have a judge and the
    version holds the pictures' regions (a version built before the judge was installed has none until the
    collection is reindexed)."""
    if models.judge is None or loaded.regions is None or not text.strip():
        return None
    if image_id is None and upload_id is None:  # words alone
        blank = models.judge.blank
        return Judging(models.judge, blank) if blank is not None and mode in (Mode.COMBINER, Mode.TEXT) else None
    if mode is not Mode.COMBINER:
        return None
    if image_id is not None:
        return Judging(models.judge, loaded.regions_of([image_id])[0])
    if upload_id is not None:
        row = catalog.upload_file(upload_id=upload_id)
        if row is None or row[1]:
            return None
        file = row[0]
        try:
            regions = runtime.upload_regions(upload_id, models, image=lambda: storage.upload_local(file=file))
        except (ImageError, OSError):  # its feature came from a cache and the file is gone now: unjudged
            return None
        return Judging(models.judge, regions)
    return None


def run_search(
    *,
    collection_id: int,
    mode: str,
    text: str,
    image_id: int | None,
    upload_id: int | None,
    k: int,
    exclude: set[int],
    stage: Any = None,
    history: TurnHistory | None = None,
    rejected: list[int] | None = None,
) -> SearchOutcome:
    """Fuse and search; `stage(name)` is called as the work moves on (for progress frames). Pictures like
    the `rejected` ones ("Not this" in the conversation) are pushed down, in every mode."""
    started = time.perf_counter()
    version, loaded = active_index(collection_id)
    models = models_for(version)
    if models.encoder.dim != loaded.meta.dim:
        raise SearchFailed(
            "model_mismatch",
            f"The index holds {loaded.meta.dim}-d features but the model gives "
            f"{models.encoder.dim}-d ones; reindex the collection.",
        )
    timings: dict[str, float] = {}
    t = time.perf_counter()
    ref = reference_feature(models, loaded, image_id, upload_id)
    timings["reference"] = (time.perf_counter() - t) * 1000
    t = time.perf_counter()
    txt = models.encoder.encode_texts([text]) if text else None
    timings["text"] = (time.perf_counter() - t) * 1000
    t = time.perf_counter()
    try:
        query = models.fuser.fuse(Mode(mode), ref, txt)
    except ValueError as exc:
        raise SearchFailed("bad_mode", str(exc)) from None
    remembered, memory = "", None
    if history is not None:  # conversation memory (turn.memory): the branch's requests, feedback and results
        query, memory, remembered = remember(
            models.fuser, models.encoder.encode_texts, loaded, Mode(mode), query, history, image_id=image_id, words=txt
        )
    timings["combine"] = (time.perf_counter() - t) * 1000
    if stage:
        stage("searching")
    t = time.perf_counter()
    rejected_features = indexed_features(loaded, rejected or [], loaded.meta.dim)
    extra = (len(memory.seen) if memory is not None else 0) + (PUSHED_EXTRA * k if len(rejected_features) else 0)
    judging = judged_turn(models, loaded, Mode(mode), text, image_id, upload_id)
    pool = max(k + extra, judging.stage.pool if judging else 0)
    scores, ids = loaded.index.search(query, pool, exclude=exclude)
    if extra or judging:  # seen results give way and look-alikes of rejected pictures are pushed down
        keep = pool if judging else k
        scores, ids = rerank(scores, ids, memory, keep, candidates=loaded.features_of, rejected=rejected_features)
    timings["search"] = (time.perf_counter() - t) * 1000
    if judging:  # the second stage orders the pool by what was asked
        t = time.perf_counter()
        judged = judging.stage.rerank(text, judging.reference, loaded.regions_of(ids[0]), scores[0])
        order = np.argsort(-judged, kind="stable")[:k]
        scores, ids = judged[order][None], ids[0][order][None]
        timings["judge"] = (time.perf_counter() - t) * 1000
    timings["total"] = (time.perf_counter() - started) * 1000
    ranked = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
    return SearchOutcome(ranked, {key: round(v, 2) for key, v in timings.items()}, version, remembered)


def answer_turn(turn_id: int) -> str:
    """Run one turn end to end. Returns what happened, for the task's log line.

    The turn is claimed first (a redelivered or late task finds nothing to do), its outcome is stored only
    while the claim is still this process's, and published after the commit. A lost publish costs nothing:
    the sockets reconcile against the stored outcome (cirweb.conversations.consumers)."""
    me = process_identity()
    turn = turns.turn_claim(turn_id=turn_id, worker=me)
    if turn is None:
        return "skipped (already answered, failed or taken)"
    log_ids_bind(turn=turn.pk, conversation=str(turn.conversation_id))  # also when the sweep sent the task
    waited_ms = queue_clock.waited_ms(turn.queued_at)
    group = protocol.conversation_group(turn.conversation_id)
    offset = protocol.page_offset(pages=turn.pages, k=turn.k)
    progress = HeldProgress(group, after=PROGRESS_AFTER_S)

    def stage(name: str) -> None:  # shown live; the stored status is "running" until the outcome
        # `offset` lets sockets drop a progress frame that arrives after its page's results (not forwarded)
        progress.stage({"type": "turn.progress", "turn": turn.pk, "stage": name, "offset": offset})

    stage("encoding")
    fault_point("turn.claimed")

    def fail(code: str, message: str) -> None:
        progress.close()
        if turns.turn_fail(turn_id=turn.pk, code=code, message=message, worker=me):
            publish(group, protocol.failed_frame(turn_id=turn.pk, code=code, error=message))
            turn_observed(outcome="failed")

    try:
        # a later page ("more") searches k more: the pages already shown are among the exclusions
        exclusions = selectors.turn_excluded_images(turn=turn)
        outcome = run_search(
            collection_id=collection_of(turn.conversation_id),
            mode=turn.mode,
            text=turn.text,
            image_id=turn.reference_image_id,
            upload_id=turn.reference_upload_id,
            k=turn.k,
            exclude=exclusions.images,
            stage=stage,
            history=turn_history(turn=turn) if turn.memory else None,
            rejected=exclusions.rejected,
        )
    except SearchFailed as exc:
        fail(exc.code, exc.message)
        return f"failed: {exc.code}"
    except SoftTimeLimitExceeded:
        fail("timeout", "The search took too long and was stopped.")
        raise
    except TRANSIENT:
        raise  # retried by the task (the claim is still ours); if it never succeeds the sweep fails the turn
    except Exception:
        fail("internal", "Something went wrong on our side; try again.")
        raise
    page = outcome.ranked
    progress.close()
    timings = {**outcome.timings_ms, "queue_wait": waited_ms}
    stored = turns.turn_complete(
        turn=turn, ranked=page, timings_ms=timings, version_id=outcome.version.pk, memory_summary=outcome.remembered
    )
    if not stored:
        return "dropped (the turn was failed or taken over meanwhile)"
    fault_point("turn.committed")
    turn_observed(outcome="done", timings_ms=timings, end_to_end=(timezone.now() - turn.queued_at).total_seconds())
    alts = result_alts(version_id=outcome.version.pk, image_ids=[i for i, _ in page])
    frame = protocol.results_frame(
        turn_id=turn.pk, offset=offset, ranked=page, alts=alts, timings_ms=timings, memory=outcome.remembered
    )
    publish(group, frame)
    return f"done: {len(page)} results in {outcome.timings_ms['total']:.1f} ms"


def answer_query(payload: dict[str, Any]) -> dict[str, Any]:
    """The stateless scripting API (`POST /api/search`): validated by the web, searched here."""
    exclude = {payload["image"]} if payload.get("image") else set()
    try:
        outcome = run_search(
            collection_id=payload["collection_id"],
            mode=payload["mode"],
            text=payload["text"],
            image_id=payload.get("image"),
            upload_id=payload.get("upload"),
            k=payload["k"],
            exclude=exclude,
        )
    except SearchFailed as exc:
        return {"ok": False, "code": exc.code, "error": exc.message}
    alts = result_alts(version_id=outcome.version.pk, image_ids=[i for i, _ in outcome.ranked])
    return {
        "ok": True,
        "results": [protocol.result_payload(i, s, alts[i]) for i, s in outcome.ranked],
        "timings_ms": outcome.timings_ms,
        "index_version": outcome.version.number,
    }
