"""The wire protocol, in one place: what the websockets, the HTTP API and the workers send each other.

Everything a client can see goes through here: the frames (`error`, `turn.accepted`, `turn.progress`,
`turn.results`, `turn.failed`), their error codes' shape, the close code of a refused socket, the
channel-layer group names the workers publish to, the defaults of a turn (k, mode), where a page of results
starts, and the URLs of pictures (built from the URL configuration, never written out by hand). The
consumers, the limits, the services and the workers import these names from here; docs/architecture.md
("Websocket protocol") describes them for people.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping
from typing import Any

from django.urls import reverse

DEFAULT_K = 24  # results per page when a turn does not say
DEFAULT_MODE = "combiner"  # conversations.models.Turn.Mode.COMBINER
CLOSE_REFUSED = 4403  # a socket closed before it opened: not the owner, or no such conversation or job
CLIENT_ID_MAX = 64  # a client's id of its own frame, echoed back; longer ones (or booleans) are not echoed
FEEDBACK_NONE = "none"  # a `feedback` frame's value that takes back the turn's feedback on the image


# -- groups the workers publish to ----------------------------------------------------------------------------


def conversation_group(conversation_id: uuid.UUID | str) -> str:
    """The channel-layer group of one conversation's open sockets."""
    return f"conversation.{uuid.UUID(str(conversation_id)).hex}"


def reindex_group(job_id: int) -> str:
    """The channel-layer group of the sockets watching one reindex job (the admin's progress page)."""
    return f"reindex.{int(job_id)}"


# -- pages of results -----------------------------------------------------------------------------------------


def page_offset(*, pages: int, k: int) -> int:
    """The rank of the first result of a turn's newest page (pages counted from 1)."""
    return (pages - 1) * k


# -- picture URLs ---------------------------------------------------------------------------------------------


@functools.cache
def _route(name: str, argument: str) -> str:
    """The route `name` as a format string: reversed once (routes are fixed when the process starts), so a
    page of 24 results costs string formatting, not 48 reverse() calls."""
    marker = 918273645
    return reverse(name, kwargs={argument: marker}).replace(str(marker), "{}")


def image_url(image_id: int) -> str:
    return _route("image", "image_id").format(int(image_id))


def image_thumb_url(image_id: int) -> str:
    return _route("image-thumb", "image_id").format(int(image_id))


def upload_url(upload_id: int) -> str:
    return _route("upload", "upload_id").format(int(upload_id))


def upload_thumb_url(upload_id: int) -> str:
    return _route("upload-thumb", "upload_id").format(int(upload_id))


# -- frames ---------------------------------------------------------------------------------------------------


def echoed_client_id(content: dict[str, Any] | None) -> str | int | None:
    """The frame's `client_id` when it may be echoed back: a string or an integer (not a boolean) of at most
    CLIENT_ID_MAX characters."""
    client_id = content.get("client_id") if isinstance(content, dict) else None
    if isinstance(client_id, str | int) and not isinstance(client_id, bool) and len(str(client_id)) <= CLIENT_ID_MAX:
        return client_id
    return None


def error_frame(code: str, message: str, content: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """An `error` frame: a code for programs, a sentence for people, the client's id of the frame it answers
    (when it can be echoed), and any extra keys (e.g. `retry_after`)."""
    frame: dict[str, Any] = {"type": "error", "code": code, "error": message, **extra}
    client_id = echoed_client_id(content)
    if client_id is not None:
        frame["client_id"] = client_id
    return frame


def accepted_frame(*, turn_id: int, client_id: str) -> dict[str, Any]:
    return {"type": "turn.accepted", "turn": turn_id, "client_id": client_id}


def progress_frame(*, turn_id: int, stage: str) -> dict[str, Any]:
    return {"type": "turn.progress", "turn": turn_id, "stage": stage}


def result_payload(image_id: int, score: float, alt: str) -> dict[str, Any]:
    """One result as the protocol sends it; `alt`: the picture in words (catalog.models.image_alt)."""
    return {
        "image": image_id,
        "score": round(float(score), 4),
        "thumb": image_thumb_url(image_id),
        "url": image_url(image_id),
        "alt": alt,
    }


def results_frame(
    *,
    turn_id: int,
    offset: int,
    ranked: list[tuple[int, float]],
    alts: Mapping[int, str],
    timings_ms: dict[str, float],
    memory: str = "",
) -> dict[str, Any]:
    """A page of results, each with its alt text from `alts` (image id -> words); `memory`: what the
    conversation memory used, in words ("" when the turn did not use it)."""
    return {
        "type": "turn.results",
        "turn": turn_id,
        "offset": offset,
        "results": [result_payload(i, s, alts.get(i, "")) for i, s in ranked],
        "timings_ms": timings_ms,
        "memory": memory,
    }


def failed_frame(*, turn_id: int, code: str, error: str) -> dict[str, Any]:
    return {"type": "turn.failed", "turn": turn_id, "code": code, "error": error}


def outcome_key(frame: dict[str, Any]) -> tuple[int, int] | None:
    """What makes an outcome frame unique on one socket: (turn, offset), offset -1 for a failure."""
    if frame.get("type") == "turn.results":
        return int(frame["turn"]), int(frame["offset"])
    if frame.get("type") == "turn.failed":
        return int(frame["turn"]), -1
    return None
