"""The admin: staff only; reindexing and cancelling only with the reindex permission; history review."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from cirweb.catalog.models import Collection, IndexVersion, ReindexJob
from cirweb.conversations import services
from cirweb.conversations.models import Turn, TurnResult
from tests.web.factories import make_collection, visitor

pytestmark = pytest.mark.django_db


def login(username: str, *, staff: bool, perms: tuple[str, ...] = ()) -> Client:
    user = User.objects.create_user(username, password="pw-" + username, is_staff=staff)
    for codename in perms:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client = Client()
    client.force_login(user)
    return client


VIEW_ALL = (
    "view_collection",
    "view_reindexjob",
    "view_indexversion",
    "view_conversation",
    "view_turn",
    "view_image",
    "change_collection",
)


@pytest.fixture
def setup() -> dict[str, Any]:
    collection = make_collection()
    version = IndexVersion.objects.create(
        collection=collection, number=1, path="/nowhere", count=3, dim=8, index_type="flat", encoder="e", combiner="c"
    )
    job = ReindexJob.objects.create(collection=collection, kind="full", status="running", total=10, done=4)
    return {"collection": collection, "version": version, "job": job}


def admin_urls(s: dict[str, Any]) -> list[tuple[str, str]]:
    c, v, j = s["collection"].pk, s["version"].pk, s["job"].pk
    return [
        ("get", "/admin/"),
        ("get", "/admin/catalog/collection/"),
        ("get", f"/admin/catalog/collection/{c}/change/"),
        ("get", f"/admin/catalog/reindexjob/{j}/change/"),
        ("get", f"/admin/catalog/reindexjob/{j}/progress.json"),
        ("post", f"/admin/catalog/reindexjob/{j}/cancel/"),
        ("post", f"/admin/catalog/collection/{c}/activate/{v}/"),
        ("get", "/admin/conversations/turn/"),
        ("get", "/admin/conversations/conversation/"),
    ]


def test_non_staff_reach_nothing_in_the_admin(setup: dict[str, Any]) -> None:
    for client in (Client(), login("visitor", staff=False, perms=(*VIEW_ALL, "reindex_collection"))):
        for method, url in admin_urls(setup):
            response = getattr(client, method)(url)
            assert response.status_code in (302, 403), (url, response.status_code)
            if response.status_code == 302:
                assert "/admin/login/" in response["Location"]
        response = client.post(
            "/admin/catalog/collection/", {"action": "reindex_full", "_selected_action": [setup["collection"].pk]}
        )
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert ReindexJob.objects.count() == 1 and not ReindexJob.objects.get().cancel_requested


def test_staff_without_the_permission_cannot_reindex_cancel_or_switch(setup: dict[str, Any]) -> None:
    client = login("viewer", staff=True, perms=VIEW_ALL)
    page = client.get("/admin/catalog/collection/")
    assert page.status_code == 200 and b"reindex_full" not in page.content
    client.post("/admin/catalog/collection/", {"action": "reindex_full", "_selected_action": [setup["collection"].pk]})
    assert ReindexJob.objects.count() == 1
    assert client.post(f"/admin/catalog/reindexjob/{setup['job'].pk}/cancel/").status_code == 403
    url = f"/admin/catalog/collection/{setup['collection'].pk}/activate/{setup['version'].pk}/"
    assert client.post(url).status_code == 403
    assert client.get(f"/admin/catalog/reindexjob/{setup['job'].pk}/progress.json").json()["done"] == 4


def test_reindexer_starts_cancels_and_switches(setup: dict[str, Any]) -> None:
    client = login("keeper", staff=True, perms=(*VIEW_ALL, "reindex_collection"))
    setup["job"].status = "succeeded"
    setup["job"].save()
    response = client.post(
        "/admin/catalog/collection/", {"action": "reindex_incremental", "_selected_action": [setup["collection"].pk]}
    )
    job = ReindexJob.objects.latest("created")
    assert job.kind == "incremental" and job.status == "queued"
    assert response["Location"] == f"/admin/catalog/reindexjob/{job.pk}/change/"
    page = client.get(response["Location"])
    assert b"job-bar" in page.content and b"Cancel this job" in page.content
    again = client.post(
        "/admin/catalog/collection/",
        {"action": "reindex_full", "_selected_action": [setup["collection"].pk]},
        follow=True,
    )
    assert b"already being reindexed" in again.content
    client.post(f"/admin/catalog/reindexjob/{job.pk}/cancel/")
    job.refresh_from_db()
    assert job.status == "cancelled"  # it was still queued: stopped at once
    client.post(f"/admin/catalog/collection/{setup['collection'].pk}/activate/{setup['version'].pk}/")
    assert Collection.objects.get().active_version_id == setup["version"].pk


@pytest.mark.parametrize(
    ("source", "path", "split", "phrase"),
    [
        ("folder", "MISSING", "", "does not exist"),
        ("folder", "EMPTY", "", "holds no images"),
        ("cirr", "EMPTY", "val", "cap.rc2.val.json does not exist"),
        ("cirr", "BROKEN", "val", "cannot be read as JSON"),
        ("shapes", "EMPTY", "dev", "split must be one of"),
    ],
)
def test_collection_form_refuses_bad_sources(tmp_path: Path, source: str, path: str, split: str, phrase: str) -> None:
    broken = tmp_path / "broken"
    (broken / "cirr" / "captions").mkdir(parents=True)
    (broken / "cirr" / "captions" / "cap.rc2.val.json").write_text("{not json")
    path = {"EMPTY": str(tmp_path), "BROKEN": str(broken), "MISSING": str(tmp_path / "no" / "such")}.get(path, path)
    client = login("keeper", staff=True, perms=("add_collection", "view_collection"))
    response = client.post(
        "/admin/catalog/collection/add/",
        {
            "name": "X",
            "slug": "x",
            "source": source,
            "source_path": path,
            "source_split": split,
            "encoder": "",
            "combiner": "",
            "versions-TOTAL_FORMS": "0",
            "versions-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 200 and phrase in response.content.decode()
    assert not Collection.objects.filter(slug="x").exists()


def test_missing_checkpoints_are_refused(tmp_path: Path, settings: Any) -> None:
    (tmp_path / "a.png").write_bytes(b"x")
    settings.CIR_MODEL_ROOTS = [tmp_path / "models"]
    client = login("keeper", staff=True, perms=("add_collection", "view_collection"))
    response = client.post(
        "/admin/catalog/collection/add/",
        {
            "name": "X",
            "slug": "x",
            "source": "folder",
            "source_path": str(tmp_path),
            "source_split": "",
            "encoder": str(tmp_path / "models" / "missing.pt"),
            "combiner": str(tmp_path / "models" / "nope.pt"),
            "versions-TOTAL_FORMS": "0",
            "versions-INITIAL_FORMS": "0",
        },
    )
    body = response.content.decode()
    assert "missing.pt" in body and "neither a checkpoint file" in body
    assert not Collection.objects.filter(slug="x").exists()


def test_history_review_lists_exports_and_escapes() -> None:
    collection = make_collection()
    conversation = services.conversation_create(owner=visitor("v"), collection_slug=collection.slug)
    images = list(collection.images.all())
    turn = Turn.objects.create(
        conversation=conversation,
        text="<script>alert(1)</script> red",
        mode="combiner",
        status="done",
        latency_ms=42.0,
        reference_image=images[0],
        chosen_image=images[1],
    )
    for rank, image in enumerate(images):
        TurnResult.objects.create(turn=turn, rank=rank, image=image, score=1 - rank / 10)
    client = login("analyst", staff=True, perms=("view_turn", "view_conversation"))
    page = client.get("/admin/conversations/turn/").content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt; red" in page and "<script>alert(1)" not in page
    assert "Median latency" in page and "42 ms" in page and "100% of 1 answered turns" in page
    assert f"/images/{images[2].pk}/thumb" in page
    assert "red" in client.get("/admin/conversations/turn/?q=red").content.decode()
    detail = client.get(f"/admin/conversations/turn/{turn.pk}/change/").content.decode()
    assert detail.count("/thumb") >= len(images)
    export = client.post("/admin/conversations/turn/", {"action": "export_csv", "_selected_action": [turn.pk]})
    rows = b"".join(export.streaming_content).decode().splitlines()
    assert rows[0].startswith("turn,conversation,collection") and str(turn.pk) in rows[1]
