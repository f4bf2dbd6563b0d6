"""Reads for the review of the query history (the admin's turn list): figures over the turns a list shows,
and the same turns as CSV rows. Both take the list's queryset, whatever filters and annotations it carries,
and read from the turns' ids, so a join in that queryset can never count a turn twice."""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from cirweb.conversations.models import Conversation, Feedback, Turn

FIGURE_DAYS = 14
LATENCY_SAMPLE = 100_000

CSV_HEADER = [
    "turn",
    "conversation",
    "collection",
    "parent",
    "created",
    "owner",
    "mode",
    "memory",
    "memory_summary",
    "text",
    "reference_image",
    "reference_upload",
    "status",
    "error",
    "latency_ms",
    "top5",
    "chosen_image",
    "rejected",
]


def owner_text(conversation: Conversation) -> str:
    if conversation.owner_user_id:
        return str(conversation.owner_user)
    return f"visitor {conversation.owner_visitor[:8]}"


def rejected_count() -> Coalesce:
    """An annotation: how many of a turn's results were rejected, as a subquery (a join on the feedback would
    repeat the turn once per feedback row for every other count made over the same queryset)."""
    rejected = (
        Feedback.objects.filter(turn=OuterRef("pk"), value=Feedback.Value.REJECTED)
        .order_by()
        .values("turn")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(rejected), 0)


def turn_figures(*, turns: QuerySet[Turn]) -> dict[str, Any]:
    """Figures over `turns`: turns per day over the last FIGURE_DAYS days, the median latency of the answered
    ones, and the share of answered turns that a person refined from."""
    plain = Turn.objects.filter(pk__in=turns.order_by().values("pk"))
    since = timezone.now() - timedelta(days=FIGURE_DAYS)
    per_day = list(
        plain.filter(created__gte=since)
        .annotate(day=TruncDate("created"))
        .values("day")
        .annotate(n=Count("pk"))
        .order_by("day")
    )
    done = plain.filter(status=Turn.Status.DONE)
    measured = done.filter(latency_ms__isnull=False).values_list("latency_ms", flat=True)[:LATENCY_SAMPLE]
    latencies = [float(ms) for ms in measured if ms is not None]
    answered = done.count()
    refined = done.filter(chosen_image__isnull=False).count()
    return {
        "per_day": per_day,
        "median_latency_ms": statistics.median(latencies) if latencies else None,
        "refined_share": 100 * refined / answered if answered else None,
        "done": answered,
    }


def csv_cell(value: str) -> str:
    """A text cell; one a spreadsheet would run as a formula is written as text."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def turn_csv_rows(*, turns: QuerySet[Turn]) -> Iterator[list[Any]]:
    """The header, then one row per turn, oldest first."""
    yield CSV_HEADER
    rows = (
        Turn.objects.filter(pk__in=turns.order_by().values("pk"))
        .select_related("conversation__collection", "conversation__owner_user")
        .prefetch_related("results")
        .annotate(rejected_count=rejected_count())
        .order_by("created", "pk")
    )
    for t in rows.iterator(chunk_size=500):
        top = " ".join(str(r.image_id) for r in sorted(t.results.all(), key=lambda r: r.rank)[:5])
        yield [
            t.pk,
            t.conversation_id,
            t.conversation.collection.slug,
            t.parent_id or "",
            t.created.isoformat(),
            owner_text(t.conversation),
            t.mode,
            "on" if t.memory else "off",
            csv_cell(t.memory_summary),
            csv_cell(t.text),
            t.reference_image_id or "",
            t.reference_upload_id or "",
            t.status,
            csv_cell(t.error),
            "" if t.latency_ms is None else round(t.latency_ms, 1),
            top,
            t.chosen_image_id or "",
            t.rejected_count,  # type: ignore[attr-defined]
        ]
