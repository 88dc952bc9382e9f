"""Writing files so that a kill or crash never leaves a half-written one under the real name.

Everything goes to a hidden temporary file in the same folder, is flushed to disk, and is renamed
into place; a failure removes the temporary file and leaves any older file untouched.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import signal
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

from camlit.errors import CamlitError

NAME_MAX = 255  # bytes in one file name, on every file system camlit writes to


def file_target(path: str | os.PathLike, option: str | None = None) -> Path:
    """Where a whole-file write to `path` lands: the file a symbolic link names (the link stays),
    else `path`. Refused where that is not a regular file: a file renamed over a device, a pipe or
    a link replaced it (as root, `--output /dev/null` left a CSV in place of the device)."""
    path = Path(path)
    named = f"{option} {path}" if option else str(path)
    if path.is_symlink():
        target = Path(os.path.realpath(path))
        if not target.is_file():
            raise CamlitError(f"{named}: a link to {target}, not to a regular file; name a file to write")
        return target
    if path.is_dir():
        raise CamlitError(f"{named}: is a folder; name a file")
    if path.exists() and not path.is_file():
        raise CamlitError(f"{named}: not a regular file (a device, a pipe or a socket); name a file to write")
    return path


def require_writable(path: str | os.PathLike, option: str, folder: bool = False) -> None:
    """Refuse, before any work, an output that could not be written, in one line naming `option`.

    A file is made in the nearest existing folder on the way and removed: permissions, a read-only
    mount and root's exemptions all answer as they will for the real write.
    """
    if not folder and str(path).endswith(("/", os.sep)):
        # Path() drops the separator: a file named like the folder meant was written.
        raise CamlitError(f"{option} {path}: ends with a separator, so names a folder; name a file to write")
    path = Path(path) if folder else file_target(path, option)
    if any(len(os.fsencode(part)) > NAME_MAX for part in path.parts):
        raise CamlitError(f"{option} {path}: a name in it is longer than the {NAME_MAX} bytes a file system holds")
    target = path if folder else path.parent
    existing = next(p for p in [target, *target.parents] if p.exists() or p.is_symlink())
    if not existing.exists():
        # The write's mkdir fails on it after the work (FileExistsError): the check looked past it.
        raise CamlitError(f"{option} {path}: {existing} is a link that leads nowhere, or back to itself")
    if not existing.is_dir():
        raise CamlitError(f"{option} {path}: {existing} is a file, not a folder")
    try:
        handle, probe = tempfile.mkstemp(dir=existing, prefix=".camlit-probe-")
    except OSError as error:
        raise CamlitError(f"{option} {path}: cannot write in {existing} ({error.strerror})") from None
    os.close(handle)
    os.unlink(probe)


TEMPORARY_NAME = re.compile(r"\.(?P<name>.+)\.tmp(?P<pid>\d+)")


def make_folders(folder: Path) -> list[Path]:
    """Makes `folder` level by level and returns the levels this call made, deepest first: never a
    folder that was there already, whatever `..` the path names or whoever makes one meanwhile."""
    made = []
    for level in reversed([folder, *folder.parents]):
        try:
            level.mkdir()
        except FileExistsError:
            continue
        made.append(level)
    return made[::-1]


def temporary_name(path: Path) -> Path:
    """`.<name>.tmp<pid>`, keeping the end of a name too long for that (the suffix
    `stale_temporaries` looks for): an output named with 244 bytes or more could not be written."""
    marks = f".tmp{os.getpid()}"
    name = os.fsencode(path.name)[-(NAME_MAX - 1 - len(marks)) :]
    return path.with_name(f".{os.fsdecode(name)}{marks}")


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process, or a pid out of range: not ours to judge
    # A killed worker stays a zombie until it is reaped; it writes nothing more.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def stale_temporaries(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """The temporary files `temporary_name` gave in `folder` for files ending in `suffixes`, whose
    writer is gone: a kill interrupted them. Others' files, and a live writer's, are left alone."""
    stale = []
    for path in folder.glob(".*.tmp*"):
        match = TEMPORARY_NAME.fullmatch(path.name)
        if match and match["name"].endswith(suffixes) and path.is_file() and not is_running(int(match["pid"])):
            stale.append(path)
    return stale


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """`with atomic_write(path) as file:` write to `file`; it becomes `path` only when the block ends."""
    path = file_target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_name(path)
    text = "b" not in mode
    try:
        # A file name that is not UTF-8 (the OS's bytes, decoded with surrogates) is written as those bytes.
        encoding = {"encoding": "utf-8", "errors": "surrogateescape", "newline": ""}
        with open(temporary, mode, **(encoding if text else {})) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except OSError as error:
        # Name the file meant, not its temporary (or none, as a failed write gives).
        error.filename = str(path)
        raise
    finally:
        # A read-only mount answers even this with EROFS; the write's own error is the one to raise.
        with suppress(OSError):
            temporary.unlink(missing_ok=True)


@contextmanager
def signals_held() -> Iterator[None]:
    """SIGTERM and SIGINT wait until the block ends: a stop between two renames of a set would
    leave a new file beside an older one. Their handlers are swapped for ones that only note the
    signal, rather than the signals blocked: a mask holds them in the main thread alone, and the
    kernel hands a signal sent to the process to any other thread (torch's, a progress bar's),
    whose note Python's handler then ran in the main thread between two renames."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted: list[int] = []
    previous = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        handler = signal.getsignal(signum)
        if handler is not None and handler != signal.SIG_IGN:  # None: set outside Python, left as it is
            previous[signum] = signal.signal(signum, lambda number, frame: noted.append(number))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(noted):
            signal.raise_signal(signum)  # to this thread: its handler runs now


def write_all_atomic(files: dict[Path, bytes]) -> None:
    """Every file whole, or none replaced: all are written and flushed to their temporaries first,
    and only then renamed into place, so a full disk leaves the older set as it was, and no folder
    this call made for them."""
    written: list[tuple[Path, Path]] = []
    made: list[Path] = []
    path, renamed = None, False
    try:
        for path, data in files.items():
            path = file_target(path)
            made += make_folders(path.parent)
            written.append((temporary_name(path), path))
            with open(written[-1][0], "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
        with signals_held():
            for temporary, path in written:
                os.replace(temporary, path)
        renamed = True
    except OSError as error:
        error.filename = str(path)
        raise
    finally:
        for temporary, _ in written:
            with suppress(OSError):
                temporary.unlink(missing_ok=True)
        if not renamed:
            for folder in sorted(made, key=lambda level: -len(level.parts)):  # one that holds anything stays
                with suppress(OSError):
                    folder.rmdir()


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_write(path) as file:
        file.write(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_write(path, "w") as file:
        file.write(text)


def read_json(path: str | os.PathLike):
    """The JSON value in the file at `path`. A ValueError for any text that is not JSON, nesting
    too deep for Python's parser included (a RecursionError, which no `except ValueError` caught)."""
    text = Path(path).read_text()
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError(f"{path}: JSON nested too deeply") from None


def json_text(value) -> str:
    """Strict JSON, indented, with every float that is not finite written as null."""
    return json.dumps(finite_or_null(value), indent=2, allow_nan=False) + "\n"


def write_json_atomic(path: str | os.PathLike, value) -> None:
    """`value` as JSON that every parser reads: NaN and the infinities (an AUROC of one kind of
    photo only, the score of a photo with no tile to judge) written as null."""
    write_text_atomic(path, json_text(value))


def finite_or_null(value):
    """`value` with every float that is not finite, however deep in dicts and lists, as None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_or_null(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_null(item) for item in value]
    return value


def csv_bytes(rows: Sequence[Sequence[str]]) -> bytes:
    """Rows as CSV; a value holding a comma, quote or line break is quoted, as every CSV reader
    expects. A file name that is not UTF-8 (the OS's bytes, decoded with surrogates) stays those bytes."""
    text = io.StringIO(newline="")
    plain = csv.writer(text, lineterminator="\n")
    # With "\n" as the line end, the writer quotes "\n" but not a lone "\r" (a file name may
    # hold one), which every reader takes for the end of a row.
    quoted = csv.writer(text, lineterminator="\n", quoting=csv.QUOTE_ALL)
    for row in rows:
        (quoted if any("\r" in str(value) for value in row) else plain).writerow(row)
    return text.getvalue().encode("utf-8", "surrogateescape")


def write_csv_atomic(path: str | os.PathLike, rows: Sequence[Sequence[str]]) -> None:
    write_bytes_atomic(path, csv_bytes(rows))
