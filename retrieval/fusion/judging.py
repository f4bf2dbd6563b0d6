"""The second stage of a turn: the judge (`retrieval.models.judge`) re-ranks the first stage's pool.

`JudgeStage.rerank` takes plain arrays (the request's words, the reference's regions, the candidates' regions
and first-stage scores), so the worker, the evaluation and a notebook call the same code. A judge is tied to
the CLIP whose regions it reads: its checkpoint records that checkpoint's SHA-256 (`clip_sha256`), and
`judge_for` gives no stage for another CLIP.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray

from retrieval.models.clip_encoder import ClipEncoder
from retrieval.models.judge import Judge, judge_from, read_judge, text_tokens
from retrieval.models.provenance import sha256

log = logging.getLogger(__name__)

POOL = 200  # first-stage candidates the judge reads (measured: the shapes world's good@200 is 0.65)


@dataclass
class JudgeStage:
    """A loaded judge with the encoder whose text tower reads the words."""

    judge: Judge
    encoder: ClipEncoder
    pool: int = POOL
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def rerank(
        self,
        text: str,
        reference: NDArray[np.float32],
        candidates: NDArray[np.float32],
        first: NDArray[np.float32],
    ) -> NDArray[np.float32]:
        """The judge's scores [k] of `candidates` (regions [k, cells, dim]) for `text` said of `reference`
        (regions [cells, dim]); `first` [k]: their first-stage scores. Higher is better."""
        if not len(candidates):
            return np.zeros(0, np.float32)
        return self.rerank_many([text], reference[None], candidates[None], first[None])[0]

    @torch.inference_mode()
    def rerank_many(
        self,
        texts: list[str],
        references: NDArray[np.float32],
        candidates: NDArray[np.float32],
        first: NDArray[np.float32],
    ) -> NDArray[np.float32]:
        """`rerank` for a batch: texts [b], references [b, cells, dim], candidates [b, k, cells, dim], first
        [b, k]; returns scores [b, k]."""
        with self._lock:  # the text tower is shared with the encoder's other callers
            words, real = text_tokens(self.encoder.model, self.encoder.tokenize(texts).to(self.encoder.device))
        request = self.judge.encode_request(words.cpu(), real.cpu(), torch.from_numpy(np.asarray(references)))
        scores = self.judge.score(
            request, torch.from_numpy(np.asarray(candidates, np.float32)), torch.from_numpy(np.asarray(first))
        )
        return scores.numpy().astype(np.float32)


def judge_for(path: str | Path, encoder: ClipEncoder, clip_file: str | Path) -> JudgeStage | None:
    """The judge at `path` for an encoder loaded from `clip_file`, or None where it does not apply (no such
    file, or trained on another CLIP: said once in the log)."""
    path = Path(path)
    if not path.is_file():
        return None
    data = read_judge(path)
    wanted = data.get("clip_sha256")
    try:
        have = sha256(clip_file)
    except OSError:
        have = ""
    if wanted != have:
        log.info("the judge %s was trained for another CLIP than %s; turns are not judged", path, clip_file)
        return None
    return JudgeStage(judge_from(data), encoder)
