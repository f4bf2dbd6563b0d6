"""DJANGO_ENV=production: Django's deployment checks pass, pages carry a CSP that needs no inline code, and
the web process keeps no database connection open between requests (a worker keeps its own from task to task)."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

from tests.web.factories import make_collection
from tests.web.test_admin import login

pytestmark = pytest.mark.django_db
REPO = Path(__file__).resolve().parents[2]


def run(code_or_args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    # not what the browser tests set for themselves in this process (check --deploy rightly refuses it)
    inherited = {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    environment = {**inherited, "DJANGO_SETTINGS_MODULE": "cirweb.settings", **env}
    return subprocess.run(
        [sys.executable, *code_or_args], cwd=REPO, env=environment, capture_output=True, text=True, timeout=120
    )


def test_check_deploy_is_clean_in_production() -> None:
    done = run(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        DJANGO_ENV="production",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(60),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout
    development = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"])
    assert development.returncode != 0, "the development settings are not meant to pass --deploy"


def test_production_refuses_to_start_without_a_secret_key() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SECRET_KEY"}
    done = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=REPO,
        env={**env, "DJANGO_SETTINGS_MODULE": "cirweb.settings", "DJANGO_ENV": "production"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0 and "needs DJANGO_SECRET_KEY" in done.stderr


def test_fault_injection_is_refused_in_production() -> None:
    """The fault points (sleeps, kills, a full disk) are enabled by the test settings only; production
    refuses both the test settings and the test suite's variable, with a sentence."""
    key = secrets.token_urlsafe(60)
    settings_check = ["-c", "import django; django.setup()"]
    done = run(settings_check, DJANGO_ENV="production", DJANGO_SECRET_KEY=key, CIR_TEST_FAULTS_FILE="/tmp/f.json")
    assert done.returncode != 0 and "CIR_TEST_FAULTS_FILE injects faults" in done.stderr, done.stderr[-2000:]
    done = run(settings_check, DJANGO_ENV="production", DJANGO_SECRET_KEY=key, DJANGO_SETTINGS_MODULE="tests.settings")
    assert done.returncode != 0 and "tests.settings injects faults" in done.stderr, done.stderr[-2000:]
    code = "import django; django.setup(); from django.conf import settings; print(settings.CIR_FAULTS_FILE)"
    assert run(["-c", code], DJANGO_ENV="production", DJANGO_SECRET_KEY=key).stdout.strip() == "None"


def test_the_web_process_keeps_no_persistent_database_connections() -> None:
    code = (
        "import django; django.setup(); from django.db import connection as c; print(c.settings_dict['CONN_MAX_AGE'])"
    )
    assert run(["-c", code], CIR_PROCESS="web").stdout.strip() == "0"
    assert run(["-c", code]).stdout.strip() == "600"  # workers: one thread each, connections reused
    source = (REPO / "cirweb" / "processes" / "webserver.py").read_text()
    assert 'os.environ["CIR_PROCESS"] = "web"' in source


@pytest.mark.django_db(transaction=True)  # outside a test transaction, where a close really closes
def test_a_worker_keeps_its_database_connection_from_one_task_to_the_next() -> None:
    """Celery's Django fix-up, installed in every worker, closes the connections around each task unless
    told to reuse them: a worker would open one per turn."""
    from celery.fixups.django import DjangoWorkerFixup
    from celery.signals import task_postrun, task_prerun
    from django.db import connection

    from cirweb.celery_app import app
    from workers.tasks import ping

    fixup = DjangoWorkerFixup(app).install()  # as a worker process does at start
    try:
        connection.ensure_connection()
        opened = connection.connection
        for signal in (task_prerun, task_postrun, task_prerun, task_postrun):
            signal.send(sender=ping, task_id="t", task=ping, args=(), kwargs={})
        assert connection.connection is opened
    finally:
        task_prerun.disconnect(fixup.on_task_prerun)
        task_postrun.disconnect(fixup.on_task_postrun)


INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>(?!\s*</script>)", re.I)


def assert_no_inline_code(page: str) -> None:
    scripts = [m.group(0) for m in INLINE_SCRIPT.finditer(page) if "application/json" not in m.group(0)]
    assert not scripts, f"inline scripts: {scripts}"
    assert not re.search(r"\son[a-z]+=\"", page), "inline event handler"
    assert ' style="' not in page, "inline style attribute"


def test_pages_carry_a_csp_without_inline_script() -> None:
    collection = make_collection()
    response = Client().get("/")
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert_no_inline_code(response.content.decode())
    staff = login("keeper", staff=True, perms=("view_collection", "view_reindexjob", "view_turn", "view_conversation"))
    from cirweb.catalog.services import reindex_job_start

    job = reindex_job_start(collection=collection, kind="full", enqueue=False)
    for url in ("/admin/", f"/admin/catalog/reindexjob/{job.pk}/change/", "/admin/conversations/turn/"):
        page = staff.get(url)
        assert page.status_code == 200, url
        assert "script-src 'self'" in page["Content-Security-Policy"]
        assert_no_inline_code(page.content.decode())
