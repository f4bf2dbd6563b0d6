"""Celery tasks: ids and JSON in, one service call, retries on transient errors. Nothing else lives here."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from celery.signals import task_postrun, task_prerun, worker_process_init
from django.conf import settings
from django.db import close_old_connections

from cirweb.celery_app import SEARCH_QUEUE, app
from retrieval.models.precision import compute_threads_set
from workers.extraction import chunk_run
from workers.indexing import reindex_run
from workers.runtime import runtime
from workers.search import TRANSIENT, answer_query, answer_turn, queue_clock

log = logging.getLogger(__name__)
runtime.model_roots = list(settings.CIR_MODEL_ROOTS)  # whatever the pool: a worker loads checkpoints only there


@task_prerun.connect
@task_postrun.connect
def _connections_check(**_: Any) -> None:
    """What Django does around a request: close connections older than CONN_MAX_AGE or left broken by an
    error, keep the others (CELERY_DB_REUSE_MAX in settings stops Celery closing them all)."""
    close_old_connections()


@task_postrun.connect
def _mark_idle(**_: Any) -> None:
    queue_clock.task_done()  # a turn queued before now waited for this process (its `queue_wait`)


@worker_process_init.connect
def _load_models_once(**_: Any) -> None:
    """Load the default models when the worker process starts, not on its first turn."""
    runtime.device = settings.CIR_DEVICE
    runtime.force_fp32 = settings.CIR_FORCE_FP32
    runtime.compile_images = settings.CIR_COMPILE_IMAGES
    runtime.onnx_cache = Path(settings.CIR_CACHE_DIR) / "onnx-text"  # this host's: the export is per machine
    searches = set(app.amqp.queues.consume_from) == {SEARCH_QUEUE}  # a search process (index ones keep every core)
    if searches:
        compute_threads_set(settings.CIR_SEARCH_THREADS)
        runtime.compile_images = False  # its image batches are single uploads: never worth a compile
    try:
        models = runtime.models(settings.CIR_CLIP_MODEL, settings.CIR_COMBINER)
        if searches:
            models.encoder.prepare_text()  # the int8 text path (an ONNX export, once per host) before any turn
    except Exception as exc:  # a missing default model must not stop collections with their own models
        log.warning("default models not loaded at start: %s", exc)


@app.task(
    bind=True,
    name="workers.tasks.search_turn",
    ignore_result=True,  # the turn row is the outcome (cirweb/transport/queueing.py)
    autoretry_for=TRANSIENT,
    # 0.5, 1, 2, 4, 5, 5 s: about 17 s in all, so a turn outlives a database restart. With Celery's jitter
    # (a random wait up to each step) three retries could all fall inside a 3-second restart, the task died and
    # its turn expired a minute later (the chaos test under load caught it)
    retry_backoff=0.5,
    retry_backoff_max=5,
    retry_jitter=False,
    max_retries=6,
    soft_time_limit=settings.CIR_SEARCH_TIME_LIMIT,
    time_limit=settings.CIR_SEARCH_TIME_LIMIT + 15,
)
def search_turn(self: Any, turn_id: int) -> str:
    outcome = answer_turn(turn_id)  # failures are stored and published there; transient ones retried here
    log.info("turn %s %s", turn_id, outcome)
    return outcome


@app.task(name="workers.tasks.search_query", soft_time_limit=settings.CIR_SEARCH_TIME_LIMIT)
def search_query(payload: dict[str, Any]) -> dict[str, Any]:
    return answer_query(payload)


@app.task(
    bind=True,
    name="workers.tasks.reindex_collection",
    autoretry_for=TRANSIENT,
    retry_backoff=2,
    max_retries=5,
    soft_time_limit=24 * 3600,
    time_limit=24 * 3600 + 60,
)
def reindex_collection(self: Any, job_id: int) -> str:
    outcome = reindex_run(job_id, dispatch=True)
    log.info("reindex job %s %s", job_id, outcome)
    return outcome


@app.task(
    name="workers.tasks.extract_chunk",
    # a chunk is CIR_REINDEX_CHUNK images (1024): three hours cover them at 0.1 image/s, far below any CPU
    soft_time_limit=3 * 3600,
    time_limit=3 * 3600 + 60,
)
def extract_chunk(job_id: int, number: int) -> str:
    outcome = chunk_run(job_id, number)
    log.info("reindex job %s chunk %s %s", job_id, number, outcome)
    return outcome


@app.task(name="workers.tasks.ping")
def ping() -> str:
    return "pong"
