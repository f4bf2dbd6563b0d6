"""Thumbnails, generated once per file version and cached on disk; served with an ETag."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

from django.conf import settings
from PIL import Image as PILImage
from PIL import ImageOps

MAX_PIXELS = 50_000_000  # the upload limit too; Pillow itself refuses more than ~179 megapixels as a bomb


class ThumbnailError(OSError):
    pass


class ThumbnailTooLarge(ThumbnailError):
    """An image with more pixels than a thumbnail is made of (decoding it could take gigabytes)."""


def etag_for(source: Path, size: int) -> str:
    st = source.stat()
    return '"' + hashlib.sha1(f"{source}:{st.st_size}:{st.st_mtime_ns}:{size}".encode()).hexdigest()[:20] + '"'


def too_large_text(width: int, height: int) -> str:
    return f"This image is {width}x{height} pixels, more than the {MAX_PIXELS // 1_000_000} megapixels we show."


def thumbnail(source: Path, kind: str, key: int, size: int | None = None) -> tuple[Path, str]:
    """(path of the cached JPEG thumbnail, its ETag); built now if missing or older than the source."""
    size = size or settings.CIR_THUMB_SIZE
    try:
        etag = etag_for(source, size)
    except OSError:
        raise ThumbnailError(f"{source} is missing") from None
    target = Path(settings.CIR_THUMBS_DIR) / kind / f"{key}-{etag.strip(chr(34))}.jpg"
    if target.is_file():
        return target, etag
    try:
        with PILImage.open(source) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ThumbnailTooLarge(too_large_text(width, height))
            image.draft("RGB", (size * 2, size * 2))
            picture = ImageOps.exif_transpose(image).convert("RGB")
            picture.thumbnail((size, size), PILImage.Resampling.LANCZOS)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(f".{uuid.uuid4().hex}.tmp")
            picture.save(tmp, "JPEG", quality=85, optimize=True)
            tmp.replace(target)
    except ThumbnailError:
        raise
    except PILImage.DecompressionBombError:  # Pillow refuses to even read the header's promise
        limit = MAX_PIXELS // 1_000_000
        raise ThumbnailTooLarge(f"This image has far more than the {limit} megapixels we show.") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ThumbnailError(f"cannot make a thumbnail of {source}: {exc}") from None
    return target, etag
