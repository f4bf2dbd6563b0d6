"""What every dataset loader returns: the images of a split and its queries, in one shape.

Loaders check the layout first and name the missing path and the expected layout; annotation entries that
name images missing on disk are skipped and counted, never fatal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrieval.errors import DatasetError


@dataclass(frozen=True)
class Triplet:
    """One composed query: reference image + modification text -> target image.

    `target` is None where the split's answers are not published (CIRR test1). `group` is CIRR's img_set
    (the reference included), the candidates of Recall_subset. `captions` holds every phrasing the
    annotation offers (FashionIQ's two orders), `caption` the one used for evaluation.
    """

    pairid: int
    reference: str
    caption: str
    target: str | None
    group: tuple[str, ...] = ()
    captions: tuple[str, ...] = ()
    category: str = ""


@dataclass
class SplitData:
    """A split: image names -> files, and its queries."""

    dataset: str
    split: str
    images: dict[str, Path]
    triplets: list[Triplet]
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> how many annotation entries

    def report(self) -> str:
        text = f"{self.dataset} {self.split}: {len(self.triplets)} queries over {len(self.images)} images"
        if self.skipped:
            text += "; skipped " + ", ".join(f"{n} ({reason})" for reason, n in self.skipped.items())
        return text


def count_skip(skipped: dict[str, int], reason: str) -> None:
    skipped[reason] = skipped.get(reason, 0) + 1


def read_json(path: Path, what: str, layout: str) -> Any:
    """Parse an annotation file; a missing or broken one is a DatasetError naming it and the layout."""
    if not path.is_file():
        raise DatasetError(f"{what} {path} does not exist; {layout}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{what} {path} is not valid JSON ({exc})") from None
    except OSError as exc:
        raise DatasetError(f"{what} {path} cannot be read ({exc.strerror})") from None
