"""The HTTP API (django-ninja): OpenAPI schema at /api/openapi.json, interactive docs at /api/docs.

Endpoints parse input, call one service and shape the output. Requests that carry the session cookie must
carry the CSRF token too (header X-CSRFToken; GET /api/csrf hands one out); cookie-less scripts need none,
as a request without ambient credentials cannot be forged across sites.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from ninja import File, NinjaAPI, Schema, Status
from ninja.errors import HttpError
from ninja.files import UploadedFile
from ninja.utils import check_csrf

from cirweb.catalog import selectors as catalog
from cirweb.catalog import uploads
from cirweb.conversations import limits, selectors, services, shaping
from cirweb.conversations.models import Conversation
from cirweb.conversations.queries import TurnRejected
from cirweb.transport.database_away import RETRY_AFTER, database_trouble
from cirweb.transport.owners import Owner, owner_from
from cirweb.transport.protocol import DEFAULT_K, DEFAULT_MODE

api = NinjaAPI(title="cirweb", version="1", description="Composed image retrieval, turn by turn.", urls_namespace="api")


@api.exception_handler(limits.RateLimited)  # [limits] 429 with Retry-After
def rate_limited(request: HttpRequest, exc: limits.RateLimited) -> HttpResponse:
    response = api.create_response(request, {"detail": exc.message, "retry_after": exc.retry_after}, status=429)
    response["Retry-After"] = str(exc.retry_after)
    return response


def hit(request: HttpRequest, group: str, owner: Owner | None) -> None:  # [limits]
    limits.hit(group, owner=owner, address=limits.address_of_request(request))


def require_csrf(request: HttpRequest) -> None:
    if settings.SESSION_COOKIE_NAME in request.COOKIES and check_csrf(request) is not None:
        raise HttpError(403, "CSRF check failed: send the X-CSRFToken header (GET /api/csrf gives a token).")


def owner_of(request: HttpRequest, create: bool = True) -> Owner:
    owner = owner_from(request.session, request.user, create=create)
    if owner is None:
        raise HttpError(404, "This conversation does not exist.")
    return owner


@api.exception_handler(OperationalError)
@api.exception_handler(InterfaceError)
def database_away(request: HttpRequest, exc: DatabaseError) -> HttpResponse:
    """The database away (503, `unavailable`) or refusing for now (503, `busy`), in the shape of a refusal."""
    trouble = database_trouble(exc)
    if trouble is None:
        raise exc
    response = api.create_response(request, {"detail": trouble[1], "code": trouble[0]}, status=503)
    response["Retry-After"] = str(RETRY_AFTER)
    return response


@api.exception_handler(TurnRejected)
def rejected(request: HttpRequest, exc: TurnRejected) -> HttpResponse:
    """A refused request: the sentence for people in `detail`, the websocket protocol's error `code` beside it
    (the same code and sentence a `turn.create` frame gets for the same query)."""
    status = {"not_found": 404, "unknown_collection": 404}.get(exc.code, 400)
    return api.create_response(request, {"detail": exc.message, "code": exc.code}, status=status)


class ConversationIn(Schema):
    collection: str
    title: str = ""


class ConversationPatch(Schema):
    title: str


class SearchIn(Schema):
    collection: str
    reference: dict[str, int] | None = None
    text: str = ""
    mode: str = DEFAULT_MODE
    k: int = DEFAULT_K


@api.get("/csrf", summary="A CSRF token for requests that carry the session cookie")
def csrf(request: HttpRequest) -> dict[str, str]:
    return {"csrf_token": get_token(request)}


@api.get("/collections", summary="Collections with their image counts and active index version")
def collections(request: HttpRequest) -> list[dict[str, Any]]:
    counts = catalog.collection_image_counts()
    return [shaping.collection_json(c, counts.get(c.pk, 0)) for c in catalog.collection_list()]


@api.get("/collections/{slug}/images", summary="A page of a collection's images, in order or shuffled")
def collection_images(
    request: HttpRequest, slug: str, offset: int = 0, limit: int = 48, seed: int | None = None
) -> dict[str, Any]:
    collection = catalog.collection_get(slug=slug)
    if collection is None:
        raise HttpError(404, f"There is no collection {slug!r}.")
    total, images = catalog.collection_images_page(collection=collection, offset=offset, limit=limit, seed=seed)
    return {"total": total, "offset": offset, "images": [shaping.image_json(img) for img in images]}


@api.get("/images/{image_id}", summary="One picture: its words (alt) and the requests worth suggesting with it")
def image(request: HttpRequest, image_id: int) -> dict[str, Any]:
    found = catalog.image_get(image_id=image_id)
    if found is None:
        raise HttpError(404, f"There is no picture {image_id}.")
    return shaping.image_json(found)


@api.post("/conversations", response={201: dict[str, Any]}, summary="Start a conversation on a collection")
def conversation_create(request: HttpRequest, body: ConversationIn) -> Status[dict[str, Any]]:
    require_csrf(request)
    hit(request, "conversations", owner_of(request))  # [limits]
    conversation = services.conversation_create(
        owner=owner_of(request), collection_slug=body.collection, title=body.title
    )
    return Status(201, {"id": str(conversation.id), "ws": f"/ws/conversations/{conversation.id}/"})


@api.get("/conversations", summary="The visitor's conversations, newest first")
def conversation_list(request: HttpRequest) -> list[dict[str, Any]]:
    owner = owner_from(request.session, request.user, create=False)
    if owner is None:
        return []
    return [shaping.conversation_summary(c) for c in selectors.conversation_list(owner=owner)]


def _conversation(request: HttpRequest, conversation_id: str) -> Conversation:
    return services.conversation_get(owner=owner_of(request, create=False), conversation_id=conversation_id)


@api.get("/conversations/{conversation_id}", summary="A conversation with its turns (a tree) and their results")
def conversation_detail(request: HttpRequest, conversation_id: str) -> dict[str, Any]:
    return shaping.conversation_json(_conversation(request, conversation_id))


@api.patch("/conversations/{conversation_id}", summary="Rename a conversation")
def conversation_rename(request: HttpRequest, conversation_id: str, body: ConversationPatch) -> dict[str, Any]:
    require_csrf(request)
    conversation = services.conversation_rename(conversation=_conversation(request, conversation_id), title=body.title)
    return shaping.conversation_summary(conversation)


@api.delete("/conversations/{conversation_id}", response={204: None}, summary="Delete a conversation")
def conversation_delete(request: HttpRequest, conversation_id: str) -> Status[None]:
    require_csrf(request)
    services.conversation_delete(conversation=_conversation(request, conversation_id))
    return Status(204, None)


@api.post("/uploads", response={201: dict[str, Any]}, summary="Upload a reference image (multipart field 'file')")
def upload_create(request: HttpRequest, file: File[UploadedFile]) -> Status[dict[str, Any]]:
    require_csrf(request)
    if file.size and file.size > settings.CIR_UPLOAD_MAX_BYTES:
        raise HttpError(413, f"The file is {file.size / 2**20:.1f} MB; the limit is {uploads.upload_limit_text()}.")
    hit(request, "uploads", owner_of(request))  # [limits]
    limits.upload_bytes(owner=owner_of(request), address=limits.address_of_request(request), size=file.size or 0)
    try:
        upload = uploads.upload_create(owner=owner_of(request), data=file.read(), original_name=file.name or "")
    except uploads.UploadRejected as exc:
        raise HttpError(400, str(exc)) from None
    except uploads.UploadNotStored as exc:  # 507 Insufficient Storage: the request was fine, the server is full
        raise HttpError(507, str(exc)) from None
    return Status(201, shaping.upload_json(upload))


@api.post("/search", summary="One composed query, answered by the search workers")
def search(request: HttpRequest, body: SearchIn) -> dict[str, Any]:
    require_csrf(request)
    collection = catalog.collection_get(slug=body.collection)
    if collection is None:
        raise HttpError(404, f"There is no collection {body.collection!r}.")
    owner = owner_from(request.session, request.user, create=False)
    hit(request, "search", owner)  # [limits]
    payload = shaping.search_payload(collection, body.reference, body.text, body.mode, body.k, owner)
    from cirweb.transport import queueing

    try:
        with limits.search_slot(owner=owner, address=limits.address_of_request(request)) as priority:  # [limits]
            answer = queueing.search_now(payload, timeout=settings.CIR_SEARCH_TIME_LIMIT, priority=priority)
    except limits.RateLimited:
        raise
    except Exception:
        raise HttpError(503, "No search worker answered in time; try again in a moment.") from None
    if not answer.get("ok"):
        raise HttpError(422, answer.get("error", "The search failed."))
    return {"collection": collection.slug, "results": answer["results"], "timings_ms": answer["timings_ms"]}
