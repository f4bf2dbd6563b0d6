"""What a prune deleted (cirweb/catalog/retention.py), and the rule for temporary files nobody writes."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from cirweb.files import storage

TMP_AGE = timedelta(hours=1)  # a temporary file or half-published version younger than this may still be written


@dataclass
class PruneReport:
    """How many things of each kind were deleted, and the bytes freed (on this host's disks and, for a
    store that is a folder, in the shared store)."""

    counts: dict[str, int] = field(default_factory=dict)
    freed: int = 0

    def remove(self, kind: str, path: Path) -> None:
        size = path_bytes(path)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        self.count(kind, size)

    def remove_key(self, kind: str, key: str) -> None:
        """Delete `key` (a file, or a folder of keys) from the shared store."""
        size = storage.stored_bytes(key)
        storage.shared_store().delete(key)
        self.count(kind, size)

    def count(self, kind: str, size: int = 0) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.freed += size

    def summary(self) -> str:
        parts = [f"{n} {kind}" for kind, n in self.counts.items() if n]
        return f"deleted {', '.join(parts) or 'nothing'}; freed {self.freed / 2**20:.1f} MB"


def path_bytes(path: Path) -> int:
    """Bytes of a file, or of every file under a folder (links not followed)."""
    if path.is_file() or path.is_symlink():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def old_tmp(path: Path, now: datetime) -> bool:
    """A temporary file or folder (`.tmp`, or `.evicted` from the cache) that nobody is still writing."""
    return path.name.endswith((".tmp", ".evicted")) and now.timestamp() - path.stat().st_mtime > TMP_AGE.total_seconds()
