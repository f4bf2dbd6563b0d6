"""The shared store: files every host can read, named by keys such as ``collections/shapes/v3/index.faiss``.

A store holds what must outlive one machine's disk and be readable from every host: finished index
versions, a reindex's extracted chunks and upload features. Workers never memory-map from it: they copy
what they serve into their own local cache first (network file systems and object stores make poor
page caches).

Keys are relative POSIX paths (``a/b/c``): no leading slash, no ``..``, no empty parts. Every write is
atomic (a reader sees the old file or the whole new one, never a part), so a writer killed mid-copy
leaves nothing that looks finished.

`DirectoryStore` is a folder (local, or an NFS mount standing for one); `S3Store` (foundation/s3_store.py)
is an S3 bucket or an S3-compatible server; `foundation.store_url.open_store` builds the store a URL names.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from foundation.explained_error import ExplainedError


class StoreError(ExplainedError):
    """A key that is malformed or missing, or a store that cannot be reached."""


def checked_key(key: str) -> str:
    """`key` if it is a relative POSIX path without `..` or empty parts; StoreError otherwise."""
    parts = key.split("/")
    if not key or "\\" in key or any(p in ("", ".", "..") for p in parts):
        raise StoreError(f"{key!r} is not a valid store key (a relative path such as 'collections/x/v1/meta.json')")
    return key


class BlobStore(Protocol):
    """What the product needs of a shared store."""

    url: str

    def put_file(self, local: Path, key: str) -> None:
        """Copy the local file to `key`, atomically (replacing what was there)."""

    def get_file(self, key: str, local: Path) -> None:
        """Copy `key` to the local file, atomically; StoreError if there is no such key."""

    def exists(self, key: str) -> bool: ...

    def modified(self, key: str) -> float | None:
        """When `key` was last written (seconds since the epoch), None if there is no such key."""

    def list(self, prefix: str) -> list[str]:
        """Keys under the folder `prefix` (recursively), sorted."""

    def delete(self, prefix: str) -> None:
        """Remove the key `prefix`, or everything under the folder `prefix`; nothing if absent."""


class DirectoryStore:
    """A store that is a folder. On the same file system, files are hard-linked in and out instead of
    copied (one host running everything pays no second copy of each version). `before_write`, if given, is
    called with the key once a written file's bytes are in place and before they are renamed in: an error it
    raises is the write's (the fault suite's full disk), and the bytes are removed as a real failure's are."""

    def __init__(self, root: str | Path, *, before_write: Callable[[str], None] | None = None) -> None:
        self.root = Path(root)
        self.url = self.root.as_uri() if self.root.is_absolute() else str(self.root)
        self.before_write = before_write

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*checked_key(key).split("/"))

    def put_file(self, local: Path, key: str) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        try:
            _link_or_copy(local, tmp)
            if self.before_write is not None:
                self.before_write(key)
            os.replace(tmp, target)
            tmp.unlink(missing_ok=True)  # rename(2) does nothing when both names are links to one file
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def get_file(self, key: str, local: Path) -> None:
        source = self._path(key)
        if not source.is_file():
            raise StoreError(f"the shared store {self.url} has no {key}")
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f".{local.name}.{uuid.uuid4().hex}.tmp")
        try:
            _link_or_copy(source, tmp)
            os.replace(tmp, local)
            tmp.unlink(missing_ok=True)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def modified(self, key: str) -> float | None:
        try:
            return self._path(key).stat().st_mtime
        except FileNotFoundError:
            return None

    def list(self, prefix: str) -> list[str]:
        folder = self._path(prefix)
        if not folder.is_dir():
            return []
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in folder.rglob("*")
            if p.is_file() and not p.name.endswith(".tmp")
        )

    def delete(self, prefix: str) -> None:
        path = self._path(prefix)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _link_or_copy(source: Path, target: Path) -> None:
    """A hard link where the file system allows it: stored and cached files are replaced, never changed in
    place, so sharing their bytes is safe and one host running everything keeps one copy of each."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


COMPLETE = "_complete.json"  # written last by publish_folder: a folder without it is not finished


def publish_folder(store: BlobStore, folder: Path, prefix: str) -> None:
    """Copy every file of `folder` under `prefix`, then the marker that says the folder is whole (a reader
    never takes a folder whose publisher died half-way)."""
    files = sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.name != COMPLETE)
    listing = {p.relative_to(folder).as_posix(): p.stat().st_size for p in files}
    for path in files:
        store.put_file(path, f"{checked_key(prefix)}/{path.relative_to(folder).as_posix()}")
    marker = Path(folder) / COMPLETE
    marker.write_text(json.dumps(listing, indent=1))  # kept: the publisher's folder is a whole local copy too
    store.put_file(marker, f"{prefix}/{COMPLETE}")


def fetch_folder(store: BlobStore, prefix: str, destination: Path) -> Path:
    """The published folder `prefix` as a local folder at `destination` (copied once; later calls find it).
    The copy is made beside `destination` and renamed into place, so a killed copier leaves no half folder."""
    destination = Path(destination)
    if (destination / COMPLETE).is_file():
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = destination.parent / f".{destination.name}.{uuid.uuid4().hex}.tmp"
    try:
        store.get_file(f"{checked_key(prefix)}/{COMPLETE}", tmp / COMPLETE)
        listing: dict[str, int] = json.loads((tmp / COMPLETE).read_text())
        for name, size in listing.items():
            store.get_file(f"{prefix}/{name}", tmp / name)
            if (tmp / name).stat().st_size != size:
                raise StoreError(f"{prefix}/{name} in the shared store is not the size its publisher wrote")
        try:
            os.replace(tmp, destination)
        except OSError:  # another process of this host fetched it first
            if not (destination / COMPLETE).is_file():
                raise
    except StoreError as exc:
        if not store.exists(f"{prefix}/{COMPLETE}"):
            raise StoreError(f"{prefix} is not (or not completely) published in the shared store {store.url}") from exc
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return destination
