"""The house's base exception: a failure described in a sentence a person can act on, never a traceback.
The engine's errors (`retrieval.errors.RetrievalError`) and the shared store's (`StoreError`) are both
kinds of it, so a worker catches one class to turn any of them into the sentence a page shows."""


class ExplainedError(Exception):
    """Something the user or the operator can fix, described in words (the message is the sentence)."""
