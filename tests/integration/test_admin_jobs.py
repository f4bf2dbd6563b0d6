"""Reindexing from the admin with a real index worker: progress to 100%, cancelling, incremental counts."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.live import LiveServices

pytestmark = pytest.mark.integration


class Staff:
    """A logged-in admin session with the reindex permission."""

    def __init__(self, live: LiveServices, django_db_blocker: Any) -> None:
        from django.contrib.auth.models import Permission, User

        with django_db_blocker.unblock():
            user, _ = User.objects.get_or_create(username="keeper", defaults={"is_staff": True})
            user.set_password("keeper-pass-1")
            user.save()
            user.user_permissions.set(Permission.objects.filter(content_type__app_label="catalog"))
        self.base = live.base_url
        self.http = requests.Session()
        self.http.get(f"{self.base}/admin/login/", timeout=10)
        token = self.http.cookies["csrftoken"]
        done = self.http.post(
            f"{self.base}/admin/login/?next=/admin/",
            timeout=10,
            headers={"Referer": self.base},
            data={"username": "keeper", "password": "keeper-pass-1", "csrfmiddlewaretoken": token},
        )
        assert done.url.endswith("/admin/"), "admin login failed"

    def post(self, path: str, data: dict[str, Any] | None = None) -> requests.Response:
        data = {"csrfmiddlewaretoken": self.http.cookies["csrftoken"], **(data or {})}
        return self.http.post(self.base + path, data=data, headers={"Referer": self.base + path}, timeout=30)

    def reindex(self, collection_id: int, kind: str) -> int:
        response = self.post(
            "/admin/catalog/collection/", {"action": f"reindex_{kind}", "_selected_action": [collection_id]}
        )
        job = response.url.rstrip("/").split("/")[-2]
        assert job.isdigit(), f"no job page after the action: {response.url}"
        return int(job)

    def progress(self, job_id: int) -> dict[str, Any]:
        return self.http.get(f"{self.base}/admin/catalog/reindexjob/{job_id}/progress.json", timeout=10).json()

    def wait(self, job_id: int, seconds: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            p = self.progress(job_id)
            if p["status"] in ("succeeded", "failed", "cancelled"):
                return p
            time.sleep(0.2)
        raise AssertionError(f"job {job_id} did not finish")


def new_collection(django_db_blocker: Any, slug: str, source: str, path: Path, split: str = "") -> int:
    from cirweb.catalog.models import Collection

    with django_db_blocker.unblock():
        Collection.objects.filter(slug=slug).delete()
        return Collection.objects.create(
            slug=slug, name=slug, source=source, source_path=str(path), source_split=split
        ).pk


def search(
    live: LiveServices, slug: str, reference: dict[str, int] | None, text: str, k: int = 24, mode: str = "combiner"
) -> requests.Response:
    return requests.post(
        f"{live.base_url}/api/search",
        json={"collection": slug, "reference": reference, "text": text, "mode": mode, "k": k},
        timeout=60,
    )


def test_admin_reindex_reaches_100_percent(
    live_services: LiveServices, shapes_world: Path, django_db_blocker: Any
) -> None:
    staff = Staff(live_services, django_db_blocker)
    collection = new_collection(django_db_blocker, "admin-shapes", "shapes", shapes_world, "val")
    job = staff.reindex(collection, "full")
    page = staff.http.get(f"{staff.base}/admin/catalog/reindexjob/{job}/change/", timeout=10).text
    assert 'id="job-bar"' in page
    seen = [staff.progress(job)]
    while seen[-1]["status"] not in ("succeeded", "failed", "cancelled"):
        time.sleep(0.1)
        seen.append(staff.progress(job))
    final = seen[-1]
    assert final["status"] == "succeeded", final
    assert final["percent"] == 100.0 and final["done"] == final["total"] == 180 and final["version"] == 1
    assert search(live_services, "admin-shapes", None, "a red circle").status_code == 200


def test_cancelled_job_leaves_the_previous_version_active(
    live_services: LiveServices, shapes_world: Path, django_db_blocker: Any
) -> None:
    from cirweb.catalog.models import Collection

    staff = Staff(live_services, django_db_blocker)
    collection = new_collection(django_db_blocker, "admin-cancel", "shapes", shapes_world, "train")
    assert staff.wait(staff.reindex(collection, "full"))["status"] == "succeeded"
    job = staff.reindex(collection, "full")
    while staff.progress(job)["status"] == "queued":
        time.sleep(0.05)
    staff.post(f"/admin/catalog/reindexjob/{job}/cancel/")
    final = staff.wait(job)
    assert final["status"] == "cancelled", final
    with django_db_blocker.unblock():
        active = Collection.objects.select_related("active_version").get(pk=collection).active_version
    assert active is not None and active.number == 1
    answer = search(live_services, "admin-cancel", None, "a small blue square")
    assert answer.status_code == 200 and len(answer.json()["results"]) == 24


def test_incremental_reindex_touches_exactly_what_changed(
    live_services: LiveServices, shapes_world: Path, django_db_blocker: Any, tmp_path: Path
) -> None:
    from cirweb.catalog.models import Image

    pictures = sorted((shapes_world / "dev").glob("*.png"))
    folder = tmp_path / "photos"
    (folder / "nested").mkdir(parents=True)
    for picture in pictures[:20]:
        shutil.copy(picture, folder / ("nested" if picture.name.endswith("-0.png") else "") / picture.name)
    staff = Staff(live_services, django_db_blocker)
    collection = new_collection(django_db_blocker, "admin-folder", "folder", folder)
    first = staff.wait(staff.reindex(collection, "full"))
    assert first["status"] == "succeeded" and first["done"] == 20
    for picture in pictures[20:23]:
        shutil.copy(picture, folder / picture.name)  # 3 new
    changed = sorted(folder.glob("*.png"))[0]
    changed.write_bytes(pictures[30].read_bytes())  # 1 changed (different bytes, size and mtime)
    deleted = sorted(folder.glob("*.png"))[1]
    deleted.unlink()  # 1 deleted
    final = staff.wait(staff.reindex(collection, "incremental"))
    assert final["status"] == "succeeded", final
    assert (final["added"], final["changed"], final["deleted"]) == (3, 1, 1)
    assert final["total"] == 4  # only the new and the changed files were read
    with django_db_blocker.unblock():
        ids = dict(Image.objects.filter(collection=collection).values_list("relpath", "pk"))
    new_id = ids[pictures[21].name]
    answer = search(live_services, "admin-folder", {"image": new_id}, "", k=200, mode="image")
    assert answer.status_code == 200, answer.text
    found = [r["image"] for r in answer.json()["results"]]
    assert len(found) == 21 and ids[deleted.name] not in found  # 22 indexed, minus the reference itself
    again = search(live_services, "admin-folder", {"image": ids[deleted.name]}, "", mode="image")
    assert again.status_code in (400, 422) and "not" in again.json()["detail"]
