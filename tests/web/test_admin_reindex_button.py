"""The collection page's Reindex buttons (full and incremental): shown to staff with the reindex permission,
absent for other staff, and a POST made by hand without the permission (or without the CSRF token) starts
nothing."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from cirweb.catalog.models import Collection, ReindexJob
from tests.web.factories import make_collection
from tests.web.test_admin import VIEW_ALL, login

pytestmark = pytest.mark.django_db


@pytest.fixture
def collection() -> Collection:
    return make_collection()


def reindex_url(collection: Collection) -> str:
    return f"/admin/catalog/collection/{collection.pk}/reindex/"


def test_staff_with_the_permission_see_both_buttons_and_each_starts_its_kind(collection: Collection) -> None:
    client = login("keeper", staff=True, perms=(*VIEW_ALL, "reindex_collection"))
    page = client.get(f"/admin/catalog/collection/{collection.pk}/change/").content.decode()
    assert f'action="{reindex_url(collection)}"' in page
    assert 'name="kind" value="incremental"' in page and 'name="kind" value="full"' in page

    response = client.post(reindex_url(collection), {"kind": "full"})

    job = ReindexJob.objects.get()
    assert (job.kind, job.status, job.collection_id) == ("full", "queued", collection.pk)
    assert response.status_code == 302 and response["Location"] == f"/admin/catalog/reindexjob/{job.pk}/change/"
    ReindexJob.objects.filter(pk=job.pk).update(status="succeeded")
    client.post(reindex_url(collection), {"kind": "incremental"})
    assert ReindexJob.objects.latest("created").kind == "incremental"


def test_a_second_start_while_one_runs_says_so_on_the_collection_page(collection: Collection) -> None:
    client = login("keeper", staff=True, perms=(*VIEW_ALL, "reindex_collection"))
    client.post(reindex_url(collection), {"kind": "full"})
    again = client.post(reindex_url(collection), {"kind": "full"}, follow=True)
    assert again.redirect_chain[-1][0] == f"/admin/catalog/collection/{collection.pk}/change/"
    assert "already being reindexed" in again.content.decode() and ReindexJob.objects.count() == 1
    assert client.post(reindex_url(collection), {"kind": "everything"}).status_code == 302
    assert ReindexJob.objects.count() == 1


def test_staff_without_the_permission_see_no_button_and_a_forged_post_is_refused(collection: Collection) -> None:
    client = login("viewer", staff=True, perms=VIEW_ALL)
    page = client.get(f"/admin/catalog/collection/{collection.pk}/change/")
    assert page.status_code == 200 and reindex_url(collection) not in page.content.decode()
    assert b"Reindex (full)" not in page.content

    forged = client.post(reindex_url(collection), {"kind": "full"})
    assert forged.status_code == 403 and not ReindexJob.objects.exists()
    anonymous = Client().post(reindex_url(collection), {"kind": "full"})
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]
    assert not ReindexJob.objects.exists()


def test_a_post_without_the_csrf_token_or_a_get_starts_nothing(collection: Collection) -> None:
    user = User.objects.create_superuser("boss", password="pw")
    careful = Client(enforce_csrf_checks=True)
    careful.force_login(user)
    assert careful.post(reindex_url(collection), {"kind": "full"}).status_code == 403
    assert careful.get(reindex_url(collection)).status_code == 405
    assert not ReindexJob.objects.exists()
