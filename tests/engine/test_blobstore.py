"""The shared store: the same behaviour of a folder and of an S3 bucket (the `store` fixture gives each, see
conftest.py), atomic writes, keys that cannot escape; a folder's hard links."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from foundation.shared_store import BlobStore, DirectoryStore, StoreError, fetch_folder, publish_folder
from foundation.store_url import open_store


def test_put_get_list_delete_round_trip(store: BlobStore, tmp_path: Path) -> None:
    source = tmp_path / "a.bin"
    source.write_bytes(b"features")
    store.put_file(source, "collections/x/v1/features.npy")
    store.put_file(source, "collections/x/v1/meta.json")
    assert store.exists("collections/x/v1/features.npy")
    assert store.list("collections/x") == ["collections/x/v1/features.npy", "collections/x/v1/meta.json"]
    local = tmp_path / "cache" / "features.npy"
    store.get_file("collections/x/v1/features.npy", local)
    assert local.read_bytes() == b"features"
    store.delete("collections/x/v1")
    assert store.list("collections/x") == [] and not store.exists("collections/x/v1/meta.json")


def test_a_file_put_again_is_replaced_whole_and_dated(store: BlobStore, tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"old")
    store.put_file(tmp_path / "a", "uploads/a.png")
    written = store.modified("uploads/a.png")
    (tmp_path / "a").write_bytes(b"the new bytes")
    store.put_file(tmp_path / "a", "uploads/a.png")
    store.get_file("uploads/a.png", tmp_path / "out" / "a.png")
    assert (tmp_path / "out" / "a.png").read_bytes() == b"the new bytes"
    assert written is not None and abs(written - time.time()) < 120
    assert store.modified("uploads/missing.png") is None and not store.exists("uploads/missing.png")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png"]  # no temporary file left


def test_delete_takes_one_key_or_a_folder_and_nothing_beside_it(store: BlobStore, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    for key in ("c/x/v1/a", "c/x/v1/sub/b", "c/x/v10/a", "c/x/v1a", "c/y"):
        store.put_file(tmp_path / "f", key)
    store.delete("c/x/v1")
    assert store.list("c") == ["c/x/v10/a", "c/x/v1a", "c/y"]  # v10 and v1a only share the name's start
    store.delete("c/y")
    store.delete("c/nothing")
    assert store.list("c") == ["c/x/v10/a", "c/x/v1a"] and store.list("c/x/v1a") == []


def test_a_copy_out_is_a_hard_link_on_the_same_file_system(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path / "store")
    (tmp_path / "f").write_bytes(b"x" * 100)
    store.put_file(tmp_path / "f", "k/f")
    store.get_file("k/f", tmp_path / "cache" / "f")
    assert (tmp_path / "cache" / "f").stat().st_ino == (tmp_path / "store" / "k" / "f").stat().st_ino


@pytest.mark.parametrize("key", ["", "/etc/passwd", "a/../../b", "a//b", "./a", "a\\b"])
def test_keys_that_could_escape_the_store_are_refused(store: BlobStore, tmp_path: Path, key: str) -> None:
    (tmp_path / "f").write_bytes(b"x")
    for use in (store.exists, store.list, store.delete, lambda k: store.put_file(tmp_path / "f", k)):
        with pytest.raises(StoreError, match="not a valid store key"):
            use(key)


def test_a_missing_key_is_a_sentence(store: BlobStore, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"^the shared store \S+ has no collections/x$"):
        store.get_file("collections/x", tmp_path / "out")
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) in ([], [tmp_path / "store"])


def test_unknown_url_schemes_are_refused() -> None:
    with pytest.raises(StoreError, match="unknown kind"):
        open_store("ftp://host/store")


def test_a_published_folder_comes_back_whole_and_only_when_whole(store: BlobStore, tmp_path: Path) -> None:
    folder = tmp_path / "v1"
    (folder / "sub").mkdir(parents=True)
    (folder / "meta.json").write_text("{}")
    (folder / "sub" / "ids.npy").write_bytes(b"1234")
    with pytest.raises(StoreError, match=r"not .*published"):
        fetch_folder(store, "collections/x/v1", tmp_path / "cache" / "v1")
    store.put_file(folder / "meta.json", "collections/x/v1/meta.json")  # a publisher that died half-way
    with pytest.raises(StoreError, match=r"not .*published"):
        fetch_folder(store, "collections/x/v1", tmp_path / "cache" / "v1")
    publish_folder(store, folder, "collections/x/v1")
    local = fetch_folder(store, "collections/x/v1", tmp_path / "cache" / "v1")
    assert (local / "sub" / "ids.npy").read_bytes() == b"1234" and (local / "meta.json").read_text() == "{}"
    assert fetch_folder(store, "collections/x/v1", local) == local  # the second call finds it
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["v1"]  # no temporary folder left behind


def test_putting_a_file_the_store_already_links_to_leaves_no_temporary_file(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path / "store")
    (tmp_path / "f").write_bytes(b"x" * 100)
    store.put_file(tmp_path / "f", "k/f")
    store.put_file(tmp_path / "f", "k/f")  # the same bytes again (an upload made twice): one inode, two names
    store.get_file("k/f", tmp_path / "f")
    assert sorted(p.name for p in (tmp_path / "store" / "k").iterdir()) == ["f"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f", "store"]
