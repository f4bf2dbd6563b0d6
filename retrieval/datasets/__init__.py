"""Dataset loaders, one per format, all returning `SplitData` (see base.py)."""

from __future__ import annotations

from pathlib import Path

from retrieval.datasets.base import SplitData
from retrieval.errors import DatasetError

DATASETS = ("cirr", "fashioniq", "shapes")


def load_dataset(name: str, root: str | Path, split: str, *, check_images: bool = True) -> SplitData:
    """Load `split` of dataset `name` (cirr, fashioniq or shapes) from `root`."""
    if name in ("cirr", "shapes"):
        from retrieval.datasets.cirr import load_cirr

        return load_cirr(root, split, check_images=check_images, dataset=name)
    if name == "fashioniq":
        from retrieval.datasets.fashioniq import load_fashioniq

        return load_fashioniq(root, split, check_images=check_images)
    raise DatasetError(f"unknown dataset {name!r}; valid datasets: {', '.join(DATASETS)}")
