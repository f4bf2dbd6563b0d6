"""Every command says how to use it (issue 14, item 6): `python -m retrieval` and each of its subcommands,
and every management command of this project: each option has help, and each command ends its help with an
example. Defaults and choices are shown by the formatters; the help text of one command proves that too."""

from __future__ import annotations

import argparse

import pytest
from django.core.management import get_commands, load_command_class

from retrieval.arguments import build_parser
from retrieval.cli import COMMANDS

PROJECT_COMMANDS = {
    "serve",
    "reindex",
    "bootstrap_demo",
    "bench_pipeline",
    "bench_soak",
    "bench_turn_path",
    "sweep",
    "prune",
}


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.update(action.choices)
    return found


def undocumented(parser: argparse.ArgumentParser) -> list[str]:
    return [
        "/".join(action.option_strings) or action.dest
        for action in parser._actions
        if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction))
        and not (action.help or "").strip()
    ]


def project_commands() -> dict[str, str]:
    return {name: app for name, app in get_commands().items() if app.split(".")[0] in ("cirweb", "workers")}


def test_the_project_commands_are_the_ones_walked_below() -> None:
    assert set(project_commands()) == PROJECT_COMMANDS


RETRIEVAL = subparsers(build_parser())


@pytest.mark.parametrize("name", sorted(RETRIEVAL))
def test_every_retrieval_command_documents_each_option_and_shows_an_example(name: str) -> None:
    parser = RETRIEVAL[name]
    assert undocumented(parser) == [], name
    assert (parser.epilog or "").startswith("example:\n  python -m retrieval " + name), parser.epilog


def test_retrieval_help_lists_every_command_with_an_example() -> None:
    parser = build_parser()
    assert undocumented(parser) == []
    text = parser.format_help()
    assert all(name in text for name in RETRIEVAL) and "example:" in text
    assert set(RETRIEVAL) == set(COMMANDS)  # every command that runs is one that is documented


@pytest.mark.parametrize("name", sorted(PROJECT_COMMANDS))
def test_every_management_command_documents_each_option_and_shows_an_example(name: str) -> None:
    command = load_command_class(project_commands()[name], name)
    parser = command.create_parser("manage.py", name)
    assert undocumented(parser) == [], name
    assert (parser.epilog or "").startswith(f"example:\n  python manage.py {name}"), parser.epilog
    assert (command.help or "").strip(), name


def test_help_shows_defaults_and_choices() -> None:
    turn = RETRIEVAL["bench-turn"].format_help()
    assert "(default: 200)" in turn
    assert (
        "{auto,fp32,bf16,int8,bf16-int8,onnx-int8,fp32-compile,bf16-compile,int8-compile,bf16-int8-compile,onnx-int8-compile}"
        in turn
    )
    serve = load_command_class(project_commands()["serve"], "serve").create_parser("manage.py", "serve").format_help()
    assert "(default: 8000)" in serve and "example:\n  python manage.py serve --port" in serve
