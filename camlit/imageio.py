"""Reading photos the way camera forensics needs them: pixels exactly as stored, as RGB uint8.

EXIF orientation is ignored, because rotating the pixels would move the CFA phase. Alpha is
dropped; 16-bit images are reduced to their high byte; grayscale images carry no colour-filter
trace and are refused.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from camlit.atomic import write_bytes_atomic
from camlit.errors import CamlitError

# camlit's parallelism is its worker processes. OpenCV's own thread pool would oversubscribe the
# cores, and a pool alive in a process when it forks (a DataLoader, a process pool) can deadlock
# the child. Every camlit process imports this module before it decodes or forks.
cv2.setNumThreads(1)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"})
# IMREAD_UNCHANGED keeps the channel count and bit depth visible and, like
# IMREAD_IGNORE_ORIENTATION, never applies EXIF rotation.
READ_FLAGS = cv2.IMREAD_UNCHANGED


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
    """Image files directly in `folder`, by extension without regard to case, sorted by name.

    A broken link with an image's name is listed too, so that reading it names it as unusable.
    """
    return sorted(p for p in Path(folder).iterdir() if (p.is_file() or p.is_symlink()) and is_image_file(p))


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Decode `path` to an HxWx3 uint8 RGB array, or raise UnreadableImage saying why."""
    try:
        if os.path.getsize(path) == 0:
            raise UnreadableImage(f"{path}: empty file")
        # imdecode from bytes, because imread cannot open non-ASCII paths on every platform.
        data = np.fromfile(path, dtype=np.uint8)
        if is_truncated_jpeg(data):
            raise UnreadableImage(f"{path}: truncated JPEG (no end-of-image marker)")
        image = cv2.imdecode(data, READ_FLAGS)
    except OSError as error:
        if os.path.islink(path) and not os.path.exists(path):
            raise UnreadableImage(f"{path}: broken symbolic link to {os.readlink(path)}") from None
        raise UnreadableImage(f"{path}: {error.strerror or error}") from None
    except cv2.error:
        image = None
    if image is None:
        raise UnreadableImage(f"{path}: not a decodable image")
    return to_rgb8(image, path)


def is_truncated_jpeg(data: np.ndarray) -> bool:
    """A JPEG whose end-of-image marker is missing; libjpeg would pad it with grey silently."""
    if len(data) < 4 or data[0] != 0xFF or data[1] != 0xD8:
        return False
    tail = data[-64:].tobytes().rstrip(b"\x00")
    return b"\xff\xd9" not in tail


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


def write_image_atomic(path: str | os.PathLike, rgb: np.ndarray, params: list[int] | None = None) -> None:
    """Encode RGB `rgb` by the file's extension and write it via a temporary file and a rename."""
    path = Path(path)
    ok, encoded = cv2.imencode(path.suffix, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params or [])
    if not ok:
        raise ValueError(f"{path}: OpenCV could not encode this image")
    write_bytes_atomic(path, encoded.tobytes())
