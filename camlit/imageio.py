"""Reading photos the way camera forensics needs them: pixels exactly as stored, as RGB uint8.

EXIF orientation is ignored, because rotating the pixels would move the CFA phase. Alpha is
dropped; 16-bit images are reduced to their high byte; grayscale images (with alpha too) carry
no colour-filter trace and are refused, as are palette PNGs, whose colours are a table's. The
size in the header is read first, and an image over `max_pixels` is refused before it is decoded:
a 1 MB PNG can claim 20000x20000 pixels, 1.2 GB once decoded.
"""

from __future__ import annotations

import errno
import io
import os
import re
import stat
import zlib
from pathlib import Path

import cv2
import numpy as np

from camlit.atomic import write_bytes_atomic
from camlit.errors import CamlitError

# camlit's parallelism is its worker processes. OpenCV's own thread pool would oversubscribe the
# cores, and a pool alive in a process when it forks (a DataLoader, a process pool) can deadlock
# the child. Every camlit process imports this module before it decodes or forks.
cv2.setNumThreads(1)
# A damaged TIFF made OpenCV print its own `[ERROR:0@...]` lines above camlit's one `error:` line
# naming the file; its log is silenced (a decoder that fails still returns None, which camlit reports).
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"})
# IMREAD_UNCHANGED keeps the channel count and bit depth visible and, like
# IMREAD_IGNORE_ORIENTATION, applies no EXIF rotation to a JPEG or PNG. OpenCV's TIFF decoder
# applies the Orientation tag whatever the flags: read_rgb turns those pixels back (as_stored).
READ_FLAGS = cv2.IMREAD_UNCHANGED
TIFF_ORIENTATION = 274
BIGTIFF_MAGIC = (b"II+\x00", b"MM\x00+")
TIFF_MAGIC = (b"II*\x00", b"MM\x00*", *BIGTIFF_MAGIC)
# What undoes OpenCV's turn for each Orientation value (1, none, is left out); 6 and 8 are the
# two quarter turns, each undone by the other, and the rest undo themselves.
UNDO_ORIENTATION = {
    2: lambda image: image[:, ::-1],
    3: lambda image: image[::-1, ::-1],
    4: lambda image: image[::-1],
    5: lambda image: image.swapaxes(0, 1),
    6: lambda image: np.rot90(image, 1),
    7: lambda image: image[::-1, ::-1].swapaxes(0, 1),
    8: lambda image: np.rot90(image, -1),
}
# Pillow's decompression-bomb limit (about 89 MP); Kaggle's largest photos are about 24 MP.
MAX_PIXELS = 89_478_485
# The most an image within the pixel limit takes on disk: four 32-bit channels, uncompressed, and
# its header and metadata.
MOST_BYTES_PER_PIXEL = 16
HEADER_BYTES = 2**24
# JPEG start-of-frame markers, which carry the size; C4, C8 and CC are other segments.
JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length: TEM and the restarts.
JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
# A marker: 0xFF, any fill bytes, a code (libjpeg skips stray bytes between segments, as this does).
JPEG_MARKER = re.compile(rb"\xff+([^\x00\xff])")
# In a scan, 0xFF 0x00 is a stuffed data byte and 0xFF 0xD0-D7 a restart; anything else ends it.
JPEG_SCAN_END = re.compile(rb"\xff(?=[^\x00\xd0-\xd7])")


class UnreadableImage(CamlitError):
    """An image file that cannot be used; the message names the file and the reason."""


class ImageTooSmall(UnreadableImage):
    """A readable image smaller than the crop asked of it."""


def require_crop_fits(path: str | os.PathLike, height: int, width: int, size: int) -> None:
    """Raise ImageTooSmall unless an image of this shape gives a `size` crop."""
    if min(height, width) < size:
        raise ImageTooSmall(f"{path}: {width}x{height} is smaller than the {size}x{size} crop")


def is_image_file(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Every entry directly in `folder` with an image's name (by extension, without regard to case), sorted.

    A folder, pipe or broken link with an image's name is listed too, so that reading it names it
    as unusable rather than a submission silently lacking its row.
    """
    return sorted(p for p in Path(folder).iterdir() if is_image_file(p))


def read_rgb(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode `path` to an HxWx3 uint8 RGB array, or raise UnreadableImage saying why."""
    try:
        status = os.stat(path)
        if not stat.S_ISREG(status.st_mode):
            # A device reads as 0 bytes ("empty file") or without end; a pipe waits for a writer.
            what = "a folder" if stat.S_ISDIR(status.st_mode) else "not a regular file (a device, a pipe or a socket)"
            raise UnreadableImage(f"{path}: {what}")
        size = status.st_size
        if size == 0:
            raise UnreadableImage(f"{path}: empty file")
        if size > max_pixels * MOST_BYTES_PER_PIXEL + HEADER_BYTES:
            # A file whose header gives no size is read whole: a 30 GB video named .jpg was killed
            # for memory, each loader worker holding its own copy, with no line saying why.
            raise UnreadableImage(
                f"{path}: {size:,} bytes, more than any image within the limit of {max_pixels:,} pixels takes "
                "(max_pixels raises it)"
            )
        shape = header_shape(path)
        if shape is not None:
            require_pixels_within(path, *shape, max_pixels)
        # imdecode from bytes, because imread cannot open non-ASCII paths on every platform.
        data = np.fromfile(path, dtype=np.uint8)
        if is_truncated_jpeg(data):
            raise UnreadableImage(f"{path}: truncated JPEG (no end-of-image marker)")
        require_png_colour(data, path)
        image = cv2.imdecode(data, READ_FLAGS)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise UnreadableImage(f"{path}: links that lead round in a loop") from None
        if os.path.islink(path) and not os.path.exists(path):
            raise UnreadableImage(f"{path}: broken symbolic link to {os.readlink(path)}") from None
        raise UnreadableImage(f"{path}: {error.strerror or error}") from None
    except cv2.error:
        image = None
    if image is None:
        raise UnreadableImage(f"{path}: not a decodable image")
    require_pixels_within(path, *image.shape[:2], max_pixels)  # a format whose header is not read here
    return to_rgb8(as_stored(image, data), path)


def as_stored(image: np.ndarray, data: np.ndarray) -> np.ndarray:
    """The decoded `image` of the file `data` as its pixels are stored: a TIFF's Orientation tag,
    which OpenCV applies, turned back. The traces camlit reads sit on the sensor's own grid."""
    magic = bytes(data[:4])
    if magic not in TIFF_MAGIC:
        return image
    with io.BytesIO(data.tobytes()) as file:
        orientation = tiff_tags(file, magic).get(TIFF_ORIENTATION, 1)
    undo = UNDO_ORIENTATION.get(orientation)
    return np.ascontiguousarray(undo(image)) if undo else image


def require_pixels_within(path: str | os.PathLike, height: int, width: int, max_pixels: int) -> None:
    if height * width > max_pixels:
        raise UnreadableImage(
            f"{path}: {width}x{height} is {height * width:,} pixels, over the limit of {max_pixels:,} "
            "(max_pixels raises it)"
        )


def header_shape(path: str | os.PathLike) -> tuple[int, int] | None:
    """(height, width) from a PNG, JPEG, TIFF or BMP header, without decoding; None when not found."""
    try:
        with open(path, "rb") as file:
            head = file.read(26)
            if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
                shape = int.from_bytes(head[20:24], "big"), int.from_bytes(head[16:20], "big")
            elif head.startswith(b"\xff\xd8"):
                shape = jpeg_shape(file)
            elif head[:4] in TIFF_MAGIC:
                shape = tiff_shape(file, head[:4])
            elif head.startswith(b"BM") and len(head) == 26:
                shape = abs(int.from_bytes(head[22:26], "little", signed=True)), int.from_bytes(head[18:22], "little")
            else:
                shape = None
    except OSError:
        return None
    return shape if shape is not None and min(shape) > 0 else None


def jpeg_shape(file) -> tuple[int, int] | None:
    """(height, width) from the start-of-frame segment, walking the segments before it."""
    file.seek(2)
    while (marker := next_jpeg_marker(file)) is not None:
        if marker in JPEG_STANDALONE:
            continue
        length = int.from_bytes(file.read(2), "big")
        if marker in JPEG_SOF:
            sof = file.read(5)
            return (int.from_bytes(sof[1:3], "big"), int.from_bytes(sof[3:5], "big")) if len(sof) == 5 else None
        if length < 2:
            return None
        file.seek(length - 2, os.SEEK_CUR)
    return None


def next_jpeg_marker(file) -> int | None:
    """The code of the marker at the file's position, after any 0xFF fill bytes (a JPEG may put
    them before any marker); None where no marker is there."""
    if file.read(1) != b"\xff":
        return None
    while (code := file.read(1)) == b"\xff":
        pass
    return code[0] if code else None


def tiff_shape(file, magic: bytes) -> tuple[int, int] | None:
    """ImageLength and ImageWidth (tags 257, 256) of the first image in a TIFF."""
    found = tiff_tags(file, magic)
    return (found[257], found[256]) if 256 in found and 257 in found else None


def tiff_tags(file, magic: bytes) -> dict[int, int]:
    """The single SHORT, LONG or LONG8 values of the first image's tags, in a classic TIFF or a
    BigTIFF (8-byte offsets and counts, 20-byte entries), as `magic` (the first 4 bytes) says."""
    order = "little" if magic[:2] == b"II" else "big"
    big = magic in BIGTIFF_MAGIC
    offset_bytes, entry_bytes = (8, 20) if big else (4, 12)
    file.seek(8 if big else 4)
    file.seek(int.from_bytes(file.read(offset_bytes), order))
    found = {}
    for _ in range(int.from_bytes(file.read(8 if big else 2), order)):
        entry = file.read(entry_bytes)
        if len(entry) < entry_bytes:
            break
        tag, kind = int.from_bytes(entry[:2], order), int.from_bytes(entry[2:4], order)
        count = int.from_bytes(entry[4 : 4 + offset_bytes], order)
        value = entry[4 + offset_bytes :]
        sizes = {3: 2, 4: 4, 16: 8}  # SHORT, LONG, LONG8
        if kind in sizes and count == 1:
            found[tag] = int.from_bytes(value[: sizes[kind]], order)
    return found


def require_png_colour(data: np.ndarray, path: str | os.PathLike) -> None:
    """Refuse a grey PNG that OpenCV would expand to colour (grey with alpha), and a palette PNG."""
    if data[:8].tobytes() != b"\x89PNG\r\n\x1a\n" or data[12:16].tobytes() != b"IHDR" or len(data) < 26:
        return
    if data[25] in (0, 4):
        raise UnreadableImage(f"{path}: grayscale image, no colour channels")
    if data[25] == 3:
        raise UnreadableImage(f"{path}: palette image; its colours are a table's, not a camera's pixels")


def is_truncated_jpeg(data: np.ndarray) -> bool:
    """A JPEG whose segments and scans end before its end-of-image marker; libjpeg would pad it with
    grey silently. Data after the marker (a phone's trailer, a motion photo's video) is no harm."""
    if len(data) < 4 or data[0] != 0xFF or data[1] != 0xD8:
        return False
    view, position = memoryview(data), 2
    while (found := JPEG_MARKER.search(view, position)) is not None:
        marker = found.group()[-1]
        if marker == 0xD9:
            return False
        position = found.end()
        if marker in JPEG_STANDALONE:
            continue
        position += int.from_bytes(view[position : position + 2], "big")
        if position > len(view):
            return True  # cut inside a segment
        if marker == 0xDA:  # a scan: its entropy-coded data runs to the next marker that is not a restart
            found = JPEG_SCAN_END.search(view, position)
            if found is None:
                return True
            position = found.start()
    return True


def to_rgb8(image: np.ndarray, path: str | os.PathLike = "<array>") -> np.ndarray:
    """Bring a decoded OpenCV array (BGR, BGRA, 8 or 16 bit) to RGB uint8."""
    if image.ndim == 2 or image.shape[2] == 1:
        raise UnreadableImage(f"{path}: grayscale image, no colour channels")
    if image.shape[2] not in (3, 4):
        raise UnreadableImage(f"{path}: {image.shape[2]}-channel image")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise UnreadableImage(f"{path}: unsupported pixel type {image.dtype}")
    code = cv2.COLOR_BGRA2RGB if image.shape[2] == 4 else cv2.COLOR_BGR2RGB
    return cv2.cvtColor(image, code)


def encoded_image(path: str | os.PathLike, image: np.ndarray, params: list[int] | None = None) -> bytes:
    """RGB `image` (or a single-channel one) encoded by the file's extension."""
    path = Path(path)
    pixels = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    ok, encoded = cv2.imencode(path.suffix, pixels, params or [])
    if not ok:
        raise ValueError(f"{path}: OpenCV could not encode this image")
    return encoded.tobytes()


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def with_png_text(png: bytes, keyword: str, text: str) -> bytes:
    """An encoded PNG with a tEXt chunk after its header: a mark of who wrote it."""
    data = keyword.encode("latin-1") + b"\0" + text.encode("latin-1")
    chunk = len(data).to_bytes(4, "big") + b"tEXt" + data
    chunk += zlib.crc32(chunk[4:]).to_bytes(4, "big")
    end_of_header = len(PNG_SIGNATURE) + 8 + 13 + 4  # the signature, then IHDR: length, type, 13 bytes, CRC
    return png[:end_of_header] + chunk + png[end_of_header:]


def png_text(path: str | os.PathLike, keyword: str) -> str | None:
    """The text of a PNG's first tEXt chunk of `keyword` among its first 64 KiB; None where there is none."""
    try:
        with open(path, "rb") as file:
            head = file.read(65536)
    except OSError:
        return None
    if not head.startswith(PNG_SIGNATURE):
        return None
    offset = len(PNG_SIGNATURE)
    while offset + 8 <= len(head):
        length, kind = int.from_bytes(head[offset : offset + 4], "big"), head[offset + 4 : offset + 8]
        if kind == b"tEXt":
            name, _, text = head[offset + 8 : offset + 8 + length].partition(b"\0")
            if name == keyword.encode("latin-1"):
                return text.decode("latin-1")
        if kind == b"IDAT":
            return None
        offset += 12 + length
    return None


def write_image_atomic(path: str | os.PathLike, rgb: np.ndarray, params: list[int] | None = None) -> None:
    """Encode RGB `rgb` by the file's extension and write it via a temporary file and a rename."""
    write_bytes_atomic(path, encoded_image(path, rgb, params))
