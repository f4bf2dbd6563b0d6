"""What a worker process keeps in memory, loaded once: models by (encoder, combiner), index versions by
(collection, version), features of recent uploads, and rows that never change once written. Every cache
here is bounded.

Loads are idempotent and locked (two threads asking for the same model load it once). Index versions are
memory-mapped and read-only; a new active version is loaded on the first turn that needs it while the old
one keeps serving turns already running, and is dropped once two newer ones are loaded.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from django.conf import settings
from numpy.typing import NDArray

from cirweb.files.locations import model_file, model_stored
from foundation.host_cache import Hold
from foundation.shared_store import BlobStore
from retrieval.extraction.images import open_image
from retrieval.fusion.fuser import Fuser
from retrieval.fusion.judging import JudgeStage, judge_for
from retrieval.index.versions import LoadedVersion, load_version
from retrieval.models.clip_encoder import ClipEncoder, load_clip
from retrieval.models.combiner_model import load_combiner
from retrieval.models.confine import confined_checkpoint
from retrieval.models.judge import image_regions
from retrieval.models.provenance import encoder_identity, recorded_preprocessing

log = logging.getLogger(__name__)
K = TypeVar("K")
V = TypeVar("V")


@dataclass
class Models:
    """The loaded bundle a search needs: encoder (with its preprocessing, the one its checkpoint records, so
    the indexer and the search of uploads see the same pixels) and the fusion of features."""

    clip_spec: str
    combiner_spec: str
    encoder: ClipEncoder
    fuser: Fuser
    load_seconds: float
    preprocessing: str = "clip"

    identity: str = ""  # the encoder's identity (`encoder_identity`): every cache of its features is keyed by it
    judge: JudgeStage | None = None  # the second stage, where a judge trained for this CLIP is installed


class Bounded(OrderedDict[K, V]):
    """A mapping that keeps its `size` most recently used entries."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def get_or_make(self, key: K, make: Callable[[], V]) -> V:
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = self[key] = make()
        while len(self) > self.size:
            self.popitem(last=False)
        return value


class Runtime:
    """Per-process caches. One instance per worker process (`runtime` below)."""

    def __init__(
        self, device: str = "cpu", max_uploads: int = 256, force_fp32: bool = False, max_models: int = 4
    ) -> None:
        self.device = device
        self.model_roots: list[Path] | None = None  # set from settings at process start; checkpoints only there
        self.force_fp32 = force_fp32  # settings.CIR_FORCE_FP32, set at worker start like the device
        self.compile_images = True  # settings.CIR_COMPILE_IMAGES in index processes; search ones never compile
        self.onnx_cache: Path | None = None  # set at process start: where ONNX text towers are kept (CIR_CACHE_DIR)
        self.judge_spec: str | None = None  # None: settings.CIR_JUDGE ("" or "none": no judge)
        self._lock = threading.Lock()
        self._models: Bounded[tuple[str, str], Models] = Bounded(max_models)
        self._indexes: OrderedDict[tuple[int, int], LoadedVersion] = OrderedDict()
        self._holds: dict[tuple[int, int], Hold] = {}
        self._uploads: Bounded[tuple[int, str], NDArray[np.float32]] = Bounded(max_uploads)
        self._upload_regions: Bounded[tuple[int, str], NDArray[np.float32]] = Bounded(max_uploads)
        # Rows that never change once written (a conversation's collection, an index version's row): every ORM
        # query on a turn's path costs milliseconds of Python on small machines.
        self.rows: Bounded[tuple[str, Any], Any] = Bounded(4096)

    def models(self, clip_spec: str, combiner_spec: str) -> Models:
        """The pair loaded once. Specs are taken as the database stores them (checkpoints relative to the
        model roots, settings.CIR_MODEL_ROOTS) or as this host's paths; both name the same entry, keyed by
        the stored form. Loading is confined to `model_roots` when it is set."""
        clip_spec, combiner_spec = model_stored(clip_spec), model_stored(combiner_spec)
        key = (clip_spec, combiner_spec)
        found = self._models.get(key)  # a turn's path takes no lock
        if found is not None:
            return found
        with self._lock:  # the `max_models` pairs loaded last are kept
            return self._models.get_or_make(
                key, lambda: self._load(clip_spec, combiner_spec, model_file(clip_spec), model_file(combiner_spec))
            )

    def _load(self, clip_spec: str, combiner_spec: str, clip_file: str, combiner_file: str) -> Models:
        """The engine's part: load the pair from this host's files (`clip_file`, `combiner_file`; "" or "sum"
        for no Combiner), confined to `model_roots` when set."""
        started = time.perf_counter()
        if Path(clip_file).is_file():  # what a checkpoint records is read only once it is known ours
            confined_checkpoint(clip_file, self.model_roots, "CLIP checkpoint")
        kind = recorded_preprocessing(clip_file)
        encoder = load_clip(
            clip_file,
            device=self.device,
            preprocessing=kind,
            model_roots=self.model_roots,
            force_fp32=self.force_fp32,
            compile_images=self.compile_images,
            onnx_cache=self.onnx_cache,
        )
        combiner = (
            None
            if combiner_file in ("", "sum")
            else load_combiner(combiner_file, device=encoder.device, model_roots=self.model_roots)
        )
        seconds = time.perf_counter() - started
        fuser = Fuser(combiner, encoder.dim, int8=encoder.precision.combiner == "int8")
        identity = encoder_identity(clip_file, encoder.dim)
        judge = self._judge(encoder, clip_file) if combiner is not None else None
        log.info(
            "loaded %s + %s in %.2fs (%s)%s",
            clip_spec,
            combiner_spec or "sum",
            seconds,
            encoder.precision.describe(),
            ", with a judge" if judge else "",
        )
        return Models(clip_spec, combiner_spec, encoder, fuser, seconds, kind, identity, judge)

    def _judge(self, encoder: ClipEncoder, clip_file: str) -> JudgeStage | None:
        """The installed judge where it was trained for this CLIP checkpoint; a judge that is missing, for
        another CLIP or unreadable leaves turns unjudged (said in the log), never without answers."""
        spec = settings.CIR_JUDGE if self.judge_spec is None else self.judge_spec
        if spec in ("", "none") or not Path(clip_file).is_file():
            return None
        path = model_file(model_stored(spec))
        try:
            if Path(path).is_file():
                confined_checkpoint(path, self.model_roots, "judge checkpoint")
            return judge_for(path, encoder, clip_file)
        except Exception as exc:  # a broken judge costs the second stage, not the turn
            log.warning("the judge %s is not used: %s", path, exc)
            return None

    def index(self, collection_id: int, number: int, hold: Callable[[], Hold]) -> LoadedVersion:
        """The version, memory-mapped once. `hold` gives its local folder, held for as long as it is mapped
        (this host's cache never deletes a held folder); called only when the version is not loaded yet."""
        key = (collection_id, number)
        with self._lock:  # cheap: the common case is a dictionary hit
            if key in self._indexes:
                self._indexes.move_to_end(key)
            else:
                started = time.perf_counter()
                held = hold()
                try:
                    self._indexes[key] = load_version(held.folder, mmap=True)
                except BaseException:
                    held.release()
                    raise
                self._holds[key] = held
                self._indexes.move_to_end(key)
                log.info(
                    "loaded index %s v%d (%d vectors) in %.2fs",
                    collection_id,
                    number,
                    self._indexes[key].meta.count,
                    time.perf_counter() - started,
                )
                self._evict(collection_id, keep=key)
            return self._indexes[key]

    def _evict(self, collection_id: int, keep: tuple[int, int]) -> None:
        """Keep the two versions of a collection used most recently (the new one and the one that may still
        be serving turns already running); the mapping is ordered by last use."""
        used = [k for k in self._indexes if k[0] == collection_id and k != keep]
        for old in used[:-1]:
            self._indexes.pop(old, None)
            if (held := self._holds.pop(old, None)) is not None:
                held.release()

    def upload_regions(self, upload_id: int, models: Models, *, image: Callable[[], Path]) -> NDArray[np.float32]:
        """The regions of an upload for the judge (one small picture: computed here, kept in memory)."""

        def make() -> NDArray[np.float32]:
            pixels = models.encoder.preprocess(open_image(image()))[None]
            return image_regions(models.encoder.model, pixels.to(models.encoder.device))[0].cpu().numpy()

        return self._upload_regions.get_or_make((upload_id, models.identity), make)

    def upload_feature(
        self,
        upload_id: int,
        models: Models,
        *,
        image: Callable[[], Path],
        cache_dir: Path,
        store: BlobStore,
        prefix: str,
    ) -> NDArray[np.float32]:
        """The raw CLIP feature of an upload: from memory, from this host's cache, from the shared store (a
        worker of another host computed it), or encoded now from the file `image()` gives, and published."""
        return self._uploads.get_or_make(
            (upload_id, models.identity),
            lambda: self._upload_feature(
                upload_id, models, image=image, cache_dir=cache_dir, store=store, prefix=prefix
            ),
        )

    @staticmethod
    def _upload_feature(
        upload_id: int, models: Models, *, image: Callable[[], Path], cache_dir: Path, store: BlobStore, prefix: str
    ) -> NDArray[np.float32]:
        name = f"{upload_id}.{models.identity}.npy"
        cached = cache_dir / name
        if not cached.is_file() and store.exists(f"{prefix}/{name}"):
            store.get_file(f"{prefix}/{name}", cached)
        if cached.is_file():
            feature = np.load(cached)
        else:
            feature = models.encoder.encode_images([open_image(image())])[0]
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(f".{uuid.uuid4().hex}.tmp.npy")
            np.save(tmp, feature)
            tmp.replace(cached)
            store.put_file(cached, f"{prefix}/{name}")
        return feature


runtime = Runtime()
