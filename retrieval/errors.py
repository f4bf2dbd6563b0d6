"""The engine's exceptions. Each carries a sentence meant for a person, not a traceback."""

from foundation.explained_error import ExplainedError


class RetrievalError(ExplainedError):
    """Base class: something the user can fix, described in words."""


class ModelNotAvailable(RetrievalError):
    """A named model whose weights are not on this machine and could not be downloaded."""


class CheckpointError(RetrievalError):
    """A checkpoint file that is missing, unreadable or of the wrong shape."""


class DatasetError(RetrievalError):
    """A dataset root that is missing files or does not follow the expected layout."""


class SearchIndexError(RetrievalError):
    """An index that cannot be built, loaded or searched as asked."""
