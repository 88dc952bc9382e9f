"""Finding labelled photos on disk, checking them, and splitting them without leaking a photo.

Two layouts are read:

- ``root/<manipulation>/<camera>/*``: the seed's ``data-512``, one folder per manipulation;
- ``root/<camera>/*``: flat, every sample ``unaltered``.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from camlit.data.manipulations import UNALTERED
from camlit.errors import CamlitError
from camlit.imageio import MAX_PIXELS, UnreadableImage, list_images, read_rgb, too_small_problem
from camlit.workers import process_pool

# prepare_data names tiles <stem>_t<k>; they are pieces of one photo.
TILE_SUFFIX = re.compile(r"_t\d+$")


@dataclass(frozen=True)
class Sample:
    path: str
    label: int
    manipulation: str
    photo: str  # what ties the manipulated copies and tiles of one photo together


def manipulated_from_name(path: str | os.PathLike[str]) -> bool | None:
    """Kaggle's test naming: `img_<id>_manip.tif` is manipulated, `img_<id>_unalt.tif` is not;
    None when the name says neither."""
    stem = Path(path).stem
    if "_manip" in stem:
        return True
    if "_unalt" in stem:
        return False
    return None


def subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def camera_folders(root: Path, classes: Sequence[str]) -> list[tuple[str, Path]]:
    """(manipulation, camera folder) for every camera folder under `root`, in either layout.

    The layout is flat when a folder of `root` is a known camera. A folder that holds images
    itself is a camera folder too, so that a flat layout of other cameras is named as such.
    """
    folders = subfolders(root)
    if any(folder.name in classes for folder in folders):
        return [(UNALTERED, folder) for folder in folders]
    found = [(folder.name, camera) for folder in folders for camera in subfolders(folder)]
    return found + [(UNALTERED, folder) for folder in folders if list_images(folder)]


def unknown_cameras(folders: Sequence[tuple[str, Path]], classes: Sequence[str]) -> list[str]:
    return sorted({folder.name for _, folder in folders if folder.name not in classes})


def scan(root: str | Path, classes: Sequence[str]) -> list[Sample]:
    """Every image under `root` in either layout, labelled by its position in `classes`."""
    root = Path(root)
    if not root.is_dir():
        raise CamlitError(f"{root}: no such data folder")
    if not subfolders(root):
        raise CamlitError(f"{root}: no class or manipulation folders in it")
    folders = camera_folders(root, classes)
    unknown = unknown_cameras(folders, classes)
    if unknown:
        raise CamlitError(
            f"{root}: camera folder(s) {', '.join(unknown)} not in the class list ({', '.join(classes)}); "
            "set --data.classes or remove them"
        )
    samples = []
    for manipulation, class_folder in folders:
        label = classes.index(class_folder.name)
        for path in list_images(class_folder):
            photo = f"{class_folder.name}/{TILE_SUFFIX.sub('', path.stem)}"
            samples.append(Sample(str(path), label, manipulation, photo))
    if not samples:
        raise CamlitError(f"{root}: no images (.jpg .jpeg .png .tif .tiff .bmp) in its class folders")
    return samples


def require_every_class(samples: Sequence[Sample], classes: Sequence[str], where: str | Path) -> None:
    present = {s.label for s in samples}
    absent = [name for index, name in enumerate(classes) if index not in present]
    if absent:
        raise CamlitError(f"{where}: no usable images for class {', '.join(absent)}")


def split_by_photo(samples: Sequence[Sample], val_fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """A validation split stratified by class and grouped by photo, fixed by `seed`.

    All manipulated copies and tiles of a photo land on the same side, so no photo is seen in
    training and then scored in validation.
    """
    if not 0 < val_fraction < 1:
        raise CamlitError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    photos_by_class: dict[int, set[str]] = defaultdict(set)
    for sample in samples:
        photos_by_class[sample.label].add(sample.photo)
    rng = np.random.default_rng(seed)
    val_photos = set()
    for label in sorted(photos_by_class):
        photos = sorted(photos_by_class[label])
        count = min(len(photos) - 1, max(1, round(val_fraction * len(photos))))
        val_photos.update(rng.permutation(photos)[:count].tolist())
    train = [s for s in samples if s.photo not in val_photos]
    val = [s for s in samples if s.photo in val_photos]
    return train, val


def image_problem(path: str, min_size: int, max_pixels: int = MAX_PIXELS) -> str | None:
    """Why `path` cannot give a `min_size` crop, or None when it can."""
    try:
        image = read_rgb(path, max_pixels)
    except UnreadableImage as error:
        return str(error)
    return too_small_problem(path, *image.shape[:2], min_size)


def check_images(
    samples: Sequence[Sample], min_size: int, workers: int = 0, max_pixels: int = MAX_PIXELS
) -> tuple[list[Sample], list[str]]:
    """Decode every sample once; return the usable ones and one message per skipped file."""
    paths = [s.path for s in samples]
    if workers > 1 and len(paths) > 1:
        with process_pool(workers) as pool:
            sizes, limits = [min_size] * len(paths), [max_pixels] * len(paths)
            problems = list(pool.map(image_problem, paths, sizes, limits, chunksize=16))
    else:
        problems = [image_problem(path, min_size, max_pixels) for path in paths]
    usable = [s for s, problem in zip(samples, problems, strict=True) if problem is None]
    return usable, [p for p in problems if p is not None]
