"""A session engine whose saves meet the database refusing (test settings only): what SessionMiddleware meets
when the database goes away between a view and its response."""

from __future__ import annotations

from django.contrib.sessions.backends.db import SessionStore as DatabaseStore
from django.db import OperationalError


class SessionStore(DatabaseStore):
    def save(self, must_create: bool = False) -> None:
        raise OperationalError("could not write the session: the database refused")
