"""What every management command's `--help` shows (issue 14, item 6): each option's default, the fixed
values as choices, and an example at the end. Commands subclass `DocumentedCommand` and set `example`;
tests/web/test_command_help.py walks every command's parser and checks it."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser, DjangoHelpFormatter
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor

from foundation.command_help import HelpFormatter, examples


class CommandHelpFormatter(DjangoHelpFormatter, HelpFormatter):
    """The house's help (`foundation.command_help`) in Django's order: the command's own options first."""


class DocumentedCommand(BaseCommand):
    example: str = ""  # one or more command lines, shown under "example:" at the end of --help

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        kwargs.setdefault("formatter_class", CommandHelpFormatter)
        kwargs.setdefault("epilog", examples(*self.example.strip().splitlines()))
        return super().create_parser(prog_name, subcommand, **kwargs)


def require_migrated_database(then: str) -> None:
    """Stop a command that serves or uses the product when the database is not migrated: otherwise every
    page and task fails with "no such table" tracebacks while /healthz still says the database answers."""
    connection = connections[DEFAULT_DB_ALIAS]
    executor = MigrationExecutor(connection)
    pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if pending:
        name = connection.settings_dict["NAME"]
        raise CommandError(
            f"The database ({name}) has {len(pending)} migration(s) not applied yet. Run "
            f"`python manage.py bootstrap_demo` (the demo collection) or `python manage.py migrate`, then {then}."
        )
