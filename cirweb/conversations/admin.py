"""Query history review: conversations and turns, read-only, with thumbnails, filters, CSV and figures."""

from __future__ import annotations

import csv
import statistics
from datetime import timedelta
from typing import Any

from django.contrib import admin
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import TruncDate
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from cirweb.conversations.models import Conversation, Feedback, Turn, TurnResult
from cirweb.transport.protocol import image_thumb_url, upload_thumb_url


def thumb(url: str | None, alt: str, size: int = 48) -> str:
    if not url:
        return "-"
    return format_html(
        '<img src="{}" width="{}" height="{}" alt="{}" loading="lazy" style="object-fit:cover">', url, size, size, alt
    )


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


def owner_text(conversation: Conversation) -> str:
    if conversation.owner_user_id:
        return str(conversation.owner_user)
    return f"visitor {conversation.owner_visitor[:8]}"


class TurnInline(admin.TabularInline):
    model = Turn
    extra = 0
    can_delete = False
    fields = ["reference", "text", "mode", "status", "latency_ms", "created"]
    readonly_fields = ["reference", "text", "mode", "status", "latency_ms", "created"]
    show_change_link = True

    @admin.display(description="Reference")
    def reference(self, turn: Turn) -> str:
        return thumb(reference_url(turn), "reference")

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
    fields = ["rank", "picture", "image", "score", "feedback"]
    readonly_fields = ["rank", "picture", "image", "score", "feedback"]
    ordering = ["rank"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[TurnResult]:
        feedback = Feedback.objects.filter(turn_id=OuterRef("turn_id"), image_id=OuterRef("image_id"))
        return (
            super()
            .get_queryset(request)
            .select_related("image__collection")  # the image's name is "<collection>/<path>"
            .annotate(feedback_value=Subquery(feedback.values("value")[:1]))
        )

    @admin.display(description="")
    def picture(self, result: TurnResult) -> str:
        return thumb(image_thumb_url(result.image_id), f"result {result.rank + 1}", 72)

    @admin.display(description="Feedback")
    def feedback(self, result: TurnResult) -> str:
        return getattr(result, "feedback_value", None) or ""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.has_perm("conversations.view_turn"))  # results are part of the turn


@admin.register(Turn)
class TurnAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "reference",
        "text_short",
        "mode",
        "status",
        "latency",
        "owner",
        "top_results",
        "chosen",
        "rejected",
        "created",
    ]
    list_filter = ["conversation__collection", "status", "mode", OwnerKindFilter, "created"]
    search_fields = ["text"]
    date_hierarchy = "created"
    inlines = [TurnResultInline]
    actions = ["export_csv"]
    readonly_fields = [
        "conversation",
        "parent",
        "reference",
        "text",
        "mode",
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
            .annotate(rejected_count=Count("feedback", filter=Q(feedback__value="rejected")))
            .prefetch_related("results")
        )

    @admin.display(description="Reference")
    def reference(self, turn: Turn) -> str:
        return thumb(reference_url(turn), "reference")

    @admin.display(description="Text")
    def text_short(self, turn: Turn) -> str:
        return turn.text[:80] + ("…" if len(turn.text) > 80 else "")

    @admin.display(description="Latency", ordering="latency_ms")
    def latency(self, turn: Turn) -> str:
        return f"{turn.latency_ms:.0f} ms" if turn.latency_ms is not None else "-"

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
    def top_results(self, turn: Turn) -> str:
        results = sorted(turn.results.all(), key=lambda r: r.rank)[:5]
        return (
            format_html_join(
                "", "{}", ((thumb(image_thumb_url(r.image_id), f"result {r.rank + 1}", 40),) for r in results)
            )
            or "-"
        )

    @admin.display(description="Chosen next")
    def chosen(self, turn: Turn) -> str:
        return thumb(image_thumb_url(turn.chosen_image_id), "chosen", 40) if turn.chosen_image_id else "-"

    @admin.display(description="Rejected", ordering="rejected_count")
    def rejected(self, turn: Turn) -> int:
        return getattr(turn, "rejected_count", 0)

    @admin.action(description="Export the selected turns as CSV")
    def export_csv(self, request: HttpRequest, queryset: QuerySet[Turn]) -> StreamingHttpResponse:
        class Echo:
            def write(self, value: str) -> str:
                return value

        writer = csv.writer(Echo())

        def cell(value: str) -> str:
            # a cell a spreadsheet would run as a formula is written as text
            return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value

        header = [
            "turn",
            "conversation",
            "collection",
            "parent",
            "created",
            "owner",
            "mode",
            "text",
            "reference_image",
            "reference_upload",
            "status",
            "error",
            "latency_ms",
            "top5",
            "chosen_image",
            "rejected",
        ]

        def rows() -> Any:
            yield writer.writerow(header)
            for t in queryset.order_by("created"):
                top = " ".join(str(r.image_id) for r in sorted(t.results.all(), key=lambda r: r.rank)[:5])
                yield writer.writerow(
                    [
                        t.pk,
                        t.conversation_id,
                        t.conversation.collection.slug,
                        t.parent_id or "",
                        t.created.isoformat(),
                        owner_text(t.conversation),
                        t.mode,
                        cell(t.text),
                        t.reference_image_id or "",
                        t.reference_upload_id or "",
                        t.status,
                        cell(t.error),
                        "" if t.latency_ms is None else round(t.latency_ms, 1),
                        top,
                        t.chosen_image_id or "",
                        getattr(t, "rejected_count", 0),
                    ]
                )

        response = StreamingHttpResponse(rows(), content_type="text/csv")
        response["Content-Disposition"] = 'attachment; filename="turns.csv"'
        return response

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        response = super().changelist_view(request, extra_context)
        context = getattr(response, "context_data", None)
        if context is not None and "cl" in context:
            context["figures"] = turn_figures(context["cl"].queryset)
        return response


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def turn_figures(turns: QuerySet[Turn]) -> dict[str, Any]:
    """Figures over the turns the changelist shows (its filters applied)."""
    since = timezone.now() - timedelta(days=14)
    per_day = list(
        turns.filter(created__gte=since)
        .annotate(day=TruncDate("created"))
        .values("day")
        .annotate(n=Count("id"))
        .order_by("day")
    )
    latencies = [
        float(v)
        for v in turns.filter(status=Turn.Status.DONE, latency_ms__isnull=False).values_list("latency_ms", flat=True)[
            :100_000
        ]
        if v is not None
    ]
    done = turns.filter(status=Turn.Status.DONE).count()
    refined = turns.filter(status=Turn.Status.DONE, chosen_image__isnull=False).count()
    return {
        "per_day": per_day,
        "median_latency_ms": round(statistics.median(latencies), 1) if latencies else None,
        "refined_share": round(100 * refined / done, 1) if done else None,
        "done": done,
    }
