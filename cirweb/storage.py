"""The shared store this deployment uses (settings.CIR_STORE_URL), opened once per process."""

from __future__ import annotations

import functools

from django.conf import settings

from retrieval.blobstore import BlobStore, open_store


@functools.cache
def shared_store() -> BlobStore:
    return open_store(settings.CIR_STORE_URL)
