"""The shared store a URL names (settings.CIR_STORE_URL, the CLI's --store): a folder, ``file://`` or ``s3://``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from foundation.shared_store import BlobStore, DirectoryStore, StoreError


def open_store(
    url: str | Path, *, endpoint_url: str | None = None, before_write: Callable[[str], None] | None = None
) -> BlobStore:
    """The store `url` names: a folder path, a ``file://`` URL, or ``s3://bucket/prefix`` (an S3 bucket, or
    one of the S3-compatible server at `endpoint_url`; boto3 is imported only then). `before_write`: a folder
    store's hook before each write completes (DirectoryStore)."""
    text = str(url)
    if text.startswith("file://"):
        return DirectoryStore(Path(text.removeprefix("file://")), before_write=before_write)
    if text.startswith("s3://"):
        from foundation.s3_store import open_s3_store

        return open_s3_store(text, endpoint_url=endpoint_url)
    if "://" in text:
        raise StoreError(f"{text!r}: unknown kind of shared store (expected a folder, a file:// or an s3:// URL)")
    return DirectoryStore(Path(text), before_write=before_write)
