"""Settings for the test suite: the project's settings with a throw-away data directory, its own SQLite
file (shared with the worker and web server processes the integration tests start), Redis database 9, and the
committed default models. Child processes inherit the environment variables set here, so they agree."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("CIR_TEST_DATA_DIR", tempfile.mkdtemp(prefix="cirweb-tests-"))
os.environ["CIR_DATA_DIR"] = os.environ["CIR_TEST_DATA_DIR"]
os.environ.setdefault("CIR_REDIS_URL", "redis://127.0.0.1:6379/9")
os.environ.setdefault("CIR_CLIP_MODEL", str(_REPO / "models" / "shapes" / "shapes-clip.pt"))
os.environ.setdefault("CIR_COMBINER", str(_REPO / "models" / "shapes" / "shapes-combiner.pt"))
os.environ.setdefault("CIR_JUDGE", str(_REPO / "models" / "shapes" / "shapes-judge.pt"))
# Generated worlds and folders live in pytest's temporary folders: the tests may read collections there
# (the uploads, models and index folders stay refused wherever the roots are).
os.environ.setdefault("CIR_SOURCE_ROOTS", tempfile.gettempdir())
# Per-minute rates high enough for the suite's own traffic from one address (tests of the limits set
# their own); the in-flight limit keeps its default, so the flood test meets it as a visitor would.
for _name in ("CIR_RATE_TURNS", "CIR_RATE_SEARCH", "CIR_RATE_CONVERSATIONS", "CIR_RATE_UPLOADS"):
    os.environ.setdefault(_name, "600/m")

from django.core.exceptions import ImproperlyConfigured  # noqa: E402

from cirweb.settings import *  # noqa: E402,F403
from cirweb.settings import CIR_DATA_DIR, DATABASES, DJANGO_ENV  # noqa: E402

DATABASES["default"].setdefault("TEST", {})
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # a file, not memory: the worker and web server processes open the same database
    DATABASES["default"]["TEST"]["NAME"] = str(CIR_DATA_DIR / "test.sqlite3")
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CIR_TURN_EXPIRES = int(os.environ.get("CIR_TURN_EXPIRES", "60"))
CIR_SWEEP_EVERY = float(os.environ.get("CIR_SWEEP_EVERY", "1"))
# fault injection (cirweb/processes/faults.py) exists in the test settings only: the fault suite writes this file
if DJANGO_ENV == "production":
    raise ImproperlyConfigured(
        "tests.settings injects faults (sleeps, kills, a full disk) and is refused when DJANGO_ENV=production: "
        "run production with DJANGO_SETTINGS_MODULE=cirweb.settings"
    )
CIR_FAULTS_FILE = os.environ.get("CIR_TEST_FAULTS_FILE") or str(CIR_DATA_DIR / "faults.json")
