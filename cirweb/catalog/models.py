"""Collections of images, their index versions, reindexing jobs and user uploads.

Image primary keys are the ids stored in the Faiss index: one id space from the database to the index.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from django.conf import settings
from django.db import models


class Collection(models.Model):
    class Source(models.TextChoices):
        FOLDER = "folder", "Folder of images"
        CIRR = "cirr", "CIRR split"
        FASHIONIQ = "fashioniq", "FashionIQ split"
        SHAPES = "shapes", "Generated shapes world"

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.FOLDER)
    source_path = models.CharField(
        max_length=1000,
        help_text="Folder, or dataset root (CIRR: the cirr_dataset folder), under one of CIR_SOURCE_ROOTS; kept "
        "relative to it.",
    )
    source_split = models.CharField(
        max_length=16, blank=True, help_text="Dataset split (CIRR/shapes: val, test1, train)."
    )
    encoder = models.CharField(
        max_length=500,
        blank=True,
        help_text="CLIP model name or checkpoint path (under CIR_MODEL_ROOTS); blank: default.",
    )
    combiner = models.CharField(
        max_length=500,
        blank=True,
        help_text="Combiner checkpoint path (under CIR_MODEL_ROOTS), 'sum', or blank: default.",
    )
    active_version = models.ForeignKey(
        "IndexVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        permissions = [("reindex_collection", "Can reindex collections and cancel reindexing jobs")]

    def __str__(self) -> str:
        return self.name


class Image(models.Model):
    """One picture of a collection. `relpath` is its name in the source (stable across rescans)."""

    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="images")
    relpath = models.CharField(max_length=1000)
    path = models.CharField(max_length=2000, help_text="The file, relative to the collection's source folder.")
    size = models.BigIntegerField(default=0)
    mtime_ns = models.BigIntegerField(default=0)
    width = models.IntegerField(null=True, blank=True)
    height = models.IntegerField(null=True, blank=True)
    attributes = models.JSONField(default=dict, blank=True, help_text="Dataset metadata (shapes: scene graph).")
    description = models.TextField(
        blank=True, help_text="The picture in words, its alt text (shapes: the scene; else the file's name)."
    )
    suggestions = models.JSONField(
        default=list, blank=True, help_text="Requests worth suggesting with this picture as the reference."
    )
    indexed = models.BooleanField(default=False)
    skip_reason = models.CharField(max_length=500, blank=True)
    removed = models.BooleanField(default=False, help_text="Gone from the source; kept while old versions use it.")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["collection", "relpath"]
        constraints = [models.UniqueConstraint(fields=["collection", "relpath"], name="unique_image_per_collection")]

    def __str__(self) -> str:
        return f"{self.collection.slug}/{self.relpath}"

    @property
    def alt(self) -> str:
        return image_alt(description=self.description, relpath=self.relpath)


def file_alt(path: str) -> str:
    """A file's name for people: without its folders and its extension ("photos/Sea at dusk.jpg" -> "Sea at dusk")."""
    return PurePosixPath(path).stem


def image_alt(*, description: str, relpath: str) -> str:
    """A picture's alt text: its description, made by the workers at the last reindex (a shapes scene in words,
    a file's name), or the name of a row no reindex has described yet."""
    return description or file_alt(relpath)


class IndexVersion(models.Model):
    """One built index of a collection; `path` is its key in the shared store, `collections/<slug>/v<number>`."""

    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    path = models.CharField(max_length=2000)
    count = models.PositiveIntegerField(default=0)
    dim = models.PositiveIntegerField(default=0)
    index_type = models.CharField(max_length=16)
    encoder = models.CharField(max_length=500)
    combiner = models.CharField(max_length=500)
    build_seconds = models.FloatField(default=0.0)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["collection", "-number"]
        constraints = [models.UniqueConstraint(fields=["collection", "number"], name="unique_version_number")]

    def __str__(self) -> str:
        return f"{self.collection.slug} v{self.number}"


class ReindexJob(models.Model):
    class Kind(models.TextChoices):
        FULL = "full", "Full"
        INCREMENTAL = "incremental", "Incremental"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="jobs")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.FULL)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    done = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    images_per_second = models.FloatField(default=0.0)
    eta_seconds = models.FloatField(null=True, blank=True)
    added = models.PositiveIntegerField(default=0)
    changed = models.PositiveIntegerField(default=0)
    deleted = models.PositiveIntegerField(default=0)
    skipped_reasons = models.JSONField(default=dict, blank=True, help_text="relpath -> reason")
    error = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    version = models.ForeignKey(IndexVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created = models.DateTimeField(auto_now_add=True)
    started = models.DateTimeField(null=True, blank=True)
    heartbeat = models.DateTimeField(null=True, blank=True, help_text="Last sign of life from the worker.")
    worker = models.CharField(max_length=200, blank=True, help_text="host:pid of the process running the job.")
    finished = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True, help_text="When its task was last sent to the workers.")
    attempts = models.PositiveSmallIntegerField(default=0, help_text="How many times a worker took it.")

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} reindex of {self.collection.slug} ({self.status})"

    @property
    def percent(self) -> float:
        return (
            100.0 * self.done / self.total if self.total else (100.0 if self.status == self.Status.SUCCEEDED else 0.0)
        )


class ReindexChunk(models.Model):
    """One chunk of a reindex job's extraction, made by whichever index worker claims it (any host) and kept
    in the shared store. States: pending -> running (claimed by `worker`) -> done (`worker`: who made it).
    The rows are the job's plan: they change only through cirweb/catalog/chunks.py."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        DONE = "done", "Done"

    job = models.ForeignKey(ReindexJob, on_delete=models.CASCADE, related_name="chunks")
    number = models.PositiveIntegerField()
    items = models.JSONField(default=list, help_text="[[image id, stamp], ...] in extraction order.")
    fingerprint = models.CharField(max_length=40, help_text="Of the items: a chunk file made of others is not this.")
    model = models.CharField(max_length=40, help_text="Identity of the encoder that must make it.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    worker = models.CharField(max_length=200, blank=True, help_text="host:pid making it, or that made it.")
    heartbeat = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="How many times a worker took it.")
    done = models.PositiveIntegerField(default=0, help_text="Items read so far (all of them once done).")
    skipped = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["job", "number"]
        constraints = [models.UniqueConstraint(fields=["job", "number"], name="one_row_per_chunk")]

    def __str__(self) -> str:
        return f"chunk {self.number} of job {self.job_id} ({self.status})"


class Upload(models.Model):
    """An image a visitor brought. Owned like conversations: by a user, or by an anonymous visitor id."""

    file = models.CharField(max_length=500, help_text="Path under CIR_DATA_DIR/uploads.")
    original_name = models.CharField(max_length=255, blank=True)
    content_type = models.CharField(max_length=64)
    size = models.PositiveIntegerField()
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64, db_index=True)
    owner_user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE)
    owner_visitor = models.CharField(max_length=64, blank=True, db_index=True)
    deleted = models.BooleanField(default=False)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"upload {self.pk} ({self.original_name or self.sha256[:8]})"
