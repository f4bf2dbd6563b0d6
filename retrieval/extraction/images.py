"""Safe image decoding: every image the engine reads goes through `open_image`.

Bad files are a normal part of real collections, so decoding failures are reported as `ImageError` with a
sentence a person can act on, never as a Pillow traceback. The pixel limit is checked from the header,
before any pixel is decoded, so a decompression bomb costs nothing.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

# 50 megapixels: above any camera a user will bring, far below a decompression bomb (20000x20000 = 400 MP).
MAX_PIXELS = 50_000_000

# Pillow's own guard stays on (it raises above 2x its limit); we make it agree with ours.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
# A truncated file is corrupt: refuse it rather than decode a grey half-image.
ImageFile.LOAD_TRUNCATED_IMAGES = False


class ImageError(ValueError):
    """An image that cannot be used, with the reason in words."""


def open_image(source: str | Path | bytes, *, draft_size: int | None = None) -> Image.Image:
    """Decode `source` (a path or the file's bytes) into an RGB image.

    `draft_size` lets JPEG decoding scale down by a power of two while decoding when the image is far
    larger than needed, never below `draft_size` on either side (a 12 MP photo drafted to 448 for a 224 px
    model: 25 ms to decode instead of 42, and a sixteenth of the pixels to resize; the model's features stay
    within cosine 0.9999 of the whole decode's: tests/engine/test_pixels.py). Animated images (GIF, WebP)
    give their first frame. EXIF orientation is applied so photos stand upright.
    """
    name = "the image" if isinstance(source, bytes) else str(source)
    if isinstance(source, bytes):
        if not source:
            raise ImageError("the file is empty (0 bytes)")
        stream: io.BytesIO | str | Path = io.BytesIO(source)
    else:
        path = Path(source)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise ImageError(f"{name} does not exist") from None
        except OSError as exc:
            raise ImageError(f"{name} cannot be read: {exc.strerror or exc}") from None
        if size == 0:
            raise ImageError(f"{name} is empty (0 bytes)")
        stream = path
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(stream)
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ImageError(
                    f"{name} is {width}x{height} pixels, more than the {MAX_PIXELS // 1_000_000} megapixel limit"
                )
            if draft_size and image.format in ("JPEG", "MPO"):  # MPO: a phone's JPEG with more pictures after it
                image.draft("RGB", (draft_size, draft_size))
            image.seek(0)
            image.load()
            ImageOps.exif_transpose(image, in_place=True)  # in place: a photo of 12 MP is 36 MB to copy
            if image.mode == "RGB" and (image.fp is None or isinstance(source, bytes)):
                return image  # decoded, its file closed by Pillow (a JPEG): nothing to copy
            rgb = image.convert("RGB")  # a copy, so the file of a picture that may have more frames is closed now
            image.close()
            return rgb
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{name} is not an image Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(
            f"{name} is too large to decode safely (over the {MAX_PIXELS // 1_000_000} megapixel limit)"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"{name} is corrupt or truncated ({exc})") from None
