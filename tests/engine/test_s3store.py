"""The shared store as an S3 bucket, against a real S3-compatible HTTP server (moto's standalone server; see
conftest.py). The behaviour a folder store has too is tested for both in test_blobstore.py; here: what only
a bucket can get wrong (pages, batches, prefixes, multipart uploads) and the sentences its failures become."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from foundation.shared_store import COMPLETE, StoreError, fetch_folder, publish_folder
from foundation.store_url import open_store
from tests.s3server import free_port

pytest.importorskip("boto3", reason="boto3 is not installed (requirements.txt)")

from foundation.s3_store import S3Store  # after the skip: boto3 may be absent


def raw_keys(store: S3Store) -> list[str]:
    """Every key of the store's bucket, read with a client of its own (not the store's)."""
    import boto3

    client = boto3.session.Session().client("s3", endpoint_url=store.endpoint_url)
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=store.bucket)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", ()))


@pytest.fixture
def s3(s3_endpoint: str, new_bucket: Callable[[], str]) -> S3Store:
    store = open_store(f"s3://{new_bucket()}/shared/cir/", endpoint_url=s3_endpoint)
    assert isinstance(store, S3Store)
    return store


def test_urls_name_a_bucket_and_a_prefix(s3_endpoint: str) -> None:
    store = open_store("s3://bucket/shared/cir/", endpoint_url=s3_endpoint)
    assert isinstance(store, S3Store) and (store.bucket, store.prefix, store.url) == (
        "bucket",
        "shared/cir",
        "s3://bucket/shared/cir",
    )
    assert open_store("s3://bucket").url == "s3://bucket"
    with pytest.raises(StoreError, match="names no bucket"):
        open_store("s3:///prefix")
    with pytest.raises(StoreError, match="not a valid store key"):
        open_store("s3://bucket/a/../b")


def test_a_folder_store_never_imports_boto3(tmp_path: Path) -> None:
    code = f"import sys; from foundation.store_url import open_store; open_store({str(tmp_path)!r}); "
    code += "print('boto3' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_keys_live_under_the_prefix_and_stores_of_one_bucket_stay_apart(s3: S3Store, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    other = S3Store(s3.bucket, "shared/other", endpoint_url=s3.endpoint_url)
    s3.put_file(tmp_path / "f", "uploads/a.png")
    other.put_file(tmp_path / "f", "uploads/b.png")
    assert raw_keys(s3) == ["shared/cir/uploads/a.png", "shared/other/uploads/b.png"]
    assert s3.list("uploads") == ["uploads/a.png"] and other.list("uploads") == ["uploads/b.png"]
    s3.delete("uploads")
    assert raw_keys(s3) == ["shared/other/uploads/b.png"]


def test_listing_and_deleting_go_page_by_page(s3: S3Store, tmp_path: Path) -> None:
    s3.page_size = 2  # S3 answers 1000 keys a page; 2 makes 7 keys take four pages and four delete batches
    (tmp_path / "f").write_bytes(b"x")
    keys = [f"uploads/features/{i}.npy" for i in range(7)]
    for key in keys:
        s3.put_file(tmp_path / "f", key)
    assert s3.list("uploads") == sorted(keys)
    s3.delete("uploads/features")
    assert s3.list("uploads") == [] and raw_keys(s3) == []


def test_a_file_larger_than_one_part_goes_up_and_down_whole(s3: S3Store, tmp_path: Path) -> None:
    data = bytes(range(256)) * (9 * 4096)  # 9 MiB: past boto3's 8 MiB multipart threshold
    (tmp_path / "big").write_bytes(data)
    s3.put_file(tmp_path / "big", "collections/x/v1/features.npy")
    s3.get_file("collections/x/v1/features.npy", tmp_path / "cache" / "features.npy")
    assert (tmp_path / "cache" / "features.npy").read_bytes() == data


def test_a_folder_published_over_s3_comes_back_whole_and_a_half_published_one_is_refused(
    s3: S3Store, tmp_path: Path
) -> None:
    folder = tmp_path / "v1"
    (folder / "sub").mkdir(parents=True)
    (folder / "index.faiss").write_bytes(b"\x00" * 5000)
    (folder / "sub" / "ids.npy").write_bytes(b"1234")
    s3.put_file(folder / "index.faiss", "collections/x/v1/index.faiss")  # a publisher that died half-way
    with pytest.raises(StoreError, match=r"collections/x/v1 is not \(or not completely\) published"):
        fetch_folder(s3, "collections/x/v1", tmp_path / "cache" / "v1")
    assert not (tmp_path / "cache").exists() or list((tmp_path / "cache").iterdir()) == []
    publish_folder(s3, folder, "collections/x/v1")
    assert raw_keys(s3) == [f"shared/cir/collections/x/v1/{name}" for name in (COMPLETE, "index.faiss", "sub/ids.npy")]
    local = fetch_folder(s3, "collections/x/v1", tmp_path / "cache" / "v1")
    assert (local / "sub" / "ids.npy").read_bytes() == b"1234" and (local / "index.faiss").stat().st_size == 5000
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["v1"]


def test_a_published_folder_whose_files_went_missing_is_refused(s3: S3Store, tmp_path: Path) -> None:
    folder = tmp_path / "v1"
    folder.mkdir()
    (folder / "meta.json").write_text("{}")
    (folder / "index.faiss").write_bytes(b"x")
    publish_folder(s3, folder, "collections/x/v1")
    s3.delete("collections/x/v1/index.faiss")
    with pytest.raises(StoreError, match=r"has no collections/x/v1/index\.faiss"):
        fetch_folder(s3, "collections/x/v1", tmp_path / "cache" / "v1")
    assert list((tmp_path / "cache").iterdir()) == []


def test_a_missing_bucket_is_a_sentence(s3_endpoint: str, aws_env: dict[str, str], tmp_path: Path) -> None:
    store = open_store("s3://no-such-bucket/cir", endpoint_url=s3_endpoint)
    (tmp_path / "f").write_bytes(b"x")
    sentence = f"^the shared store's bucket no-such-bucket does not exist at {re.escape(s3_endpoint)}$"
    with pytest.raises(StoreError, match=sentence):
        store.put_file(tmp_path / "f", "uploads/a.png")
    for use in (lambda: store.list("uploads"), lambda: store.exists("a"), lambda: store.get_file("a", tmp_path / "a")):
        with pytest.raises(StoreError, match="bucket no-such-bucket does not exist"):
            use()


def test_missing_credentials_are_a_sentence(s3: S3Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    store = S3Store(s3.bucket, "cir", endpoint_url=s3.endpoint_url)  # a fresh client, made without them
    (tmp_path / "f").write_bytes(b"x")
    for use in (lambda: store.put_file(tmp_path / "f", "a"), lambda: store.exists("a"), lambda: store.list("a")):
        with pytest.raises(StoreError, match=r"^no credentials for the shared store s3://.*AWS_ACCESS_KEY_ID"):
            use()


def test_an_unreachable_endpoint_is_a_sentence(aws_env: dict[str, str], tmp_path: Path) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    store = open_store("s3://bucket/cir", endpoint_url=endpoint)
    sentence = f"^the shared store s3://bucket/cir cannot be reached at {re.escape(endpoint)}"
    with pytest.raises(StoreError, match=sentence):
        store.exists("collections/x/v1/_complete.json")
    with pytest.raises(StoreError, match="cannot be reached"):
        store.get_file("uploads/a.png", tmp_path / "a.png")
    assert list(tmp_path.iterdir()) == []
