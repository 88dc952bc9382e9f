"""A run's version folder: claimed by one new run, locked by the one process that runs in it.

The lock is an flock on `.camlit.lock` in the folder, held from before the run changes anything
until the process ends, however it ends (the kernel drops it with the process). It works between
processes on one machine and on network file systems that support flock; the file names the
holder so that a refused second run can say who has the folder.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from camlit.atomic import make_folders
from camlit.errors import CamlitError

LOCK_NAME = ".camlit.lock"
NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


@contextmanager
def writable(folder: Path, option: str) -> Iterator[None]:
    """A folder that cannot be written ends as one line naming it, before any work."""
    try:
        yield
    except OSError as error:
        if error.errno not in NOT_WRITABLE:
            raise
        raise CamlitError(f"{folder}: cannot write the run there ({error.strerror}); choose another {option}") from None


def claim_version(root: Path) -> tuple[int, list[Path], RunLock | None]:
    """The next free N for `root`/version_N, created here: mkdir fails when another run took it first.
    Also the folders of `root` this call made, deepest first, for a failed start to remove, and
    the run's lock when the last version_N is taken over from a run killed before it wrote anything."""
    with writable(root, "--trainer.default_root_dir"):
        made = make_folders(root)
        taken = [int(p.name[8:]) for p in root.glob("version_*") if p.name[8:].isdigit()]
        version = max(taken, default=-1) + 1
        if taken and (lock := abandoned_lock(root / f"version_{version - 1}")):
            return version - 1, made, lock
        while True:
            try:
                (root / f"version_{version}").mkdir()
                return version, made, None
            except FileExistsError:
                version += 1


def abandoned_lock(folder: Path) -> RunLock | None:
    """`folder`'s lock, now held, when it is all the folder holds and its holder is gone: a run
    killed (SIGKILL, a power cut) before it wrote anything but its lock.

    The lock names its holder only once held, so an empty lock file may be a run starting now and
    is left alone; a named one that nobody holds was left by a process that ended."""
    lock_file = folder / LOCK_NAME
    try:
        alone = [entry.name for entry in folder.iterdir()] == [LOCK_NAME]
        if not alone or lock_file.is_symlink() or not lock_file.is_file() or not lock_file.stat().st_size:
            return None
        return RunLock(folder)
    except (OSError, CamlitError):
        return None  # gone meanwhile, not ours to write, or held: a live run's folder


# What a run writes in its folder (besides TensorBoard's event files, which it only creates).
RUN_FILES = (LOCK_NAME, "config.yaml", "hparams.yaml", "checkpoints")


def require_no_links(folder: Path) -> None:
    """A run writes its files in its folder: through a link there (a shared or copied run folder),
    a resume truncated or replaced the file it leads to, outside the run, even when then refused."""
    checkpoints = folder / "checkpoints"
    inside = sorted(checkpoints.iterdir()) if checkpoints.is_dir() and not checkpoints.is_symlink() else []
    for path in [*(folder / name for name in RUN_FILES), *inside]:
        if path.is_symlink():
            raise CamlitError(
                f"{path}: a link, and the run writes its own files in its folder, not through links; "
                "put the file itself there (or resume a copy of the run)"
            )


class RunLock:
    """Holds `folder`'s lock from construction to `release()` (or the end of the process)."""

    def __init__(self, folder: Path):
        self.path = folder / LOCK_NAME
        self.descriptor: int | None = None
        require_no_links(folder)
        with writable(folder, "run folder"):
            try:
                self.descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            except IsADirectoryError:
                raise CamlitError(f"{self.path}: a folder where the run keeps its lock file; move it away") from None
        try:
            fcntl.flock(self.descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(self.descriptor, 200).decode(errors="replace").strip() or "unknown"
            self.release()
            raise CamlitError(
                f"{folder}: the run is in use by process {holder} (it holds {self.path}); "
                "wait for that process to end, or stop it"
            ) from None
        os.ftruncate(self.descriptor, 0)
        os.write(self.descriptor, f"{os.getpid()} on {socket.gethostname()}\n".encode())

    def release(self) -> None:
        if self.descriptor is not None:
            os.close(self.descriptor)  # closing drops the flock
            self.descriptor = None
