"""Reads about collections, images, uploads and index versions that several callers share: the chat page,
the API, the admin and the workers ask these, never the ORM directly (STYLE.md: reads in selectors, writes
in services)."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from django.db import connection
from django.db.models import Count, Q, QuerySet, Sum

from cirweb.catalog.models import Collection, Image, IndexVersion, ReindexChunk, ReindexJob, Upload, image_alt
from cirweb.files.locations import image_file, source_folder

# ids per `pk__in` query: a whole collection's ids in one query would pass PostgreSQL's 65,535 parameters
# (and older SQLite builds' 32,766) on a large collection
IDS_PER_QUERY = 5000


def id_batches(ids: Iterable[int]) -> Iterator[list[int]]:
    """`ids` in lists of at most IDS_PER_QUERY, for `pk__in` filters."""
    ids = list(ids)
    for start in range(0, len(ids), IDS_PER_QUERY):
        yield ids[start : start + IDS_PER_QUERY]


def collection_list() -> QuerySet[Collection]:
    return Collection.objects.select_related("active_version").order_by("name")


def collection_get(*, slug: str) -> Collection | None:
    return Collection.objects.filter(slug=slug).first()


def image_get(*, image_id: int) -> Image | None:
    """A picture still in its collection's source (None for one removed or never there)."""
    return Image.objects.filter(pk=image_id, removed=False).first()


def collection_image_counts() -> dict[int, int]:
    """collection id -> how many images its active version holds (what a visitor can find)."""
    searchable = Q(images__removed=False, images__indexed=True)
    rows = Collection.objects.annotate(n=Count("images", filter=searchable)).values_list("pk", "n")
    return dict(rows)


def collection_images_page(
    *, collection: Collection, offset: int, limit: int, seed: int | None = None
) -> tuple[int, list[Image]]:
    """(how many searchable images the collection has, one page of them): in name order, or in a stable
    shuffled order for a given `seed` (the page's "Shuffle")."""
    offset, limit = max(offset, 0), max(1, min(limit, 200))
    rows = Image.objects.filter(collection=collection, removed=False, indexed=True)
    total = rows.count()
    if seed is None or not total:
        return total, list(rows.order_by("relpath")[offset : offset + limit])
    ids = sorted(rows.values_list("pk", flat=True), key=lambda i: hash((seed, i)) & 0xFFFFFFFF)  # ints: stable
    page = ids[offset : offset + limit]
    by_id = {img.pk: img for img in Image.objects.filter(pk__in=page)}
    return total, [by_id[i] for i in page]


def collection_active_version_id(*, collection_id: int) -> int | None:
    """Read on every turn (not cached), so a switch to a new version takes effect on the next one."""
    return Collection.objects.filter(pk=collection_id).values_list("active_version_id", flat=True).first()


def collection_name(*, collection_id: int) -> str | None:
    return Collection.objects.filter(pk=collection_id).values_list("name", flat=True).first()


def index_version_get(*, version_id: int) -> IndexVersion:
    return IndexVersion.objects.get(pk=version_id)


def index_version_numbers(*, collection: Collection) -> list[int]:
    """Every version number the catalog has registered for the collection (a new one must not reuse any)."""
    return list(IndexVersion.objects.filter(collection=collection).values_list("number", flat=True))


def image_files(*, ids: Iterable[int]) -> dict[int, tuple[str, int, int]]:
    """id -> (local path on this host, size, mtime_ns): what an extraction reads and stamps its chunks with."""
    rows = [
        row
        for batch in id_batches(ids)
        for row in Image.objects.filter(pk__in=batch).values_list(
            "pk", "path", "size", "mtime_ns", "collection__source_path"
        )
    ]
    folders = {source: source_folder(source) for source in {row[4] for row in rows}}
    return {pk: (str(image_file(path, folders[source])), size, mtime) for pk, path, size, mtime, source in rows}


def image_sources(*, ids: Iterable[int]) -> dict[int, tuple[str, int, int]]:
    """id -> (relpath, size, mtime_ns): what an index version records of its sources (`sources.json`)."""
    return {
        pk: (rel, size, mtime)
        for batch in id_batches(ids)
        for pk, rel, size, mtime in Image.objects.filter(pk__in=batch).values_list("pk", "relpath", "size", "mtime_ns")
    }


def image_alts(*, ids: Iterable[int]) -> dict[int, str]:
    """id -> the picture in words (`image_alt`), for a page of results: one query. On every turn's path (for
    the pictures a search worker has not described yet), in SQL written once: the ORM would spend about 0.7 ms
    of Python building the query that SQLite answers in 0.1 (measured on a page of 24)."""
    alts: dict[int, str] = {}
    with connection.cursor() as cursor:
        for batch in id_batches(ids):
            cursor.execute(_image_alts_sql(len(batch)), batch)
            alts.update((pk, image_alt(description=words, relpath=rel)) for pk, words, rel in cursor.fetchall())
    return alts


@functools.lru_cache(maxsize=32)
def _image_alts_sql(count: int) -> str:
    quote = connection.ops.quote_name
    column = {field.attname: quote(field.column) for field in Image._meta.concrete_fields}
    return (
        f"SELECT {column['id']}, {column['description']}, {column['relpath']} FROM {quote(Image._meta.db_table)} "
        f"WHERE {column['id']} IN ({', '.join(['%s'] * count)})"
    )


def image_relpaths(*, ids: Iterable[int]) -> dict[int, str]:
    return {
        pk: rel
        for batch in id_batches(ids)
        for pk, rel in Image.objects.filter(pk__in=batch).values_list("pk", "relpath")
    }


def reindex_job_cancel_requested(*, job_id: int) -> bool:
    return ReindexJob.objects.filter(pk=job_id, cancel_requested=True).exists()


@dataclass(frozen=True)
class ChunksProgress:
    """A job's extraction summed over its chunks, whoever makes them."""

    chunks: int
    chunks_done: int
    done: int
    skipped: int


def reindex_chunks_progress(*, job_id: int) -> ChunksProgress:
    totals = ReindexChunk.objects.filter(job_id=job_id).aggregate(
        chunks=Count("pk"),
        chunks_done=Count("pk", filter=Q(status=ReindexChunk.Status.DONE)),
        done=Sum("done"),
        skipped=Sum("skipped"),
    )
    return ChunksProgress(**{name: int(value or 0) for name, value in totals.items()})


def reindex_chunks(*, job_id: int) -> list[ReindexChunk]:
    """The job's plan, chunk by chunk, with who made (or is making) each."""
    return list(ReindexChunk.objects.filter(job_id=job_id).order_by("number"))


def upload_file(*, upload_id: int) -> tuple[str, bool] | None:
    """(the stored file's name under CIR_UPLOADS_DIR, whether it was deleted), or None when there is no
    such upload."""
    row = Upload.objects.filter(pk=upload_id).values_list("file", "deleted").first()
    return (str(row[0]), bool(row[1])) if row else None
