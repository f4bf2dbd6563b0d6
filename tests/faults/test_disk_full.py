"""A full disk, with real processes: a reindex that runs out of room fails with a sentence on its job while the
old version keeps serving, an upload that does is refused with a sentence, nothing half written is activated,
and every byte the failed write had put down is removed.

The fault stack (tests/faults/conftest.py) cannot count on mounting a small file system (most test machines
forbid it), so the disk fills through the `enospc` fault points of cirweb/processes/faults.py: the error a full
disk gives (errno ENOSPC) raised where the bytes land, in the shared store's writes (`store.put`, after the
file's bytes are down and before they are renamed in), in the index version writer (`version.part`, with
features.npy already allocated) and in the upload writer (`upload.write`, after the bytes are down).
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from PIL import Image

from tests.faults.conftest import SLUG, FaultStack, ids_of, record, wait_for
from tests.faults.test_faults import open_socket

pytestmark = pytest.mark.faults
FINISHED = ("succeeded", "failed", "cancelled")


def files_under(stack: FaultStack) -> dict[str, int]:
    """Every file of the stack's shared store, host cache and uploads folder, with its size."""
    data = Path(stack.env["CIR_TEST_DATA_DIR"])
    roots = [data / "store", data / "cache", data / "uploads"]
    return {
        p.relative_to(data).as_posix(): p.stat().st_size for root in roots if root.is_dir() for p in root.rglob("*")
        if p.is_file()
    }  # fmt: skip


def job_row(stack: FaultStack, job: int) -> tuple[str, str, int | None]:
    return stack.sql("select status, error, version_id from catalog_reindexjob where id = ?", job)[0]


@pytest.mark.parametrize(
    "point, action, where",
    [
        ("store_put", "enospc:/index.faiss", "publishing the version to the shared store"),
        ("version_part", "enospc", "writing the version in the host's cache"),
        ("store_put", "enospc:jobs/", "storing the extracted chunks"),
    ],
)
def test_a_reindex_out_of_room_fails_with_a_sentence_and_the_old_version_serves(
    stack: FaultStack, point: str, action: str, where: str
) -> None:
    ids = ids_of(stack)
    (active_before,) = stack.sql("select active_version_id from catalog_collection where slug = ?", SLUG)[0]
    (serving,) = stack.sql("select number from catalog_indexversion where id = ?", active_before)[0]
    (versions_before,) = stack.sql("select count(*) from catalog_indexversion")[0]
    before = files_under(stack)
    stack.faults(**{point: action})
    started = time.monotonic()
    stack.manage("reindex", SLUG)  # queued for the index worker
    (job,) = stack.sql("select max(id) from catalog_reindexjob")[0]
    status, error, version = wait_for(lambda: (row := job_row(stack, job))[0] in FINISHED and row, 180)
    failed_after = time.monotonic() - started
    stack.faults()
    assert status == "failed", (status, error, stack.logs())
    assert error.startswith("The disk is full: there was no space left to write this reindex's files"), error
    assert "the active version keeps serving" in error and "Traceback" not in error, error
    # nothing half written is activated, nor even registered
    assert version is None
    assert stack.sql("select active_version_id from catalog_collection where slug = ?", SLUG)[0][0] == active_before
    assert stack.sql("select count(*) from catalog_indexversion")[0][0] == versions_before
    # every byte of the failed write is gone: the partial version, its temporary files, the job's chunks
    left = {name: size for name, size in files_under(stack).items() if before.get(name) != size}
    assert not left, f"left behind after the full disk ({where}): {sorted(left)}"
    # the old version answers turns, on a new socket as on any other
    api, conversation, out = open_socket(stack)
    turns = [out.send("make it red", image, f"after-full-{n}") for n, image in enumerate(sorted(ids.values())[:2])]
    assert out.wait(turns, timeout=30, settle=0.5) == {"lost": 0, "duplicated": 0, "failed": 0}
    detail = api.request("GET", f"/api/conversations/{conversation['id']}").json()
    assert {t["index_version"] for t in detail["turns"]} == {serving}
    out.ws.close()
    record(
        f"disk full while {where} (reindex)",
        job_failed_after_s=round(failed_after, 1),
        sentence=error,
        files_left=len(left),
        lost=0,
        duplicated=0,
    )


def png_bytes(seed: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (seed * 37 % 256, seed * 91 % 256, 120)).save(out, format="PNG")
    return out.getvalue()


@pytest.mark.parametrize(
    "point, action, where",
    [
        ("upload_write", "enospc", "writing the upload on the web host"),
        ("store_put", "enospc:uploads/", "putting the upload in the shared store"),
    ],
)
def test_an_upload_out_of_room_is_refused_with_a_sentence_and_leaves_nothing(
    stack: FaultStack, point: str, action: str, where: str
) -> None:
    api, _, _ = open_socket(stack)
    (uploads_before,) = stack.sql("select count(*) from catalog_upload")[0]
    before = files_under(stack)
    picture = png_bytes(len(where) + int(time.time()) % 1000)
    stack.faults(**{point: action})
    refused = api.request("POST", "/api/uploads", files={"file": ("holiday.png", picture, "image/png")})
    assert refused.status_code == 507, refused.text
    assert refused.json() == {
        "detail": "The server has no room to store this image right now; please try again later, or pick a picture "
        "from the collection."
    }
    assert stack.sql("select count(*) from catalog_upload")[0][0] == uploads_before
    left = {name: size for name, size in files_under(stack).items() if before.get(name) != size}
    assert not left, f"left behind after the full disk ({where}): {sorted(left)}"
    log = stack.processes["web"].log.read_text(errors="replace")
    assert "The disk is full: there was no space left to write the uploaded image" in log
    # room again: the same picture is taken
    stack.faults()
    taken = api.request("POST", "/api/uploads", files={"file": ("holiday.png", picture, "image/png")})
    assert taken.status_code == 201, taken.text
    record(f"disk full while {where} (upload)", status=refused.status_code, files_left=len(left), lost=0)
