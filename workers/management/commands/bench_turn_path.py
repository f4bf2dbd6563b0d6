"""`python manage.py bench_turn_path`: what each step on a turn's hot path costs, in process, one at a time,
on the demo collection: the consumer's `turn_create` (validation, insert, enqueue), the broker hand-off
alone, and the worker's reads, search, result insert and channel-layer publish. It is the profile behind
`bench_pipeline`'s "overhead" figure: run it before and after a change to the turn path.

Turns it creates are answered here (or fail by expiry); tasks it enqueues for them are purged at the end, so
run it with no search worker attached to the same Redis database.
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

from django.core.management.base import CommandError

from cirweb.catalog.models import Collection, Image
from cirweb.celery_app import app
from cirweb.conversations import selectors, states
from cirweb.conversations import services as turns
from cirweb.conversations.models import Conversation
from cirweb.processes.commandline import DocumentedCommand
from cirweb.processes.liveness import process_identity
from cirweb.transport import queueing
from cirweb.transport.owners import Owner
from cirweb.transport.protocol import conversation_group, progress_frame
from workers.publish import publish, publisher
from workers.search import collection_of, result_alts, run_search


class Clock:
    """Milliseconds since the last lap."""

    def __init__(self) -> None:
        self.last = time.perf_counter()

    def lap(self) -> float:
        now = time.perf_counter()
        elapsed, self.last = (now - self.last) * 1000, now
        return elapsed


def one_turn(conversation: Conversation, owner: Owner, collection_id: int, image_id: int) -> dict[str, float]:
    clock = Clock()
    turn = turns.turn_create(
        conversation=conversation, owner=owner, text="make the circle red", reference={"image": image_id}
    )
    t_create = clock.lap()
    queueing.enqueue_search_turn(turn.pk)
    t_enqueue = clock.lap()
    begun = states.turn_claim(turn_id=turn.pk, worker=process_identity())
    assert begun is not None
    t_begin = clock.lap()
    excluded = selectors.turn_excluded_images(turn=begun).images
    t_excl = clock.lap()
    collection_of(begun.conversation_id)
    t_coll = clock.lap()
    outcome = run_search(
        collection_id=collection_id,
        mode=begun.mode,
        text=begun.text,
        image_id=begun.reference_image_id,
        upload_id=None,
        k=begun.k,
        exclude=excluded,
    )
    t_search = clock.lap()
    states.turn_complete(
        turn=begun, ranked=outcome.ranked, timings_ms=outcome.timings_ms, version_id=outcome.version.pk
    )
    t_complete = clock.lap()
    result_alts(version_id=outcome.version.pk, image_ids=[i for i, _ in outcome.ranked])
    t_alts = clock.lap()
    publish(conversation_group(conversation.pk), progress_frame(turn_id=turn.pk, stage="searching"))
    publisher.flush()
    t_publish = clock.lap()
    return {
        "consumer turn_create (validate, insert, enqueue on commit)": t_create,
        "broker hand-off alone (send_task)": t_enqueue,
        "worker turn_claim (read + conditional update)": t_begin,
        "worker turn_excluded_images (reads)": t_excl,
        "worker collection lookup (cached)": t_coll,
        "worker run_search (active version read + compute)": t_search,
        "worker compute as timed inside run_search": outcome.timings_ms["total"],
        "worker turn_complete (result insert + update)": t_complete,
        "worker results' alt text (one query for pictures not yet in its rows)": t_alts,
        "worker publish one event + flush (channel layer)": t_publish,
    }


class Command(DocumentedCommand):
    help = "Time each step of a turn's path (consumer, broker, worker, publish) in process."
    example = "python manage.py bench_turn_path --collection shapes --turns 50"

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--collection", default="shapes", help="slug of an indexed collection to search")
        parser.add_argument("--turns", type=int, default=50, help="turns timed (after one warm-up turn)")

    def handle(self, *args: Any, **options: Any) -> None:
        collection = Collection.objects.filter(slug=options["collection"]).first()
        if collection is None or collection.active_version_id is None:
            raise CommandError(f"collection {options['collection']!r} is missing or not indexed")
        owner = Owner(user_id=None, visitor="bench-turn-path")
        conversation = turns.conversation_create(owner=owner, collection_slug=collection.slug)
        images = list(Image.objects.filter(collection=collection).values_list("pk", flat=True)[:200])
        steps: dict[str, list[float]] = {}
        for i in range(options["turns"] + 1):
            times = one_turn(conversation, owner, collection.pk, images[i * 31 % len(images)])
            if i == 0:
                continue  # warm-up: models, index and connections
            for name, value in times.items():
                steps.setdefault(name, []).append(value)
        app.control.purge()  # the tasks enqueued above were answered here
        report = {
            name: {"p50": round(statistics.median(v), 2), "mean": round(statistics.mean(v), 2)}
            for name, v in steps.items()
        }
        self.stdout.write(json.dumps(report, indent=1))
