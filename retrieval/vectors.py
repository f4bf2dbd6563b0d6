"""Feature vectors as numpy arrays: the one L2 normalization of the house (queries, indexes, memory)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def normalize(x: NDArray[np.float32], *, in_place: bool = False) -> NDArray[np.float32]:
    """Row-wise L2 normalization; zero rows stay zero instead of becoming NaN. `in_place` (a float32 array
    only) divides `x` itself and returns it: no copy of a large sample."""
    if in_place:
        x /= np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
        return x
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)
