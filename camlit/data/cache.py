"""The decoded-image cache: every photo decoded once into one memory-mapped file, FFCV-style.

In `cache_dir`:

- ``images-<fingerprint>.u8``: the RGB uint8 pixels of every usable image, back to back;
- ``index-<fingerprint>.npz``: per source file its absolute path, byte offset, height, width and
  the CRC-32 of its pixels, or why it is unusable (the message samples.check_images gives, and
  whether it is too small), and
  the fingerprint;
- ``.camlit-cache.lock``: held by the process that builds, naming it.

The cache removes only files of exactly these names (and their temporaries), never others in the
folder, and never the data file of another fingerprint while a process reads it: every reader
holds a shared lock on its data file, and a builder removes only the files it can lock alone.

Reading an image gives an HxWx3 view into the memory map; a crop slices it, so only the crop's
rows are touched and copied, and nothing is decoded in the training loop. The price is disk:
height x width x 3 bytes per image.

Damage in place (a data file overwritten with zeros keeps its size) is found by the CRC-32: the
first time a process reads an image, all of that image's bytes are checked, once; a mismatch is
an error naming the data file. The cost is one pass over each image per process (see the
benchmark's "checked / unchecked cache loader" ratio), then nothing.

The fingerprint covers every source file's path, size and mtime_ns, the crop size (which
decides what is too small) and the pixel limit (what is too large), so an edited, added or
removed file rebuilds the cache. The index is written last, by rename, and names the data file of
its own fingerprint: a build that dies half way leaves the previous complete cache or none, never
a mixture. The decode workers inherit no
open file, such as the lock, and die with their parent (camlit.workers): a killed build holds none.
"""

from __future__ import annotations

import hashlib
import logging
import os
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from camlit.atomic import atomic_write
from camlit.data.cache_files import LOCK, build_lock, data_name, index_name, read_lock, remove_stale
from camlit.data.samples import Sample
from camlit.errors import CamlitError, disk_full_as_user_error
from camlit.imageio import MAX_PIXELS, ImageTooSmall, UnreadableImage, read_rgb, require_crop_fits
from camlit.workers import in_parallel

log = logging.getLogger(__name__)

# Goes up when the files or the reader's pixels or verdicts change: 3 reads JPEGs with data after
# their end marker, which 2 recorded as truncated and skipped; 4 reads a TIFF as stored whatever
# its Orientation tag, which 3 held turned as OpenCV returned it.
FORMAT = 4
# Images per pool task; with 2 x workers tasks in flight (in_parallel), at most 8 x workers decoded images are held.
CHUNK = 4


def fingerprint(paths: Sequence[str], crop_size: int, max_pixels: int = MAX_PIXELS) -> str:
    """Hash of the sorted (absolute path, size, mtime_ns) of `paths`, the crop size and the pixel limit."""
    digest = hashlib.sha256(f"camlit cache format {FORMAT}, crop {crop_size}, limit {max_pixels}\n".encode())
    for path in sorted({os.path.abspath(p) for p in paths}):
        try:
            stat = os.stat(path)
            size, mtime = stat.st_size, stat.st_mtime_ns
        except OSError:  # gone since the scan: the build will record it as unreadable
            size = mtime = -1
        digest.update(f"{path}\t{size}\t{mtime}\n".encode(errors="surrogateescape"))
    return digest.hexdigest()


class DamagedCache(CamlitError):
    """A cache data file whose bytes no longer match its index."""


class DecodedCache:
    """A built cache, read-only: call it with a path for that image as an HxWx3 uint8 view."""

    def __init__(
        self,
        data_path: Path,
        entries: dict[str, tuple[int, int, int, int]],
        problems: dict[str, UnreadableImage],
        hold,
    ):
        self.data_path = data_path
        self.entries = entries  # absolute path -> (offset, height, width, CRC-32)
        self.problems = problems
        self.data: np.ndarray | None = None
        self.verified: set[str] = set()  # images whose checksum this process has checked
        # The data file, open with a shared lock: no other builder removes it while this lives.
        self.hold = hold

    def __call__(self, path: str) -> np.ndarray:
        key = os.path.abspath(path)
        offset, height, width, checksum = self.entries[key]
        if self.data is None:
            # Mapped on first use in each process, as a plain ndarray: slicing a np.memmap costs more.
            self.data = np.memmap(self.data_path, dtype=np.uint8, mode="r").view(np.ndarray)
        pixels = self.data[offset : offset + height * width * 3]
        if key not in self.verified:
            if zlib.crc32(pixels) != checksum:
                raise DamagedCache(
                    f"{self.data_path}: damaged, the pixels of {path} do not match their checksum; "
                    "delete this file and its index to rebuild the cache"
                )
            self.verified.add(key)
        return pixels.reshape(height, width, 3)

    def __getstate__(self) -> dict:
        # A loader worker started by spawn maps the file itself rather than receive its bytes,
        # and checks what it reads itself; its parent keeps the lock.
        return {**self.__dict__, "data": None, "hold": None, "verified": set()}

    def check(self, samples: Sequence[Sample]) -> tuple[list[Sample], list[UnreadableImage]]:
        """samples.check_images from the index: the usable samples and the problem of each skipped file."""
        problems = [self.problems.get(os.path.abspath(s.path)) for s in samples]
        usable = [s for s, problem in zip(samples, problems, strict=True) if problem is None]
        return usable, [p for p in problems if p is not None]


def open_cache(
    directory: str | Path, paths: Sequence[str], crop_size: int, max_pixels: int = MAX_PIXELS
) -> DecodedCache | None:
    """The cache of exactly these files at this crop size, or None when it is missing or stale."""
    return load(Path(directory), fingerprint(paths, crop_size, max_pixels))


def build_cache(
    directory: str | Path, paths: Sequence[str], crop_size: int, workers: int = 0, max_pixels: int = MAX_PIXELS
) -> DecodedCache:
    """Make `directory` hold the cache of `paths`, decoding them only when it does not already."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # A file listed twice (train_dir also given as val_dir) is decoded and stored once.
    paths = list({os.path.abspath(p): p for p in paths}.values())
    key = fingerprint(paths, crop_size, max_pixels)
    require_files_or_absent(directory / LOCK, directory / data_name(key), directory / index_name(key))
    intact = f"the cache in {directory} is as it was; free space there or choose another cache_dir, and rerun"
    with disk_full_as_user_error(intact, directory / LOCK), build_lock(directory):
        # Another builder may have finished while this one waited for the lock.
        cache = load(directory, key)
        if cache is None:
            log.info("decoding %d images into the cache in %s", len(paths), directory)
            write_cache(directory, paths, crop_size, max_pixels, workers, key)
            cache = load(directory, key)
        # Also when nothing was built: an older cache a finished run was reading may be free now.
        remove_stale(directory, key)
    return cache


def require_files_or_absent(*paths: Path) -> None:
    """The cache writes these names by rename; something else in their place is the user's, and stays."""
    for path in paths:
        if path.exists() and not path.is_file():
            raise CamlitError(
                f"{path}: not a file, but the cache writes there; move it away or choose another cache_dir"
            )


def load(directory: Path, key: str) -> DecodedCache | None:
    hold = None
    try:
        with np.load(directory / index_name(key), allow_pickle=False) as index:
            if str(index["fingerprint"]) != key:
                return None
            data_path = directory / data_name(key)
            hold = open(data_path, "rb")
            read_lock(hold)
            # Removed by another builder between the open and the lock: as good as absent.
            stat = os.fstat(hold.fileno())
            if stat.st_nlink == 0 or stat.st_size != int(index["data_bytes"]):
                hold.close()
                return None
            paths = index["paths"].tolist()
            columns = ("offsets", "heights", "widths", "checksums")
            places = zip(*(index[column].tolist() for column in columns), strict=True)
            problems = index["problems"].tolist()
            too_small = index["too_small"].tolist()
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):  # absent or unreadable: build it anew
        if hold is not None:
            hold.close()
        return None
    entries, unusable = {}, {}
    for path, place, problem, small in zip(paths, places, problems, too_small, strict=True):
        if problem:
            unusable[path] = (ImageTooSmall if small else UnreadableImage)(problem)
        else:
            entries[path] = place
    return DecodedCache(data_path, entries, unusable, hold)


def write_cache(directory: Path, paths: Sequence[str], crop_size: int, max_pixels: int, workers: int, key: str) -> None:
    data_path = directory / data_name(key)
    offsets, heights, widths, checksums, problems, too_small = [], [], [], [], [], []
    offset = 0
    with atomic_write(data_path) as out:
        for result in decoded(paths, crop_size, max_pixels, workers):
            if isinstance(result, UnreadableImage):
                place, problem = (0, 0, 0, 0), str(result)
            else:
                out.write(result.data)
                place, problem = (offset, *result.shape[:2], zlib.crc32(result.data)), ""
                offset += result.nbytes
            for column, value in zip((offsets, heights, widths, checksums), place, strict=True):
                column.append(value)
            problems.append(problem)
            too_small.append(isinstance(result, ImageTooSmall))
    write_index(
        directory / index_name(key),
        paths=np.array([os.path.abspath(p) for p in paths], dtype=str),
        offsets=np.array(offsets, dtype=np.int64),
        heights=np.array(heights, dtype=np.int32),
        widths=np.array(widths, dtype=np.int32),
        checksums=np.array(checksums, dtype=np.uint32),
        problems=np.array(problems, dtype=str),
        too_small=np.array(too_small, dtype=bool),
        fingerprint=np.array(key),
        data_bytes=np.array(offset, dtype=np.int64),
    )
    log.info("cache ready: %d images, %.2f GB, %d unusable", len(paths), offset / 1e9, sum(map(bool, problems)))


def write_index(path: Path, **arrays: np.ndarray) -> None:
    """The index goes last and by rename: until it is in place, no reader uses the new data file."""
    with atomic_write(path) as out:
        np.savez(out, **arrays)


def decoded(
    paths: Sequence[str], crop_size: int, max_pixels: int, workers: int
) -> Iterator[np.ndarray | UnreadableImage]:
    """Each path's RGB array, or why it is unusable, in order; decoded by `workers` processes."""
    chunks = [(paths[start : start + CHUNK], crop_size, max_pixels) for start in range(0, len(paths), CHUNK)]
    for results in in_parallel(decode_chunk, chunks, workers):
        yield from results


def decode_chunk(
    paths: Sequence[str], min_size: int, max_pixels: int = MAX_PIXELS
) -> list[np.ndarray | UnreadableImage]:
    results = []
    for path in paths:
        try:
            image = read_rgb(path, max_pixels)
            require_crop_fits(path, *image.shape[:2], min_size)
        except UnreadableImage as problem:
            image = problem
        results.append(image)
    return results
