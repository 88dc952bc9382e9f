"""Checkpoints that survive a kill, and finding the one to resume from."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO

from camlit.atomic import atomic_write
from camlit.errors import CamlitError

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file in the same folder, then renames it into place.

    A kill during a save leaves the previous file intact, never a truncated one.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if get_filesystem(path).protocol not in ("file", ("file", "local")):
            return super().save_checkpoint(checkpoint, path, storage_options)
        with atomic_write(path) as file:
            torch.save(checkpoint, file)


def is_valid_checkpoint(path: Path) -> bool:
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception:  # noqa: BLE001 - any failure to load means the file cannot be resumed from
        return False
    return isinstance(checkpoint, dict) and "state_dict" in checkpoint and "global_step" in checkpoint


def remove_stale_temporaries(folder: Path) -> None:
    """Temporary files of saves that a kill interrupted; the checkpoints beside them are whole."""
    for temporary in folder.glob(".*.ckpt.tmp*"):
        temporary.unlink(missing_ok=True)


def checked_checkpoint(path: str | Path) -> Path:
    path = Path(path)
    if not is_valid_checkpoint(path):
        raise CamlitError(f"{path}: corrupt or not a Lightning checkpoint; refusing to resume from it")
    return path


def find_resume_checkpoint(version_dir: str | Path) -> Path:
    """The newest loadable checkpoint of a run, preferring last.ckpt; say so when falling back."""
    folder = Path(version_dir) / "checkpoints"
    if folder.is_dir():
        remove_stale_temporaries(folder)
    candidates = sorted(folder.glob("*.ckpt"), key=lambda p: (p.stat().st_mtime, p.name == "last.ckpt"), reverse=True)
    if not candidates:
        raise CamlitError(f"{version_dir}: no checkpoint in {folder} to resume from")
    for candidate in candidates:
        if is_valid_checkpoint(candidate):
            if candidate != candidates[0]:
                log.warning("%s is corrupt; resuming from %s instead", candidates[0], candidate)
            return candidate
        log.warning("skipping corrupt checkpoint %s", candidate)
    raise CamlitError(f"{version_dir}: every checkpoint in {folder} is corrupt")
