"""Regions of a collection's pictures for the judge (`retrieval.models.judge`): each picture's cells of the
image tower's last map in the joint space, [n, cells, dim], kept as float16 beside an index version
(``regions.npy``, rows in the version's id order).

Only a collection served with a judge needs them, so they are made by the version's builder in one pass of
its own over the pictures (rows an older version already holds are taken from it), not by the chunked,
distributed extraction of the features.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray

from retrieval.extraction.features import ImageReader, Item
from retrieval.models.clip_encoder import ClipEncoder
from retrieval.models.judge import image_regions


def extract_regions(
    encoder: ClipEncoder,
    items: Sequence[Item],
    *,
    batch_size: int = 64,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.float16], dict[int, str]]:
    """Regions of `items`: (ids read, regions [n, cells, dim] float16, reasons of those skipped)."""
    reader = ImageReader(encoder.preprocess, batch_size=batch_size)
    ids: list[int] = []
    blocks: list[NDArray[np.float16]] = []
    skipped: dict[int, str] = {}
    for batch in reader.batches(items):
        if should_stop and should_stop():
            raise InterruptedError("stopped while reading the pictures' regions")
        if batch.pixels is not None:
            pixels = batch.pixels.to(encoder.device, encoder.dtype)
            blocks.append(image_regions(encoder.model, pixels).cpu().numpy().astype(np.float16))
            ids.extend(batch.ids)
        skipped.update(batch.skipped)
    if not blocks:
        return np.zeros(0, np.int64), np.zeros((0, 0, 0), np.float16), skipped
    return np.array(ids, np.int64), np.concatenate(blocks), skipped


def regions_for_version(
    encoder: ClipEncoder,
    ids: NDArray[np.int64],
    path_of: Callable[[list[int]], dict[int, Path]],
    previous: tuple[NDArray[np.int64], NDArray[np.float16]] | None = None,
) -> NDArray[np.float16]:
    """Regions for the sorted `ids` of a version being built: rows the `previous` version holds (its sorted
    ids and regions, made by the same encoder: the caller's to know) are copied, the rest read from the
    files `path_of` gives. A picture that cannot be read now (it could when its features were made) gets
    zero regions, which the judge reads as an empty picture."""
    ids = np.asarray(ids, np.int64)
    out = np.zeros((len(ids), *_shape(encoder)), np.float16)
    todo = ids
    if previous is not None:
        old_ids, old = previous
        have = np.isin(ids, old_ids)
        if have.any() and old.shape[1:] == out.shape[1:]:
            out[have] = old[np.searchsorted(old_ids, ids[have])]
            todo = ids[~have]
    if len(todo):
        files = path_of(todo.tolist())
        missing = Path("/nonexistent/image-removed-from-the-catalog")
        read, regions, _ = extract_regions(encoder, [Item(int(i), files.get(int(i), missing)) for i in todo])
        if len(read):
            out[np.searchsorted(ids, read)] = regions
    return out


def _shape(encoder: ClipEncoder) -> tuple[int, int]:
    """(cells, dim) of this encoder's regions, measured on one blank picture."""
    size = encoder.input_resolution
    with torch.inference_mode():
        blank = torch.zeros(1, 3, size, size, dtype=encoder.dtype, device=encoder.device)
        return tuple(image_regions(encoder.model, blank).shape[1:])  # type: ignore[return-value]
