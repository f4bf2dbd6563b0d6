"""What every command's `--help` shows, for `python -m retrieval` and `manage.py` alike: each option's
default, examples kept as written at the end (tests/web/test_command_help.py walks every parser)."""

from __future__ import annotations

import argparse


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and examples kept as written; "(default: ...)" after every option whose default is worth
    showing (not after required options, flags, or options whose help already says what None means)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "%(default)" in text or action.required or default in (None, False, argparse.SUPPRESS, []):
            return text
        if isinstance(default, list):
            return f"{text} (default: {' '.join(map(str, default))})"
        return f"{text} (default: %(default)s)"


def examples(*lines: str) -> str:
    """The epilog that ends a command's help: its example command lines."""
    return "example:\n" + "".join(f"  {line.strip()}\n" for line in lines if line.strip())
