"""The front door stays true: every setting the code reads is in the README's configuration table, and
every link and file the README or the architecture page names exists in the repository."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def settings_read() -> set[str]:
    """Environment variables read anywhere in the project (settings, the web server, the scripts)."""
    names: set[str] = set()
    pattern = re.compile(r"""(?:environ(?:\.get)?\(|environ\[|getenv\(|env_\w+\()\s*["']([A-Z][A-Z0-9_]+)["']""")
    for path in [*REPO.glob("cirweb/**/*.py"), *REPO.glob("workers/**/*.py")]:
        names.update(pattern.findall(path.read_text()))
    internal = {"DJANGO_SETTINGS_MODULE", "CIR_PROCESS", "CIR_TEST_DATA_DIR", "PYTHONUNBUFFERED"}
    return names - internal


# read by the web server (uvicorn) itself, and documented in the table because operators set them
READ_BY_OTHERS = {"FORWARDED_ALLOW_IPS"}


def configuration_table() -> set[str]:
    section = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)`", section, flags=re.M))


def test_every_setting_read_is_in_the_readme_table() -> None:
    missing = settings_read() - configuration_table()
    assert not missing, f"settings read but not in README's configuration table: {sorted(missing)}"


def test_the_readme_table_lists_no_setting_nobody_reads() -> None:
    stale = configuration_table() - settings_read() - READ_BY_OTHERS
    assert not stale, f"README's configuration table lists settings nothing reads: {sorted(stale)}"


def test_links_stay_inside_the_repository_and_resolve() -> None:
    for page in (REPO / "README.md", REPO / "docs" / "architecture.md"):
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            resolved = (page.parent / target).resolve()
            assert resolved.is_relative_to(REPO), f"{page.name} links outside the repository: {target}"
            assert resolved.exists(), f"{page.name} links to a missing file: {target}"


def test_sections_named_by_files_exist() -> None:
    headings = {h.strip().lower() for h in re.findall(r"^#+ (.+)$", README, flags=re.M)}
    for path in (REPO / "requirements.txt", REPO / "scripts" / "setup", REPO / "scripts" / "test"):
        for name in re.findall(r'README "([^"]+)"', path.read_text()):
            assert name.lower() in headings, f"{path.name} names a README section that does not exist: {name!r}"
