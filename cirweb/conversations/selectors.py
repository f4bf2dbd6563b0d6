"""Reads about conversations that the API and the workers share (STYLE.md: reads in selectors, writes in services)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import QuerySet, Value

from cirweb.catalog.models import image_alt
from cirweb.conversations.models import Conversation, Feedback, Turn, TurnResult
from cirweb.transport.owners import Owner
from cirweb.transport.protocol import failed_frame, page_offset, results_frame


@dataclass
class TurnHistory:
    """What a turn's conversation remembers, for `retrieval.fusion.memory`: the earlier turns along its branch
    (oldest first, as (reference image id or None, text)), the images chosen and rejected in the
    conversation (the turn's own reference is not among the chosen: it is already the query's image), and
    how many times each result of the earlier turns was shown without being chosen."""

    earlier: list[tuple[int | None, str]] = field(default_factory=list)
    chosen: list[int] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)
    seen: dict[int, int] = field(default_factory=dict)

    @property
    def texts(self) -> list[str]:
        return [text for _, text in self.earlier if text]


def turn_history(*, turn: Turn, max_turns: int = 20) -> TurnHistory:
    """The conversation behind `turn`: its ancestors through `parent` (another branch's turns are not this
    search's past), and the feedback given anywhere in the conversation."""
    earlier: list[tuple[int | None, str]] = []
    parent_id = turn.parent_id
    ancestors: set[int] = set()
    while parent_id is not None and parent_id not in ancestors and len(earlier) < max_turns:
        ancestors.add(parent_id)
        row = Turn.objects.filter(pk=parent_id).values_list("parent_id", "reference_image_id", "text").first()
        if row is None:
            break
        parent_id, image_id, text = row
        earlier.append((image_id, text))
    earlier.reverse()
    feedback = Feedback.objects.filter(turn__conversation=turn.conversation_id).values_list("image_id", "value")
    chosen = [i for i, v in feedback if v == Feedback.Value.CHOSEN and i != turn.reference_image_id]
    rejected = [i for i, v in feedback if v == Feedback.Value.REJECTED]
    taken = set(chosen) | {turn.reference_image_id}
    seen: dict[int, int] = {}
    for image_id in TurnResult.objects.filter(turn__in=ancestors).values_list("image_id", flat=True):
        if image_id not in taken:
            seen[image_id] = seen.get(image_id, 0) + 1
    return TurnHistory(earlier, sorted(set(chosen)), sorted(set(rejected)), seen)


def conversation_list(*, owner: Owner, limit: int = 200) -> QuerySet[Conversation]:
    """The owner's conversations, newest first (the model's ordering)."""
    return Conversation.objects.filter(**owner.filter_kwargs()).select_related("collection")[:limit]


def conversation_collection_id(*, conversation_id: Any) -> int:
    return int(Conversation.objects.filter(pk=conversation_id).values_list("collection_id", flat=True).get())


@dataclass
class Exclusions:
    """What a turn must not show (`images`), and the images rejected in its conversation (`rejected`, also
    among `images`), whose look-alikes the search pushes down in every mode."""

    images: set[int]
    rejected: list[int]


def turn_excluded_images(*, turn: Turn) -> Exclusions:
    """What this turn must not show, in every mode: with `exclude_seen`, every result the conversation has
    already shown (ARCHITECTURE.md: "excluding what the conversation has already shown"); always, results
    rejected anywhere in the conversation, every reference of the turn's branch (its own and its ancestors':
    the pictures refined from are where the person has been, never an answer), and the pages of this turn
    already shown. Two queries: the conversation's turns (for the branch), and a UNION of feedback and
    results, tagged by kind."""
    rejected = Feedback.objects.filter(turn__conversation=turn.conversation_id, value=Feedback.Value.REJECTED)
    shown = TurnResult.objects.filter(turn__conversation=turn.conversation_id)
    if not turn.exclude_seen:
        shown = shown.filter(turn=turn)  # earlier pages of this turn only
    # order_by(): the models' default orderings are not allowed inside a compound statement
    both = (
        rejected.order_by()
        .annotate(kind=Value(1))
        .values_list("image_id", "kind")
        .union(shown.order_by().annotate(kind=Value(0)).values_list("image_id", "kind"))
    )
    tagged = list(both)
    excluded = {image for image, _ in tagged} | branch_references(turn=turn)
    return Exclusions(excluded, sorted(image for image, kind in tagged if kind == 1))


def branch_references(*, turn: Turn) -> set[int]:
    """The reference images of `turn` and of its ancestors through `parent` (one query for the conversation's
    turns; the walk stops on a cycle, which the schema forbids but a hand-edited database could hold)."""
    rows = Turn.objects.filter(conversation=turn.conversation_id).values_list("pk", "parent_id", "reference_image_id")
    parent_of = {pk: (parent, image) for pk, parent, image in rows}
    out = {turn.reference_image_id} if turn.reference_image_id else set()
    at, walked = turn.parent_id, set()
    while at is not None and at not in walked and at in parent_of:
        walked.add(at)
        at, image = parent_of[at]
        if image is not None:
            out.add(image)
    return out


def turn_outcomes_since(
    *, conversation_id: Any, since: Any, skip: frozenset[tuple[int, int]] = frozenset()
) -> list[dict[str, Any]]:
    """The outcome frames of the conversation's turns that ended at or after `since`, oldest first, but
    those whose `outcome_key` is in `skip` (already sent)."""
    rows = (
        Turn.objects.filter(conversation_id=conversation_id, finished__gte=since, status__in=Turn.FINISHED)
        .values_list("pk", "status", "pages", "k", "timings_ms", "error_code", "error", "memory_summary")
        .order_by("finished", "pk")
    )
    frames = []
    for pk, status, pages, k, timings, code, error, memory in rows:
        offset = -1 if status == Turn.Status.FAILED else page_offset(pages=pages, k=k)
        if (pk, offset) in skip:
            continue
        if status == Turn.Status.FAILED:
            frames.append(failed_frame(turn_id=pk, code=code, error=error))
            continue
        results = list(
            TurnResult.objects.filter(turn_id=pk, rank__gte=offset).values_list(
                "image_id", "score", "image__description", "image__relpath"
            )
        )  # the results with their alt text: one query
        ranked = [(image, score) for image, score, _, _ in results]
        alts = {image: image_alt(description=words, relpath=rel) for image, _, words, rel in results}
        frames.append(
            results_frame(turn_id=pk, offset=offset, ranked=ranked, alts=alts, timings_ms=timings, memory=memory)
        )
    return frames


def _ended_since(since: datetime) -> QuerySet[Turn]:
    """Turns that ended at or after `since`. Bounded by `queued_at` too, which is indexed (`finished` is not): a
    turn ends at most CIR_TURN_EXPIRES (queued) plus the search's hard time limit (running) after its queueing."""
    longest = timedelta(seconds=settings.CIR_TURN_EXPIRES + settings.CIR_SEARCH_TIME_LIMIT + 60)
    return Turn.objects.filter(queued_at__gte=since - longest, finished__gte=since)


def turns_ended_since(*, since: datetime, limit: int = 100_000) -> list[tuple[datetime, str, float | None]]:
    """(finished, status, latency_ms) of the turns that ended (done or failed) since `since`, newest first, at
    most `limit`: the admin's Operations page."""
    rows = (
        _ended_since(since)
        .filter(status__in=[Turn.Status.DONE, Turn.Status.FAILED])
        .order_by("-finished")
        .values_list("finished", "status", "latency_ms")[:limit]
    )
    return [(finished, status, latency) for finished, status, latency in rows if finished is not None]


def turns_failed_recent(*, since: datetime, limit: int = 10) -> list[Turn]:
    """The latest turns that failed since `since`, newest first, with their sentence (`error`)."""
    return list(
        _ended_since(since)
        .filter(status=Turn.Status.FAILED)
        .order_by("-finished", "-pk")
        .only("pk", "finished", "error_code", "error", "text")[:limit]
    )
