"""What a turn remembers: its branch's earlier requests and the conversation's feedback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cirweb.conversations import services
from cirweb.conversations.models import Feedback, Turn, TurnResult
from cirweb.conversations.queries import TurnRejected
from cirweb.conversations.selectors import TurnHistory, turn_history
from retrieval.fusion.fuser import Mode
from retrieval.fusion.memory import DEFAULT_WEIGHTS, remember, rerank
from retrieval.index.versions import write_version
from retrieval.vectors import normalize
from tests.web.factories import make_collection, visitor
from workers.runtime import Runtime

pytestmark = pytest.mark.django_db  # inside a transaction: nothing is enqueued (on_commit never fires)


def test_history_follows_the_branch_and_the_feedback(settings: Any) -> None:
    settings.CIR_TURNS_IN_FLIGHT = 10  # the turns stay queued here (nothing is enqueued inside the test)
    collection = make_collection(images=4)
    a, b, c, d = collection.images.order_by("pk").values_list("pk", flat=True)
    owner = visitor()
    conversation = services.conversation_create(owner=owner, collection_slug=collection.slug)

    def turn(text: str, image: int, parent: int | None = None) -> Turn:
        return services.turn_create(
            conversation=conversation, owner=owner, text=text, reference={"image": image}, parent=parent
        )

    first = turn("make the circle red", a)
    TurnResult.objects.bulk_create(
        [TurnResult(turn=first, rank=r, image_id=i, score=1.0) for r, i in enumerate([b, c])]
    )
    services.feedback_set(turn=first, image_id=c, value="rejected")
    second = turn("no star", b, parent=first.pk)  # refined from result b: b becomes chosen
    other_branch = turn("add a square", a, parent=first.pk)
    TurnResult.objects.bulk_create([TurnResult(turn=other_branch, rank=0, image_id=d, score=1.0)])
    TurnResult.objects.bulk_create(
        [TurnResult(turn=second, rank=r, image_id=i, score=1.0) for r, i in enumerate([c, a, b])]
    )
    third = turn("bigger", d, parent=second.pk)
    history = turn_history(turn=third)
    assert history.earlier == [(a, "make the circle red"), (b, "no star")]  # the other branch is not this past
    assert history.rejected == [c] and history.chosen == [b]
    assert history.seen == {c: 2, a: 1}  # shown on the branch and passed over (b was chosen; d is not this past)
    assert turn_history(turn=other_branch).earlier == [(a, "make the circle red")]
    assert Feedback.objects.filter(value="chosen", image_id=b).exists()
    with pytest.raises(TurnRejected, match="memory must be true or false"):
        services.turn_create(conversation=conversation, owner=owner, text="x", reference=None, memory="yes")
    # a frame or API call that does not ask for memory gets the memoryless turn (the chat page asks by default)
    assert turn("plain", a).memory is False


def test_the_worker_steers_with_features_from_the_index(tmp_path: Path, tiny_clip_checkpoint: Path) -> None:
    models = Runtime().models(str(tiny_clip_checkpoint), "sum")
    features = np.random.default_rng(0).normal(size=(6, models.encoder.dim)).astype(np.float32)
    loaded = write_version(tmp_path, np.arange(10, 16), features, encoder="tiny", combiner="sum")
    query = models.fuser.fuse(Mode.SUM, features[[0]], models.encoder.encode_texts(["make it red"]))
    history = TurnHistory(earlier=[(10, "make it red"), (99, "an image reindexed away")], rejected=[12, 98])
    encode = models.encoder.encode_texts
    leader = int(loaded.index.search(remember(models.fuser, encode, loaded, Mode.SUM, query, history)[0], 1)[1][0][0])
    history.seen = {leader: 50, 97: 1}  # the best result was shown 50 times, passed over; 97 is not indexed
    steered, memory, said = remember(
        models.fuser, models.encoder.encode_texts, loaded, Mode.SUM, query, history, image_id=11, words=None
    )
    away = normalize(features[[2]])[0]
    assert float(steered[0] @ away) < float(normalize(query)[0] @ away)
    assert said == (
        "remembering: make it red; an image reindexed away · steering away from 1 rejected · 1 seen give way"
    )
    every, ids = loaded.index.search(steered, 6)  # the whole collection, best first
    lowered = {
        int(i): float(v) - (50 * DEFAULT_WEIGHTS.seen if i == leader else 0.0)
        for v, i in zip(every[0], ids[0], strict=True)
    }
    expected = sorted(lowered, key=lambda i: -lowered[i])[:3]
    _, top = rerank(*loaded.index.search(steered, 3 + len(memory.seen)), memory, 3)
    assert [int(i) for i in top[0]] == expected  # an exact top 3 after the seen result gave way
    assert expected[0] != leader
