"""The shared store's folder implementation: atomic writes, hard links when it can, keys that cannot escape."""

from __future__ import annotations

from pathlib import Path

import pytest

from retrieval.blobstore import DirectoryStore, StoreError, open_store


def test_put_get_list_delete_round_trip(tmp_path: Path) -> None:
    store = open_store(tmp_path / "store")
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


def test_a_copy_out_is_a_hard_link_on_the_same_file_system(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path / "store")
    (tmp_path / "f").write_bytes(b"x" * 100)
    store.put_file(tmp_path / "f", "k/f")
    store.get_file("k/f", tmp_path / "cache" / "f")
    assert (tmp_path / "cache" / "f").stat().st_ino == (tmp_path / "store" / "k" / "f").stat().st_ino


@pytest.mark.parametrize("key", ["", "/etc/passwd", "a/../../b", "a//b", "./a", "a\\b"])
def test_keys_that_could_escape_the_store_are_refused(tmp_path: Path, key: str) -> None:
    store = DirectoryStore(tmp_path)
    with pytest.raises(StoreError):
        store.exists(key)


def test_a_missing_key_is_a_sentence(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="has no collections/x"):
        DirectoryStore(tmp_path).get_file("collections/x", tmp_path / "out")


def test_unknown_url_schemes_are_refused() -> None:
    with pytest.raises(StoreError, match="unknown kind"):
        open_store("ftp://host/store")
