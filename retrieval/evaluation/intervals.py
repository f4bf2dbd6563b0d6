"""95% intervals for the figures the evaluations report: Wilson's for shares, the normal one for means."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion (well-behaved near 0 and 1, unlike the normal one)."""
    if n == 0:
        return (0.0, 0.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (round(centre - half, 4), round(centre + half, 4))


def mean_interval(values: Sequence[float] | NDArray[np.float64], z: float = 1.96) -> tuple[float, float]:
    """The normal interval of a mean (the values' own spread; a single value gives a point)."""
    v = np.asarray(values, np.float64)
    if not len(v):
        return (0.0, 0.0)
    half = z * v.std(ddof=1) / math.sqrt(len(v)) if len(v) > 1 else 0.0
    return (round(float(v.mean() - half), 4), round(float(v.mean() + half), 4))
