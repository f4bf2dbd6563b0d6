"""Listing a collection's source (a folder, or a dataset split) as `SourceImage`s for the catalog, each
with its path relative to the source folder (what `Image.path` stores), its alt text and, on a shapes
collection, requests worth suggesting with it as the reference. Both need the engine (the scene graphs and
their wording), which the web process never imports: they are made here, at a reindex, and stored."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from cirweb.catalog.confinement import source_root_problem
from cirweb.catalog.models import Collection, file_alt
from cirweb.catalog.services import SourceImage
from cirweb.files.locations import image_stored, source_folder
from retrieval.datasets import load_dataset
from retrieval.datasets.folder import scan_folder
from retrieval.datasets.shapes import Scene, describe, scene_from_json
from retrieval.datasets.shapes_suggestions import one_edit_requests
from retrieval.errors import DatasetError


def source_listing(collection: Collection) -> tuple[list[SourceImage], dict[str, int]]:
    """Every image the source holds now, and the annotation entries skipped (reason -> how many). Raises
    DatasetError (with the path and layout) when it cannot be read, or may not be (outside the source roots)."""
    kind, root = collection.source, source_folder(collection.source_path)
    if problem := source_root_problem(collection.source_path):  # the admin form checked; settings may change
        raise DatasetError(f"this collection's source cannot be read: {problem}")
    if kind == Collection.Source.FOLDER:
        files = scan_folder(root)
        return [
            SourceImage(f.relpath, image_stored(str(f.path), root), f.size, f.mtime_ns, description=file_alt(f.relpath))
            for f in files
        ], {}
    if kind not in (Collection.Source.CIRR, Collection.Source.FASHIONIQ, Collection.Source.SHAPES):
        raise DatasetError(f"unknown collection source {kind!r}")
    data = load_dataset(kind, root, collection.source_split or "val", check_images=True)
    if not data.images:
        raise DatasetError(
            f"the {collection.source_split or 'val'} split under {root} lists no image that exists on disk"
        )
    scenes = _shapes_scenes(root, collection.source_split or "val") if kind == Collection.Source.SHAPES else {}
    listing = []
    for name, path in sorted(data.images.items()):
        try:
            st = os.stat(path)
        except OSError:
            continue
        stored = image_stored(str(path), root)
        listing.append(
            SourceImage(name, stored, st.st_size, st.st_mtime_ns, scenes.get(name, {}), description=file_alt(str(path)))
        )
    if kind == Collection.Source.SHAPES:
        listing = _described_scenes(listing)
    return listing, dict(data.skipped)


def _described_scenes(listing: list[SourceImage]) -> list[SourceImage]:
    """Each picture's scene in words, and requests whose exact result is another picture of the listing (so
    a suggestion always has its answer in the collection); a picture without a readable scene keeps its name."""
    scenes: dict[str, Scene] = {}
    for image in listing:
        try:
            scenes[image.relpath] = scene_from_json(image.attributes["objects"])
        except (KeyError, TypeError, ValueError):
            continue
    requests = one_edit_requests(scenes)
    return [
        replace(image, description=describe(scene), suggestions=[r.text for r in requests[image.relpath]])
        if (scene := scenes.get(image.relpath)) is not None
        else image
        for image in listing
    ]


def _shapes_scenes(root: Path, split: str) -> dict[str, dict]:
    import json

    path = root / "shapes" / f"scenes.{split}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
