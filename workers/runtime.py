"""What a worker process keeps in memory, loaded once: models by (encoder, combiner), index versions by
(collection, version), and features of recent uploads.

Loads are idempotent and locked (two threads asking for the same model load it once). Index versions are
memory-mapped and read-only; a new active version is loaded on the first turn that needs it while the old
one keeps serving turns already running, and is dropped once two newer ones are loaded.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from cirweb.locations import model_file, model_stored
from retrieval.blobstore import BlobStore
from retrieval.cache import Hold
from retrieval.combiner import Fuser, load_combiner
from retrieval.confine import confined_checkpoint
from retrieval.encoders import ClipEncoder, load_clip
from retrieval.images import open_image
from retrieval.provenance import recorded_preprocessing
from retrieval.store import IndexVersion, load_version

log = logging.getLogger(__name__)


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

    @property
    def key(self) -> str:
        """Short identity of this pair, for caches on disk."""
        return hashlib.sha1(f"{self.clip_spec}\0{self.combiner_spec}".encode()).hexdigest()[:12]


class Runtime:
    """Per-process caches. One instance per worker process (`runtime` below)."""

    def __init__(self, device: str = "cpu", max_uploads: int = 256, force_fp32: bool = False) -> None:
        self.device = device
        self.model_roots: list[Path] | None = None  # set from settings at process start; checkpoints only there
        self.force_fp32 = force_fp32  # settings.CIR_FORCE_FP32, set at worker start like the device
        self.compile_images = True  # settings.CIR_COMPILE_IMAGES in index processes; search ones never compile
        self.onnx_cache: Path | None = None  # set at process start: where ONNX text towers are kept (CIR_CACHE_DIR)
        self._lock = threading.Lock()
        self._models: dict[tuple[str, str], Models] = {}
        self._indexes: OrderedDict[tuple[int, int], IndexVersion] = OrderedDict()
        self._holds: dict[tuple[int, int], Hold] = {}
        self._uploads: OrderedDict[tuple[int, str], NDArray[np.float32]] = OrderedDict()
        self._max_uploads = max_uploads

    def models(self, clip_spec: str, combiner_spec: str) -> Models:
        """The pair loaded once. Specs are taken as the database stores them (checkpoints relative to the
        model roots, settings.CIR_MODEL_ROOTS) or as this host's paths; both name the same entry, keyed by
        the stored form. Loading is confined to `model_roots` when it is set."""
        clip_spec, combiner_spec = model_stored(clip_spec), model_stored(combiner_spec)
        key = (clip_spec, combiner_spec)
        if key in self._models:
            return self._models[key]
        with self._lock:
            if key not in self._models:
                started = time.perf_counter()
                clip_file = model_file(clip_spec)
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
                    if combiner_spec in ("", "sum")
                    else load_combiner(model_file(combiner_spec), device=encoder.device, model_roots=self.model_roots)
                )
                seconds = time.perf_counter() - started
                fuser = Fuser(combiner, encoder.dim, int8=encoder.precision.combiner == "int8")
                self._models[key] = Models(clip_spec, combiner_spec, encoder, fuser, seconds, kind)
                log.info(
                    "loaded %s + %s in %.2fs (%s)",
                    clip_spec,
                    combiner_spec or "sum",
                    seconds,
                    encoder.precision.describe(),
                )
        return self._models[key]

    def index(self, collection_id: int, number: int, hold: Callable[[], Hold]) -> IndexVersion:
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
        key = (upload_id, models.key)
        if key in self._uploads:
            self._uploads.move_to_end(key)
            return self._uploads[key]
        name = f"{upload_id}.{models.key}.npy"
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
        self._uploads[key] = feature
        while len(self._uploads) > self._max_uploads:
            self._uploads.popitem(last=False)
        return feature


runtime = Runtime()
