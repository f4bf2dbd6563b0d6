"""The real-size stack (`manage.py bootstrap_demo --size real`): a collection of 100,000 images (or `count`)
under a CLIP and a Combiner of real size with random weights, stored as a real index version, so `serve`
runs the real-size text tower, Combiner and index and a turn costs what it would cost on real data.

What is real: the catalog's Image rows (a folder collection, scanned as any other), a full ReindexJob that
plans its chunks, finds them in the shared store, builds, publishes and activates a version exactly as the
index workers do, and the models the search workers load (checkpoints under the data directory's models
folder, with a manifest of checksums). What is not: the pictures and their features. Rendering 100,000
pictures through the image tower is not what this stack measures (hours on two cores), so each picture is a
small placeholder (its cluster's colour and number: results visibly come from the reference's cluster) and
its feature is drawn as `bench-turn` draws its collection (`clustered_draw`, the encoder's width, one
cluster per 500 images), then written as the chunk the reindex would have made of that picture. (A reindex of
`real` asked in the admin is an ordinary one: its index workers would read the placeholders through the image
tower, hours at 100,000 on two cores, and the version would hold the tower's features instead.)
"""

from __future__ import annotations

import colorsys
import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.conf import settings
from numpy.typing import NDArray
from PIL import Image as Picture
from PIL import ImageDraw

from cirweb.catalog import selectors
from cirweb.catalog import services as catalog
from cirweb.catalog.models import Collection, IndexVersion, ReindexJob
from cirweb.files.locations import model_stored, source_stored
from cirweb.files.storage import index_version_exists
from cirweb.processes.devservers import port_open
from cirweb.processes.liveness import process_identity
from foundation.explained_error import ExplainedError
from retrieval.benchmarks.synthetic import clustered_draw
from retrieval.extraction.features import Chunk
from retrieval.models.random_pair import CLIP_FILE, COMBINER_FILE, random_pair_problem, random_pair_write
from workers.extraction import chunk_items, chunk_store, chunks_plan
from workers.indexing import reindex_run
from workers.publish import publisher
from workers.runtime import Models, runtime
from workers.sources import source_listing

SLUG = "real"
SEED = 0
MARKER = "placeholders.json"  # beside the pictures (a folder scan lists images only)
PLACEHOLDER_SIZE = 64
Say = Callable[[str], None]


@dataclass(frozen=True)
class RealSize:
    """What to build: `count` images under random `arch` weights drawn with `seed`."""

    count: int
    arch: str
    seed: int = SEED

    @property
    def clusters(self) -> int:
        return max(self.count // 500, 10)  # as bench-turn draws its collection (retrieval/benchmarks/turn_cost.py)

    @property
    def models(self) -> Path:
        return Path(settings.CIR_MODELS_DIR) / f"real-{self.arch.replace('/', '-')}"

    @property
    def pictures(self) -> Path:
        return Path(settings.CIR_SOURCE_ROOTS[0]) / SLUG


def real_stack_bootstrap(*, plan: RealSize, say: Say) -> Collection:
    """Build what is missing of the stack, once: the models, the placeholder pictures, the collection and
    its index version. A second run finds each step done and says so."""
    real_models_ensure(plan=plan, say=say)
    drawn: tuple[NDArray[np.float32], NDArray[np.int64]] | None = None

    def draw() -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        nonlocal drawn
        if drawn is None:
            started = time.monotonic()
            drawn = clustered_draw(plan.count, _dim(plan), clusters=plan.clusters, seed=plan.seed)
            say(f"features: drew {plan.count} in {time.monotonic() - started:.1f}s ({plan.clusters} clusters)")
        return drawn

    placeholders_ensure(plan=plan, labels=lambda: draw()[1], say=say)
    collection = real_collection_ensure(plan=plan)
    version = real_version_current(collection=collection, plan=plan)
    if version is not None:
        say(f"index: version {version.number} is active (already built)")
        return collection
    real_index_build(collection=collection, features=lambda: draw()[0], say=say)
    return collection


def real_models_ensure(*, plan: RealSize, say: Say) -> None:
    problem = random_pair_problem(plan.models, arch=plan.arch, seed=plan.seed)
    if problem is None:
        say(f"models: {plan.models} (already in place, checksums match)")
        return
    say(f"models: writing a random {plan.arch} CLIP and its Combiner into {plan.models}")
    manifest = random_pair_write(
        plan.models, arch=plan.arch, seed=plan.seed, command_line="manage.py bootstrap_demo --size real"
    )
    say(f"models: written in {manifest['seconds']}s, checksums in {plan.models / 'manifest.json'}")


def _dim(plan: RealSize) -> int:
    return int(json.loads((plan.models / "manifest.json").read_text())["dim"])


def _colour(cluster: int) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb((cluster * 0.618034) % 1.0, 0.55 + 0.4 * (cluster % 3) / 2, 0.85)
    return int(r * 255), int(g * 255), int(b * 255)


def _placeholder(cluster: int) -> bytes:
    picture = Picture.new("RGB", (PLACEHOLDER_SIZE, PLACEHOLDER_SIZE), _colour(cluster))
    ImageDraw.Draw(picture).text((6, 24), f"c{cluster}", fill=(0, 0, 0))
    out = io.BytesIO()
    picture.save(out, format="PNG", optimize=True)
    return out.getvalue()


def placeholder_name(number: int, cluster: int) -> str:
    """The file of the picture that stands for row `number` of the drawn features (its alt text, without
    ".png", shows the cluster: a person sees which results come from the reference's)."""
    return f"{number:06d}-c{cluster}.png"


def placeholder_number(relpath: str) -> int:
    """The row of the drawn features a placeholder stands for ("000123-c7.png" -> 123)."""
    return int(Path(relpath).stem.split("-")[0])


def placeholders_ensure(*, plan: RealSize, labels: Callable[[], NDArray[np.int64]], say: Say) -> None:
    """`plan.count` small PNG files (`placeholder_name`), each in the colour of its feature's cluster; the
    files of another plan go."""
    # the width too: past the first 50,000 rows the draw of clusters depends on it (retrieval/benchmarks/synthetic.py)
    folder, wanted = (
        plan.pictures,
        {"count": plan.count, "clusters": plan.clusters, "seed": plan.seed, "dim": _dim(plan)},
    )
    try:
        if json.loads((folder / MARKER).read_text()) == wanted:
            say(f"pictures: {plan.count} placeholders in {folder} (already written)")
            return
    except (OSError, ValueError):
        pass
    started = time.monotonic()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER).unlink(missing_ok=True)
    drawn = labels()
    pictures = {c: _placeholder(c) for c in range(plan.clusters)}
    names = [placeholder_name(number, cluster) for number, cluster in enumerate(drawn.tolist())]
    for name, cluster in zip(names, drawn.tolist(), strict=True):
        (folder / name).write_bytes(pictures[cluster])
    wanted_names = set(names)
    for other in folder.glob("*.png"):
        if other.name not in wanted_names:
            other.unlink()
    (folder / MARKER).write_text(json.dumps(wanted))
    say(f"pictures: wrote {plan.count} placeholders into {folder} in {time.monotonic() - started:.1f}s")


def real_collection_ensure(*, plan: RealSize) -> Collection:
    """The folder collection `real` over the placeholders, under the pair; refused when a collection of that
    slug reads another source (it is not this command's to change)."""
    source = source_stored(str(plan.pictures))
    fields = {
        "encoder": model_stored(str(plan.models / CLIP_FILE)),
        "combiner": model_stored(str(plan.models / COMBINER_FILE)),
    }
    collection, created = Collection.objects.get_or_create(
        slug=SLUG,
        defaults={
            "name": "Real size",
            "source": Collection.Source.FOLDER,
            "source_path": source,
            "description": f"Placeholders of {plan.count} images under a random {plan.arch} CLIP and Combiner "
            "(manage.py bootstrap_demo --size real): real cost, no meaning.",
            **fields,
        },
    )
    if (collection.source, collection.source_path) != (Collection.Source.FOLDER, source):
        raise ExplainedError(
            f"a collection '{SLUG}' already exists and reads {collection.source_path!r}, not the placeholders in "
            f"{plan.pictures}; delete it in the admin (or rename its slug) and run this again"
        )
    if not created and any(getattr(collection, k) != v for k, v in fields.items()):
        Collection.objects.filter(pk=collection.pk).update(**fields)
        collection.refresh_from_db()
    return collection


def real_version_current(*, collection: Collection, plan: RealSize) -> IndexVersion | None:
    """The active version when it already is this plan's (the pair's models, `count` images, in the store)."""
    version = collection.active_version
    if version is None or version.count != plan.count:
        return None
    models = (catalog.collection_encoder(collection), catalog.collection_combiner(collection))
    if (version.encoder, version.combiner) != models or not index_version_exists(path=version.path):
        return None
    return version


def real_index_build(*, collection: Collection, features: Callable[[], NDArray[np.float32]], say: Say) -> ReindexJob:
    """A full reindex of the collection through the normal path, its chunks written beforehand from the
    drawn features: the job's plan finds every chunk in the shared store and builds the version from them.
    The catalog is scanned here first (the chunks name image ids), so the job's own scan finds it up to date
    and its page says 0 added; what was added is said here."""
    started = time.monotonic()
    ReindexJob.objects.filter(collection=collection).exclude(status__in=ReindexJob.FINISHED).update(
        status=ReindexJob.Status.CANCELLED  # a run killed before: its job has no process any more
    )
    job = catalog.reindex_job_start(collection=collection, kind="full", enqueue=False)
    models = _models(collection, say)
    listing, _ = source_listing(collection)
    scan = catalog.collection_apply_scan(collection=collection, listing=listing, indexed=None)
    say(f"catalog: {len(listing)} images ({scan.added} added, {scan.changed} changed, {scan.deleted} gone)")
    chunks_plan(job.pk, scan.extract_ids, models)
    written = _chunks_write(job, features())
    say(f"chunks: wrote {written} chunk files of drawn features into the shared store (job {job.pk})")
    if settings.CIR_REDIS_IS_PRIVATE and not port_open(settings.CIR_PRIVATE_REDIS_PORT):
        publisher.muted = True  # `serve` has not started its Redis yet, so no page listens: progress shows here
    outcome = reindex_run(job.pk, show_progress=True)
    publisher.flush()
    job.refresh_from_db()
    if job.status != ReindexJob.Status.SUCCEEDED or job.version is None:
        raise ExplainedError(f"indexing failed: {job.error or outcome}")
    say(
        f"index: job {job.pk} {job.status}: version {job.version.number} ({job.version.index_type}, "
        f"{job.version.count} images) published and active, {time.monotonic() - started:.0f}s"
    )
    return job


def _models(collection: Collection, say: Say) -> Models:
    """The pair as a search worker of this host loads it, its text tower exported to ONNX where the
    machine runs it there (into this host's cache, where the workers look: their first turn is not slowed)."""
    runtime.model_roots = list(settings.CIR_MODEL_ROOTS)
    runtime.onnx_cache = Path(settings.CIR_CACHE_DIR) / "onnx-text"
    models = runtime.models(catalog.collection_encoder(collection), catalog.collection_combiner(collection))
    started = time.monotonic()
    models.encoder.prepare_text()
    say(
        f"models: loaded in {models.load_seconds:.1f}s, text path ready in {time.monotonic() - started:.1f}s "
        f"({models.encoder.precision.describe()})"
    )
    return models


def _chunks_write(job: ReindexJob, features: NDArray[np.float32]) -> int:
    """Each planned chunk as the reindex would have made it: the features of its images, in its order."""
    store, made_by = chunk_store(job.pk), f"{process_identity()} (drawn features)"
    rows = selectors.reindex_chunks(job_id=job.pk)
    relpaths = selectors.image_relpaths(ids=[i for row in rows for i, _ in row.items])
    for row in rows:
        ids = np.array([i for i, _ in row.items], np.int64)
        numbers = [placeholder_number(relpaths[i]) for i in ids.tolist()]
        store.write(row.number, chunk_items(row), Chunk(ids, np.ascontiguousarray(features[numbers]), {}, made_by))
    return len(rows)
