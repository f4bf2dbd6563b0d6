"""A host's local cache of folders fetched from the shared store (index versions): bounded in count, and
never emptied under a process that memory-maps a folder.

A process that maps a folder holds it: a shared `flock` on the folder's ``.hold`` file, which the kernel
drops when the process dies (no stale marks to clean up). Holding also stamps the file's time, which orders
folders by last use. `evict_folders` deletes the least recently used folders until a count is left,
skipping every folder someone holds: it takes the lock exclusively without waiting and, while it has it, renames the
folder away, so a process about to hold it finds it gone (and fetches it again) rather than holding a
folder being deleted.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

HOLD = ".hold"


@dataclass
class Hold:
    """A folder this process uses; `release()` when it no longer maps it (or let the process end)."""

    folder: Path
    fd: int | None

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the file drops the lock
            self.fd = None


def hold_folder(folder: Path) -> Hold | None:
    """Hold `folder` and mark it used now; None when it is gone (evicted before or while we asked)."""
    folder = Path(folder)
    try:
        fd = os.open(folder / HOLD, os.O_RDWR | os.O_CREAT, 0o644)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        if os.fstat(fd).st_ino != os.stat(folder / HOLD).st_ino:
            raise FileNotFoundError(folder)  # evicted (renamed away) between our open and our lock
        os.utime(fd)
    except OSError:
        os.close(fd)
        return None
    return Hold(folder, fd)


def last_used(folder: Path) -> float:
    """When a process last held `folder` (or, never held, when it arrived)."""
    try:
        return (folder / HOLD).stat().st_mtime
    except OSError:
        pass
    try:
        return folder.stat().st_mtime
    except OSError:
        return 0.0


def evict_folders(folders: Iterable[Path], keep: int) -> list[Path]:
    """Delete the least recently used folders until at most `keep` are left, skipping those a process
    holds (they count towards `keep`: a held folder makes a less recent one go); returns those deleted."""
    ordered = sorted((Path(f) for f in folders), key=last_used)
    excess = len(ordered) - max(keep, 0)
    removed = []
    for folder in ordered:
        if excess <= 0:
            break
        if evict_folder(folder):
            removed.append(folder)
            excess -= 1
    return removed


def evict_folder(folder: Path) -> bool:
    """Delete `folder` unless a process holds it; True when it was deleted."""
    try:
        fd = os.open(folder / HOLD, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return False
    trash = folder.with_name(f".{folder.name}.{uuid.uuid4().hex}.evicted")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(folder, trash)
    except OSError:  # held (BlockingIOError), or gone already
        return False
    finally:
        os.close(fd)
    shutil.rmtree(trash, ignore_errors=True)
    return True
