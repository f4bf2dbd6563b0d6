"""`manage.py bootstrap_demo` on a data directory nothing has touched (not even `migrate`): the demo
collection is built and indexed, and a second run finds everything done."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_relocation import REPO, manage, site_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_bootstrap_demo_builds_the_demo_on_a_fresh_data_directory_and_then_has_nothing_to_do(tmp_path: Path) -> None:
    env = site_env(tmp_path)
    env["CIR_SOURCE_ROOTS"] = str(tmp_path / "worlds")
    env.pop("CIR_CLIP_MODEL")  # the defaults: the models bootstrap_demo installs under the data directory
    env.pop("CIR_COMBINER")
    env.pop("CIR_MODEL_ROOTS")
    command = [sys.executable, str(REPO / "manage.py"), "bootstrap_demo"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    first = done.stdout
    assert done.returncode == 0 and "demo ready" in first and "with 24763 images" in first, first + done.stderr
    # the start grid's one-edit neighbourhoods are in the collection (5,040 val pictures and 19,723 neighbours)
    assert "start grid: 100% of random single edits of its 48 pictures" in first, first
    assert "could not publish" not in done.stderr  # no Redis runs before `serve`: nothing to warn about
    again = manage(env, "bootstrap_demo")
    assert "already built" in again, again
