"""Uploads: validated before anything is stored, stored under a name derived from their content, in this
host's CIR_UPLOADS_DIR and in the shared store (so a search worker on any host can read them).

The web process checks uploads with Pillow alone (it never loads the engine): the declared name and type
are not trusted; the bytes must decode as one of the accepted formats within the size and pixel limits.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import uuid
import warnings
from pathlib import Path

from django.conf import settings
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from cirweb.catalog.models import Upload
from cirweb.processes.faults import fault_point
from cirweb.transport.owners import Owner
from foundation.explained_error import ExplainedError, disk_full

log = logging.getLogger(__name__)

FORMATS = {
    "JPEG": ("jpg", "image/jpeg"),
    "PNG": ("png", "image/png"),
    "WEBP": ("webp", "image/webp"),
    "GIF": ("gif", "image/gif"),
    "BMP": ("bmp", "image/bmp"),
}
MAX_PIXELS = 50_000_000


class UploadRejected(ValueError):
    """An upload that is not accepted, with the reason in words."""


class UploadNotStored(ExplainedError):
    """An acceptable upload the server could not keep (its disk is full), in words for the visitor."""


def upload_limit_text() -> str:
    return f"{settings.CIR_UPLOAD_MAX_BYTES // (1024 * 1024)} MB"


def upload_validate(data: bytes) -> tuple[str, int, int]:
    """The format, width and height of `data`, or UploadRejected saying what is wrong with it."""
    if not data:
        raise UploadRejected("The file is empty.")
    if len(data) > settings.CIR_UPLOAD_MAX_BYTES:
        raise UploadRejected(f"The file is {len(data) / 2**20:.1f} MB; the limit is {upload_limit_text()}.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            image = PILImage.open(io.BytesIO(data))
            fmt, (width, height) = image.format or "", image.size
            if fmt not in FORMATS:
                raise UploadRejected(f"This is a {fmt or 'unknown'} file; upload a JPEG, PNG, WebP, GIF or BMP image.")
            if width * height > MAX_PIXELS:
                raise UploadRejected(f"The image is {width}x{height} pixels; the limit is 50 megapixels.")
            image.load()
    except UploadRejected:
        raise
    except (UnidentifiedImageError, PILImage.DecompressionBombError, PILImage.DecompressionBombWarning):
        raise UploadRejected("This file is not an image we can read (JPEG, PNG, WebP, GIF or BMP).") from None
    except (OSError, SyntaxError, ValueError, EOFError):
        raise UploadRejected("The image is corrupt or truncated.") from None
    return fmt, width, height


def upload_create(*, owner: Owner, data: bytes, original_name: str = "") -> Upload:
    """Validate and store an upload; the same bytes uploaded twice by one owner give the same Upload."""
    fmt, width, height = upload_validate(data)
    digest = hashlib.sha256(data).hexdigest()
    existing = Upload.objects.filter(sha256=digest, deleted=False, **owner.filter_kwargs()).first()
    if existing is not None:
        return existing
    ext, content_type = FORMATS[fmt]
    relative = f"{digest[:2]}/{digest}.{ext}"
    _upload_store(data, relative)
    return Upload.objects.create(
        file=relative,
        original_name=os.path.basename(original_name)[:255],
        content_type=content_type,
        size=len(data),
        width=width,
        height=height,
        sha256=digest,
        **owner.create_kwargs(),
    )


def _upload_store(data: bytes, relative: str) -> None:
    """The bytes under CIR_UPLOADS_DIR and in the shared store (search workers on any host read them there);
    UploadNotStored when a disk is full, with nothing of this write left behind (a file another upload of
    the same bytes already wrote stays)."""
    from cirweb.files import storage  # here: the web process starts without even the store's module of the engine

    path = Path(settings.CIR_UPLOADS_DIR) / relative
    written_here = not path.is_file()
    tmp = path.with_suffix(f".{uuid.uuid4().hex}.tmp")
    try:
        if written_here:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            fault_point("upload.write", relative)
            tmp.replace(path)
        storage.upload_publish(local=path, file=relative)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if written_here:
            path.unlink(missing_ok=True)
        full = disk_full(exc, writing="the uploaded image")
        if full is None:
            raise
        log.error("upload %s not stored: %s", relative, full)  # the operator's sentence; the visitor gets theirs
        raise UploadNotStored(
            "The server has no room to store this image right now; please try again later, or pick a picture "
            "from the collection."
        ) from exc


def upload_get(*, owner: Owner, upload_id: int) -> Upload | None:
    upload = Upload.objects.filter(pk=upload_id, deleted=False).first()
    return upload if upload is not None and owner.owns(upload) else None


def upload_delete(*, upload: Upload) -> None:
    Upload.objects.filter(pk=upload.pk).update(deleted=True)


def upload_path(upload: Upload) -> Path:
    """The upload's file on this host (fetched from the shared store if this host does not have it)."""
    from cirweb.files import storage

    return storage.upload_local(file=upload.file)
