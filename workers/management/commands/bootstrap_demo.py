"""`python manage.py bootstrap_demo`: the default demo collection `shapes`, built once and idempotently.

1. the default models: the committed ones (models/shapes/, checked against their manifest), or, when they
   are absent, trained here from scratch with the quick preset (under 10 minutes on 2 cores);
2. the shapes world they were trained on (seed 7), drawn under CIR_DATA_DIR/worlds/shapes, with the whole
   one-edit neighbourhood of the start grid's pictures (the first page a person browses) in its val split:
   any single edit asked of them has its exact result in the collection;
3. the collection `shapes` over its held-out val split (5,040 images and the neighbourhoods), indexed in this process
(the database is migrated first, so a fresh data directory needs nothing else).
Running it again finds each step done and returns in seconds.

`--size real [--count N] [--arch A]` builds instead the real-size stack, the collection `real`: N placeholder
pictures (100,000 by default) whose features are drawn in the output space of an A-size CLIP (RN50x4) with
random weights, indexed through a real reindex job, with that CLIP and a random Combiner as checkpoints under
the models folder (workers/realsize.py says what is real in it and what is drawn).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError

from cirweb.catalog.models import Collection, ReindexJob
from cirweb.catalog.services import collection_combiner, collection_encoder, reindex_job_start
from cirweb.files.locations import source_stored
from cirweb.files.storage import index_version_exists
from cirweb.processes.commandline import DocumentedCommand
from cirweb.processes.devservers import port_open
from foundation.explained_error import ExplainedError
from retrieval.datasets.shapes_world import generate_world, start_grid_coverage
from retrieval.models.clip_weights import ARCHITECTURES
from retrieval.training import recipe
from workers.indexing import reindex_run
from workers.publish import publisher
from workers.realsize import RealSize, real_stack_bootstrap

REPO_MODELS = Path(settings.BASE_DIR) / "models" / "shapes"
SLUG = "shapes"
START_GRID = 48  # the chat page's first page of pictures to start from (chat/browse.js PAGE)
REAL_COUNT, REAL_MAX = 100_000, 1_000_000  # features are drawn in memory: 2.5 GB at the most, 640-d


class Command(DocumentedCommand):
    help = (
        "Build the demo collection 'shapes' (world, models, features, index) under CIR_DATA_DIR, once; with "
        "--size real, the real-size collection 'real' (random RN50x4-size models, drawn features) instead."
    )
    example = (
        "python manage.py bootstrap_demo\npython manage.py bootstrap_demo --retrain\n"
        "python manage.py bootstrap_demo --size real\npython manage.py bootstrap_demo --size real --count 2000"
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--retrain", action="store_true", help="train the models here even if committed ones exist")
        parser.add_argument(
            "--size",
            choices=["demo", "real"],
            default="demo",
            help="demo: the shapes collection; real: the real-size collection 'real' (random weights, drawn features)",
        )
        parser.add_argument("--count", type=int, default=None, help=f"--size real: images (default {REAL_COUNT:,})")
        parser.add_argument("--arch", default=None, help="--size real: the CLIP architecture (default RN50x4)")

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.monotonic()
        if options["size"] == "real":
            self.real(options, started)
            return
        if options["count"] is not None or options["arch"] is not None:
            raise CommandError("--count and --arch size the real-size stack: add --size real (the demo has one size)")
        call_command("migrate", verbosity=0)  # a data directory that was never migrated is one step behind
        world = Path(settings.CIR_DATA_DIR) / "worlds" / "shapes"
        self.ensure_world(world)
        covered = start_grid_coverage(world, "val", START_GRID, draws=20)
        self.stdout.write(
            f"start grid: {covered:.0%} of random single edits of its {START_GRID} pictures have their exact "
            "result in the collection"
        )
        self.ensure_models(world, retrain=options["retrain"])
        self.ensure_collection(world)
        self.stdout.write(
            self.style.SUCCESS(
                f"demo ready in {time.monotonic() - started:.0f}s: collection "
                f"'{SLUG}' with {self.count()} images. Next: python manage.py serve"
            )
        )

    def real(self, options: dict[str, Any], started: float) -> None:
        count, arch = options["count"] if options["count"] is not None else REAL_COUNT, options["arch"] or "RN50x4"
        if not 1 <= count <= REAL_MAX:
            raise CommandError(
                f"--count must be between 1 and {REAL_MAX:,} images (features are drawn in memory), not {count}"
            )
        if arch not in ARCHITECTURES:
            raise CommandError(f"--arch {arch!r} is not a CLIP architecture; use one of: {', '.join(ARCHITECTURES)}")
        if options["retrain"]:
            raise CommandError("--retrain trains the demo's models; the real-size stack's weights are random by design")
        call_command("migrate", verbosity=0)
        try:
            collection = real_stack_bootstrap(plan=RealSize(count, arch), say=self.stdout.write)
        except ExplainedError as exc:
            raise CommandError(str(exc)) from None
        models = RealSize(count, arch).models
        self.stdout.write(
            self.style.SUCCESS(
                f"real-size stack ready in {time.monotonic() - started:.0f}s: collection '{collection.slug}' with "
                f"{count} images under a random {arch} CLIP and Combiner. Next, so the search workers load them at "
                f"start: CIR_CLIP_MODEL={models / 'clip.pt'} CIR_COMBINER={models / 'combiner.pt'} "
                "python manage.py serve"
            )
        )

    def ensure_world(self, world: Path) -> None:
        info = world / "shapes" / "world.json"
        wanted = {
            "seed": recipe.DEFAULT_WORLD_SEED,
            "images": recipe.DEFAULT_WORLD_IMAGES,
            "start_neighbourhoods": START_GRID,
        }
        if info.is_file() and {k: json.loads(info.read_text()).get(k) for k in wanted} == wanted:
            self.stdout.write(f"world: {world} (already drawn)")
            return
        self.stdout.write(f"world: drawing {recipe.DEFAULT_WORLD_IMAGES} scenes into {world}")
        shutil.rmtree(world, ignore_errors=True)
        generate_world(
            world,
            recipe.DEFAULT_WORLD_IMAGES,
            recipe.DEFAULT_WORLD_SEED,
            command_line="manage.py bootstrap_demo",
            start_neighbourhoods=START_GRID,
        )

    def ensure_models(self, world: Path, retrain: bool) -> None:
        target = Path(settings.CIR_MODELS_DIR)
        problem = recipe.verify_models(REPO_MODELS)
        if recipe.verify_models(target) is None and not retrain:
            self.stdout.write(f"models: {target} (already in place)")
            if problem is None and recipe.adopt_judge(REPO_MODELS, target):
                self.stdout.write(f"models: added the committed judge to {target} (made for its CLIP)")
            return
        if problem is None and not retrain:
            target.mkdir(parents=True, exist_ok=True)
            for name in (recipe.CLIP_FILE, recipe.COMBINER_FILE, recipe.JUDGE_FILE, recipe.MANIFEST):
                if (REPO_MODELS / name).is_file():  # the judge is optional: turns are then not judged
                    shutil.copy2(REPO_MODELS / name, target / name)
            self.stdout.write(f"models: copied the committed default models to {target}")
            return
        why = "as asked" if retrain else f"({problem})"
        self.stdout.write(f"models: training from scratch {why}; the quick preset takes about 10 minutes")
        recipe.train_default_models(world, target, preset="quick", work_dir=Path(settings.CIR_DATA_DIR) / "training")

    def ensure_collection(self, world: Path) -> None:
        collection, _ = Collection.objects.get_or_create(
            slug=SLUG,
            defaults={
                "name": "Shapes",
                "source": Collection.Source.SHAPES,
                "source_path": source_stored(str(world)),
                "source_split": "val",
                "description": "Generated scenes of coloured shapes (held-out val split).",
            },
        )
        version = collection.active_version
        current = (collection_encoder(collection), collection_combiner(collection))
        if (
            version is not None
            and (version.encoder, version.combiner) == current
            and index_version_exists(path=version.path)
        ):
            self.stdout.write(f"index: version {version.number} is active (already built)")
            return
        ReindexJob.objects.filter(collection=collection).exclude(status__in=ReindexJob.FINISHED).update(
            status=ReindexJob.Status.CANCELLED
        )
        job = reindex_job_start(collection=collection, kind="full", enqueue=False)
        if settings.CIR_REDIS_IS_PRIVATE and not port_open(settings.CIR_PRIVATE_REDIS_PORT):
            publisher.muted = True  # `serve` has not started its Redis yet, so no page listens: progress shows here
        self.stdout.write(f"index: extracting features of {world.name}'s val split (job {job.pk})")
        outcome = reindex_run(job.pk, show_progress=True)
        publisher.flush()
        job.refresh_from_db()
        if job.status != ReindexJob.Status.SUCCEEDED:
            raise CommandError(f"indexing failed: {job.error or outcome}")
        self.stdout.write(f"index: version {job.version.number if job.version else '?'} built, {job.skipped} skipped")

    def count(self) -> int:
        return Collection.objects.get(slug=SLUG).images.filter(removed=False).count()
