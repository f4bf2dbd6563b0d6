"""Where the database's paths point on this host: every path it stores is relative to a root the settings
name, so a data directory built in one place serves unchanged from another (another CIR_DATA_DIR, another
mount point of the sources, another host).

- `Collection.source_path`: relative to the first of CIR_SOURCE_ROOTS that holds it (``shapes-world``
  for ``$CIR_DATA_DIR/worlds/shapes-world``);
- `Image.path`: relative to its collection's source folder (for a folder source, its `relpath`; a dataset's
  annotation may name a file elsewhere, ``../images/x.png``, which the image view refuses to serve);
- checkpoints named by `Collection.encoder` / `.combiner`, `IndexVersion.encoder` / `.combiner`: relative
  to the first of CIR_MODEL_ROOTS that holds them; model names (``RN50x4``), ``random:<arch>`` and ``sum``
  are not paths and stay as they are;
- `Upload.file`: relative to CIR_UPLOADS_DIR (and its key in the shared store is ``uploads/<file>``);
- `IndexVersion.path`: a key of the shared store (cirweb/files/storage.py).

"The first root that holds it" means that two roots holding the same relative name resolve to the first:
roots are listed in the same order on every host. Absolute values (rows written before this module, or a
path outside every root, which confinement then refuses) are used as they are.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from django.conf import settings

KNOWN_CLIP_MODELS = (
    "RN50",
    "RN101",
    "RN50x4",
    "RN50x16",
    "RN50x64",
    "ViT-B/32",
    "ViT-B/16",
    "ViT-L/14",
    "ViT-L/14@336px",
)  # the names `clip.load` knows (retrieval.models.clip_weights.ARCHITECTURES)

Roots = Sequence[str | Path]


def root_relative(path: str, roots: Roots) -> str:
    """What to store for `path`: relative to the first root it lies in (as written, else with its links
    followed); a relative path is taken as already stored; a path outside every root is kept absolute."""
    if not path or not Path(path).expanduser().is_absolute():
        return path
    given = Path(os.path.normpath(Path(path).expanduser()))
    for candidate in (given, given.resolve()):
        for root in roots:
            for base in (Path(root), Path(root).resolve()):
                if candidate.is_relative_to(base):
                    return candidate.relative_to(base).as_posix()
    return path


def under_roots(stored: str, roots: Roots) -> Path:
    """The local path of a stored root-relative path: under the first root that holds it, else under the
    first root (so a message names a plausible place); absolute values as they are."""
    path = Path(stored).expanduser()
    if path.is_absolute() or not roots:
        return path
    for root in roots:
        if (Path(root) / path).exists():
            return Path(root) / path
    return Path(roots[0]) / path


# --- Collections' sources and their images ---------------------------------------------------------------


def source_stored(path: str) -> str:
    """What `Collection.source_path` stores for the folder staff typed (absolute or root-relative)."""
    return root_relative(path.strip(), settings.CIR_SOURCE_ROOTS)


def source_folder(stored: str) -> Path:
    """The local folder (or dataset root) of a collection's `source_path`."""
    return under_roots(stored, settings.CIR_SOURCE_ROOTS)


def image_stored(path: str, folder: Path) -> str:
    """What `Image.path` stores for a file a scan of the source `folder` found."""
    return Path(os.path.relpath(path, folder)).as_posix() if Path(path).is_absolute() else path


def image_file(stored: str, folder: Path) -> Path:
    """The local file of an `Image.path`, given its collection's local source folder."""
    return folder / stored  # an absolute `stored` (a legacy row) wins over `folder`


# --- Model checkpoints -----------------------------------------------------------------------------------


def is_model_path(spec: str) -> bool:
    """Whether a model spec names a checkpoint file (not a CLIP name, `random:<arch>`, `sum` or nothing)."""
    return bool(spec) and spec != "sum" and not spec.startswith("random:") and spec not in KNOWN_CLIP_MODELS


def model_stored(spec: str, roots: Roots | None = None) -> str:
    """What the database stores for a model spec: checkpoints relative to the model roots."""
    spec = spec.strip()
    if not is_model_path(spec):
        return spec
    return root_relative(spec, settings.CIR_MODEL_ROOTS if roots is None else roots)


def model_file(spec: str, roots: Roots | None = None) -> str:
    """The spec to load on this host: a stored checkpoint as a local path, anything else unchanged."""
    if not is_model_path(spec):
        return spec
    return str(under_roots(spec, settings.CIR_MODEL_ROOTS if roots is None else roots))


def collection_locations(*, source_path: str, encoder: str, combiner: str) -> dict[str, str]:
    """A collection's paths as the database keeps them, from what staff typed on this host."""
    return {
        "source_path": source_stored(source_path),
        "encoder": model_stored(encoder),
        "combiner": model_stored(combiner),
    }
