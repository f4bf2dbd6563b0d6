"""The turn and job state machines: every transition conditional, so late, repeated or competing writers are
no-ops, and the sweep is the one owner of expiry."""

from __future__ import annotations

import subprocess
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from cirweb.catalog import jobs
from cirweb.catalog import selectors as catalog_selectors
from cirweb.catalog.models import ReindexJob
from cirweb.conversations import services, states
from cirweb.conversations.models import Turn, TurnResult
from cirweb.conversations.queries import TurnRejected
from cirweb.processes.liveness import process_identity
from cirweb.transport import queueing
from tests.web.factories import make_collection, visitor

pytestmark = pytest.mark.django_db


def dead_worker() -> str:
    """The identity of a process of this host that has exited."""
    child = subprocess.Popen(["true"])
    child.wait()
    return f"{process_identity().rpartition(':')[0]}:{child.pid}"


@pytest.fixture
def turn() -> Turn:
    collection = make_collection()
    conversation = services.conversation_create(owner=visitor("alice"), collection_slug=collection.slug)
    return services.turn_create(conversation=conversation, owner=visitor("alice"), text="red", reference=None)


def image_ids(turn: Turn) -> list[int]:
    return list(turn.conversation.collection.images.values_list("pk", flat=True))


def test_a_turn_is_claimed_once_and_only_its_claimant_stores_the_outcome(turn: Turn) -> None:
    me = process_identity()
    claimed = states.turn_claim(turn_id=turn.pk, worker=me)
    assert claimed is not None and claimed.status == "running"
    assert states.turn_claim(turn_id=turn.pk, worker="elsewhere:1") is None  # a redelivered task: no-op
    retried = states.turn_claim(turn_id=turn.pk, worker=me)  # the task retried in its process (database blinked)
    assert retried is not None and retried.attempts == 1
    claimed_copy = Turn.objects.get(pk=turn.pk)
    claimed_copy.worker = "elsewhere:1"
    ranked = [(i, 0.5) for i in image_ids(turn)]
    assert not states.turn_complete(turn=claimed_copy, ranked=ranked, timings_ms={}, version_id=None)
    assert states.turn_complete(turn=claimed, ranked=ranked, timings_ms={"total": 1.0}, version_id=None)
    assert not states.turn_complete(turn=claimed, ranked=ranked, timings_ms={}, version_id=None)  # late repeat
    assert Turn.objects.get(pk=turn.pk).status == "done"
    assert TurnResult.objects.filter(turn=turn).count() == len(ranked)


def test_what_memory_used_is_stored_with_the_turn_and_comes_back_after_a_reload(turn: Turn) -> None:
    """The "remembering: ..." line survives a reload: in the turn's JSON and in the catch-up frame."""
    from cirweb.conversations import selectors, shaping

    claimed = states.turn_claim(turn_id=turn.pk, worker=process_identity())
    said = "remembering: make it red · steering away from 1 rejected"
    ranked = [(i, 0.5) for i in image_ids(turn)]
    assert states.turn_complete(turn=claimed, ranked=ranked, timings_ms={}, version_id=None, memory_summary=said)
    assert shaping.turn_json(Turn.objects.get(pk=turn.pk))["memory"] == said
    since = timezone.now() - timedelta(minutes=1)
    (frame,) = selectors.turn_outcomes_since(conversation_id=turn.conversation_id, since=since)
    assert frame["type"] == "turn.results" and frame["memory"] == said


def test_a_queued_turn_is_claimed_in_one_statement_and_read_back_whole(turn: Turn) -> None:
    with CaptureQueriesContext(connection) as queries:
        claimed = states.turn_claim(turn_id=turn.pk, worker="elsewhere:1")
    assert len(queries) == 1  # UPDATE ... RETURNING, on every turn's path
    stored = Turn.objects.get(pk=turn.pk)
    assert claimed is not None and stored.status == "running" and stored.attempts == 1
    assert {name: getattr(claimed, name) for name in states.TURN_FIELDS} == {
        name: getattr(stored, name) for name in states.TURN_FIELDS
    }


def test_a_turn_failed_by_the_sweep_never_shows_results_later(turn: Turn, settings: Any) -> None:
    claimed = states.turn_claim(turn_id=turn.pk, worker=process_identity())
    assert claimed is not None
    Turn.objects.filter(pk=turn.pk).update(queued_at=timezone.now() - timedelta(seconds=settings.CIR_TURN_EXPIRES + 1))
    assert states.turn_sweep().expired == 1
    ranked = [(i, 0.5) for i in image_ids(turn)]
    assert not states.turn_complete(turn=claimed, ranked=ranked, timings_ms={}, version_id=None)
    row = Turn.objects.get(pk=turn.pk)
    assert row.status == "failed" and "No search worker answered" in row.error
    assert not TurnResult.objects.filter(turn=turn).exists()


def test_a_turn_whose_worker_died_is_taken_back_and_fails_after_too_many_deaths(turn: Turn, settings: Any) -> None:
    for attempt in range(settings.CIR_TURN_MAX_ATTEMPTS):
        claimed = states.turn_claim(turn_id=turn.pk, worker=dead_worker())
        assert claimed is not None and claimed.attempts == attempt + 1
    assert states.turn_claim(turn_id=turn.pk, worker=process_identity()) is None
    row = Turn.objects.get(pk=turn.pk)
    assert row.status == "failed" and row.error_code == "worker_lost" and row.error.endswith(".")


def test_the_sweep_puts_back_a_turn_whose_worker_died_and_sends_it_again(turn: Turn) -> None:
    states.turn_claim(turn_id=turn.pk, worker=dead_worker())
    report = states.turn_sweep()
    assert report.released == 1 and report.resent == 1
    row = Turn.objects.get(pk=turn.pk)
    assert row.status == "queued" and row.sent_at is not None


def test_a_turn_is_stamped_sent_with_its_insert_and_a_failed_send_is_left_to_the_sweep(
    turn: Turn, monkeypatch: Any
) -> None:
    """turn_create writes `sent_at` with the row (one write fewer on the way to the worker): the sweep does
    not send it again; a send that fails clears it, and the sweep sends it within seconds."""
    assert Turn.objects.get(pk=turn.pk).sent_at is not None
    three_seconds_ago = timezone.now() - timedelta(seconds=3)
    Turn.objects.filter(pk=turn.pk).update(queued_at=three_seconds_ago, sent_at=three_seconds_ago)
    assert states.turn_sweep().resent == 0

    def broker_down(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("broker down")

    monkeypatch.setattr(queueing, "enqueue_search_turn", broker_down)
    states.turn_send(turn_id=turn.pk, stamped=True)
    assert Turn.objects.get(pk=turn.pk).sent_at is None
    monkeypatch.undo()
    assert states.turn_sweep().resent == 1
    assert Turn.objects.get(pk=turn.pk).sent_at is not None


def test_two_more_requests_for_one_page_count_once(turn: Turn) -> None:
    claimed = states.turn_claim(turn_id=turn.pk, worker=process_identity())
    assert claimed is not None
    states.turn_complete(turn=claimed, ranked=[(image_ids(turn)[0], 0.5)], timings_ms={}, version_id=None)
    seen_by_tab_a, seen_by_tab_b = Turn.objects.get(pk=turn.pk), Turn.objects.get(pk=turn.pk)
    assert services.turn_more(turn=seen_by_tab_a).pages == 2
    with pytest.raises(TurnRejected):
        services.turn_more(turn=seen_by_tab_b)
    assert Turn.objects.get(pk=turn.pk).pages == 2


def test_reindex_jobs_are_claimed_once_taken_back_from_dead_workers_and_capped(settings: Any) -> None:
    collection = make_collection("jobs")
    job = ReindexJob.objects.create(collection=collection)
    first = dead_worker()
    assert jobs.reindex_job_claim(job_id=job.pk, worker=first) is not None
    report = jobs.reindex_job_sweep()
    assert report.released == 1 and report.resent == 1  # the dead worker's job goes back to the queue
    me = process_identity()
    assert jobs.reindex_job_claim(job_id=job.pk, worker=me) is not None
    assert jobs.reindex_job_claim(job_id=job.pk, worker="other:1") is None  # alive here: not taken over
    assert not jobs.reindex_job_beat(job_id=job.pk, worker=first)  # the old claimant has lost it
    assert jobs.reindex_job_beat(job_id=job.pk, worker=me, done=3)
    ReindexJob.objects.filter(pk=job.pk).update(worker=dead_worker(), attempts=settings.CIR_JOB_MAX_ATTEMPTS)
    assert jobs.reindex_job_sweep().failed == 1
    job.refresh_from_db()
    assert job.status == "failed" and "stopped 3 times" in job.error


def test_a_queued_job_whose_message_was_lost_is_sent_again_then_fails(settings: Any) -> None:
    job = ReindexJob.objects.create(collection=make_collection("lost"))
    ReindexJob.objects.filter(pk=job.pk).update(sent_at=timezone.now() - timedelta(hours=1))
    assert jobs.reindex_job_sweep().resent == 1
    ReindexJob.objects.filter(pk=job.pk).update(created=timezone.now() - timedelta(hours=2))
    assert jobs.reindex_job_sweep().failed == 1
    job.refresh_from_db()
    assert job.status == "failed" and "no index worker took it" in job.error


def test_files_gone_from_the_source_stay_searchable_until_the_new_version_is_activated() -> None:
    from cirweb.catalog import services as catalog
    from cirweb.catalog.models import Image, IndexVersion

    collection = make_collection("scan", images=3)
    rows = list(Image.objects.filter(collection=collection).order_by("relpath"))
    listing = [catalog.SourceImage(r.relpath, r.path, r.size, r.mtime_ns) for r in rows[:2]]  # one file vanished
    scan = catalog.collection_apply_scan(collection=collection, listing=listing, indexed=None)
    assert scan.removed_ids == [rows[2].pk]
    assert not Image.objects.filter(collection=collection, removed=True).exists()  # a failed job: no change
    assert catalog_selectors.collection_image_counts()[collection.pk] == 3
    version = IndexVersion.objects.create(collection=collection, number=1, path="/nonexistent", index_type="flat")
    catalog.collection_activate_version(collection=collection, version=version, removed_ids=scan.removed_ids)
    assert list(Image.objects.filter(collection=collection, removed=True)) == [rows[2]]


def test_only_the_worker_holding_a_job_can_activate_its_version() -> None:
    from cirweb.catalog import services as catalog
    from cirweb.catalog.models import IndexVersion

    collection = make_collection("race")
    job = ReindexJob.objects.create(collection=collection)
    me = process_identity()
    claimed = jobs.reindex_job_claim(job_id=job.pk, worker=me)
    assert claimed is not None
    fields = {"number": 1, "path": "/nonexistent", "count": 3, "dim": 8, "index_type": "flat", "encoder": "e",
              "combiner": "c", "build_seconds": 1.0}  # fmt: skip
    assert catalog.reindex_job_activate(job=claimed, worker="other:1", version_fields=fields, removed_ids=[]) is None
    assert not IndexVersion.objects.exists()
    ReindexJob.objects.filter(pk=job.pk).update(cancel_requested=True)
    assert catalog.reindex_job_activate(job=claimed, worker=me, version_fields=fields, removed_ids=[]) is None
    ReindexJob.objects.filter(pk=job.pk).update(cancel_requested=False)
    version = catalog.reindex_job_activate(job=claimed, worker=me, version_fields=fields, removed_ids=[])
    assert version is not None
    collection.refresh_from_db()
    claimed.refresh_from_db()
    assert collection.active_version == version and claimed.status == "succeeded" and claimed.version == version


def test_the_encoder_identity_comes_from_the_bytes(tmp_path: Any) -> None:
    """A job resumed under another encoder (or a retrained checkpoint at the same path) never reuses chunks,
    and upload features are keyed the same way; the same weights elsewhere are the same encoder."""
    import os
    import time

    from retrieval.models.provenance import encoder_identity

    checkpoint = tmp_path / "clip.pt"
    checkpoint.write_bytes(b"one")
    copy = tmp_path / "elsewhere" / "clip.pt"
    copy.parent.mkdir()
    copy.write_bytes(b"one")

    first = encoder_identity(str(checkpoint), 32)
    assert first == encoder_identity(str(checkpoint), 32) == encoder_identity(str(copy), 32)
    assert first != encoder_identity("ViT-B/32", 32) and first != encoder_identity(str(checkpoint), 64)
    checkpoint.write_bytes(b"retrained")
    later = time.time() + 5  # a new mtime even where the clock's resolution is coarse
    os.utime(checkpoint, (later, later))
    assert encoder_identity(str(checkpoint), 32) != first


def test_a_broker_restart_sends_the_queued_turns_again_at_once(turn: Turn, monkeypatch: Any) -> None:
    """Redis restarted without persistence loses the queued turns' messages: once the sweep sees a new server it
    sends every turn sent before it again now, not CIR_TURN_RESEND_AFTER (10 s) after it was sent."""
    from workers import sweep

    sent: list[int] = []
    monkeypatch.setattr(queueing, "enqueue_search_turn", lambda turn_id, priority=0: sent.append(turn_id))
    servers = iter(["run-a", "run-a", None, "run-b", "run-b"])  # None: the broker not answering
    monkeypatch.setattr(sweep, "broker_identity", lambda: next(servers))
    Turn.objects.filter(pk=turn.pk).update(sent_at=timezone.now() - timedelta(seconds=3))  # not "lost" yet
    watch = sweep.BrokerWatch()
    assert [sweep.sweep_once(watch) for _ in range(3)] == ["", "", ""] and sent == []
    assert sweep.sweep_once(watch) == "1 turn tasks sent again" and sent == [turn.pk]
    assert sweep.sweep_once(watch) == "" and sent == [turn.pk]  # once: the resend stamped it
