"""Conversation services: creating conversations and turns, recording results and feedback.

Every function that acts for a visitor takes their `Owner` and refuses rows they do not own. Errors are
`TurnRejected(code, message)`: the code for programs (the websocket protocol's `code`), the message for people.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from cirweb.catalog.models import Collection
from cirweb.conversations import limits
from cirweb.conversations.models import Conversation, Feedback, Turn, TurnResult
from cirweb.conversations.queries import TurnRejected, query_validate
from cirweb.conversations.states import turn_request_more, turn_send
from cirweb.transport.owners import Owner
from cirweb.transport.protocol import DEFAULT_K, DEFAULT_MODE, FEEDBACK_NONE

# shaping, the scripting API and the consumer import these from here


def conversation_create(*, owner: Owner, collection_slug: str, title: str = "") -> Conversation:
    collection = Collection.objects.filter(slug=collection_slug).first()
    if collection is None:
        known = ", ".join(Collection.objects.order_by("slug").values_list("slug", flat=True)) or "none yet"
        raise TurnRejected("unknown_collection", f"There is no collection {collection_slug!r} (collections: {known}).")
    return Conversation.objects.create(collection=collection, title=title[:200], **owner.create_kwargs())


def conversation_get(*, owner: Owner, conversation_id: Any) -> Conversation:
    """The owner's conversation, or TurnRejected("not_found") — the same answer whether it does not exist
    or belongs to someone else, so ids cannot be probed."""
    try:
        conversation = Conversation.objects.select_related("collection").get(pk=uuid.UUID(str(conversation_id)))
    except (Conversation.DoesNotExist, ValueError):
        raise TurnRejected("not_found", "This conversation does not exist.") from None
    if not owner.owns(conversation):
        raise TurnRejected("not_found", "This conversation does not exist.")
    return conversation


def conversation_rename(*, conversation: Conversation, title: str) -> Conversation:
    conversation.title = title.replace("\x00", "").strip()[:200]
    conversation.save(update_fields=["title", "updated"])
    return conversation


def conversation_delete(*, conversation: Conversation) -> None:
    conversation.delete()


def turn_create(
    *,
    conversation: Conversation,
    owner: Owner,
    text: Any,
    reference: Any,
    parent: Any = None,
    mode: Any = DEFAULT_MODE,
    k: Any = DEFAULT_K,
    exclude_seen: Any = True,
    client_id: Any = "",
    memory: Any = False,
) -> Turn:
    """Validate a new turn (`queries.query_validate`, the same rules as `/api/search`), store it queued, and
    enqueue its search once the row is committed."""
    if "\x00" in str(client_id):
        raise TurnRejected("bad_message", "The text contains a NUL character; remove it and send again.")
    query = query_validate(
        collection_id=conversation.collection_id, owner=owner, text=text, reference=reference, mode=mode, k=k
    )
    if not isinstance(exclude_seen, bool):
        raise TurnRejected("bad_message", "exclude_seen must be true or false")
    if not isinstance(memory, bool):
        raise TurnRejected("bad_message", "memory must be true or false")
    text, image, upload = query.text, query.image_id, query.upload
    parent_id = _parent_check(conversation=conversation, parent=parent)
    # Every query here is on the path from the user's Enter to their results: few, and narrow.
    with transaction.atomic():
        # [limits] first, before any write: a refused frame in a flood then costs one read
        priority = limits.turn_admit(owner=owner)  # RateLimited when the visitor has enough in flight
        changes: dict[str, Any] = {"updated": timezone.now()}
        if not conversation.title:
            changes["title"] = (text or f"Image {image or ''}")[:60]
        if not Conversation.objects.filter(pk=conversation.pk).update(**changes):
            raise TurnRejected("not_found", "This conversation was deleted (in another tab?).")
        conversation.title = changes.get("title", conversation.title)
        turn = Turn.objects.create(
            sent_at=changes["updated"],  # sent on commit, just below (states.turn_send, `stamped`)
            conversation=conversation,
            parent_id=parent_id,
            client_id=str(client_id)[:64],
            reference_image_id=image,
            reference_upload=upload,
            text=text,
            mode=query.mode,
            k=query.k,
            exclude_seen=exclude_seen,
            memory=memory,
        )
        if parent_id is not None and image is not None:
            _parent_result_choose(parent_id=parent_id, image_id=image)
        transaction.on_commit(lambda: turn_send(turn_id=turn.pk, priority=priority, stamped=True))
    return turn


def _parent_check(*, conversation: Conversation, parent: Any) -> int | None:
    """The id of the turn this one refines (null: a new branch), which must be in the same conversation."""
    if parent is None:
        return None
    if not isinstance(parent, int) or isinstance(parent, bool):
        raise TurnRejected("bad_message", "parent must be a turn id or null")
    parent_id = Turn.objects.filter(pk=parent, conversation=conversation).values_list("pk", flat=True).first()
    if parent_id is None:
        raise TurnRejected("not_found", f"Turn {parent} is not part of this conversation.")
    return int(parent_id)


def _parent_result_choose(*, parent_id: int, image_id: int) -> None:
    """Refining from one of the parent's results says that result was the one wanted: record it as chosen."""
    if TurnResult.objects.filter(turn_id=parent_id, image_id=image_id).exists():
        Turn.objects.filter(pk=parent_id).update(chosen_image_id=image_id)
        Feedback.objects.bulk_create(
            [Feedback(turn_id=parent_id, image_id=image_id, value=Feedback.Value.CHOSEN)], ignore_conflicts=True
        )


def turn_get(*, conversation: Conversation, turn_id: Any) -> Turn:
    if not isinstance(turn_id, int) or isinstance(turn_id, bool):
        raise TurnRejected("bad_message", "turn must be a turn id")
    turn = Turn.objects.filter(pk=turn_id, conversation=conversation).first()
    if turn is None:
        raise TurnRejected("not_found", f"Turn {turn_id} is not part of this conversation.")
    return turn


def turn_more(*, turn: Turn) -> Turn:
    """Ask for the next page of k results of a finished turn."""
    if turn.status != Turn.Status.DONE:
        raise TurnRejected("not_ready", "This turn has no results yet; wait for them before asking for more.")
    if (turn.pages + 1) * turn.k > settings.CIR_K_MAX * 5:
        raise TurnRejected("bad_k", "That is as far as this turn's results go; refine instead.")
    owner = Owner(turn.conversation.owner_user_id, turn.conversation.owner_visitor)  # [limits]
    with transaction.atomic():
        priority = limits.turn_admit(owner=owner)  # [limits] RateLimited when the visitor has enough in flight
        if not turn_request_more(turn=turn, priority=priority):
            raise TurnRejected("not_ready", "The next page of this turn is already on its way.")
    turn.refresh_from_db()
    return turn


def feedback_set(*, turn: Turn, image_id: Any, value: Any) -> Feedback | None:
    """A person's word on one result of `turn`: "chosen", "rejected" ("Not this": kept out of later turns and
    its look-alikes pushed down), or "none", which takes back what the turn said of the image (None is
    returned): a rejected picture may come back, and a chosen one is no longer the turn's choice."""
    if value != FEEDBACK_NONE and value not in Feedback.Value.values:
        raise TurnRejected(
            "bad_message", "The value must be 'chosen', 'rejected' or 'none' ('none' takes back the feedback)."
        )
    if not isinstance(image_id, int) or not turn.results.filter(image_id=image_id).exists():
        raise TurnRejected("not_found", f"Image {image_id} is not a result of turn {turn.pk}.")
    if value == FEEDBACK_NONE:
        with transaction.atomic():
            Feedback.objects.filter(turn=turn, image_id=image_id).delete()
            Turn.objects.filter(pk=turn.pk, chosen_image_id=image_id).update(chosen_image_id=None)
        return None
    feedback, _ = Feedback.objects.update_or_create(turn=turn, image_id=image_id, defaults={"value": value})
    if value == Feedback.Value.CHOSEN:
        Turn.objects.filter(pk=turn.pk).update(chosen_image_id=image_id)
    return feedback
