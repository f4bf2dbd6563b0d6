"""Prometheus metrics of the pipeline, served as text at `GET /metrics` (issue 23, item 1).

Every process of a host (the web server, each search and index worker, their pool children) records into
files under PROMETHEUS_MULTIPROC_DIR (settings: `CIR_DATA_DIR/metrics`; `serve` forgets the processes that
are gone), and the web process adds them up when scraped (prometheus-client's multiprocess mode). Recorded:

- `cirweb_turn_seconds{stage}`: a turn's latency by stage (queue_wait, reference, text, combine, search, total
  as the worker measured them, and end_to_end from queued to stored), a histogram;
- `cirweb_turns_total{outcome}`: turns done and failed;
- `cirweb_rate_limited_total{group}`: refusals past a visitor's or an address's limit;
- `cirweb_sockets`: open conversation websockets (summed over live web processes);
- `cirweb_reindex_images_done`, `cirweb_reindex_images_total`, `cirweb_reindex_images_per_second`: the
  running reindex jobs' progress, per job.

And what is read at scrape time: `cirweb_queue_depth{queue}` (messages waiting in Redis, every priority level
together) and `cirweb_workers{kind}` (workers answering a ping, asked at most every 10 seconds).

Served to the local machine and to the addresses in CIR_METRICS_ALLOWED only; anyone else gets a 404.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from pathlib import Path

import redis
from django.conf import settings
from django.core.cache import cache
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_safe
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from cirweb.celery_app import INDEX_QUEUE, SEARCH_QUEUE, app
from cirweb.processes.liveness import pid_gone

log = logging.getLogger(__name__)
STAGES = ("queue_wait", "reference", "text", "combine", "search", "total")
PRIORITY_SEPARATOR = "\x06\x16"  # kombu's separator between a queue's name and its priority level
WORKERS_KEY = "cir:metrics:workers"

TURN_SECONDS = Histogram(
    "cirweb_turn_seconds",
    "A turn's latency by stage: the worker's own stages, and end_to_end from queued to results stored.",
    ["stage"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
TURNS = Counter("cirweb_turns", "Turns that ended, by outcome (done, failed).", ["outcome"])
RATE_LIMITED = Counter("cirweb_rate_limited", "Requests refused past a rate limit, by group.", ["group"])
SOCKETS = Gauge("cirweb_sockets", "Open conversation websockets.", multiprocess_mode="livesum")
REINDEX_DONE = Gauge("cirweb_reindex_images_done", "Images a reindex job has made.", ["job"], multiprocess_mode="max")
REINDEX_TOTAL = Gauge("cirweb_reindex_images_total", "Images a reindex job plans.", ["job"], multiprocess_mode="max")
REINDEX_RATE = Gauge(
    "cirweb_reindex_images_per_second", "A reindex job's recent rate.", ["job"], multiprocess_mode="mostrecent"
)


def turn_observed(*, outcome: str, timings_ms: dict[str, float] | None = None, end_to_end: float | None = None) -> None:
    """Record one turn that ended (in the search worker): its outcome and its stages' latencies."""
    TURNS.labels(outcome).inc()
    for stage in STAGES:
        if timings_ms and stage in timings_ms:
            TURN_SECONDS.labels(stage).observe(float(timings_ms[stage]) / 1000)
    if end_to_end is not None:
        TURN_SECONDS.labels("end_to_end").observe(end_to_end)


def reindex_observed(*, job_id: int, done: int, total: int, per_second: float | None) -> None:
    REINDEX_DONE.labels(str(job_id)).set(done)
    REINDEX_TOTAL.labels(str(job_id)).set(total)
    if per_second is not None:
        REINDEX_RATE.labels(str(job_id)).set(per_second)


class LiveReadings(Collector):
    """What is read when scraped rather than recorded: queue depth and workers answering."""

    def collect(self) -> Iterable[GaugeMetricFamily]:
        depth = GaugeMetricFamily("cirweb_queue_depth", "Messages waiting on a queue.", labels=["queue"])
        for queue, waiting in (queue_depths() or {}).items():
            depth.add_metric([queue], float(waiting))
        yield depth
        workers = GaugeMetricFamily("cirweb_workers", "Workers answering a ping, by kind.", labels=["kind"])
        for kind, count in workers_by_kind().items():
            workers.add_metric([kind], float(count))
        yield workers


def queue_depths() -> dict[str, int] | None:
    """Messages waiting on each queue (`search`, `index`), every priority level together; None when Redis does
    not answer. Read by the scrape and by the admin's Operations page."""
    try:
        client = redis.Redis.from_url(settings.CIR_REDIS_URL, socket_timeout=1)
        depths = {}
        for queue in (SEARCH_QUEUE, INDEX_QUEUE):
            names = [queue] + [f"{queue}{PRIORITY_SEPARATOR}{p}" for p in range(1, 10)]
            depths[queue] = sum(int(client.llen(name)) for name in names)
        return depths
    except redis.RedisError as exc:
        log.info("queue depth unreadable: %s", exc)
        return None


def workers_by_kind() -> dict[str, int]:
    """Celery workers answering a broadcast ping, counted by the queue their name starts with (serve names
    them search@host and index-N@host). Cached 10 s: a ping waits its whole timeout for late answers."""
    known = cache.get(WORKERS_KEY)
    if known is not None:
        return dict(known)
    counts = {SEARCH_QUEUE: 0, INDEX_QUEUE: 0}
    try:
        answers = app.control.ping(timeout=0.5) or []
    except Exception as exc:  # the broker is away: no worker can be reached either
        log.info("worker ping failed: %s", exc)
        answers = []
    for answer in answers:
        for name in answer:
            kind = next((queue for queue in counts if name.startswith(queue)), None)
            if kind is not None:
                counts[kind] += 1
    cache.set(WORKERS_KEY, counts, timeout=10)
    return counts


def allowed(address: str | None) -> bool:
    """The local machine, and the addresses or networks of CIR_METRICS_ALLOWED."""
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if ip.is_loopback:
        return True
    return any(ip in ipaddress.ip_network(entry, strict=False) for entry in settings.CIR_METRICS_ALLOWED)


@require_safe
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus text of every process of this host. A 404 for anyone not allowed: the metrics name
    queues, jobs and rates, which the public has no business reading (and a 403 would say it exists)."""
    if not allowed(request.META.get("REMOTE_ADDR")):
        raise Http404("Not found.")
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    registry.register(LiveReadings())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


def process_dead(pid: int) -> None:
    """Forget a dead process's live gauges (its open sockets): `serve` calls this for a child that exited."""
    multiprocess.mark_process_dead(pid)


def metrics_reset(folder: Path) -> None:
    """Forget the metrics of processes that are gone, before the processes of a host start (`serve`): an
    earlier run's counters are not this run's. Files of processes still alive are kept: another product
    sharing the data directory (a second `serve`, a test's stack) keeps writing to them."""
    for path in folder.glob("*.db"):
        pid = path.stem.rpartition("_")[2]
        if pid.isdigit() and pid_gone(int(pid)):
            path.unlink(missing_ok=True)
