"""The decoded-image cache's own files (camlit.data.cache) and the locks that keep its builders
and readers apart: a builder holds the folder's lock, a reader a shared lock on its data file,
and a builder removes another fingerprint's files only where it can lock that data file alone.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

try:
    import fcntl
except ImportError:  # Windows: builders there are not serialised
    fcntl = None

log = logging.getLogger(__name__)

LOCK = ".camlit-cache.lock"
# Everything the cache writes, temporaries (camlit.atomic) included; nothing else is ever removed.
OWN_FILE = re.compile(r"\.?(?P<kind>images|index)-(?P<key>[0-9a-f]{16})\.(u8|npz)(?P<temporary>\.tmp\d+)?")


def data_name(key: str) -> str:
    return f"images-{key[:16]}.u8"


def index_name(key: str) -> str:
    return f"index-{key[:16]}.npz"


def read_lock(handle: IO[bytes]) -> None:
    """Hold a shared lock on an open data file while it is read: no builder removes it meanwhile."""
    if fcntl is not None:
        fcntl.flock(handle, fcntl.LOCK_SH)


@contextmanager
def build_lock(directory: Path) -> Iterator[None]:
    """Serialise builders that share `directory`, such as each node's rank 0 on a shared file system.

    The holder writes its process id into the lock file, so that a waiter can say whom it waits for.
    """
    with open(directory / LOCK, "a+") as handle:
        if fcntl is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "unknown"
                log.warning("waiting for process %s, which holds %s while it builds the cache", holder, handle.name)
                fcntl.flock(handle, fcntl.LOCK_EX)
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
        yield


def remove_stale(directory: Path, key: str) -> None:
    """The cache's own files of other fingerprints that no process reads, and dead builds' temporaries.

    The build lock excludes live builders, so every temporary file is a dead one's.
    """
    others: dict[str, list[Path]] = {}
    for path in directory.iterdir():
        match = OWN_FILE.fullmatch(path.name)
        if match is not None and match["temporary"]:
            path.unlink(missing_ok=True)
        elif match is not None and match["key"] != key[:16]:
            others.setdefault(match["key"], []).append(path)
    for other, paths in others.items():
        with unread(directory / data_name(other)) as removable:
            # Index first, so that no reader finds an index without its data file.
            for path in sorted(paths, key=lambda p: p.name.startswith("images")) if removable else []:
                with suppress(OSError):  # a process on Windows still maps it; it stays
                    path.unlink()


@contextmanager
def unread(data_path: Path) -> Iterator[bool]:
    """Whether no process reads this data file (holds its shared lock), excluding readers until the block ends."""
    if fcntl is None or not data_path.exists():
        yield True
        return
    with open(data_path, "rb") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
