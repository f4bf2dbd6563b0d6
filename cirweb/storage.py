"""Where index versions live: built in a local folder, published to the shared store (settings.CIR_STORE_URL)
under ``collections/<slug>/v<N>``, and served by every host from its local cache (settings.CIR_CACHE_DIR).

`IndexVersion.path` holds that store key, so the database names no machine path; rows written before the
shared store existed hold an absolute folder, which is still served as it is.
"""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

from django.conf import settings

from retrieval.blobstore import COMPLETE, BlobStore, fetch_folder, open_store, publish_folder


@functools.cache
def shared_store() -> BlobStore:
    return open_store(settings.CIR_STORE_URL)


def index_version_key(*, slug: str, number: int) -> str:
    return f"collections/{slug}/v{number}"


def job_chunks_key(*, job_id: int) -> str:
    """Where a reindex job's chunk files are kept while it runs (``<key>/chunk_00000.npz``, ...): the one
    owner of that key, for the workers that write them and for retention."""
    return f"jobs/{job_id}"


def index_version_staging(*, slug: str) -> Path:
    """The local folder a new version of this collection is built under (as `v<N>` inside it): the cache
    itself, so the host that built a version serves it without copying it back."""
    return Path(settings.CIR_CACHE_DIR) / "collections" / slug


def index_version_publish(*, folder: Path, key: str) -> str:
    """Publish a finished version folder to the shared store; returns what `IndexVersion.path` stores."""
    publish_folder(shared_store(), folder, key)
    return key


def index_version_folder(*, path: str) -> Path:
    """The local folder of a stored version, copied from the shared store into this host's cache if needed."""
    if Path(path).is_absolute():
        return Path(path)  # written before the shared store existed
    return fetch_folder(shared_store(), path, Path(settings.CIR_CACHE_DIR) / path)


def index_version_numbers(*, slug: str) -> list[int]:
    """Version numbers the shared store holds for this collection (published, or half-published)."""
    names = {key.split("/")[2] for key in shared_store().list(f"collections/{slug}")}
    return sorted(int(n[1:]) for n in names if n[:1] == "v" and n[1:].isdigit())


def index_version_exists(*, path: str) -> bool:
    """Whether the stored version can be served (a whole folder, in the store or, for old rows, on disk)."""
    if Path(path).is_absolute():
        return Path(path).is_dir()
    return shared_store().exists(f"{path}/{COMPLETE}")


def index_version_discard(*, path: str) -> None:
    """Remove a version nobody will register (cancelled while it was written) from the store and this cache."""
    if Path(path).is_absolute():
        return
    shared_store().delete(path)
    shutil.rmtree(Path(settings.CIR_CACHE_DIR) / path, ignore_errors=True)
