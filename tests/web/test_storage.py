"""A host serves index versions from its own cache: fetched whole from the shared store (a folder, or an S3
bucket on a real local S3-compatible server) when the cache starts empty, at most CIR_CACHE_VERSIONS kept,
never one a worker process maps."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cirweb.files import storage
from retrieval.index.versions import load_version, write_version


@pytest.fixture(params=["file", "s3"])
def store_kind(request: pytest.FixtureRequest, settings: Any) -> Iterator[str]:
    """Each kind of shared store behind cirweb.files.storage (file: a folder, the settings' default), and a cache
    that starts empty."""
    if request.param == "s3":
        settings.CIR_STORE_URL = f"s3://{request.getfixturevalue('new_bucket')()}/cir"
        settings.CIR_S3_ENDPOINT_URL = request.getfixturevalue("s3_endpoint")
    shutil.rmtree(Path(settings.CIR_CACHE_DIR), ignore_errors=True)
    storage.shared_store.cache_clear()
    yield request.param
    storage.shared_store.cache_clear()


def publish(slug: str, number: int) -> str:
    staging = storage.index_version_staging(slug=slug)
    ids = np.arange(1, 4, dtype=np.int64) + number
    written = write_version(staging, ids, np.eye(3, 8, dtype=np.float32), encoder="e", combiner="c", version=number)
    return storage.index_version_publish(folder=written.path, key=storage.index_version_key(slug=slug, number=number))


def test_an_empty_cache_fills_from_the_store_and_keeps_at_most_the_configured_versions(
    settings: Any, store_kind: str
) -> None:
    settings.CIR_CACHE_VERSIONS = 2
    keys = [publish("cached", n) for n in (1, 2, 3, 4)]
    shutil.rmtree(Path(settings.CIR_CACHE_DIR))  # a new host: nothing local yet
    assert storage.shared_store().url.startswith(f"{store_kind}://")

    held = storage.index_version_hold(path=keys[0])  # a search worker maps v1
    assert load_version(held.folder, mmap=True).ids.tolist() == [2, 3, 4]
    for key in keys[1:]:
        assert load_version(storage.index_version_folder(path=key)).meta.count == 3
    cached = sorted(p.name for p in storage.cached_versions())
    assert cached == ["v1", "v4"]  # v4 just fetched; v1 held, although used before v2 and v3

    held.release()
    storage.index_version_folder(path=keys[1])  # v2 again: v1 is no longer held, and the oldest
    assert sorted(p.name for p in storage.cached_versions()) == ["v2", "v4"]
