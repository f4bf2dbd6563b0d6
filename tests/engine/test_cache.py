"""A host's cache of fetched folders: bounded, least recently used out, never a folder a process holds."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from foundation.host_cache import evict_folders, hold_folder


def folders(root: Path, n: int) -> list[Path]:
    made = []
    for i in range(n):
        folder = root / f"v{i}"
        folder.mkdir(parents=True)
        (folder / "index.faiss").write_bytes(b"x" * 10)
        os.utime(folder, (time.time() - 100 + i,) * 2)  # v0 arrived first
        made.append(folder)
    return made


def test_the_least_recently_used_folders_beyond_the_count_go(tmp_path: Path) -> None:
    v0, v1, v2, v3 = folders(tmp_path, 4)
    hold = hold_folder(v0)  # v0 used just now: the most recent
    assert hold is not None
    hold.release()
    removed = evict_folders([v0, v1, v2, v3], keep=2)
    assert sorted(p.name for p in removed) == ["v1", "v2"]
    assert v0.is_dir() and v3.is_dir() and not v1.exists() and not v2.exists()
    assert not list(tmp_path.glob(".*"))  # nothing left half-deleted


def test_a_held_folder_is_never_evicted_even_by_another_process(tmp_path: Path) -> None:
    v0, v1 = folders(tmp_path, 2)
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from foundation.host_cache import hold_folder; h = hold_folder({str(v0)!r}); "
         "print(h is not None, flush=True); input()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "True"
        assert evict_folders([v0, v1], keep=1) == [v1]  # v0 is mapped by the other process: v1 goes instead
        assert evict_folders([v0], keep=0) == []
        assert (v0 / "index.faiss").is_file()
    finally:
        holder.kill()
        holder.wait()
    assert evict_folders([v0], keep=0) == [v0]  # the kernel dropped its lock with the process


def test_holding_an_evicted_folder_says_so(tmp_path: Path) -> None:
    (v0,) = folders(tmp_path, 1)
    assert evict_folders([v0], keep=0) == [v0]
    assert hold_folder(v0) is None
