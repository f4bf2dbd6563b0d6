"""Reads about conversations that workers need (STYLE.md: reads in selectors, writes in services)."""

from __future__ import annotations

from dataclasses import dataclass, field

from cirweb.conversations.models import Feedback, Turn


@dataclass
class TurnHistory:
    """What a turn's conversation remembers, for `retrieval.memory`: the earlier turns along its branch
    (oldest first, as (reference image id or None, text)), the images chosen and rejected in the
    conversation (the turn's own reference is not among the chosen: it is already the query's image)."""

    earlier: list[tuple[int | None, str]] = field(default_factory=list)
    chosen: list[int] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)

    @property
    def texts(self) -> list[str]:
        return [text for _, text in self.earlier if text]


def turn_history(*, turn: Turn, max_turns: int = 20) -> TurnHistory:
    """The conversation behind `turn`: its ancestors through `parent` (another branch's turns are not this
    search's past), and the feedback given anywhere in the conversation."""
    earlier: list[tuple[int | None, str]] = []
    parent_id = turn.parent_id
    seen: set[int] = set()
    while parent_id is not None and parent_id not in seen and len(earlier) < max_turns:
        seen.add(parent_id)
        row = Turn.objects.filter(pk=parent_id).values_list("parent_id", "reference_image_id", "text").first()
        if row is None:
            break
        parent_id, image_id, text = row
        earlier.append((image_id, text))
    earlier.reverse()
    feedback = Feedback.objects.filter(turn__conversation=turn.conversation_id).values_list("image_id", "value")
    chosen = [i for i, v in feedback if v == Feedback.Value.CHOSEN and i != turn.reference_image_id]
    rejected = [i for i, v in feedback if v == Feedback.Value.REJECTED]
    return TurnHistory(earlier, sorted(set(chosen)), sorted(set(rejected)))
