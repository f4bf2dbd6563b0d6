"""A turn's query steered by its conversation: the worker's side of `retrieval.memory`.

Earlier requests are fused again with their own references (features from the index version the turn
searches), chosen and rejected images are read from it too; images no longer indexed are left out. Results
shown earlier and passed over give way: the search asks for that many more and `rerank` demotes them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from cirweb.conversations.selectors import TurnHistory
from retrieval.combiner import Mode
from retrieval.memory import DEFAULT_WEIGHTS, Remembered, demote, push_away, steer, summary
from retrieval.store import IndexVersion as LoadedVersion
from workers.runtime import Models


def _indexed(loaded: LoadedVersion, image_id: int) -> bool:
    row = int(np.searchsorted(loaded.ids, image_id))
    return row < len(loaded.ids) and int(loaded.ids[row]) == image_id


def indexed_features(loaded: LoadedVersion, ids: list[int], dim: int) -> NDArray[np.float32]:
    known = [i for i in ids if _indexed(loaded, i)]
    return loaded.features_of(known) if known else np.zeros((0, dim), np.float32)


def _fused(
    models: Models, mode: Mode, image: NDArray[np.float32] | None, words: NDArray[np.float32] | None
) -> NDArray[np.float32] | None:
    """The query of an earlier picture and words, or None where the mode lacks what it needs."""
    if mode.needs_image and (image is None or not len(image)):
        return None
    if mode.needs_text and words is None:
        return None
    return models.fuser.fuse(mode, image, words)[0]


def remember(
    models: Models,
    loaded: LoadedVersion,
    mode: Mode,
    query: NDArray[np.float32],
    history: TurnHistory,
    *,
    image_id: int | None = None,
    words: NDArray[np.float32] | None = None,
) -> tuple[NDArray[np.float32], Remembered, str]:
    """(the steered query [1, dim], what it remembered, what the page shows as remembered), for the turn
    whose reference is `image_id` and whose words' features are `words` [1, dim] (None without text)."""
    dim = query.shape[-1]
    earlier = []
    for earlier_image, text in history.earlier:
        image = indexed_features(loaded, [earlier_image], dim) if earlier_image is not None else None
        fused = _fused(models, mode, image, models.encoder.encode_texts([text]) if text else None)
        if fused is not None:
            earlier.append(fused)
    first = history.earlier[0][0] if history.earlier else None
    anchor = None
    if first is not None and first != image_id and words is not None:  # this turn's words, where it began
        anchor = _fused(models, mode, indexed_features(loaded, [first], dim), words)
    memory = Remembered(
        np.array(earlier, np.float32).reshape(-1, dim),
        indexed_features(loaded, history.chosen, dim),
        indexed_features(loaded, history.rejected, dim),
        np.zeros((0, dim), np.float32) if anchor is None else anchor[None],
        {image: times for image, times in history.seen.items() if _indexed(loaded, image)},
    )
    steered = steer(query[0], memory, DEFAULT_WEIGHTS)[None, :]
    said = summary(history.texts, rejected=len(memory.rejected), seen=len(memory.seen))
    return steered, memory, said


def rerank(
    scores: NDArray[np.float32],
    ids: NDArray[np.int64],
    memory: Remembered | None,
    k: int,
    *,
    candidates: Callable[[NDArray[np.int64]], NDArray[np.float32]] | None = None,
    rejected: NDArray[np.float32] | None = None,
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """The best `k` of a search that asked for more (rows [1, n]): results seen before demoted (with memory),
    and look-alikes of `rejected` pictures pushed down (their features read by `candidates(ids)`). Both only
    lower scores, so no picture outside the n can enter the top k unless more than n - k were lowered."""
    valid = ids[0] >= 0
    kept_ids = ids[0][valid]
    lowered = scores[0][valid]
    if memory is not None:
        lowered = demote(lowered, kept_ids, memory, DEFAULT_WEIGHTS)
    if rejected is not None and len(rejected) and candidates is not None and len(kept_ids):
        lowered = push_away(lowered, candidates(kept_ids), rejected)
    order = np.argsort(-lowered, kind="stable")[:k]
    return lowered[order][None], kept_ids[order][None]
