"""Reads about conversations that the API and the workers share (STYLE.md: reads in selectors, writes in services)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db.models import QuerySet

from cirweb.conversations.models import Conversation, Feedback, Turn, TurnResult
from cirweb.owners import Owner


@dataclass
class TurnHistory:
    """What a turn's conversation remembers, for `retrieval.memory`: the earlier turns along its branch
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


def turn_excluded_images(*, turn: Turn) -> set[int]:
    """What this turn must not show: with `exclude_seen`, every result the conversation has already shown
    (ARCHITECTURE.md: "excluding what the conversation has already shown"); always, results rejected
    anywhere in the conversation, the turn's own reference, and the pages of this turn already shown.
    One query (a UNION): it runs on every turn, between the claim and the search."""
    rejected = Feedback.objects.filter(turn__conversation=turn.conversation_id, value=Feedback.Value.REJECTED)
    shown = TurnResult.objects.filter(turn__conversation=turn.conversation_id)
    if not turn.exclude_seen:
        shown = shown.filter(turn=turn)  # earlier pages of this turn only
    # order_by(): the models' default orderings are not allowed inside a compound statement
    both = (
        rejected.order_by()
        .values_list("image_id", flat=True)
        .union(shown.order_by().values_list("image_id", flat=True))
    )
    excluded = set(both)
    if turn.reference_image_id:
        excluded.add(turn.reference_image_id)
    return excluded
