"""A data directory built in one place serves unchanged from another: `manage.py serve` over a data directory
(SQLite, sources, models, the shared store) that was moved to another path, whose cache and uploads folder
are gone (a new host), answers the same results for the same turns and shows the conversation as it was."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from retrieval.datasets.shapes_world import generate_world
from tests.integration.clients import Api
from tests.live import REPO, LiveServices, Process, free_port, wait_healthy
from tests.web.factories import png_bytes

pytestmark = pytest.mark.integration


def site_env(root: Path) -> dict[str, str]:
    """A host whose every root lies under `root`, with its own private Redis (nothing shared with the suite)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CIR_", "DJANGO_", "DATABASE_URL"))}
    models = root / "models"
    env.update(
        DJANGO_SETTINGS_MODULE="cirweb.settings",
        CIR_DATA_DIR=str(root),
        CIR_SOURCE_ROOTS=str(root / "worlds"),
        CIR_MODEL_ROOTS=str(models),
        CIR_CLIP_MODEL=str(models / "shapes-clip.pt"),
        CIR_COMBINER=str(models / "shapes-combiner.pt"),
        CIR_PRIVATE_REDIS_PORT=str(free_port()),
        PYTHONUNBUFFERED="1",
    )
    return env


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(REPO / "manage.py"), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def serve(env: dict[str, str], root: Path) -> LiveServices:
    port = free_port()
    process = Process(
        "serve", [sys.executable, str(REPO / "manage.py"), "serve", "--port", str(port)], root / "serve.log"
    )
    live = LiveServices(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", env, {"serve": process})
    process.start(env)
    wait_healthy(live, seconds=180)
    return live


CREATE = """
from cirweb.catalog.admin import CollectionForm
form = CollectionForm(data={"name": "Shapes", "slug": "shapes", "source": "shapes", "source_path": %r,
                            "source_split": "val", "encoder": "", "combiner": ""})
assert form.is_valid(), form.errors
form.save()
"""


def ranked(frame: dict[str, Any]) -> list[tuple[int, float]]:
    return [(r["image"], round(r["score"], 4)) for r in frame["results"]]


def ask(api: Api, live: LiveServices, conversation: dict[str, Any], reference: int, upload: int) -> list[Any]:
    """Three turns: on an image of the collection, refined from its first result, and on an upload."""
    ws = api.socket(live.ws_url, conversation["ws"])
    t1, first = ws.turn("make the circle red", {"image": reference}, exclude_seen=False)
    _, second = ws.turn("add a blue square", {"image": first["results"][0]["image"]}, parent=t1, exclude_seen=False)
    _, third = ws.turn("make it green", {"upload": upload}, exclude_seen=False)
    ws.close()
    return [ranked(first), ranked(second), ranked(third)]


def test_a_moved_data_directory_serves_the_same_results_from_an_empty_cache(tmp_path: Path) -> None:
    here, there = tmp_path / "here", tmp_path / "there"
    (here / "models").mkdir(parents=True)
    for name in ("shapes-clip.pt", "shapes-combiner.pt", "manifest.json"):
        shutil.copy2(REPO / "models" / "shapes" / name, here / "models" / name)
    generate_world(here / "worlds" / "shapes", 150, seed=3, show_progress=False, workers=1)
    env = site_env(here)
    manage(env, "migrate", "--verbosity", "0")
    manage(env, "shell", "-c", CREATE % str(here / "worlds" / "shapes"))  # what staff type: this host's path
    manage(env, "reindex", "shapes", "--inline")

    live = serve(env, here)
    try:
        api = Api(live.base_url)
        reference = api.request("GET", "/api/collections/shapes/images").json()["images"][3]["id"]
        upload = api.request("POST", "/api/uploads", files={"file": ("x.png", png_bytes("teal"))}).json()["id"]
        conversation = api.conversation("shapes")
        before = ask(api, live, conversation, reference, upload)
    finally:
        live.processes["serve"].stop()
    for database in here.glob("cirweb.sqlite3*"):  # the file and its write-ahead log
        assert str(here).encode() not in database.read_bytes(), "the database names a path of the first place"

    shutil.move(here, there)
    shutil.rmtree(there / "cache")  # a new host: nothing cached yet,
    shutil.rmtree(there / "uploads")  # and the upload was taken by another host's web process
    live = serve(site_env(there), there)
    try:
        api.base = live.base_url  # the same visitor (session cookie), on the new host
        detail = api.request("GET", f"/api/conversations/{conversation['id']}").json()
        assert [[r["image"] for r in t["results"]] for t in detail["turns"]] == [[i for i, _ in b] for b in before]
        assert ask(api, live, conversation, reference, upload) == before
        assert api.request("GET", f"/images/{reference}").status_code == 200
        assert api.request("GET", f"/uploads/{upload}").status_code == 200
        assert list((there / "cache" / "collections" / "shapes").glob("v*/index.faiss"))  # fetched from the store
    finally:
        live.processes["serve"].stop()
