"""Finding labelled photos on disk, checking them, and splitting them without leaking a photo.

Two layouts are read:

- ``root/<manipulation>/<camera>/*``: the seed's ``data-512``, one folder per manipulation;
- ``root/<camera>/*``: flat, every sample ``unaltered``.
"""

from __future__ import annotations

import logging
import os
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from lightning.pytorch.utilities import rank_zero_only

from camlit.data.manipulations import NAMES, UNALTERED
from camlit.errors import CamlitError, not_a_folder
from camlit.imageio import MAX_PIXELS, ImageTooSmall, UnreadableImage, list_images, read_rgb, require_crop_fits
from camlit.workers import in_parallel

log = logging.getLogger(__name__)

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


def is_scanned_folder(folder: Path, root: Path) -> bool:
    """Whether `scan` of `root` reads `folder` as a camera's or a manipulation's: `root` itself,
    or a folder one or two levels down, none of them hidden (subfolders passes those over)."""
    folder, root = folder.resolve(), root.resolve()
    if not folder.is_relative_to(root):
        return False
    parts = folder.relative_to(root).parts
    return len(parts) <= 2 and not any(part.startswith(".") for part in parts)


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


def scan(root: str | Path, classes: Sequence[str], remedy: str = "set --data.classes or remove them") -> list[Sample]:
    """Every image under `root` in either layout, labelled by its position in `classes`; `remedy`
    ends the error for camera folders outside them."""
    root = Path(root)
    if not root.is_dir():
        raise CamlitError(f"{root}: {not_a_folder(root)}")
    if not subfolders(root):
        raise CamlitError(f"{root}: no class or manipulation folders in it")
    folders = camera_folders(root, classes)
    odd = sorted({manipulation for manipulation, _ in folders if manipulation not in NAMES})
    if odd:
        # Trained on as manipulated photos of no known kind: a Kaggle download's train/ read as one.
        raise CamlitError(
            f"{root}: manipulation folder(s) {', '.join(odd)} not among camlit's ({', '.join(NAMES)}); give the "
            f"folder of the camera folders (such as {root / odd[0]}) or a prepared data-512/"
        )
    unknown = unknown_cameras(folders, classes)
    if unknown:
        raise CamlitError(
            f"{root}: camera folder(s) {', '.join(unknown)} not in the class list ({', '.join(classes)}); {remedy}"
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


def image_problem(path: str, min_size: int, max_pixels: int = MAX_PIXELS) -> UnreadableImage | None:
    """Why `path` cannot give a `min_size` crop (ImageTooSmall when it is readable), or None when it can."""
    try:
        require_crop_fits(path, *read_rgb(path, max_pixels).shape[:2], min_size)
    except UnreadableImage as problem:
        return problem
    return None


def check_images(
    samples: Sequence[Sample], min_size: int, workers: int = 0, max_pixels: int = MAX_PIXELS
) -> tuple[list[Sample], list[UnreadableImage]]:
    """Decode every sample once; return the usable ones and the problem of each skipped file."""
    problems = list(in_parallel(image_problem, [(s.path, min_size, max_pixels) for s in samples], workers))
    usable = [s for s, problem in zip(samples, problems, strict=True) if problem is None]
    return usable, [p for p in problems if p is not None]


def usable_samples(
    samples: list[Sample],
    where: str,
    crop_size: int,
    check: Callable[[list[Sample]], tuple[list[Sample], list[UnreadableImage]]],
) -> list[Sample]:
    """The samples `check` (check_images, or a cache's check) finds usable, the others logged as
    skipped; an error naming `where` when none is."""
    usable, problems = check(samples)
    if usable:
        report_skipped(problems)
        return usable
    too_small = sum(isinstance(problem, ImageTooSmall) for problem in problems)
    if too_small == len(samples):
        # One line says it all; naming every image would bury it.
        raise CamlitError(f"--data.crop_size {crop_size} is larger than every image in {where}")
    report_skipped(problems)
    if too_small:
        raise CamlitError(
            f"--data.crop_size {crop_size} is larger than {too_small} of the {len(samples)} images in {where}, "
            "and the others are unreadable"
        )
    raise CamlitError(f"{where}: none of its {len(samples)} images is usable")


@rank_zero_only
def report_skipped(problems: list[UnreadableImage]) -> None:
    for problem in problems:
        log.warning("skipped %s", problem)
    if problems:
        log.warning("skipped %d unusable image(s) in all", len(problems))
