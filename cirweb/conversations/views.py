"""The chat page. The server renders the shell and the data to start from; the page's script talks the
websocket protocol and the HTTP API for everything after that."""

from __future__ import annotations

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_safe

from cirweb.catalog import selectors as catalog
from cirweb.catalog.uploads import upload_limit_text
from cirweb.conversations import services, shaping
from cirweb.conversations.queries import TurnRejected
from cirweb.transport.owners import owner_from
from cirweb.transport.protocol import CLOSE_REFUSED, DEFAULT_K

# How many results the page asks for per turn and per "More" (as many as the websocket's default `k`); the page
# reads it from the boot data, never from its own copy.


@require_safe
@ensure_csrf_cookie
def chat(request: HttpRequest, conversation_id: str | None = None) -> HttpResponse:
    owner = owner_from(request.session, request.user, create=True)
    assert owner is not None
    conversation = None
    if conversation_id is not None:
        try:
            conversation = services.conversation_get(owner=owner, conversation_id=conversation_id)
        except TurnRejected:
            raise Http404("This conversation does not exist, or is not yours.") from None
    counts = catalog.collection_image_counts()
    boot = {
        "collections": [shaping.collection_json(c, counts.get(c.pk, 0)) for c in catalog.collection_list()],
        "conversation": shaping.conversation_json(conversation) if conversation else None,
        "limits": {
            "text": settings.CIR_TEXT_MAX_CHARS,
            "k": settings.CIR_K_MAX,
            "page": DEFAULT_K,
            "upload_bytes": settings.CIR_UPLOAD_MAX_BYTES,
            "upload_text": upload_limit_text(),
        },
        "close_refused": CLOSE_REFUSED,
    }
    title = str(conversation) if conversation else "New conversation"
    return render(request, "conversations/chat.html", {"boot": boot, "title": title})
