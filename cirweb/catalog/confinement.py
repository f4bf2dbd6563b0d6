"""Where staff may point the product: collection sources under the source roots, model checkpoints under
the model roots (settings CIR_SOURCE_ROOTS and CIR_MODEL_ROOTS).

A collection publishes every image under its source to anonymous visitors, and a checkpoint is code as
much as data (a TorchScript archive runs when it is loaded), so neither may name an arbitrary file on the
server. The admin form shows these sentences; the index worker checks again before it reads anything, and
passes the model roots on to the engine, which refuses a checkpoint outside them.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from cirweb.files.locations import model_file, source_folder


def _roots(paths: list[Path]) -> str:
    return ", ".join(str(p) for p in paths) or "none configured"


def protected_folders() -> dict[Path, str]:
    """Folders of the product's own that no collection may include, with what they hold."""
    folders = {
        Path(settings.CIR_UPLOADS_DIR): "visitors' uploads",
        Path(settings.CIR_THUMBS_DIR): "thumbnails",
        Path(settings.CIR_COLLECTIONS_DIR): "index versions",
        Path(settings.CIR_CACHE_DIR): "index versions and uploads cached on this host",
    }
    store = str(settings.CIR_STORE_URL).removeprefix("file://")
    if "://" not in store:
        folders[Path(store)] = "the shared store (index versions, uploads)"
    for root in settings.CIR_MODEL_ROOTS:
        folders[Path(root)] = "model checkpoints"
    return {p.resolve(): what for p, what in folders.items()}


def source_root_problem(path: str) -> str | None:
    """Why a collection may not read from `path` (as staff typed it, or as stored), or None when it may."""
    if not path:
        return None  # "give the folder" is the layout check's sentence
    resolved = source_folder(path).resolve()
    roots = [Path(r).resolve() for r in settings.CIR_SOURCE_ROOTS]
    if not any(resolved.is_relative_to(root) for root in roots):
        return (
            f"{path} is outside the folders collections may be read from ({_roots(roots)}); move or link the "
            f"images there, or ask an administrator to add a folder to CIR_SOURCE_ROOTS"
        )
    for folder, what in protected_folders().items():
        if resolved.is_relative_to(folder) or folder.is_relative_to(resolved):
            return f"{path} would include {folder}, which holds {what}; a collection may not publish them"
    return None


def model_root_problem(path: str, what: str) -> str | None:
    """Why the checkpoint file at `path` (absolute, or as stored) may not be loaded, or None when it lies
    under a model root."""
    resolved = Path(model_file(path)).resolve()
    roots = [Path(r).resolve() for r in settings.CIR_MODEL_ROOTS]
    if any(resolved.is_relative_to(root) for root in roots):
        return None
    return (
        f"the {what} {path} is outside the model folders ({_roots(roots)}); checkpoints can run code when "
        f"loaded, so only files an administrator put there (CIR_MODEL_ROOTS) are used"
    )
