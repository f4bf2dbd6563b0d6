"""Where index versions and uploads live: in the shared store (settings.CIR_STORE_URL) every host reads,
and copied into each host's local cache (settings.CIR_CACHE_DIR) before anything reads or maps them.

- Index versions are built in a local folder, published under ``collections/<slug>/v<N>`` and served from
  the cache, which keeps at most CIR_CACHE_VERSIONS of them (least recently used first out, never one a
  worker process maps: foundation/host_cache.py). `IndexVersion.path` holds the store key, so the database names
  no machine path; rows written before the shared store existed hold an absolute folder, still served.
- Uploads are written by the web process under CIR_UPLOADS_DIR and published under ``uploads/<file>``; a
  host without the file fetches it into its cache. Their features, once a search worker computed them,
  are published under ``uploads/features/`` so no other host encodes them again.
"""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

from django.conf import settings

from cirweb.processes import faults
from foundation.host_cache import Hold, evict_folder, evict_folders, hold_folder
from foundation.shared_store import (
    COMPLETE,
    BlobStore,
    DirectoryStore,
    StoreError,
    fetch_folder,
    publish_folder,
)
from foundation.store_url import open_store


@functools.cache
def shared_store() -> BlobStore:
    return open_store(
        settings.CIR_STORE_URL, endpoint_url=settings.CIR_S3_ENDPOINT_URL, before_write=faults.store_write_point()
    )


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
    """The local folder of a stored version, copied from the shared store into this host's cache if needed
    (then the cache is trimmed to CIR_CACHE_VERSIONS versions)."""
    if Path(path).is_absolute():
        return Path(path)  # written before the shared store existed
    local = Path(settings.CIR_CACHE_DIR) / path
    if (local / COMPLETE).is_file():
        return local
    fetch_folder(shared_store(), path, local)
    cache_evict(keep=local)
    return local


def index_version_hold(*, path: str) -> Hold:
    """The local folder of a stored version, held for as long as the caller maps it (the cache never
    deletes a held folder); fetched again if another process evicted it between the fetch and the hold."""
    for _ in range(3):
        if (hold := hold_folder(index_version_folder(path=path))) is not None:
            return hold
    raise StoreError(f"index version {path} keeps leaving this host's cache; raise CIR_CACHE_VERSIONS")


def cached_versions() -> list[Path]:
    """The whole version folders in this host's cache."""
    root = Path(settings.CIR_CACHE_DIR) / "collections"
    return [p.parent for p in root.glob(f"*/v*/{COMPLETE}")] if root.is_dir() else []


def cache_drop(folder: Path) -> bool:
    """Delete one folder of this host's cache unless a process maps it; True when it was deleted."""
    return evict_folder(folder)


def cached_whole(folder: Path) -> bool:
    """Whether a folder of this host's cache was fetched (or built and published) whole."""
    return (folder / COMPLETE).is_file()


def cache_evict(*, keep: Path | None = None) -> list[Path]:
    """Trim this host's cache to CIR_CACHE_VERSIONS versions, least recently used out, never one a
    process holds, nor `keep` (just fetched for a caller about to hold it); returns the folders deleted."""
    others = [p for p in cached_versions() if p != keep]
    return evict_folders(others, settings.CIR_CACHE_VERSIONS - (keep is not None))


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


def stored_bytes(key: str) -> int:
    """How many bytes `key` (a file, or a folder of keys) takes in the shared store, where that can be told
    without reading it (a store that is a folder); 0 otherwise."""
    store = shared_store()
    if not isinstance(store, DirectoryStore):
        return 0
    paths = [store.root / k for k in store.list(key)] or [store.root / key]
    return sum(p.stat().st_size for p in paths if p.is_file())


def upload_key(*, file: str) -> str:
    """The key of an upload's bytes in the shared store (`file`: `Upload.file`)."""
    return f"uploads/{file}"


UPLOAD_FEATURES = "uploads/features"  # in the store and in each host's cache: `<upload id>.<models key>.npy`


def upload_publish(*, local: Path, file: str) -> None:
    shared_store().put_file(local, upload_key(file=file))


def upload_local(*, file: str) -> Path:
    """An upload's bytes as a file on this host: where the web process wrote it, or fetched from the
    shared store into the cache. FileNotFoundError when neither has it (pruned, or the store lost it)."""
    written = Path(settings.CIR_UPLOADS_DIR) / file
    if written.is_file():
        return written
    cached = Path(settings.CIR_CACHE_DIR) / upload_key(file=file)
    if not cached.is_file():
        try:
            shared_store().get_file(upload_key(file=file), cached)
        except StoreError as exc:
            raise FileNotFoundError(str(exc)) from None
    return cached
