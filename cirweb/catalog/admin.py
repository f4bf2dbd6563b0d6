"""Admin for collections, their index versions and reindexing jobs.

Reindexing and cancelling need the `catalog.reindex_collection` permission, checked on every action and
view that changes an index. Job pages show live progress over a websocket, with polling as a fallback.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from cirweb.catalog import services
from cirweb.catalog.job_fields import JOB_FIELDS, reindex_job_fields
from cirweb.catalog.models import Collection, Image, IndexVersion, ReindexJob, Upload
from cirweb.catalog.validation import model_problem, source_problem
from cirweb.display import rounded
from cirweb.files.locations import collection_locations
from cirweb.transport.protocol import image_thumb_url

REINDEX_PERMISSION = "catalog.reindex_collection"


def can_reindex(request: HttpRequest) -> bool:
    return bool(request.user.is_active and request.user.is_staff and request.user.has_perm(REINDEX_PERMISSION))


class CollectionForm(forms.ModelForm):
    class Meta:
        model = Collection
        fields = ["name", "slug", "description", "source", "source_path", "source_split", "encoder", "combiner"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        problem = source_problem(data.get("source", ""), data.get("source_path", ""), data.get("source_split", ""))
        if problem:
            self.add_error("source_path", f"This source cannot be indexed: {problem}.")
        problem = model_problem(data.get("encoder", ""), data.get("combiner", ""))
        if problem:
            self.add_error("encoder" if "CLIP" in problem else "combiner", f"{problem[0].upper()}{problem[1:]}.")
        if not self.errors:  # staff type this host's paths; the database keeps them relative to the roots
            data.update(collection_locations(**{k: data.get(k, "") for k in ("source_path", "encoder", "combiner")}))
        return data


class IndexVersionInline(admin.TabularInline):
    model = IndexVersion
    extra = 0
    can_delete = False
    readonly_fields = [
        "number",
        "count",
        "dim",
        "index_type",
        "encoder",
        "combiner",
        "build_time",
        "created",
        "activate",
    ]
    fields = tuple(readonly_fields)
    show_change_link = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[IndexVersion]:
        return super().get_queryset(request).select_related("collection")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="Build seconds")
    def build_time(self, version: IndexVersion) -> str:
        return rounded(version.build_seconds, 1)

    @admin.display(description="Active")
    def activate(self, version: IndexVersion) -> str:
        if version.collection.active_version_id == version.pk:
            return "active"
        # the form itself is rendered after the change form (forms cannot nest); see the template
        return format_html(
            '<button type="submit" form="activate-{}" class="button">Switch to this version</button>', version.pk
        )


@admin.register(Collection)
class CollectionAdmin(admin.ModelAdmin):
    form = CollectionForm
    list_display = ["name", "slug", "source", "image_count", "active", "last_job"]
    list_filter = ["source"]
    search_fields = ["name", "slug", "source_path"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [IndexVersionInline]
    actions = ["reindex_incremental", "reindex_full"]
    change_form_template = "admin/catalog/collection/change_form.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Collection]:
        # one query for the whole list: the counts and the last job come as annotations, not per row
        last = ReindexJob.objects.filter(collection=OuterRef("pk")).order_by("-created", "-pk")
        return (
            super()
            .get_queryset(request)
            .select_related("active_version")
            .annotate(
                n_images=Count("images", filter=Q(images__removed=False)),
                last_job_id=Subquery(last.values("pk")[:1]),
                last_job_kind=Subquery(last.values("kind")[:1]),
                last_job_status=Subquery(last.values("status")[:1]),
                last_job_done=Subquery(last.values("done")[:1]),
                last_job_total=Subquery(last.values("total")[:1]),
            )
        )

    @admin.display(description="Images", ordering="n_images")
    def image_count(self, collection: Collection) -> int:
        return getattr(collection, "n_images", 0)

    @admin.display(description="Active version")
    def active(self, collection: Collection) -> str:
        v = collection.active_version
        return f"v{v.number} · {v.count} vectors · {v.index_type}" if v else "not indexed"

    @admin.display(description="Last reindex")
    def last_job(self, collection: Collection) -> str:
        job_id = getattr(collection, "last_job_id", None)
        if job_id is None:
            return "-"
        done, total = collection.last_job_done, collection.last_job_total  # type: ignore[attr-defined]
        percent = 100.0 * done / total if total else 0.0
        kind = ReindexJob.Kind(collection.last_job_kind).label  # type: ignore[attr-defined]
        url = reverse("admin:catalog_reindexjob_change", args=[job_id])
        return format_html('<a href="{}">{} {} ({}%)</a>', url, kind, collection.last_job_status, f"{percent:.0f}")  # type: ignore[attr-defined]

    def has_reindex_permission(self, request: HttpRequest) -> bool:
        return can_reindex(request)

    def _start(self, request: HttpRequest, queryset: Iterable[Collection], kind: str) -> HttpResponse | None:
        jobs = []
        for collection in queryset:
            try:
                jobs.append(services.reindex_job_start(collection=collection, kind=kind, user=request.user))
            except services.CatalogError as exc:
                self.message_user(request, str(exc), messages.ERROR)
        if len(jobs) == 1:
            return HttpResponseRedirect(reverse("admin:catalog_reindexjob_change", args=[jobs[0].pk]))
        if jobs:
            self.message_user(request, f"Queued {len(jobs)} reindexing jobs.", messages.SUCCESS)
        return None

    @admin.action(description="Reindex (incremental)", permissions=["reindex"])
    def reindex_incremental(self, request: HttpRequest, queryset: QuerySet[Collection]) -> HttpResponse | None:
        return self._start(request, queryset, ReindexJob.Kind.INCREMENTAL)

    @admin.action(description="Reindex (full)", permissions=["reindex"])
    def reindex_full(self, request: HttpRequest, queryset: QuerySet[Collection]) -> HttpResponse | None:
        return self._start(request, queryset, ReindexJob.Kind.FULL)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        versions = IndexVersion.objects.filter(collection_id=object_id) if object_id.isdigit() else []
        allowed = can_reindex(request)
        extra = {"switchable_versions": versions if allowed else [], "can_reindex": allowed, **(extra_context or {})}
        return super().change_view(request, object_id, form_url, extra)

    def get_urls(self) -> list[Any]:
        activate = self.admin_site.admin_view(require_POST(self.activate_view))
        reindex = self.admin_site.admin_view(require_POST(self.reindex_view))
        return [
            path("<int:collection_id>/activate/<int:version_id>/", activate, name="catalog_collection_activate"),
            path("<int:collection_id>/reindex/", reindex, name="catalog_collection_reindex"),
            *super().get_urls(),
        ]

    def reindex_view(self, request: HttpRequest, collection_id: int) -> HttpResponse:
        """The collection page's Reindex buttons: the actions' permission, checked here too (the buttons are
        hidden without it, and a POST made by hand must not get further)."""
        if not can_reindex(request):
            raise PermissionDenied("Reindexing needs the reindex permission.")
        collection = get_object_or_404(Collection, pk=collection_id)
        started = self._start(request, [collection], request.POST.get("kind", ""))
        return started or HttpResponseRedirect(reverse("admin:catalog_collection_change", args=[collection.pk]))

    def activate_view(self, request: HttpRequest, collection_id: int, version_id: int) -> HttpResponse:
        if not can_reindex(request):
            raise PermissionDenied("Switching index versions needs the reindex permission.")
        collection = get_object_or_404(Collection, pk=collection_id)
        version = get_object_or_404(IndexVersion, pk=version_id, collection=collection)
        services.collection_activate_version(collection=collection, version=version)
        self.message_user(request, f"{collection.name} now searches version {version.number}.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:catalog_collection_change", args=[collection.pk]))


def _live_field(key: str, label: str) -> Any:
    @admin.display(description=label)
    def show(self: Any, job: ReindexJob) -> str:
        return reindex_job_fields(job)[key]

    return show


class LiveJobFields:
    """A method per field of the job page that follows the job live (catalog/job_fields.py), so the first
    render and the live updates write the same words."""


for _key, _label in JOB_FIELDS.items():
    setattr(LiveJobFields, _key, _live_field(_key, _label))


@admin.register(ReindexJob)
class ReindexJobAdmin(LiveJobFields, admin.ModelAdmin):
    list_display = ["id", "collection", "kind", "status", "progress", "skipped", "created_by", "created", "finished"]
    list_filter = ["status", "kind", "collection"]
    list_select_related = ["collection", "created_by"]
    date_hierarchy = "created"
    readonly_fields = ["collection", "kind", "created_by", *JOB_FIELDS]
    fields = tuple(readonly_fields)
    change_form_template = "admin/catalog/reindexjob/change_form.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[ReindexJob]:
        return super().get_queryset(request).select_related("collection", "version", "created_by")

    @admin.display(description="Progress")
    def progress(self, job: ReindexJob) -> str:
        return f"{job.done}/{job.total} ({job.percent:.0f}%)"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[Any]:
        site = self.admin_site
        return [
            path("<int:job_id>/progress.json", site.admin_view(self.progress_view), name="catalog_reindexjob_progress"),
            path(
                "<int:job_id>/cancel/",
                site.admin_view(require_POST(self.cancel_view)),
                name="catalog_reindexjob_cancel",
            ),
            *super().get_urls(),
        ]

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra = {"can_reindex": can_reindex(request), **(extra_context or {})}
        return super().change_view(request, object_id, form_url, extra)

    def progress_view(self, request: HttpRequest, job_id: int) -> JsonResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        job = get_object_or_404(ReindexJob.objects.select_related("version"), pk=job_id)
        return JsonResponse(services.reindex_job_progress(job))

    def cancel_view(self, request: HttpRequest, job_id: int) -> HttpResponse:
        if not can_reindex(request):
            raise PermissionDenied("Cancelling a reindex needs the reindex permission.")
        job = get_object_or_404(ReindexJob, pk=job_id)
        try:
            services.reindex_job_cancel(job=job)
            self.message_user(request, f"Job {job.pk} is cancelling; the active version stays in place.")
        except services.CatalogError as exc:
            self.message_user(request, str(exc), messages.WARNING)
        return HttpResponseRedirect(reverse("admin:catalog_reindexjob_change", args=[job.pk]))


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    list_display = ["id", "thumb", "relpath", "collection", "indexed", "removed", "skip_reason"]
    list_filter = ["collection", "indexed", "removed"]
    list_select_related = ["collection"]
    search_fields = ["relpath"]
    readonly_fields = [f.name for f in Image._meta.fields]

    @admin.display(description="Picture")
    def thumb(self, image: Image) -> str:
        return format_html(
            '<img src="{}" width="48" height="48" alt="{}" loading="lazy">', image_thumb_url(image.pk), image.relpath
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Upload)
class UploadAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "picture",
        "original_name",
        "content_type",
        "size",
        "width",
        "height",
        "owner_user",
        "deleted",
        "created",
    ]
    list_filter = ["deleted", "content_type"]
    list_select_related = ["owner_user"]
    readonly_fields = [f.name for f in Upload._meta.fields]

    @admin.display(description="Size")
    def picture(self, upload: Upload) -> str:
        # staff see thumbnails through the file path only; the public URL serves owners alone
        return f"{upload.width}x{upload.height}"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
