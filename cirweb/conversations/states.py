"""The turn state machine: queued -> running -> done | failed (and done -> queued for "more").

Every transition is one conditional UPDATE on the status it expects, so a late, repeated or redelivered
task is a no-op by construction: only the process that claimed a turn may store its outcome, a failed turn
never shows results later, and two "more" requests for one page cannot both count. The broker message is
only a wake-up; the turn row is the record, and the sweep (`turn_sweep`, run by workers/sweep.py, the one
owner of expiry) sends the message again when it was lost and fails the turn when nobody can answer it.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from cirweb.conversations.models import Turn, TurnResult
from cirweb.processes.liveness import claim_lost
from cirweb.transport import queueing
from cirweb.transport.protocol import page_offset
from foundation.log_lines import log_context

log = logging.getLogger(__name__)

TURN_FIELDS = (
    "id",
    "conversation_id",
    "parent_id",
    "reference_image_id",
    "reference_upload_id",
    "text",
    "mode",
    "k",
    "pages",
    "exclude_seen",
    "memory",
    "status",
    "created",
    "queued_at",
    "worker",
    "claimed_at",
    "attempts",
)


def turn_send(*, turn_id: int, priority: int = 0, stamped: bool = False) -> None:
    """Send the turn's search task (after the commit that queued it). A broker that is down is not the
    user's error: the turn stays queued and the sweep sends it again. `priority`: see cirweb/conversations/limits.py.

    `stamped`: the row was written with `sent_at` already set (`turn_create` does, to spare the path from
    the user's Enter one write after the send); a send that fails then clears it, so the sweep's "never
    sent" rule resends it within seconds. A process that dies between its commit and its send leaves it
    stamped: the sweep's "lost" rule resends it after CIR_TURN_RESEND_AFTER."""
    try:
        with log_context(turn=turn_id):  # the task carries the turn's log ids (foundation/log_lines.py)
            queueing.enqueue_search_turn(turn_id, priority=priority)
    except Exception as exc:
        log.warning("could not send turn %s to the workers (the sweep will): %s", turn_id, exc)
        if stamped:
            Turn.objects.filter(pk=turn_id, status=Turn.Status.QUEUED).update(sent_at=None)
        return
    if not stamped:
        Turn.objects.filter(pk=turn_id, status=Turn.Status.QUEUED).update(sent_at=timezone.now())


def _claim_grace() -> timedelta:
    # after the hard time limit the worker has surely stopped working on it, wherever it ran
    return timedelta(seconds=settings.CIR_SEARCH_TIME_LIMIT + 20)


def turn_claim(*, turn_id: int, worker: str) -> Turn | None:
    """Take the turn for `worker`: a queued turn, or a running one whose claimant is gone (its process died
    and the task came back). None when there is nothing to do (answered, failed, taken, or gone)."""
    turn = _queued_turn_claim(turn_id=turn_id, worker=worker)
    if turn is not None:
        return turn
    turn = Turn.objects.filter(pk=turn_id).only(*TURN_FIELDS).first()
    if turn is None:
        return None
    if turn.status == Turn.Status.QUEUED:
        expected = Q(status=Turn.Status.QUEUED, pages=turn.pages)
    elif turn.status == Turn.Status.RUNNING and (
        turn.worker == worker or claim_lost(turn.worker, turn.claimed_at, _claim_grace())
    ):  # a retry in the same process (the database blinked), or a worker that died
        expected = Q(status=Turn.Status.RUNNING, worker=turn.worker, pages=turn.pages)
    else:
        return None
    retry = turn.worker == worker  # not a death: it does not count as an attempt
    if not retry and turn.attempts >= settings.CIR_TURN_MAX_ATTEMPTS:
        turn_fail(
            turn_id=turn.pk,
            code="worker_lost",
            message="The search stopped unexpectedly several times on this request; try other words or another image.",
        )
        return None
    now = timezone.now()
    taken = Turn.objects.filter(expected, pk=turn_id).update(
        status=Turn.Status.RUNNING, worker=worker, claimed_at=now, attempts=F("attempts") + (0 if retry else 1)
    )
    if not taken:
        return None
    turn.status, turn.worker, turn.claimed_at = Turn.Status.RUNNING, worker, now
    turn.attempts += 0 if retry else 1
    return turn


def _queued_turn_claim(*, turn_id: int, worker: str) -> Turn | None:
    """The usual claim in one statement (UPDATE ... RETURNING, where the database has it): a queued turn that
    another process (or none) claimed last, under the attempts cap, taken and read back at once. None leaves
    every other case to `turn_claim`'s read, then conditional update. On every turn's path: the read and the
    update each cost more in the ORM's Python than in the database."""
    if not connection.features.can_return_columns_from_insert:
        return None
    quote = connection.ops.quote_name
    columns = {field.attname: field.column for field in Turn._meta.concrete_fields}
    column = {name: quote(columns[name]) for name in TURN_FIELDS}
    status, taker, attempts = column["status"], column["worker"], column["attempts"]
    sql = (
        f"UPDATE {quote(Turn._meta.db_table)} SET {status} = %s, {taker} = %s, {column['claimed_at']} = %s, "
        f"{attempts} = {attempts} + 1 WHERE {column['id']} = %s AND {status} = %s AND {taker} <> %s "
        f"AND {attempts} < %s RETURNING {', '.join(column.values())}"
    )
    params = (Turn.Status.RUNNING, worker, timezone.now(), turn_id, Turn.Status.QUEUED, worker)
    return next(iter(Turn.objects.raw(sql, (*params, settings.CIR_TURN_MAX_ATTEMPTS))), None)


def turn_complete(
    *,
    turn: Turn,
    ranked: list[tuple[int, float]],
    timings_ms: dict[str, float],
    version_id: int | None,
    memory_summary: str = "",
) -> bool:
    """Store the newest page's ranked results (image id, score) at ranks from (pages - 1) * k, with what the
    conversation memory used (`memory_summary`), if the turn is still this claim's. False (and nothing
    written) when it is not: failed by the sweep, or taken over."""
    offset = page_offset(pages=turn.pages, k=turn.k)
    now = timezone.now()
    with transaction.atomic():
        owned = Turn.objects.filter(
            pk=turn.pk, status=Turn.Status.RUNNING, worker=turn.worker, pages=turn.pages
        ).update(
            status=Turn.Status.DONE,
            timings_ms=timings_ms,
            finished=now,
            index_version_id=version_id,
            latency_ms=(now - turn.queued_at).total_seconds() * 1000,
            memory_summary=memory_summary,
            error="",
            error_code="",
        )
        if not owned:
            return False
        # One prepared INSERT for the page. Nothing can be at these ranks yet: a page's results commit together
        # with the status that leaves "running", and a claim only ever finds a turn that has not left it.
        rows = [(turn.pk, offset + i, img, float(score)) for i, (img, score) in enumerate(ranked)]
        with connection.cursor() as cursor:
            cursor.executemany(_result_insert_sql(), rows)
    return True


@functools.cache
def _result_insert_sql() -> str:
    """`turn_complete`'s INSERT, written once: the ORM's bulk_create builds a model and compiles the statement
    for every page, inside the write transaction (on SQLite, while every other writer waits)."""
    quote = connection.ops.quote_name
    columns = {field.name: field.column for field in TurnResult._meta.concrete_fields}
    names = [quote(columns[name]) for name in ("turn", "rank", "image", "score")]
    table = quote(TurnResult._meta.db_table)
    return f"INSERT INTO {table} ({', '.join(names)}) VALUES (%s, %s, %s, %s)"


def turn_fail(*, turn_id: int, code: str, message: str, worker: str | None = None) -> bool:
    """Fail a pending turn with a sentence. With `worker`, only while that process holds the claim."""
    pending = Turn.objects.filter(pk=turn_id, status__in=Turn.PENDING)
    if worker is not None:
        pending = pending.filter(worker=worker)
    return bool(pending.update(status=Turn.Status.FAILED, error_code=code, error=message, finished=timezone.now()))


def turn_request_more(*, turn: Turn, priority: int = 0) -> bool:
    """Queue the next page of a done turn. False when another request moved it first (two clicks, two tabs)."""
    now = timezone.now()
    with transaction.atomic():
        moved = Turn.objects.filter(pk=turn.pk, status=Turn.Status.DONE, pages=turn.pages).update(
            pages=turn.pages + 1,
            status=Turn.Status.QUEUED,
            error="",
            error_code="",
            queued_at=now,
            sent_at=now,  # sent on commit, just below
            attempts=0,
            worker="",
        )
        if moved:
            transaction.on_commit(lambda: turn_send(turn_id=turn.pk, priority=priority, stamped=True))
    return bool(moved)


@dataclass
class SweepReport:
    resent: int = 0
    released: int = 0
    expired: int = 0


def turn_sweep(*, broker_restarted: datetime | None = None) -> SweepReport:
    """The one owner of turn expiry. Sends again the task of a queued turn nobody took (its message was lost
    with a Redis restart, or never sent), puts back in the queue a running turn whose worker died, and fails
    with a sentence every turn that waited longer than CIR_TURN_EXPIRES. `broker_restarted`: when the sweep saw
    the broker come back as a new server; every turn sent before it is sent again now rather than after
    CIR_TURN_RESEND_AFTER (a message that survived makes the second a no-op: the claim is conditional)."""
    now = timezone.now()
    report = SweepReport()
    expired = Turn.objects.filter(
        status__in=Turn.PENDING, queued_at__lt=now - timedelta(seconds=settings.CIR_TURN_EXPIRES)
    )
    # read first: on SQLite even an UPDATE that matches nothing takes the write lock, every sweep
    report.expired = (
        0
        if not expired.exists()
        else expired.update(
            status=Turn.Status.FAILED,
            error_code="timeout",
            finished=now,
            error=f"No search worker answered within {settings.CIR_TURN_EXPIRES} seconds. Try again.",
        )
    )
    running = Turn.objects.filter(status=Turn.Status.RUNNING).values_list("pk", "worker", "claimed_at")
    for pk, worker, claimed_at in running:
        if not claim_lost(worker, claimed_at, _claim_grace()):
            continue
        if Turn.objects.filter(pk=pk, status=Turn.Status.RUNNING, worker=worker).update(
            status=Turn.Status.QUEUED, sent_at=None
        ):
            report.released += 1
            report.resent += 1
            turn_send(turn_id=pk)
    now = timezone.now()
    never_sent = Q(sent_at__isnull=True, queued_at__lt=now - timedelta(seconds=2))  # on_commit had its chance
    lost = Q(sent_at__lt=now - timedelta(seconds=settings.CIR_TURN_RESEND_AFTER))
    if broker_restarted is not None:
        lost |= Q(sent_at__lt=broker_restarted)
    for pk in Turn.objects.filter(never_sent | lost, status=Turn.Status.QUEUED).values_list("pk", flat=True):
        turn_send(turn_id=pk)
        report.resent += 1
    return report
