"""Paths that must stay inside given folders: checkpoints inside the model roots a caller trusts.

The engine takes the roots as arguments (the worker reads them from its settings); `None` means the
caller trusts every path (the CLI on a researcher's own files).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from retrieval.errors import CheckpointError


def inside(path: str | Path, root: str | Path) -> bool:
    """True when `path`, symbolic links followed, lies within `root`."""
    return Path(path).resolve().is_relative_to(Path(root).resolve())


def confined_checkpoint(path: str | Path, roots: Sequence[str | Path] | None, what: str) -> None:
    """Raise CheckpointError when `roots` is given and `path` lies in none of them (before anything reads
    the file: a TorchScript archive or a pickle may run code when loaded)."""
    if roots is None or any(inside(path, root) for root in roots):
        return
    listed = ", ".join(str(r) for r in roots) or "none"
    raise CheckpointError(f"{what} {path} is outside the model folders ({listed}); it was not loaded")
