"""The house's rules that a tool can check (docs/architecture.md, "The rooms"): one module name per idea, one
class per name, no file too long to read, no layer exception in the import contracts, and every public name
still where tools outside the project import it from."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
import tomllib
from collections import defaultdict
from pathlib import Path

import pytest
from django.core.management import get_commands
from django.urls import reverse

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("foundation", "retrieval", "cirweb", "workers")
# Django's and Python's conventional names, expected once per app or package
CONVENTIONAL = {"__init__", "__main__", "admin", "apps", "models", "views", "services", "selectors", "consumers"}
MAX_LINES = 400


def house_files() -> list[Path]:
    return [
        path
        for package in PACKAGES
        for path in sorted((REPO / package).rglob("*.py"))
        if "migrations" not in path.parts and "commands" not in path.parts  # a command's module is its name
    ]


def test_no_two_modules_share_a_name() -> None:
    places: dict[str, list[str]] = defaultdict(list)
    for path in house_files():
        if path.stem not in CONVENTIONAL:
            places[path.stem].append(str(path.relative_to(REPO)))
    assert not {name: where for name, where in places.items() if len(where) > 1}


def test_no_class_is_defined_in_two_places() -> None:
    places: dict[str, list[str]] = defaultdict(list)
    for path in house_files():
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef):
                places[node.name].append(str(path.relative_to(REPO)))
    assert not {name: where for name, where in places.items() if len(where) > 1}


def test_no_file_of_the_house_is_longer_than_400_lines() -> None:
    long = {str(p.relative_to(REPO)): n for p in house_files() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long


def test_every_module_is_in_its_room_in_the_architecture() -> None:
    """docs/architecture.md's "The rooms" names every module of the house (a command's module included)."""
    text = (REPO / "docs" / "architecture.md").read_text()
    rooms = set(re.findall(r"\w+", text[text.index("## The rooms") : text.index("## Processes")]))
    modules = [p for package in PACKAGES for p in (REPO / package).rglob("*.py") if "migrations" not in p.parts]
    assert not sorted(str(p.relative_to(REPO)) for p in modules if p.stem not in rooms | {"__init__"})


def test_the_import_contracts_have_no_exceptions_and_cover_every_package() -> None:
    linter = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    assert set(linter["root_packages"]) == set(PACKAGES)
    assert not [c["name"] for c in linter["contracts"] if c.get("ignore_imports")]
    assert {"acyclic_siblings", "forbidden", "layers"} <= {c["type"] for c in linter["contracts"]}


def test_the_engines_public_names_are_where_tools_import_them_from(tiny_clip_checkpoint: Path) -> None:
    import numpy as np

    from retrieval.combiner import Fuser, load_combiner
    from retrieval.datasets import shapes, shapes_text
    from retrieval.encoders import ClipEncoder, load_clip

    encoder = load_clip(str(tiny_clip_checkpoint))
    assert isinstance(encoder, ClipEncoder)
    texts = encoder.encode_texts(["make it red"])
    assert texts.shape == (1, encoder.dim) and texts.dtype == np.float32
    from PIL import Image

    images = encoder.encode_images([Image.new("RGB", (40, 30), "red")])
    fused = Fuser(None, encoder.dim).fuse("sum", images, texts)
    assert np.allclose(np.linalg.norm(fused, axis=1), 1.0, atol=1e-5)
    assert callable(load_combiner)
    scene = shapes.random_scene(__import__("random").Random(0))
    assert shapes.possible_edits(scene, __import__("random").Random(0))
    assert callable(shapes_text.phrase)


def test_the_cli_the_commands_and_the_entry_points_keep_their_names() -> None:
    from retrieval.arguments import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")  # the subcommands
    commands = set(sub.choices)  # type: ignore[arg-type]
    assert {
        "shapes",
        "train-clip",
        "train-combiner",
        "evaluate",
        "cirr-submission",
        "bench-turn",
        "simulate",
    } <= commands
    evaluate = sub.choices["evaluate"]  # type: ignore[index]
    flags = {s for a in evaluate._actions for s in a.option_strings}
    assert {"--dataset", "--root", "--split", "--clip", "--combiner", "--mode", "--json", "--open-requests"} <= flags
    managed = set(get_commands())
    assert {"reindex", "bootstrap_demo", "serve", "sweep", "prune", "bench_pipeline", "bench_soak"} <= managed
    assert importlib.import_module("workers.app").app.main  # `celery -A workers.app worker`
    hub = importlib.import_module("hubconf")
    assert callable(hub.clip) and callable(hub.combiner)
    for name, kwargs in [("chat", {}), ("healthz", {}), ("image", {"image_id": 1}), ("image-thumb", {"image_id": 1})]:
        assert reverse(name, kwargs=kwargs)
    assert reverse("image-thumb", kwargs={"image_id": 7}) == "/images/7/thumb"  # the HTTP contract
    from cirweb.routing import websocket_urlpatterns

    assert {str(p.pattern) for p in websocket_urlpatterns} == {
        "ws/conversations/<str:conversation_id>/",
        "ws/admin/jobs/<int:job_id>/",
    }


@pytest.mark.parametrize(
    "module", ["retrieval.cli", "retrieval.encoders", "retrieval.combiner", "foundation.store_url"]
)
def test_the_engine_and_its_bottom_floor_import_without_a_framework(module: str) -> None:
    code = f"import sys, {module}; print(sorted(m for m in ('django', 'celery', 'channels') if m in sys.modules))"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
    )
