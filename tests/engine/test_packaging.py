"""`pip install -e .` must give a notebook the engine with everything it imports declared."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def third_party_imports(package: Path) -> set[str]:
    names: set[str] = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"retrieval", "foundation", "__future__"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_engine_import_is_a_declared_dependency() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    extras = [dep for group in project["project"].get("optional-dependencies", {}).values() for dep in group]
    declared = {
        canonical(re.split(r"[<>=!~;\[ ]", dep, maxsplit=1)[0])
        for dep in [*project["project"]["dependencies"], *extras]
    }
    owners = packages_distributions()
    missing = {
        module: owners.get(module, ["?"])
        for module in third_party_imports(REPO / "retrieval")
        if not declared & {canonical(d) for d in owners.get(module, [module])}
    }
    assert not missing, f"imported by retrieval/ but not in pyproject's dependencies: {missing}"
    assert project["tool"]["setuptools"]["packages"]["find"]["include"][0] == "retrieval"
