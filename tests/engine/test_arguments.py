"""The command line's fixed lists mirror the engine's own (kept apart so `--help` never imports torch or
Faiss): each pair is compared here, so a new mode, dataset or index type cannot be missing from the choices."""

from __future__ import annotations

import pytest

from retrieval import arguments
from retrieval.datasets import DATASETS
from retrieval.fusion.fuser import Mode
from retrieval.index.faiss_index import INDEX_TYPES
from retrieval.models.precision import PRECISION_NAMES


def test_the_command_lines_choices_are_the_engines() -> None:
    assert [m.value for m in Mode] == arguments.MODES
    assert list(DATASETS) == arguments.DATASETS
    assert list(INDEX_TYPES) == arguments.INDEX_TYPES
    assert ["auto", *PRECISION_NAMES] == arguments.PRECISIONS


def test_an_unknown_choice_is_refused_with_the_valid_ones(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        arguments.build_parser().parse_args(["bench-index", "--types", "annoy"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "'annoy'" in err and all(f"'{t}'" in err for t in INDEX_TYPES)
