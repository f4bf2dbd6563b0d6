"""CIRR test-server files: the answers to a split without published targets (test1), in the format CIRR's
evaluation server (and CLIP4Cir's `cirr_test_submission.py`) uses:

  recall_submission_<name>.json         {"version": "rc2", "metric": "recall", "<pairid>": [50 names], ...}
  recall_subset_submission_<name>.json  {"version": "rc2", "metric": "recall_subset", "<pairid>": [3 names], ...}

The reference image is never among a query's answers, in either file.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from retrieval.datasets.base import SplitData, Triplet
from retrieval.errors import DatasetError
from retrieval.evaluation.recall import Gallery, encode_gallery, query_features, ranked
from retrieval.fusion.fuser import Fuser, Mode
from retrieval.models.clip_encoder import ClipEncoder
from retrieval.vectors import normalize

VERSION = "rc2"
RECALL_TOP = 50
SUBSET_TOP = 3


def write_cirr_submission(
    encoder: ClipEncoder,
    fuser: Fuser,
    data: SplitData,
    out_dir: Path,
    mode: Mode = Mode.COMBINER,
    name: str | None = None,
    show_progress: bool = True,
) -> tuple[Path, Path]:
    """Rank the split's images for each of its queries and write the two submission files into `out_dir`.

    `name` ends the file names; it defaults to the dataset's name ("cirr", "shapes"). Returns the paths of
    the recall file and the recall_subset file.
    """
    gallery = encode_gallery(encoder, data.images, show_progress=show_progress)
    unreadable = [t.reference for t in data.triplets if t.reference not in gallery.index]
    if unreadable:
        raise DatasetError(
            f"{len(unreadable)} query reference images could not be read (e.g. {unreadable[0]}); "
            "a submission must answer every query"
        )
    if len(gallery.names) <= RECALL_TOP:
        raise DatasetError(
            f"a CIRR submission lists {RECALL_TOP} images per query besides its reference, but "
            f"{data.dataset} {data.split} has only {len(gallery.names)} readable images"
        )
    queries = query_features(encoder, fuser, gallery, data.triplets, mode)
    top = ranked(queries, gallery, [t.reference for t in data.triplets], top=RECALL_TOP)
    recall: dict[str, Any] = {"version": VERSION, "metric": "recall"}
    recall |= {str(t.pairid): [gallery.names[r] for r in rows] for t, rows in zip(data.triplets, top, strict=True)}
    subset: dict[str, Any] = {"version": VERSION, "metric": "recall_subset"}
    subset |= {
        str(t.pairid): names
        for t, names in zip(data.triplets, subset_top(queries, gallery, data.triplets), strict=True)
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    label = name or data.dataset
    paths = out_dir / f"recall_submission_{label}.json", out_dir / f"recall_subset_submission_{label}.json"
    write_json_atomic(paths[0], recall)
    write_json_atomic(paths[1], subset)
    return paths


def subset_top(queries: NDArray[np.float32], gallery: Gallery, triplets: Sequence[Triplet]) -> list[list[str]]:
    """The best `SUBSET_TOP` members of each query's img_set, its reference removed."""
    features = normalize(gallery.features)
    out = []
    for query, triplet in zip(queries, triplets, strict=True):
        members = [m for m in dict.fromkeys(triplet.group) if m != triplet.reference and m in gallery.index]
        scores = features[gallery.rows(members)] @ query
        out.append([members[i] for i in np.argsort(-scores, kind="stable")[:SUBSET_TOP]])
    return out


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj))
    tmp.replace(path)


def validate_cirr_submission(path_recall: Path, path_subset: Path, data: SplitData) -> list[str]:
    """Problems that would make the evaluation server reject or misscore the files; empty when they are fine."""
    problems: list[str] = []
    files = []
    for path, metric in ((path_recall, "recall"), (path_subset, "recall_subset")):
        try:
            obj = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            problems.append(f"{path} cannot be read as JSON ({exc})")
            continue
        if not isinstance(obj, dict):
            problems.append(f"{path} does not hold a JSON object")
            continue
        if obj.get("version") != VERSION or obj.get("metric") != metric:
            problems.append(f"{path} should say version {VERSION!r} and metric {metric!r}")
        files.append((path, metric, obj))
    pairids = {str(t.pairid) for t in data.triplets}
    for path, metric, obj in files:
        extra = sorted(set(obj) - pairids - {"version", "metric"})
        if extra:
            problems.append(f"{path} answers {len(extra)} pairids the split does not have (e.g. {extra[0]})")
        for triplet in data.triplets:
            key = str(triplet.pairid)
            if key not in obj:
                problems.append(f"{path} has no answer for pairid {key}")
                continue
            allowed: Collection[str] = data.images.keys() if metric == "recall" else set(triplet.group)
            count = RECALL_TOP if metric == "recall" else SUBSET_TOP
            problems += answer_problems(f"{path} pairid {key}", obj[key], allowed, triplet.reference, count)
    return problems


def answer_problems(where: str, answer: Any, allowed: Collection[str], reference: str, count: int) -> list[str]:
    """What is wrong with one query's list of names: `count` distinct allowed names, never the reference."""
    if not isinstance(answer, list) or not all(isinstance(n, str) for n in answer):
        return [f"{where}: expected a list of image names"]
    problems = []
    if len(answer) != count:
        problems.append(f"{where}: {len(answer)} names instead of {count}")
    if len(set(answer)) != len(answer):
        problems.append(f"{where}: names repeat")
    if reference in answer:
        problems.append(f"{where}: includes the reference {reference}")
    outside = [n for n in answer if n not in allowed and n != reference]
    if outside:
        problems.append(f"{where}: {outside[0]} is not among the allowed images")
    return problems
