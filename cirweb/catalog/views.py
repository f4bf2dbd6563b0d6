"""Images and uploads over HTTP: full files and cached thumbnails, with ETags."""

from __future__ import annotations

import mimetypes
from pathlib import Path

from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseBase, HttpResponseNotModified
from django.views.decorators.http import require_safe

from cirweb.catalog.confinement import source_root_problem
from cirweb.catalog.models import Image, Upload
from cirweb.catalog.thumbnails import ThumbnailError, ThumbnailTooLarge, etag_for, thumbnail
from cirweb.catalog.uploads import upload_get, upload_path
from cirweb.catalog.validation import IMAGE_EXTENSIONS
from cirweb.files import locations
from cirweb.transport.owners import owner_from

CACHE = "private, max-age=3600"


def _serve(request: HttpRequest, path: Path, etag: str, content_type: str | None = None) -> HttpResponseBase:
    response: HttpResponseBase
    if etag in request.headers.get("If-None-Match", ""):
        response = HttpResponseNotModified()
    else:
        response = FileResponse(path.open("rb"), content_type=content_type or mimetypes.guess_type(path.name)[0])
    response["ETag"] = etag
    response["Cache-Control"] = CACHE
    response["X-Content-Type-Options"] = "nosniff"
    return response


def _image(image_id: int) -> Path:
    """The file of a collection image, only if it still belongs to the source and sits inside it (a
    symlink in a source folder must not expose files elsewhere on the server)."""
    row = (
        Image.objects.filter(pk=image_id, removed=False)
        .values_list("path", "collection__source", "collection__source_path")
        .first()
    )
    if row is None:
        raise Http404("No such image.")
    folder = locations.source_folder(row[2])
    root, path = folder.resolve(), locations.image_file(row[0], folder).resolve()
    if not path.is_relative_to(root) or source_root_problem(row[2]):  # an annotation may name any path
        raise Http404("No such image.")
    if path.suffix.lower() not in IMAGE_EXTENSIONS or not path.is_file():  # never an .html from our origin
        raise Http404("No such image.")
    return path


def too_large(exc: ThumbnailTooLarge) -> HttpResponse:
    """422: the file exists and is an image, but one we will not decode to make a thumbnail."""
    return HttpResponse(str(exc), status=422, content_type="text/plain; charset=utf-8")


@require_safe
def image_file(request: HttpRequest, image_id: int) -> HttpResponseBase:
    path = _image(image_id)
    return _serve(request, path, etag_for(path, 0))


@require_safe
def image_thumb(request: HttpRequest, image_id: int) -> HttpResponseBase:
    try:
        thumb, etag = thumbnail(_image(image_id), "images", image_id)
    except ThumbnailTooLarge as exc:
        return too_large(exc)
    except ThumbnailError:
        raise Http404("This image cannot be shown.") from None
    return _serve(request, thumb, etag, "image/jpeg")


def _upload(request: HttpRequest, upload_id: int) -> Path:
    owner = owner_from(request.session, request.user, create=False)
    upload = upload_get(owner=owner, upload_id=upload_id) if owner else None
    if (
        upload is None
        and request.user.is_active
        and request.user.is_staff
        and request.user.has_perm("catalog.view_upload")
    ):  # staff reviewing the query history
        upload = Upload.objects.filter(pk=upload_id).first()
    if upload is None:
        raise Http404("No such upload.")
    try:
        return upload_path(upload)
    except FileNotFoundError:
        raise Http404("This upload's file is gone.") from None


@require_safe
def upload_file(request: HttpRequest, upload_id: int) -> HttpResponseBase:
    path = _upload(request, upload_id)
    return _serve(request, path, etag_for(path, 0))


@require_safe
def upload_thumb(request: HttpRequest, upload_id: int) -> HttpResponseBase:
    try:
        thumb, etag = thumbnail(_upload(request, upload_id), "uploads", upload_id)
    except ThumbnailTooLarge as exc:
        return too_large(exc)
    except ThumbnailError:
        raise Http404("This upload cannot be shown.") from None
    return _serve(request, thumb, etag, "image/jpeg")
