"""`python manage.py reindex <slug> [--incremental] [--wait | --inline]`: what the admin's reindex actions
do, from a terminal. Queued for the index worker by default; --wait follows the job with a progress bar;
--inline runs it in this process (no workers needed)."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import CommandError
from tqdm import tqdm

from cirweb.catalog.models import Collection, ReindexJob
from cirweb.catalog.services import CatalogError, reindex_job_start
from cirweb.processes.commandline import DocumentedCommand
from workers.indexing import reindex_run
from workers.publish import publisher


class Command(DocumentedCommand):
    help = "Reindex a collection (full, or incremental: only new, changed and deleted images)."
    example = "python manage.py reindex shapes --incremental --wait\npython manage.py reindex shapes --inline"

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("slug", help="the collection's slug")
        parser.add_argument(
            "--incremental", action="store_true", help="only new, changed and deleted images (default: a full reindex)"
        )
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--wait", action="store_true", help="follow the queued job until it finishes")
        group.add_argument("--inline", action="store_true", help="run the job in this process")

    def handle(self, *args: Any, **options: Any) -> None:
        collection = Collection.objects.filter(slug=options["slug"]).first()
        if collection is None:
            known = ", ".join(Collection.objects.values_list("slug", flat=True)) or "none"
            raise CommandError(f"no collection {options['slug']!r} (collections: {known})")
        kind = "incremental" if options["incremental"] else "full"
        try:
            job = reindex_job_start(collection=collection, kind=kind, enqueue=not options["inline"])
        except CatalogError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"{kind} reindex of {collection.slug}: job {job.pk}")
        if options["inline"]:
            reindex_run(job.pk, show_progress=True)
            publisher.flush()
        elif options["wait"]:
            self.follow(job)
        else:
            self.stdout.write("queued for the index worker; follow it in the admin or with --wait")
            return
        job.refresh_from_db()
        self.report(job)

    def follow(self, job: ReindexJob) -> None:
        bar = tqdm(total=0, unit="img", desc="reindexing")
        while job.status not in ReindexJob.FINISHED:
            time.sleep(0.5)
            job.refresh_from_db()
            bar.total = job.total
            bar.n = job.done
            bar.set_postfix(skipped=job.skipped, status=job.status)
            bar.refresh()
        bar.close()

    def report(self, job: ReindexJob) -> None:
        counts = f"added {job.added}, changed {job.changed}, deleted {job.deleted}, skipped {job.skipped}"
        if job.status != ReindexJob.Status.SUCCEEDED:
            raise CommandError(f"job {job.pk} {job.status}: {job.error or 'no error recorded'} ({counts})")
        version = f"version {job.version.number}" if job.version else "no new version (nothing changed)"
        self.stdout.write(self.style.SUCCESS(f"job {job.pk} succeeded: {version}; {counts}"))
        for relpath, reason in list(job.skipped_reasons.items())[:20]:
            self.stdout.write(f"  skipped {relpath}: {reason}")
