"""The reindex job page's fields (Version, Started, Finished, Worker, Attempts, ETA...) come with every
progress update, in the words the page first rendered them, so the page can fill each one live and at the end."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from cirweb.catalog import services
from cirweb.catalog.job_fields import JOB_FIELDS
from cirweb.catalog.models import IndexVersion, ReindexJob
from tests.web.factories import make_collection

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("boss", password="pw"))
    return client


def rendered_fields(page: str) -> dict[str, str]:
    """key -> the text of its read-only value, as the page shows it before any script runs."""
    found = re.findall(r'field-(live_\w+)">.*?<div class="readonly">(.*?)</div>', page, re.S)
    return {key: re.sub(r"\s+", " ", text).strip() for key, text in found}


def test_every_field_of_the_page_comes_with_the_progress_in_the_same_words(staff: Client) -> None:
    collection = make_collection()
    now = timezone.now()
    job = ReindexJob.objects.create(
        collection=collection,
        kind="full",
        status="running",
        total=180,
        done=60,
        images_per_second=12.345678,
        eta_seconds=41.7,
        started=now - timedelta(seconds=5),
        heartbeat=now,
        sent_at=now - timedelta(seconds=6),
        worker="host-a:4242",
        attempts=1,
    )
    page = staff.get(f"/admin/catalog/reindexjob/{job.pk}/change/").content.decode()
    progress = staff.get(f"/admin/catalog/reindexjob/{job.pk}/progress.json").json()

    assert set(progress["fields"]) == set(JOB_FIELDS)
    assert rendered_fields(page) == progress["fields"]
    fields = progress["fields"]
    assert fields["live_worker"] == "host-a:4242" and fields["live_attempts"] == "1"
    assert fields["live_images_per_second"] == "12.3 images/s" and fields["live_eta_seconds"] == "about 42 s"
    assert fields["live_started"] != "-" and fields["live_finished"] == "-" and fields["live_version"] == "-"


def test_at_the_end_the_version_and_finish_are_there_and_the_eta_is_gone(staff: Client) -> None:
    collection = make_collection()
    version = IndexVersion.objects.create(
        collection=collection, number=3, path="v3", count=3, dim=8, index_type="flat", encoder="e", combiner="c"
    )
    job = ReindexJob.objects.create(
        collection=collection,
        kind="incremental",
        status="succeeded",
        total=3,
        done=3,
        eta_seconds=0.4,
        started=timezone.now(),
        finished=timezone.now(),
        worker="host-a:4242",
        attempts=2,
        version=version,
    )
    fields = services.reindex_job_progress(job)["fields"]
    assert fields["live_status"] == "Succeeded" and fields["live_version"] == "v3"
    assert fields["live_finished"] != "-" and fields["live_eta_seconds"] == "-" and fields["live_attempts"] == "2"
    page = staff.get(f"/admin/catalog/reindexjob/{job.pk}/change/").content.decode()
    assert rendered_fields(page) == fields
