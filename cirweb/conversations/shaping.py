"""How rows look in JSON: one place, shared by the API and the chat page."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import Prefetch

from cirweb.catalog.models import Collection, Image, Upload, file_alt
from cirweb.conversations.models import Conversation, Feedback, Turn, TurnResult
from cirweb.conversations.queries import query_validate
from cirweb.transport.owners import Owner
from cirweb.transport.protocol import image_thumb_url, image_url, result_payload, upload_thumb_url, upload_url


def collection_json(c: Collection, images: int) -> dict[str, Any]:
    return {
        "slug": c.slug,
        "name": c.name,
        "images": images,
        "active_version": c.active_version.number if c.active_version else None,
    }


def image_json(img: Image) -> dict[str, Any]:
    """A collection's picture; `alt`: it in words; `suggestions`: requests whose exact result the collection
    holds, with it as the reference (shapes collections; [] elsewhere: the page offers general ones)."""
    return {
        "id": img.pk,
        "name": img.relpath,
        "thumb": image_thumb_url(img.pk),
        "url": image_url(img.pk),
        "alt": img.alt,
        "suggestions": list(img.suggestions),
    }


def upload_json(u: Upload) -> dict[str, Any]:
    return {
        "id": u.pk,
        "thumb": upload_thumb_url(u.pk),
        "url": upload_url(u.pk),
        "width": u.width,
        "height": u.height,
        "name": u.original_name,
    }


def conversation_summary(c: Conversation) -> dict[str, Any]:
    return {
        "id": str(c.id),
        "title": str(c),
        "collection": c.collection.slug,
        "updated": c.updated.isoformat(),
        "ws": f"/ws/conversations/{c.id}/",
    }


def reference_json(turn: Turn) -> dict[str, Any] | None:
    """The picture a turn refined from, with its alt text (an upload's: the name it was sent with)."""
    image, upload = turn.reference_image, turn.reference_upload
    if image is not None:
        return {"image": image.pk, "thumb": image_thumb_url(image.pk), "alt": image.alt}
    if upload is not None:
        alt = file_alt(upload.original_name) or "your picture"
        return {"upload": upload.pk, "thumb": upload_thumb_url(upload.pk), "alt": alt}
    return None


def turn_json(turn: Turn) -> dict[str, Any]:
    feedback = {f.image_id: f.value for f in turn.feedback.all()}
    return {
        "id": turn.pk,
        "parent": turn.parent_id,
        "client_id": turn.client_id,
        "text": turn.text,
        "mode": turn.mode,
        "k": turn.k,
        "pages": turn.pages,
        "exclude_seen": turn.exclude_seen,
        "uses_memory": turn.memory,
        "memory": turn.memory_summary,
        "status": turn.status,
        "code": turn.error_code,
        "error": turn.error,
        "reference": reference_json(turn),
        "timings_ms": turn.timings_ms,
        "latency_ms": turn.latency_ms,
        "chosen_image": turn.chosen_image_id,
        "index_version": turn.index_version.number if turn.index_version else None,
        "rejected": [i for i, v in feedback.items() if v == Feedback.Value.REJECTED],
        "created": turn.created.isoformat(),
        "results": [result_payload(r.image_id, r.score, r.image.alt) for r in turn.results.all()],
    }


def conversation_json(c: Conversation) -> dict[str, Any]:
    results = (  # each result with what its alt text needs, in one query
        TurnResult.objects.order_by("rank")
        .select_related("image")
        .only("turn_id", "rank", "score", "image__description", "image__relpath")
    )
    turns = (
        c.turns.order_by("created", "id")
        .select_related("index_version", "reference_image", "reference_upload")
        .prefetch_related(Prefetch("results", queryset=results), "feedback")
    )
    return {
        **conversation_summary(c),
        "created": c.created.isoformat(),
        "turns": [turn_json(t) for t in turns],
        "limits": {"text": settings.CIR_TEXT_MAX_CHARS, "k": settings.CIR_K_MAX},
    }


def search_payload(
    collection: Collection, reference: dict[str, int] | None, text: str, mode: str, k: int, owner: Owner | None
) -> dict[str, Any]:
    """Validate a scripting-API query with the rules of a turn (`queries.query_validate`); the JSON the
    search worker takes."""
    query = query_validate(collection_id=collection.pk, owner=owner, text=text, reference=reference, mode=mode, k=k)
    payload: dict[str, Any] = {"collection_id": collection.pk, "text": query.text, "k": query.k, "mode": query.mode}
    if query.image_id is not None:
        payload["image"] = query.image_id
    if query.upload is not None:
        payload["upload"] = query.upload.pk
    return payload
