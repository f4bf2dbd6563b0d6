"""Figures, times and long texts as people read them on the admin's pages and the job page's live updates:
numbers rounded to what a reader can use ("38.4", "96 ms", never 38.35459382099998), long texts folded
behind their first words, thumbnails in a row. HTML comes out through format_html (escaped), and carries
classes, never a `style=`: the Content-Security-Policy refuses inline styles (the admin's stylesheet,
cirweb/catalog/static/cirweb/admin.css, gives the classes their look)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.utils import formats, timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

EMPTY = "-"  # what the admin shows for a missing value (its empty_value_display)


def rounded(value: float | None, digits: int = 1, unit: str = "") -> str:
    """`value` with `digits` decimals, and its unit after a space; "-" for none."""
    if value is None:
        return EMPTY
    text = f"{value:.{digits}f}"
    return f"{text} {unit}" if unit else text


def milliseconds(value: float | None) -> str:
    """A latency: whole milliseconds ("96 ms"); the fraction of a millisecond is noise at this scale."""
    return rounded(value, 0, "ms")


def duration(seconds: float | None) -> str:
    """A duration to come or gone: "40 s", "3 min", "2 h 5 min"; "-" for none."""
    if seconds is None:
        return EMPTY
    whole = max(0, round(seconds))
    if whole < 90:
        return f"{whole} s"
    minutes = round(whole / 60)
    return f"{minutes} min" if minutes < 90 else f"{minutes // 60} h {minutes % 60} min"


def moment(value: datetime | None) -> str:
    """A time in the site's time zone, to the second (a reindex may start and finish within a minute)."""
    if value is None:
        return EMPTY
    return formats.date_format(timezone.localtime(value) if timezone.is_aware(value) else value, "N j, Y, H:i:s")


def folded(text: str, limit: int = 120) -> SafeString | str:
    """A text of any length: as it is when short, else its first `limit` characters, the whole of it one
    click away (<details>, which keyboards and screen readers open without a script)."""
    if len(text) <= limit:
        return text  # escaped by the admin like any value
    cut = text[:limit].rstrip()
    return format_html(
        '<details class="folded"><summary>{}… <span class="folded-more">({} characters)</span></summary>'
        '<div class="folded-text">{}</div></details>',
        cut,
        f"{len(text):,}",
        text,
    )


def thumb(url: str | None, alt: str, size: int = 48) -> SafeString | str:
    """A square thumbnail, cropped to fill its square by the stylesheet's `.thumb`."""
    if not url:
        return EMPTY
    return format_html(
        '<img class="thumb" src="{}" width="{}" height="{}" alt="{}" loading="lazy">', url, size, size, alt
    )


def strip(thumbs: Iterable[SafeString | str]) -> SafeString | str:
    """Thumbnails side by side in one row (a list's cell keeps the height of one thumbnail)."""
    items = [(t,) for t in thumbs]
    if not items:
        return EMPTY
    return format_html('<div class="thumb-strip">{}</div>', format_html_join("", "{}", items))
