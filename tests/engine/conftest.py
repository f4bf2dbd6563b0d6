"""Each kind of shared store for the engine's tests: a folder, and a bucket of a real S3-compatible HTTP server
(tests/s3server.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from foundation.shared_store import BlobStore, DirectoryStore
from foundation.store_url import open_store


@pytest.fixture(params=["folder", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    """Each kind of shared store, empty: the same behaviour is asked of both."""
    if request.param == "folder":
        return DirectoryStore(tmp_path / "store")
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = request.getfixturevalue("new_bucket")()
    return open_store(f"s3://{bucket}/cirweb", endpoint_url=endpoint)
