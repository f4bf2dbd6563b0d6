"""Checks of a collection's source and models that the web process can make before anything is queued.

The web never loads the engine, so these read only the file system: the layout a loader will expect, and
that named checkpoint files exist. What needs the weights (a Combiner whose dimension does not match the
encoder) is checked by the index worker before it touches anything, and reported on the job.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cirweb.catalog.confinement import model_root_problem, source_root_problem
from cirweb.files.locations import KNOWN_CLIP_MODELS, is_model_path, model_file, source_folder

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp")
SPLITS = {"cirr": ("train", "val", "test1"), "shapes": ("train", "val", "test1"), "fashioniq": ("train", "val", "test")}


def _json_problem(path: Path, what: str, kind: type) -> str | None:
    if not path.is_file():
        return f"{what} {path} does not exist"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return f"{what} {path} cannot be read as JSON ({exc.__class__.__name__}: {exc})"
    if not isinstance(data, kind):
        return f"{what} {path} does not hold a JSON {'list' if kind is list else 'object'}"
    return None


def folder_problem(path: Path) -> str | None:
    if not path.is_dir():
        return f"the folder {path} does not exist"
    seen = 0
    for _, dirs, files in os.walk(path):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        if any(f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith(".") for f in files):
            return None
        seen += len(files)
        if seen > 200_000:
            break
    return f"the folder {path} holds no images (looked for {', '.join(IMAGE_EXTENSIONS)})"


def source_problem(source: str, path: str, split: str) -> str | None:
    """A sentence saying what is wrong with a collection's source, or None when it looks usable."""
    root = source_folder(path)
    if not path:
        return "give the folder or dataset root"
    if confined := source_root_problem(path):
        return confined
    if source == "folder":
        return folder_problem(root)
    if source not in SPLITS:
        return f"unknown source {source!r}"
    if split not in SPLITS[source]:
        return f"the {source} split must be one of {', '.join(SPLITS[source])}"
    if not root.is_dir():
        return f"the dataset root {root} does not exist"
    if source in ("cirr", "shapes"):
        problem = _json_problem(
            root / "cirr" / "captions" / f"cap.rc2.{split}.json", "the caption file", list
        ) or _json_problem(root / "cirr" / "image_splits" / f"split.rc2.{split}.json", "the image split file", dict)
        if problem is None and source == "shapes":
            problem = _json_problem(root / "shapes" / f"scenes.{split}.json", "the scene file", dict)
        return problem
    categories = [
        c for c in ("dress", "shirt", "toptee") if (root / "image_splits" / f"split.{c}.{split}.json").is_file()
    ]
    if not categories:
        return f"{root}/image_splits holds no split.<dress|shirt|toptee>.{split}.json"
    for category in categories:
        problem = _json_problem(root / "image_splits" / f"split.{category}.{split}.json", "the image split file", list)
        if problem:
            return problem
    return None if (root / "images").is_dir() else f"the image folder {root / 'images'} does not exist"


def model_problem(encoder: str, combiner: str) -> str | None:
    encoder_is_file = is_model_path(encoder)
    if encoder_is_file and (confined := model_root_problem(encoder, "CLIP model")):
        return confined
    if combiner and combiner != "sum" and (confined := model_root_problem(combiner, "Combiner checkpoint")):
        return confined
    if encoder_is_file and not Path(model_file(encoder)).is_file():
        return (
            f"the CLIP model {encoder!r} is neither a checkpoint file that exists nor one of "
            f"{', '.join(KNOWN_CLIP_MODELS)}"
        )
    if combiner and combiner != "sum" and not Path(model_file(combiner)).is_file():
        return f"the Combiner checkpoint {combiner} does not exist (or write 'sum' for no Combiner)"
    return None
