"""Rows for web tests, with real image files behind them."""

from __future__ import annotations

import io
from pathlib import Path

from django.conf import settings
from PIL import Image as PILImage

from cirweb.catalog.models import Collection, Image
from cirweb.transport.owners import Owner


def png_bytes(colour: str = "red", size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


def make_collection(slug: str = "things", images: int = 3) -> Collection:
    collection = Collection.objects.create(
        slug=slug, name=slug.title(), source="folder", source_path=str(Path(settings.CIR_DATA_DIR) / "src" / slug)
    )
    folder = Path(collection.source_path)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(images):
        path = folder / f"img{i}.png"
        path.write_bytes(png_bytes(["red", "green", "blue", "yellow"][i % 4]))
        Image.objects.create(
            collection=collection,
            relpath=path.name,
            path=str(path),
            size=path.stat().st_size,
            mtime_ns=path.stat().st_mtime_ns,
            indexed=True,
        )
    return collection


def visitor(name: str = "v1") -> Owner:
    return Owner(None, name)
