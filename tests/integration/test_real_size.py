"""`manage.py bootstrap_demo --size real` at a small count on a data directory nothing has touched: a real
index version of drawn features under a random RN50x4 CLIP and Combiner (checkpoints with checksums), built
through a reindex job; a second run does nothing; bad input is refused with a sentence; and `serve` answers
turns on it with the real-size text tower and Combiner, over HTTP and the websocket."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from retrieval.models.random_pair import random_pair_problem
from tests.integration.clients import Api
from tests.integration.test_relocation import REPO, manage, serve, site_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]
COUNT = "2000"
STATE = """
from cirweb.catalog.models import Collection, ReindexJob
c = Collection.objects.get(slug="real")
jobs = [(j.status, j.version_id) for j in ReindexJob.objects.filter(collection=c)]
print("STATE", jobs, c.active_version_id, c.images.filter(removed=False).count(), c.encoder, c.combiner)
"""


def refused(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(REPO / "manage.py"), "bootstrap_demo", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode != 0, done.stdout
    return done.stderr


def test_the_real_size_stack_is_built_once_and_served(tmp_path: Path) -> None:
    env = site_env(tmp_path)
    first = manage(env, "bootstrap_demo", "--size", "real", "--count", COUNT)
    assert "models: written" in first and "pictures: wrote 2000 placeholders" in first, first
    assert "chunks: wrote 2 chunk files of drawn features" in first, first
    assert "succeeded: version 1 (flat, 2000 images) published and active" in first, first
    models = tmp_path / "models" / "real-RN50x4"
    assert random_pair_problem(models, arch="RN50x4", seed=0) is None  # the manifest's checksums hold
    state = manage(env, "shell", "-c", STATE)  # one job, succeeded, whose version is the active one
    assert "STATE [('succeeded', 1)] 1 2000 real-RN50x4/clip.pt real-RN50x4/combiner.pt" in state, state
    assert list((tmp_path / "store" / "collections" / "real").glob("v1/index.faiss"))  # published to the store

    again = manage(env, "bootstrap_demo", "--size", "real", "--count", COUNT)
    assert "already in place" in again and "already written" in again and "already built" in again, again
    assert "wrote" not in again and "job" not in again, again

    assert "--count must be between 1 and 1,000,000 images" in refused(env, "--size", "real", "--count", "0")
    assert "add --size real" in refused(env, "--count", "10")
    assert "is not a CLIP architecture" in refused(env, "--size", "real", "--arch", "RN51")

    env.update(CIR_CLIP_MODEL=str(models / "clip.pt"), CIR_COMBINER=str(models / "combiner.pt"))
    live = serve(env, tmp_path)
    try:
        api = Api(live.base_url)
        images = api.request("GET", "/api/collections/real/images?limit=50").json()["images"]
        reference = images[7]
        answer = api.request(
            "POST", "/api/search", json={"collection": "real", "reference": {"image": reference["id"]},
                                         "text": "make it red and shorter", "k": 10},
        )  # fmt: skip
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["results"]) == 10 and answer.json()["timings_ms"]["text"] > 0
        conversation = api.conversation("real")
        ws = api.socket(live.ws_url, conversation["ws"])
        _, words = ws.turn("the same but in blue", {"image": reference["id"]})
        _, alike = ws.turn("", {"image": reference["id"]}, mode="image", k=10, exclude_seen=False)
        ws.close()
        assert len(words["results"]) == 24 and words["timings_ms"]["combine"] > 0
        # each picture's feature is its own (one id space): the reference's nearest are its cluster's pictures
        cluster = reference["alt"].split("-")[1]
        assert [r["alt"].split("-")[1] for r in alike["results"]] == [cluster] * 10, (reference, alike)
        thumb = api.request("GET", alike["results"][0]["thumb"])
        assert thumb.status_code == 200 and thumb.headers["Content-Type"].startswith("image/")
    finally:
        live.processes["serve"].stop()
