"""Checkpoints that survive a kill, that prove their integrity, and finding the one to resume from.

Every checkpoint gets a `<name>.sha256` beside it with the hash of its bytes. The hash file may list
two hashes: while a save is being renamed into place, the old file's and the new one's, so a kill
at any moment leaves a checkpoint that matches its hash file.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import pickle
import zipfile
from contextlib import suppress
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO

from camlit.atomic import atomic_write, read_json, write_text_atomic
from camlit.errors import CamlitError

log = logging.getLogger(__name__)


def hash_path(path: str | os.PathLike) -> Path:
    path = linked_file(path)
    return path.with_name(path.name + ".sha256")


def linked_file(path: str | os.PathLike) -> Path:
    """The checkpoint a link leads to, whose files (hash, calibrations) lie beside it, not the link."""
    path = Path(path)
    return Path(os.path.realpath(path)) if path.is_symlink() else path


# What `camlit calibrate` keeps beside a checkpoint: the open-set and the splice calibrations.
UNKNOWN_CALIBRATION, SPLICE_CALIBRATION = ".unknown.npz", ".splice.json"
# Where each calibration records the hash of the checkpoint it was set on.
CHECKPOINT_HASH = "checkpoint_sha256"


def beside(checkpoint: str | os.PathLike, suffix: str) -> Path:
    """`<checkpoint stem><suffix>` in the checkpoint's folder (the linked file's, for a link)."""
    checkpoint = linked_file(checkpoint)
    return checkpoint.with_name(checkpoint.stem + suffix)


def sidecars(checkpoint: str | os.PathLike) -> list[Path]:
    """The files camlit keeps beside a checkpoint and reads with it."""
    return [hash_path(checkpoint), beside(checkpoint, UNKNOWN_CALIBRATION), beside(checkpoint, SPLICE_CALIBRATION)]


def file_hash(path: str | os.PathLike) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def require_calibrated_for(checkpoint: str | os.PathLike, recorded: str, calibration: Path, option: str = "") -> None:
    """A calibration beside a checkpoint records the hash of the one it was set on (CHECKPOINT_HASH);
    beside another (last.ckpt written again by a resumed run, another run's file copied in), its
    thresholds are another model's. A calibration older than the record is taken as it is."""
    if recorded and recorded != file_hash(checkpoint):
        prefix = f"{option}: " if option else ""
        raise CamlitError(
            f"{prefix}{calibration} was set on another checkpoint than {checkpoint} (its bytes have changed "
            f"since, or the file was copied from another run); run `camlit calibrate --ckpt_path {checkpoint}` again"
        )


def recorded_checkpoint(calibration: Path) -> str:
    """The checkpoint hash a calibration file records, or "" where it records none or is unreadable."""
    with suppress(OSError, ValueError, KeyError, TypeError, AttributeError, EOFError, zipfile.BadZipFile):
        if calibration.suffix == ".npz":
            with np.load(calibration, allow_pickle=False) as data:
                return str(data[CHECKPOINT_HASH])
        return str(read_json(calibration)[CHECKPOINT_HASH])
    return ""


def require_calibrations_not_of_a_sibling(
    checkpoint: str | os.PathLike, calibrations: list[Path], checkpoint_hash: str
) -> None:
    """Refuse to replace calibrations set on another file of the checkpoint's stem: `best.ckpt` and
    `best.pt` share `best.unknown.npz`, and calibrating one replaced the other's without a word."""
    recorded = {recorded_checkpoint(path) for path in calibrations if path.is_file()} - {"", checkpoint_hash}
    if not recorded:
        return
    checkpoint = linked_file(checkpoint)
    for sibling in sorted(checkpoint.parent.glob(glob.escape(checkpoint.stem) + ".*")):
        ours = sibling in (checkpoint, *sidecars(checkpoint)) or sibling.name.endswith(".sha256")
        if not ours and sibling.is_file() and file_hash(sibling) in recorded:
            raise CamlitError(
                f"--ckpt_path {checkpoint}: the calibration beside it ({', '.join(p.name for p in calibrations)}) "
                f"is {sibling.name}'s, which shares its stem; calibrate a copy of the checkpoint under another name"
            )


def require_checkpoint_files(folder: Path) -> None:
    """A run renames its checkpoints and their hashes into place, and no rename replaces a folder:
    one named like them failed the first save, after an epoch's work and with the run folder changed."""
    for path in sorted([*folder.glob("*.ckpt"), *folder.glob("*.ckpt.sha256")]):
        if path.is_dir() and not path.is_symlink():
            raise CamlitError(f"{path}: a folder where the run writes a checkpoint; move it away, then run again")


def stored_hashes(path: str | os.PathLike) -> list[str] | None:
    """The hashes the hash file accepts, or None for a checkpoint without one (written elsewhere)."""
    try:
        return hash_path(path).read_text().split()
    except FileNotFoundError:
        return None


def hash_of_file_there(path: str | os.PathLike) -> list[str]:
    """The hash of the file now at `path`, as its hash file holds it. One hash is that file's; two
    (a save killed between its hash and its rename) need the file read to tell which: the first
    is the save's that never landed, and kept in its place, a second kill declared the intact file
    corrupt."""
    if not os.path.exists(path):
        return []
    stored = stored_hashes(path) or []
    if len(stored) < 2:
        return stored
    actual = file_hash(path)
    return [actual] if actual in stored else []


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file in the same folder, then renames it into place.

    A kill during a save leaves the previous file intact, never a truncated one. Loading never
    unpickles anything but plain data. `run_dir`: the run folder the checkpoints go into, which a
    save never makes again.
    """

    def __init__(self, run_dir: str | os.PathLike | None = None):
        super().__init__()
        self.run_dir = Path(run_dir) if run_dir is not None else None

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if get_filesystem(path).protocol not in ("file", ("file", "local")):
            return super().save_checkpoint(checkpoint, path, storage_options)
        if self.run_dir is not None and not self.run_dir.is_dir():
            # Moved or removed while the run ran: the save made it again, a second half of the
            # run, or failed in a traceback.
            raise CamlitError(f"{self.run_dir}: moved or removed while the run wrote into it; no checkpoint written")
        with atomic_write(path) as file:
            writer = ErrorKeepingWriter(file)
            try:
                torch.save(checkpoint, writer)
            except RuntimeError:
                # torch's zip writer reports a failed write as "unexpected pos"; the cause (a full
                # disk, say) is the OSError the file raised, which names the file once re-raised.
                if writer.error is None:
                    raise
                raise writer.error from None
            file.flush()
            new = file_hash(file.name)
            write_text_atomic(hash_path(path), "\n".join([new, *hash_of_file_there(path)]) + "\n")
        write_text_atomic(hash_path(path), new + "\n")

    def load_checkpoint(self, path, map_location: Any | None = None, weights_only: bool | None = None) -> dict:
        return load_plain(path, map_location or "cpu")

    def remove_checkpoint(self, path) -> None:
        super().remove_checkpoint(path)
        hash_path(path).unlink(missing_ok=True)


class ErrorKeepingWriter:
    """The file torch.save writes through, keeping the OSError that torch would turn into a RuntimeError."""

    def __init__(self, file):
        self.file = file
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self.file.write(data)
        except OSError as error:
            self.error = error
            raise

    def flush(self) -> None:
        self.file.flush()


def load_plain(path: str | os.PathLike, map_location: Any = "cpu", mmap: bool = False) -> dict:
    """torch.load that refuses any object but plain data, and any file that fails its hash."""
    verify_hash(path)
    # torch maps only its zip format; a legacy-format file (torch.save(..., _use_new_zipfile_serialization=False))
    # is read whole instead of refused with torch's message about mmap.
    mmap = mmap and zipfile.is_zipfile(path)
    try:
        # camlit's checkpoints hold only tensors, numbers, strings, lists and dicts, which weights_only
        # accepts without an allow-list; anything else could run code when unpickled.
        checkpoint = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:
        # torch's message: a paragraph on weights_only, then the line naming the refused object.
        lines = [line for line in str(error).splitlines() if "GLOBAL" in line]
        if not lines:
            raise  # not a refused object but bytes that are no pickle: the caller's "corrupt"
        raise CamlitError(
            f"{path}: holds objects other than plain data, refusing to load it (loading it could run code): {lines[0]}"
        ) from None
    if not isinstance(checkpoint, dict):
        # Lightning's reader indexed it as one, with a torch warning line before the error.
        raise CamlitError(f"{path}: holds a {type(checkpoint).__name__}, not a checkpoint's dict")
    refuse_named_code(checkpoint, path)
    return checkpoint


# Lightning's load_from_checkpoint imports and calls the function a checkpoint's `_instantiator`
# names, which imports the class `_class_path` names: in a shared file, strings that run code.
NAMED_CODE = {
    "_instantiator": "lightning.pytorch.cli.instantiate_module",
    "_class_path": "camlit.training.module.CameraClassifier",
}


def refuse_named_code(checkpoint: Any, path: str | os.PathLike) -> None:
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    for key, allowed in NAMED_CODE.items():
        named = hparams.get(key, allowed) if isinstance(hparams, dict) else allowed
        if named != allowed:
            raise CamlitError(f"{path}: hyper_parameters.{key} names code to run ({named}); refusing to load it")


def verify_hash(path: str | os.PathLike) -> None:
    accepted = stored_hashes(path)
    if accepted is not None and file_hash(path) not in accepted:
        raise CamlitError(f"{path}: corrupt (its bytes do not match {hash_path(path).name})")


def is_valid_checkpoint(path: Path) -> bool:
    return training_progress(path) is not None


def training_progress(path: Path) -> tuple[int, int] | None:
    """(global step, epoch) of a checkpoint that loads and matches its hash; None otherwise."""
    return progress_of(loaded_checkpoint(path))


def loaded_checkpoint(path: Path) -> dict | None:
    """A Lightning checkpoint that loads (memory-mapped) and matches its hash; None otherwise."""
    try:
        checkpoint = load_plain(path, mmap=True)
    except Exception:  # noqa: BLE001 - any failure to load means the file cannot be resumed from
        return None
    return checkpoint if is_lightning_checkpoint(checkpoint) else None


def progress_of(checkpoint: dict | None) -> tuple[int, int] | None:
    return None if checkpoint is None else (int(checkpoint["global_step"]), int(checkpoint.get("epoch", 0)))


def is_lightning_checkpoint(checkpoint: Any) -> bool:
    return isinstance(checkpoint, dict) and "state_dict" in checkpoint and "global_step" in checkpoint
