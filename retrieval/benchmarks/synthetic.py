"""Synthetic feature sets for index tests and benchmarks.

Real CLIP features are not isotropic noise: they lie near a union of low-dimensional pieces (a topic, and
the few ways its images vary). `clustered_features` draws such data: cluster centres, each with its own
`intrinsic`-dimensional subspace of variation, plus a little full-dimensional noise. Isotropic Gaussian
clusters would make every approximate index look worse than it is on real collections.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def clustered_features(
    n: int,
    dim: int,
    *,
    clusters: int = 100,
    intrinsic: int = 24,
    spread: float = 0.5,
    noise: float = 0.08,
    seed: int = 0,
    model_seed: int = 0,
) -> NDArray[np.float32]:
    """`n` vectors of `dim` floats. Draws with the same `model_seed` share centres and subspaces, so
    queries drawn with another `seed` fall near the gallery as real queries do."""
    model = np.random.default_rng(model_seed)
    centres = model.normal(size=(clusters, dim)).astype(np.float32)
    bases = (model.normal(size=(clusters, intrinsic, dim)) / np.sqrt(intrinsic)).astype(np.float32)
    rng = np.random.default_rng(seed + 1_000_003)
    out = np.empty((n, dim), np.float32)
    step = 50_000  # bounded temporary memory for large n
    for start in range(0, n, step):
        m = min(step, n - start)
        which = rng.integers(0, clusters, m)
        z = rng.normal(size=(m, intrinsic)).astype(np.float32)
        out[start : start + m] = (
            centres[which]
            + spread * np.einsum("ni,nid->nd", z, bases[which])
            + noise * rng.normal(size=(m, dim)).astype(np.float32)
        )
    return out
