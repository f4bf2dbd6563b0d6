"""What makes a query valid: one owner for the rule (STYLE.md), called by the websocket's `turn.create`
(`services.turn_create`) and by `POST /api/search`, so both refuse the same input with the same code and
sentence.

Errors are `TurnRejected(code, message)`: the code for programs (the websocket protocol's `code`), the
message for people.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings

from cirweb.catalog.models import Image, Upload
from cirweb.conversations.models import Turn
from cirweb.transport.owners import Owner


class TurnRejected(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Reference:
    image_id: int | None = None
    upload_id: int | None = None


@dataclass(frozen=True)
class Query:
    """A checked query: stripped text, the mode it will actually run in (text alone without a reference,
    image alone without text), k, and the reference found in the catalog (at most one of the two)."""

    text: str
    mode: str
    k: int
    image_id: int | None = None
    upload: Upload | None = None

    @property
    def has_reference(self) -> bool:
        return self.image_id is not None or self.upload is not None


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_reference(value: Any) -> Reference:
    """The protocol's `reference`: null, {"image": id} or {"upload": id}."""
    if value is None:
        return Reference()
    if isinstance(value, dict) and len(value) == 1:
        ((kind, ident),) = value.items()
        if kind in ("image", "upload") and _whole(ident) and ident > 0:
            return Reference(image_id=ident) if kind == "image" else Reference(upload_id=ident)
    raise TurnRejected("bad_message", 'reference must be null, {"image": <id>} or {"upload": <id>}')


def text_check(text: Any) -> str:
    """The query's words, stripped; refused when not a string, holding a NUL or over the limit."""
    if not isinstance(text, str):
        raise TurnRejected("bad_message", "text must be a string")
    if "\x00" in text:
        raise TurnRejected("bad_message", "The text contains a NUL character; remove it and send again.")
    text = text.strip()
    if len(text) > settings.CIR_TEXT_MAX_CHARS:
        raise TurnRejected(
            "text_too_long", f"The text is {len(text)} characters; the limit is {settings.CIR_TEXT_MAX_CHARS}."
        )
    return text


def _reference_find(*, collection_id: int, owner: Owner | None, ref: Reference) -> tuple[int | None, Upload | None]:
    image = upload = None
    if ref.image_id is not None:
        image = (
            Image.objects.filter(pk=ref.image_id, collection=collection_id, removed=False)
            .values_list("pk", flat=True)
            .first()
        )
        if image is None:
            raise TurnRejected("reference_missing", f"Image {ref.image_id} is not in this collection.")
    if ref.upload_id is not None:
        upload = Upload.objects.filter(pk=ref.upload_id, deleted=False).first()
        if upload is None or owner is None or not owner.owns(upload):
            raise TurnRejected("reference_missing", f"Upload {ref.upload_id} does not exist or was deleted.")
    return image, upload


def query_validate(*, collection_id: int, owner: Owner | None, text: Any, reference: Any, mode: Any, k: Any) -> Query:
    """Check a query against the rules every entry point shares, in one order (text, mode, k, reference,
    emptiness), and find its reference among the collection's images or the owner's uploads."""
    text = text_check(text)
    if mode not in Turn.Mode.values:
        raise TurnRejected("bad_message", f"mode must be one of {', '.join(Turn.Mode.values)}")
    if not _whole(k) or not 1 <= k <= settings.CIR_K_MAX:
        raise TurnRejected("bad_k", f"k must be a whole number from 1 to {settings.CIR_K_MAX}.")
    image, upload = _reference_find(collection_id=collection_id, owner=owner, ref=parse_reference(reference))
    has_reference = image is not None or upload is not None
    if not has_reference and not text:
        raise TurnRejected("empty_query", "Type what you are looking for, or pick a reference image.")
    if not has_reference:
        mode = Turn.Mode.TEXT  # nothing to combine with: the words alone
    elif not text:
        mode = Turn.Mode.IMAGE  # "more like this"
    return Query(text=text, mode=str(mode), k=k, image_id=image, upload=upload)
