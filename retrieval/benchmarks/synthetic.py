"""Synthetic feature sets for index tests and benchmarks.

Real CLIP features are not isotropic noise: they lie near a union of low-dimensional pieces (a topic, and
the few ways its images vary). `clustered_features` draws such data: cluster centres, each with its own
`intrinsic`-dimensional subspace of variation, plus a little full-dimensional noise. Isotropic Gaussian
clusters would make every approximate index look worse than it is on real collections.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

DRAW_STEP = 50_000  # rows drawn at a time (the draws, and so the values, depend on it: never change it)
SUM_STEP = 4_096  # rows combined at a time: bounded temporary memory (the gathered bases are rows x intrinsic x dim)


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
    features, _ = clustered_draw(
        n, dim, clusters=clusters, intrinsic=intrinsic, spread=spread, noise=noise, seed=seed, model_seed=model_seed
    )
    return features


def clustered_draw(
    n: int,
    dim: int,
    *,
    clusters: int = 100,
    intrinsic: int = 24,
    spread: float = 0.5,
    noise: float = 0.08,
    seed: int = 0,
    model_seed: int = 0,
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """`clustered_features` (the same values) and the cluster each vector was drawn from, shape [n]."""
    model = np.random.default_rng(model_seed)
    centres = model.normal(size=(clusters, dim)).astype(np.float32)
    bases = (model.normal(size=(clusters, intrinsic, dim)) / np.sqrt(intrinsic)).astype(np.float32)
    rng = np.random.default_rng(seed + 1_000_003)
    out = np.empty((n, dim), np.float32)
    labels = np.empty(n, np.int64)
    for start in range(0, n, DRAW_STEP):
        m = min(DRAW_STEP, n - start)
        which = rng.integers(0, clusters, m)
        z = rng.normal(size=(m, intrinsic)).astype(np.float32)
        jitter = noise * rng.normal(size=(m, dim)).astype(np.float32)
        labels[start : start + m] = which
        for s in range(0, m, SUM_STEP):
            rows = slice(s, min(s + SUM_STEP, m))
            w = which[rows]
            out[start + rows.start : start + rows.stop] = (
                centres[w] + spread * np.einsum("ni,nid->nd", z[rows], bases[w]) + jitter[rows]
            )
    return out, labels
