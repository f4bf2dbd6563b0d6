"""A collection larger than one query's parameters: reads and writes by image id go in batches (SQLite takes
at most 250,000 parameters in a query in this build, 32,766 in older ones; PostgreSQL 65,535 where Django
binds on the server)."""

from __future__ import annotations

import pytest

from cirweb.catalog import selectors, services
from cirweb.catalog.models import Image
from tests.web.factories import make_collection

pytestmark = pytest.mark.django_db

ROWS, ASKED = 3_000, 300_000


def test_ids_past_one_querys_parameters_are_read_and_written_whole() -> None:
    collection = make_collection("big", images=1)
    Image.objects.bulk_create(
        Image(collection=collection, relpath=f"x/{i}.png", path=f"x/{i}.png", size=i, mtime_ns=i) for i in range(ROWS)
    )
    rows = list(Image.objects.filter(collection=collection).values_list("pk", flat=True))
    asked = rows + list(range(max(rows) + 1, max(rows) + 1 + ASKED - len(rows)))  # as many ids as a big reindex
    last = Image.objects.get(relpath=f"x/{ROWS - 1}.png").pk
    sources = selectors.image_sources(ids=asked)
    assert len(sources) == ROWS + 1 and sources[last] == (f"x/{ROWS - 1}.png", ROWS - 1, ROWS - 1)
    assert len(selectors.image_relpaths(ids=asked)) == ROWS + 1
    assert len(selectors.image_files(ids=asked)) == ROWS + 1
    Image.objects.filter(pk__in=rows[:3]).update(skip_reason="unreadable")
    services.image_skip_reasons_set(reasons={last: "truncated file"}, read_ids=[i for i in asked if i != last])
    assert dict(Image.objects.exclude(skip_reason="").values_list("pk", "skip_reason")) == {last: "truncated file"}
