"""Any folder tree of images, as a collection: every image file under the root, named by its path relative to it.

Each image gets an id derived from its relative path alone, so the same file keeps its id across scans,
machines and copies of the tree, and an index built on one machine can be searched on another.
"""

from __future__ import annotations

import hashlib
import os
import stat
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from retrieval.datasets.base import SplitData
from retrieval.errors import DatasetError

EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp")
ID_MASK = (1 << 63) - 1  # ids are non-negative int64s, as Faiss stores them


@dataclass(frozen=True)
class FolderImage:
    """One image file: `relpath` uses forward slashes whatever the platform; `id` is `image_id(relpath)`."""

    relpath: str
    path: Path
    size: int
    mtime_ns: int
    id: int


def image_id(relpath: str) -> int:
    """A stable 63-bit id: the first 8 bytes of blake2b of the relative path."""
    # NFC so that a tree copied between macOS (which stores names decomposed) and Linux keeps its ids.
    key = unicodedata.normalize("NFC", relpath).encode("utf-8", "surrogateescape")
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") & ID_MASK


def scan_folder(root: str | Path, *, extensions: Sequence[str] = EXTENSIONS) -> list[FolderImage]:
    """Every image under `root`, sorted by relative path.

    Hidden files and folders (names starting with ".") are skipped; extensions match case-insensitively.
    Symbolic links to files are followed when they lead to a file inside the root (a link must not publish
    a file from elsewhere), links to folders are not descended (a link can make a loop).
    """
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"image folder {root} does not exist")
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder; point at the folder that holds the images")
    root = root.resolve()
    wanted = tuple(e.lower() for e in extensions)
    found = []
    for dirpath, dirnames, filenames in os.walk(root):  # followlinks=False: linked folders are listed, not entered
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.startswith(".") or not name.lower().endswith(wanted):
                continue
            path = Path(dirpath) / name
            try:
                info = path.stat()  # follows a link to its file
            except OSError:  # a dangling link, or a file removed while we walk
                continue
            if not stat.S_ISREG(info.st_mode) or (path.is_symlink() and not path.resolve().is_relative_to(root)):
                continue
            relpath = path.relative_to(root).as_posix()
            found.append(FolderImage(relpath, path, info.st_size, info.st_mtime_ns, image_id(relpath)))
    if not found:
        raise DatasetError(f"image folder {root} holds no images (looked for {', '.join(extensions)})")
    return sorted(found, key=lambda image: image.relpath)


def load_folder(root: str | Path) -> SplitData:
    """A folder tree as a split without queries: images keyed by relative path."""
    images = scan_folder(root)
    return SplitData("folder", "all", {image.relpath: image.path for image in images}, [])
