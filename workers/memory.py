"""A turn's query steered by its conversation: the worker's side of `retrieval.memory`.

Earlier requests are fused again with their own references (features from the index version the turn
searches), chosen and rejected images are read from it too; images no longer indexed are left out.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from cirweb.conversations.selectors import TurnHistory
from retrieval.combiner import Mode
from retrieval.memory import DEFAULT_WEIGHTS, Remembered, steer, summary
from retrieval.store import IndexVersion as LoadedVersion
from workers.runtime import Models


def _indexed(loaded: LoadedVersion, image_id: int) -> bool:
    row = int(np.searchsorted(loaded.ids, image_id))
    return row < len(loaded.ids) and int(loaded.ids[row]) == image_id


def _features(loaded: LoadedVersion, ids: list[int], dim: int) -> NDArray[np.float32]:
    known = [i for i in ids if _indexed(loaded, i)]
    return loaded.features_of(known) if known else np.zeros((0, dim), np.float32)


def remember(
    models: Models, loaded: LoadedVersion, mode: Mode, query: NDArray[np.float32], history: TurnHistory
) -> tuple[NDArray[np.float32], str]:
    """(the steered query [1, dim], what the page shows as remembered)."""
    dim = query.shape[-1]
    earlier = []
    for image_id, text in history.earlier:
        image = _features(loaded, [image_id], dim) if image_id is not None else None
        if mode.needs_image and (image is None or not len(image)):
            continue
        if mode.needs_text and not text:
            continue
        words = models.encoder.encode_texts([text]) if mode.needs_text else None
        earlier.append(models.fuser.fuse(mode, image, words)[0])
    memory = Remembered(
        np.array(earlier, np.float32).reshape(-1, dim),
        _features(loaded, history.chosen, dim),
        _features(loaded, history.rejected, dim),
    )
    steered = steer(query[0], memory, DEFAULT_WEIGHTS)[None, :]
    return steered, summary(history.texts, rejected=len(memory.rejected))
