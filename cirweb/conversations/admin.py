"""Query history review: conversations and turns, read-only, with thumbnails, filters, CSV and figures."""

from __future__ import annotations

import csv
from typing import Any

from django.contrib import admin
from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from cirweb.conversations.history import owner_text, rejected_count, turn_csv_rows, turn_figures
from cirweb.conversations.models import Conversation, Feedback, Turn, TurnResult
from cirweb.display import folded, milliseconds, rounded, strip, thumb
from cirweb.transport.protocol import image_thumb_url, upload_thumb_url

TEXT_IN_LIST = 60  # characters of a request shown in a list before it is folded
TEXT_ON_PAGE = 300  # on a turn's own page


def reference_url(turn: Turn) -> str | None:
    if turn.reference_image_id:
        return image_thumb_url(turn.reference_image_id)
    if turn.reference_upload_id:
        return upload_thumb_url(turn.reference_upload_id)
    return None


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class OwnerKindFilter(admin.SimpleListFilter):
    title = "owner"
    parameter_name = "owner"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("user", "Signed-in users"), ("anonymous", "Anonymous visitors")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        prefix = "conversation__" if queryset.model is Turn else ""
        if self.value() == "user":
            return queryset.filter(**{f"{prefix}owner_user__isnull": False})
        if self.value() == "anonymous":
            return queryset.filter(**{f"{prefix}owner_user__isnull": True})
        return queryset


class MemoryFilter(admin.SimpleListFilter):
    title = "memory"
    parameter_name = "memory"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("on", "On"), ("off", "Off")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() in ("on", "off"):
            return queryset.filter(memory=self.value() == "on")
        return queryset


class TurnInline(admin.TabularInline):
    model = Turn
    extra = 0
    can_delete = False
    readonly_fields = ["reference", "request_short", "mode", "memory", "status", "latency", "created"]
    fields = tuple(readonly_fields)
    show_change_link = True

    @admin.display(description="Reference")
    def reference(self, turn: Turn) -> SafeString | str:
        return thumb(reference_url(turn), "reference")

    @admin.display(description="Request")
    def request_short(self, turn: Turn) -> SafeString | str:
        return folded(turn.text, TEXT_IN_LIST)

    @admin.display(description="Latency")
    def latency(self, turn: Turn) -> str:
        return milliseconds(turn.latency_ms)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Conversation)
class ConversationAdmin(ReadOnlyAdmin):
    list_display = ["title_or_id", "collection", "owner", "turn_count", "created", "updated"]
    list_filter = ["collection", OwnerKindFilter]
    search_fields = ["title", "turns__text"]
    date_hierarchy = "created"
    inlines = [TurnInline]
    readonly_fields = ["id", "collection", "title", "owner_user", "owner_visitor", "created", "updated"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Conversation]:
        return super().get_queryset(request).select_related("collection", "owner_user").annotate(n=Count("turns"))

    @admin.display(description="Conversation")
    def title_or_id(self, c: Conversation) -> str:
        return str(c)

    @admin.display(description="Owner")
    def owner(self, c: Conversation) -> str:
        return owner_text(c)

    @admin.display(description="Turns", ordering="n")
    def turn_count(self, c: Conversation) -> int:
        return getattr(c, "n", 0)


class TurnResultInline(admin.TabularInline):
    model = TurnResult
    extra = 0
    can_delete = False
    readonly_fields = ["rank", "picture", "image", "rounded_score", "feedback"]
    fields = tuple(readonly_fields)
    ordering = ["rank"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[TurnResult]:
        feedback = Feedback.objects.filter(turn_id=OuterRef("turn_id"), image_id=OuterRef("image_id"))
        return (
            super()
            .get_queryset(request)
            .select_related("image__collection")  # the image's name is "<collection>/<path>"
            .annotate(feedback_value=Subquery(feedback.values("value")[:1]))
        )

    @admin.display(description="Picture")
    def picture(self, result: TurnResult) -> SafeString | str:
        return thumb(image_thumb_url(result.image_id), f"result {result.rank + 1}", 72)

    @admin.display(description="Score")
    def rounded_score(self, result: TurnResult) -> str:
        return rounded(result.score, 3)

    @admin.display(description="Feedback")
    def feedback(self, result: TurnResult) -> str:
        return getattr(result, "feedback_value", None) or ""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.has_perm("conversations.view_turn"))  # results are part of the turn


@admin.register(Turn)
class TurnAdmin(ReadOnlyAdmin):
    # what a review reads first (the query and what it gave) before what scrolls off a laptop's width
    list_display = [
        "id",
        "reference",
        "request_short",
        "top_results",
        "chosen",
        "rejected",
        "memory",
        "mode",
        "status",
        "latency",
        "owner",
        "created",
    ]
    list_filter = ["conversation__collection", "status", "mode", MemoryFilter, OwnerKindFilter, "created"]
    search_fields = ["text"]
    date_hierarchy = "created"
    inlines = [TurnResultInline]
    actions = ["export_csv"]
    readonly_fields = [
        "conversation",
        "parent",
        "reference",
        "request_text",
        "mode",
        "memory",
        "memory_used",
        "k",
        "pages",
        "exclude_seen",
        "status",
        "error_code",
        "error",
        "timings",
        "latency",
        "index_version",
        "chosen_image",
        "created",
        "finished",
    ]
    # only these, in this order: the raw timings and latency are shown formatted
    fields = readonly_fields  # type: ignore[assignment]
    change_list_template = "admin/conversations/turn/change_list.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Turn]:
        return (
            super()
            .get_queryset(request)
            .select_related("conversation__owner_user", "conversation__collection")
            .annotate(rejected_count=rejected_count())
            .prefetch_related("results")
        )

    @admin.display(description="Reference")
    def reference(self, turn: Turn) -> SafeString | str:
        return thumb(reference_url(turn), "reference")

    @admin.display(description="Request")
    def request_short(self, turn: Turn) -> SafeString | str:
        return folded(turn.text, TEXT_IN_LIST)

    @admin.display(description="Request")
    def request_text(self, turn: Turn) -> SafeString | str:
        return folded(turn.text, TEXT_ON_PAGE)

    @admin.display(description="Memory used")
    def memory_used(self, turn: Turn) -> SafeString | str:
        return folded(turn.memory_summary, TEXT_ON_PAGE) if turn.memory_summary else "-"

    @admin.display(description="Latency", ordering="latency_ms")
    def latency(self, turn: Turn) -> str:
        return milliseconds(turn.latency_ms)

    @admin.display(description="Owner")
    def owner(self, turn: Turn) -> str:
        return owner_text(turn.conversation)

    @admin.display(description="Timings")
    def timings(self, turn: Turn) -> str:
        """The worker's stage timings as a small table, in the order the stages ran."""
        stages = [(name, f"{float(ms):.1f} ms") for name, ms in (turn.timings_ms or {}).items() if _is_number(ms)]
        if not stages:
            return "-"
        rows = format_html_join("", "<tr><th scope='row'>{}</th><td>{}</td></tr>", stages)
        return format_html('<table class="timings"><tbody>{}</tbody></table>', rows)

    @admin.display(description="Top 5")
    def top_results(self, turn: Turn) -> SafeString | str:
        results = sorted(turn.results.all(), key=lambda r: r.rank)[:5]
        return strip(thumb(image_thumb_url(r.image_id), f"result {r.rank + 1}", 36) for r in results)

    @admin.display(description="Chosen")
    def chosen(self, turn: Turn) -> SafeString | str:
        return thumb(image_thumb_url(turn.chosen_image_id), "chosen", 36) if turn.chosen_image_id else "-"

    @admin.display(description="Rejected", ordering="rejected_count")
    def rejected(self, turn: Turn) -> int:
        return getattr(turn, "rejected_count", 0)

    @admin.action(description="Export the selected turns as CSV")
    def export_csv(self, request: HttpRequest, queryset: QuerySet[Turn]) -> StreamingHttpResponse:
        class Echo:
            def write(self, value: str) -> str:
                return value

        writer = csv.writer(Echo())
        rows = (writer.writerow(row) for row in turn_csv_rows(turns=queryset))
        response = StreamingHttpResponse(rows, content_type="text/csv")
        response["Content-Disposition"] = 'attachment; filename="turns.csv"'
        return response

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        response = super().changelist_view(request, extra_context)
        context = getattr(response, "context_data", None)
        if context is not None and "cl" in context:
            context["figures"] = turn_figures(turns=context["cl"].queryset)
        return response


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
