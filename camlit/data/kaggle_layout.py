"""A synthetic download shaped like Kaggle's archive, from camlit.data.synthetic's cameras and scenes.

``make_kaggle_layout(output)`` writes what the archive holds, and the truth Kaggle kept:

- ``train/<camera>/<camera>_<k>.jpg``: full frames, the camera's own JPEG bytes;
- ``test/img_<id>_unalt.tif`` / ``img_<id>_manip.tif``: 512 px centre crops of further photos
  (less for frames too small for 512 after resize0.5, see `kaggle_crop_size`); the manipulated
  half is manipulated on the full frame first, as Kaggle did, balanced per camera and per
  manipulation;
- ``sample_submission.csv``: ``fname,camera``, one row per test image, every camera the same
  placeholder, as Kaggle's is;
- ``test_labels.csv`` (fname,camera) and ``test_manipulations.csv`` (fname,manipulation): the truth,
  for `camlit evaluate --labels ... --manipulations ...`;
- ``.kaggle_layout.json`` (the settings) first and ``.complete`` last.

A rerun makes only what is missing; a folder made with other settings is refused.
`prepared_download` adds ``data-512/``, made by camlit.data.prepare as prepare_data.py makes it.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from camlit.atomic import write_bytes_atomic, write_csv_atomic
from camlit.cameras import KAGGLE_CAMERAS
from camlit.data.manipulations import MANIPULATED, UNALTERED
from camlit.data.prepare import prepare_dataset
from camlit.data.synthetic import Job, kaggle_crop_size, scene_seed, write_missing
from camlit.errors import CamlitError

log = logging.getLogger(__name__)

# 4:3 as most of Kaggle's cameras shoot, and the least height whose resize0.5 still holds a 512 crop.
KAGGLE_WIDTH, KAGGLE_HEIGHT = 1368, 1024
# Every test row of sample_submission.csv names this camera, a placeholder to be replaced.
PLACEHOLDER_CAMERA = KAGGLE_CAMERAS[0]
# 1,760 test images: 880 unaltered and 110 per manipulation, so that one image is less than a
# point in every group (0.11 and 0.91 points); Kaggle's test set has 2,640, 165 per manipulation.
DEFAULT_TEST_IMAGES = 1760
# The prepared folder's name in a download, as the seed notebook named it.
PREPARED = "data-512"
# Split numbers of the scene seeds: new numbers, so no scene is one of the demo set's.
TRAIN_SPLIT, TEST_SPLIT = 10, 11


def manipulations_of_camera(camera: int, manipulated: int) -> list[str]:
    """The manipulations of camera number `camera`'s `manipulated` test photos.

    The cameras take turns along one cycle of the eight manipulations, so each camera uses every
    manipulation equally often, within one, and so does the whole set (exactly when 80 divides
    the number of manipulated images, as with 240).
    """
    start = camera * manipulated
    return [MANIPULATED[(start + k) % len(MANIPULATED)] for k in range(manipulated)]


def plan_kaggle(output: Path, photos_per_camera: int, test_images: int, width: int, height: int, seed: int):
    """The jobs of a download, and its test rows (fname, camera, manipulation) sorted by fname."""
    size, per_camera = (width, height), test_images // len(KAGGLE_CAMERAS)
    rng = np.random.default_rng([seed, TEST_SPLIT])
    # Random ids, so that neither a file name nor the sorted order tells the camera.
    ids = iter(rng.choice(16**7, size=test_images, replace=False))
    jobs, rows = [], []
    for camera, name in enumerate(KAGGLE_CAMERAS):
        for k in range(photos_per_camera):
            path = output / "train" / name / f"{name}_{k}.jpg"
            jobs.append(Job(path, camera, scene_seed(seed, TRAIN_SPLIT, camera, k), size))
        manipulations = [UNALTERED] * (per_camera // 2) + manipulations_of_camera(camera, per_camera // 2)
        for k, manipulation in enumerate(manipulations):
            kind = "unalt" if manipulation == UNALTERED else "manip"
            path = output / "test" / f"img_{next(ids):07x}_{kind}.tif"
            jobs.append(Job(path, camera, scene_seed(seed, TEST_SPLIT, camera, k), size, manipulation))
            rows.append((path.name, name, manipulation))
    return jobs, sorted(rows)


def check_sizes(photos_per_camera: int, test_images: int, width: int, height: int, seed: int) -> None:
    cameras = len(KAGGLE_CAMERAS)
    if photos_per_camera < 1:
        raise CamlitError(f"--images_per_camera must be at least 1, got {photos_per_camera}")
    if test_images < 0:
        raise CamlitError(f"--test_images must not be negative, got {test_images}")
    if test_images % (2 * cameras):
        raise CamlitError(
            f"--test_images must be a multiple of {2 * cameras} (each camera as many, half of them "
            f"manipulated), got {test_images}"
        )
    if seed < 0:
        raise CamlitError(f"--seed must not be negative, got {seed}")
    if kaggle_crop_size(width, height) < 2:
        raise CamlitError(f"--width {width} --height {height}: frames too small for a test crop")


def make_kaggle_layout(
    output: str | os.PathLike,
    photos_per_camera: int = 30,
    test_images: int = DEFAULT_TEST_IMAGES,
    width: int = KAGGLE_WIDTH,
    height: int = KAGGLE_HEIGHT,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
) -> Path:
    """Write (or finish) a Kaggle-shaped synthetic download in `output` and return it."""
    output = Path(output)
    check_sizes(photos_per_camera, test_images, width, height, seed)
    jobs, rows = plan_kaggle(output, photos_per_camera, test_images, width, height, seed)
    settings = [photos_per_camera, test_images, width, height, seed]
    write_missing(
        output, settings, ".kaggle_layout.json", "a Kaggle-shaped download", "--kaggle_layout", jobs, workers, progress
    )
    header = ("fname", "camera", "manipulation")
    write_csv_atomic(output / "sample_submission.csv", [header[:2], *((row[0], PLACEHOLDER_CAMERA) for row in rows)])
    write_csv_atomic(output / "test_labels.csv", [header[:2], *(row[:2] for row in rows)])
    write_csv_atomic(output / "test_manipulations.csv", [header[::2], *(row[::2] for row in rows)])
    write_bytes_atomic(output / ".complete", b"")
    return output


def prepared_download(
    root: str | os.PathLike,
    photos_per_camera: int = 30,
    test_images: int = DEFAULT_TEST_IMAGES,
    width: int = KAGGLE_WIDTH,
    height: int = KAGGLE_HEIGHT,
    workers: int | None = None,
) -> Path:
    """`root`'s download with its centre tiles prepared into ``root/data-512``, each made on first use.

    The tiles have the test crops' side, 512 for the default frames. ``.prepared`` (the settings)
    is written last, so an interrupted preparation is finished by the next call.
    """
    root = Path(root)
    marker = root / ".prepared"
    settings = json.dumps([photos_per_camera, test_images, width, height, 0]).encode()
    if marker.is_file() and marker.read_bytes() == settings:
        return root / PREPARED
    if not ((root / ".kaggle_layout.json").is_file() and (root / ".complete").is_file()):
        log.info("generating a Kaggle-shaped synthetic download in %s", root)
    make_kaggle_layout(root, photos_per_camera, test_images, width, height, workers=workers)
    log.info("preparing %s from %s", root / PREPARED, root / "train")
    summary = prepare_dataset(root / "train", root / PREPARED, size=kaggle_crop_size(width, height), workers=workers)
    if summary.failures or summary.too_small:
        raise CamlitError(
            f"{root / PREPARED}: {summary.failed} photo(s) failed and {len(summary.too_small)} crop(s) were too small; "
            f"camlit prepare --input {root / 'train'} --output {root / PREPARED} lists them"
        )
    write_bytes_atomic(marker, settings)
    return root / PREPARED
