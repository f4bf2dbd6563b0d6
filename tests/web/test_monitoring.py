"""The monitoring profile (issue 23, item 1) without docker: the compose file parses and runs Prometheus and
Grafana only under `--profile monitoring`, every file it mounts is in the repository, Prometheus scrapes the web
process where the metrics answer it, Grafana is given that Prometheus and the dashboard, and every panel of the
dashboard asks for metrics that cirweb really exports (and every metric it exports is on some panel)."""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from cirweb.processes import metrics
from tests.web.test_production import run

REPO = Path(__file__).resolve().parents[2]
MONITORING = ("prometheus", "grafana")


def compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def dashboard() -> dict[str, Any]:
    return json.loads((REPO / "monitoring" / "grafana-cirweb.json").read_text())


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Bind mounts of a service: where in the container -> the repository file."""
    found = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            found[target] = source[2:]
    return found


def test_compose_runs_prometheus_and_grafana_only_in_the_monitoring_profile() -> None:
    services = compose()["services"]
    for name, service in services.items():
        assert (service.get("profiles") == ["monitoring"]) == (name in MONITORING), name
    assert services["prometheus"]["network_mode"] == "service:web"  # scrapes as this machine
    named = set(compose()["volumes"])
    for name in MONITORING:
        for _target, source in mounts(services[name]).items():
            assert (REPO / source).is_file(), f"{name} mounts {source}, which is not in the repository"
        for volume in services[name]["volumes"]:
            if not volume.startswith("./"):
                assert volume.split(":")[0] in named, volume
    assert "127.0.0.1:3000:3000" in services["grafana"]["ports"]  # Grafana on this machine only


def test_prometheus_scrapes_the_web_process_and_grafana_reads_prometheus_with_the_dashboard() -> None:
    services = compose()["services"]
    prometheus_files = mounts(services["prometheus"])
    config = yaml.safe_load((REPO / prometheus_files["/etc/prometheus/prometheus.yml"]).read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics" and job["static_configs"][0]["targets"] == ["localhost:8000"]
    assert "8000:8000" in services["web"]["ports"]

    grafana_files = mounts(services["grafana"])
    provisioned = {
        target: yaml.safe_load((REPO / source).read_text())
        for target, source in grafana_files.items()
        if target.startswith("/etc/grafana/provisioning/")
    }
    (source,) = next(f for t, f in provisioned.items() if "/datasources/" in t)["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://web:9090"  # Prometheus in web's network
    (provider,) = next(f for t, f in provisioned.items() if "/dashboards/" in t)["providers"]
    folder = provider["options"]["path"]
    assert grafana_files[f"{folder}/cirweb.json"] == "monitoring/grafana-cirweb.json"


def exported() -> set[str]:
    """The sample names of GET /metrics once every metric has a value (as a running stack gives them)."""
    metrics.turn_observed(outcome="done", timings_ms={"total": 12.0}, end_to_end=0.05)
    metrics.reindex_observed(job_id=4242, done=1, total=2, per_second=3.0)
    metrics.RATE_LIMITED.labels("turns").inc()
    metrics.SOCKETS.inc()
    try:
        text = Client().get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()
    finally:
        metrics.SOCKETS.dec()
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.mark.django_db
def test_every_panel_asks_for_metrics_cirweb_exports_and_every_metric_is_shown() -> None:
    names = exported()
    board = dashboard()
    panels = board["panels"]
    assert len({p["id"] for p in panels}) == len(panels) and all("gridPos" in p for p in panels)
    used: set[str] = set()
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            asked = set(re.findall(r"\bcirweb_[a-z0-9_]+", expr))
            assert asked, f"{panel['title']}: {expr} asks for no cirweb metric"
            assert asked <= names, f"{panel['title']}: {sorted(asked - names)} are not exported"
            assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), expr
            assert target["datasource"]["uid"] == "${datasource}"  # the dashboard's Prometheus, whichever
            used |= asked
    families = {re.sub(r"_(bucket|count|sum|total)$", "", n) for n in names if n.startswith("cirweb_")}
    shown = {re.sub(r"_(bucket|count|sum|total)$", "", n) for n in used}
    assert families <= shown, f"exported but on no panel: {sorted(families - shown)}"
    (variable,) = board["templating"]["list"]
    assert variable == {**variable, "name": "datasource", "type": "datasource", "query": "prometheus"}


def test_production_serves_the_scrape_over_plain_http() -> None:
    """DJANGO_ENV=production redirects plain HTTP to HTTPS, but not the scrape (nor the probes)."""
    code = (
        "import django; django.setup(); from django.test import Client; c = Client(); "
        "print(c.get('/metrics', HTTP_HOST='localhost').status_code, c.get('/', HTTP_HOST='localhost').status_code)"
    )
    done = run(["-c", code], DJANGO_ENV="production", DJANGO_SECRET_KEY=secrets.token_urlsafe(60))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["200", "301"]
