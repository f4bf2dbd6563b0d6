"""A conversation's ranking rules, in every mode: no picture of the branch refined from comes back, a rejected
picture never returns (until "Not this" is taken back), and its look-alikes are pushed out of the page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cirweb.conversations import services, shaping
from cirweb.conversations.models import Feedback, Turn, TurnResult
from cirweb.conversations.queries import TurnRejected
from cirweb.conversations.selectors import turn_excluded_images, turn_history
from retrieval.fusion.memory import LOOK_ALIKE, push_away, rerank
from retrieval.index.versions import write_version
from retrieval.vectors import normalize
from tests.web.factories import make_collection, visitor

pytestmark = pytest.mark.django_db  # inside a transaction: nothing is enqueued (on_commit never fires)


def test_every_reference_of_the_branch_is_excluded_with_or_without_hiding_seen(settings: Any) -> None:
    settings.CIR_TURNS_IN_FLIGHT = 10
    collection = make_collection(images=6)
    a, b, c, d, e, f = collection.images.order_by("pk").values_list("pk", flat=True)
    owner = visitor()
    conversation = services.conversation_create(owner=owner, collection_slug=collection.slug)

    def turn(image: int | None, parent: int | None = None, exclude_seen: bool = False) -> Turn:
        return services.turn_create(
            conversation=conversation,
            owner=owner,
            text="make it red",
            reference={"image": image} if image else None,
            parent=parent,
            exclude_seen=exclude_seen,
        )

    first = turn(a)
    TurnResult.objects.bulk_create(
        [TurnResult(turn=first, rank=r, image_id=i, score=1.0) for r, i in enumerate([b, c])]
    )
    services.feedback_set(turn=first, image_id=c, value="rejected")
    second = turn(b, parent=first.pk)
    side = turn(e, parent=first.pk)  # another branch: its reference is not this branch's past
    words_only = turn(None, parent=second.pk)  # a turn without a picture still excludes where the branch has been
    third = turn(d, parent=words_only.pk)
    for exclude_seen in (False, True):
        Turn.objects.filter(pk=third.pk).update(exclude_seen=exclude_seen)
        third.refresh_from_db()
        got = turn_excluded_images(turn=third)
        assert {a, b, d} <= got.images, "the branch's references (its own and its ancestors') never return"
        assert c in got.images and got.rejected == [c], "a rejected picture never returns"
        assert e not in got.images, "another branch's reference is a fair answer here"
        assert (b in got.images) and ((f in got.images) is False)
    assert turn_excluded_images(turn=side).images == {a, c, e}


def test_not_this_can_be_taken_back_and_the_picture_may_come_back(settings: Any) -> None:
    settings.CIR_TURNS_IN_FLIGHT = 10
    collection = make_collection(images=4)
    a, b, c, d = collection.images.order_by("pk").values_list("pk", flat=True)
    owner = visitor()
    conversation = services.conversation_create(owner=owner, collection_slug=collection.slug)
    first = services.turn_create(conversation=conversation, owner=owner, text="red", reference={"image": a})
    TurnResult.objects.bulk_create(
        [TurnResult(turn=first, rank=r, image_id=i, score=1.0) for r, i in enumerate([b, c])]
    )
    services.feedback_set(turn=first, image_id=c, value="rejected")
    services.feedback_set(turn=first, image_id=b, value="chosen")
    again = services.turn_create(
        conversation=conversation, owner=owner, text="red", reference={"image": a}, exclude_seen=False, memory=True
    )
    assert c in turn_excluded_images(turn=again).images and turn_history(turn=again).rejected == [c]

    for image in (c, b):
        assert services.feedback_set(turn=first, image_id=image, value="none") is None
    services.feedback_set(turn=first, image_id=c, value="none")  # twice: still nothing to take back, no error
    excluded = turn_excluded_images(turn=again)
    assert c not in excluded.images and excluded.rejected == [], "the picture may come back in the next turn"
    assert turn_history(turn=again).rejected == [] and turn_history(turn=again).chosen == []
    assert not Feedback.objects.filter(turn=first).exists()
    (shown, _) = shaping.conversation_json(conversation)["turns"]
    assert shown["rejected"] == [] and shown["chosen_image"] is None

    for bad in ("undo", "", None, ["none"], "NONE"):
        with pytest.raises(TurnRejected) as refused:
            services.feedback_set(turn=first, image_id=c, value=bad)
        assert refused.value.code == "bad_message" and "'none'" in refused.value.message
    with pytest.raises(TurnRejected) as refused:
        services.feedback_set(turn=first, image_id=d, value="none")
    assert refused.value.code == "not_found"


def test_not_this_pushes_the_rejected_pictures_look_alikes_out_of_the_page(tmp_path: Path) -> None:
    """The ranks of the rejected picture's five closest look-alikes, before and after one "Not this"."""
    rng = np.random.default_rng(3)
    dim = 32
    axes = np.eye(dim, dtype=np.float32)
    query = axes[[0]]
    rejected = 0.7 * axes[0] + np.sqrt(1 - 0.7**2) * axes[1]  # result 1 of the turn, rejected
    look_alikes = normalize((rejected + 0.05 * rng.normal(size=(5, dim))).astype(np.float32))
    sideways = rng.normal(size=(40, dim)).astype(np.float32)
    sideways[:, :2] = 0  # other answers: a little less like the query, in directions unlike the rejected one
    others = 0.62 * axes[0] + np.sqrt(1 - 0.62**2) * normalize(sideways)
    features = np.concatenate([rejected[None], look_alikes, others]).astype(np.float32)
    assert (look_alikes @ rejected).min() > LOOK_ALIKE  # they are what "look alike" means
    ids = np.arange(100, 100 + len(features))
    loaded = write_version(tmp_path, ids, features, encoder="tiny", combiner="sum")
    k = 10
    before = loaded.index.search(query, k, exclude={100})[1][0].tolist()
    alike = set(range(101, 106))
    assert len(alike & set(before)) >= 4, "the look-alikes lead the page before the rejection"
    scores, pool = loaded.index.search(query, 3 * k, exclude={100})
    after = rerank(scores, pool, None, k, candidates=loaded.features_of, rejected=features[[0]])[1][0].tolist()
    assert len(after) == k and 100 not in after
    ranks_before = sorted(before.index(i) for i in alike if i in before)
    ranks_after = sorted(after.index(i) for i in alike if i in after)
    assert ranks_before == [0, 1, 2, 3, 4]
    assert len(ranks_after) <= 1, f"look-alikes still on the page at ranks {ranks_after} (before: {ranks_before})"


def test_push_away_lowers_only_look_alikes() -> None:
    rejected = np.array([[1.0, 0.0]], np.float32)
    candidates = np.array([[1.0, 0.05], [0.0, 1.0], [1.0, 1.0]], np.float32)  # cos 0.999, 0, 0.707
    lowered = push_away(np.array([0.5, 0.5, 0.5], np.float32), candidates, rejected)
    assert lowered[0] < 0.5 - 0.15 and lowered[1] == 0.5 and lowered[2] == 0.5
    assert (push_away(np.ones(3, np.float32), candidates, np.zeros((0, 2), np.float32)) == 1).all()
