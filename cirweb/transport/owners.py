"""Who owns a conversation or an upload: a logged-in user, or an anonymous visitor.

An anonymous visitor is a random id kept in their session (not the session key itself, which Django
rotates at login). Every read or write of an owned row goes through `owns`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, Protocol

VISITOR_KEY = "cirweb_visitor"


class OwnedRow(Protocol):
    owner_user_id: int | None
    owner_visitor: str


@dataclass(frozen=True)
class Owner:
    user_id: int | None
    visitor: str

    @property
    def is_anonymous(self) -> bool:
        return self.user_id is None

    def owns(self, row: OwnedRow) -> bool:
        if row.owner_user_id is not None:
            return row.owner_user_id == self.user_id
        return bool(row.owner_visitor) and row.owner_visitor == self.visitor

    def filter_kwargs(self) -> dict[str, Any]:
        """Keyword arguments that select this owner's rows in a queryset."""
        if self.user_id is not None:
            return {"owner_user_id": self.user_id}
        return {"owner_user__isnull": True, "owner_visitor": self.visitor}

    def create_kwargs(self) -> dict[str, Any]:
        return {"owner_user_id": self.user_id, "owner_visitor": self.visitor}


def owner_from(session: Any, user: Any, *, create: bool = True) -> Owner | None:
    """The owner behind a request's (or a websocket scope's) session and user. With `create`, an
    anonymous session gets its visitor id now (the caller's response then sets the session cookie)."""
    visitor = session.get(VISITOR_KEY) if session is not None else None
    if not visitor and create and session is not None:
        visitor = secrets.token_hex(16)
        session[VISITOR_KEY] = visitor
    user_id = user.pk if user is not None and getattr(user, "is_authenticated", False) else None
    if user_id is None and not visitor:
        return None
    return Owner(user_id, visitor or "")
