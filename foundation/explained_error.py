"""The house's base exception: a failure described in a sentence a person can act on, never a traceback.
The engine's errors (`retrieval.errors.RetrievalError`) and the shared store's (`StoreError`) are both
kinds of it, so a worker catches one class to turn any of them into the sentence a page shows."""

from __future__ import annotations

import errno


class ExplainedError(Exception):
    """Something the user or the operator can fix, described in words (the message is the sentence)."""


class DiskFull(ExplainedError):
    """A write that found no room on its file system (no space left, or the quota used up)."""


def disk_full(exc: BaseException, *, writing: str) -> DiskFull | None:
    """`exc` told as a sentence when it is a full disk met while `writing` (what, in words); None for any
    other error. The one owner of that sentence: reindex jobs and uploads both say it."""
    if not isinstance(exc, OSError) or exc.errno not in (errno.ENOSPC, errno.EDQUOT):
        return None
    where = f" ({exc.filename})" if exc.filename else ""
    return DiskFull(f"The disk is full: there was no space left to write {writing}{where}.")
