"""Measuring sets for camlit.forensics, from the synthetic generator's cameras and scenes.

Kept apart from the ten cameras' train and test sets, so that their figures stay comparable:

- ``splice/<manipulation>/img_<k>.png``: 512 px crops (the frame's centre), half of them with a
  region of 10-35% of the crop, a rectangle or an ellipse on even offsets, pasted from another
  camera's photo of another scene at the same place; then the whole crop is left as it is
  (``unaltered``), JPEG-90-compressed, resized x0.8 or gamma-adjusted (0.8).
  ``splice/<manipulation>/masks/img_<k>.png`` is its true mask (255 pasted, 0 not; all 0 when clean).
- ``unknown/img_<id>_unalt.tif`` / ``img_<id>_manip.tif``: photos of two simulated cameras outside
  the class list, made as the synthetic test set is (every other photo manipulated whole, then the
  Kaggle-size centre crop).
"""

from __future__ import annotations

import json
import os
from concurrent.futures import as_completed
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from camlit.atomic import read_json, write_text_atomic
from camlit.cameras import KAGGLE_CAMERAS
from camlit.data.crops import center_crop
from camlit.data.manipulations import MANIPULATED, UNALTERED, apply
from camlit.data.synthetic import CameraSpec, kaggle_crop_size, render_photo
from camlit.errors import CamlitError
from camlit.imageio import write_image_atomic
from camlit.workers import process_pool

# Two pipelines outside the class list: each differs from every known camera in JPEG quality and
# noise level, and shares its CFA layout and demosaicing with some of them, as a new model would.
UNKNOWN_CAMERAS: tuple[CameraSpec, ...] = (
    CameraSpec("Unknown-Pentax-K3", "RGGB", "vng", 6e-4, 0.0035, 0.45, 2.25, 0.05, 0.7, 1.1, 83, "422"),
    CameraSpec("Unknown-Xiaomi-Mi9", "GBRG", "ea", 1.2e-3, 0.0042, 0.75, 2.15, 0.35, 0.0, 1.0, 93, "444"),
)
SPLICE_MANIPULATIONS = (UNALTERED, "jpeg90", "resize0.8", "gamma0.8")
SPLICE_SIZE = 512
SPLICE_AREA = (0.10, 0.35)
WIDTH, HEIGHT = 1024, 768
SPLICE_STREAM, UNKNOWN_STREAM = 10, 11  # synthetic.py's train and test sets use streams 0 and 1


def scene_seed(seed: int, stream: int, *index: int) -> int:
    return int(np.random.SeedSequence([seed, stream, *index]).generate_state(1, np.uint64)[0])


def splice_mask(rng: np.random.Generator, size: int = SPLICE_SIZE) -> np.ndarray:
    """A size x size uint8 mask (255 inside): a rectangle or an ellipse of 10-35% of the area,
    its bounding box on even offsets with even sides."""
    area = rng.uniform(*SPLICE_AREA) * size * size
    aspect = rng.uniform(0.6, 1.6)
    ellipse = bool(rng.random() < 0.5)
    # An ellipse covers pi/4 of its bounding box.
    box = area * (4 / np.pi if ellipse else 1.0)
    width = min(size - 2, int(np.sqrt(box * aspect)) // 2 * 2)
    height = min(size - 2, int(box / width) // 2 * 2)
    top = int(rng.integers(0, (size - height) // 2 + 1)) * 2
    left = int(rng.integers(0, (size - width) // 2 + 1)) * 2
    mask = np.zeros((size, size), np.uint8)
    if ellipse:
        centre, axes = (left + width // 2, top + height // 2), (width // 2, height // 2)
        cv2.ellipse(mask, centre, axes, 0, 0, 360, 255, -1)
    else:
        mask[top : top + height, left : left + width] = 255
    return mask


def make_splice(output: Path, manipulation: str, index: int, spliced: bool, seed: int) -> None:
    """One photo of the splice set and its mask."""
    rng = np.random.default_rng([seed, SPLICE_STREAM, index])
    host = int(rng.integers(len(KAGGLE_CAMERAS)))
    image = center_crop(render_photo(host, scene_seed(seed, SPLICE_STREAM, index, 0), WIDTH, HEIGHT), SPLICE_SIZE)
    mask = np.zeros((SPLICE_SIZE, SPLICE_SIZE), np.uint8)
    if spliced:
        donor = (host + int(rng.integers(1, len(KAGGLE_CAMERAS)))) % len(KAGGLE_CAMERAS)
        other = center_crop(render_photo(donor, scene_seed(seed, SPLICE_STREAM, index, 1), WIDTH, HEIGHT), SPLICE_SIZE)
        mask = splice_mask(rng)
        image = np.where(mask[..., None] > 0, other, image)
    image = apply(manipulation, image)
    mask = cv2.resize(mask, image.shape[1::-1], interpolation=cv2.INTER_NEAREST)
    name, folder = f"img_{index:03d}.png", output / manipulation
    write_image_atomic(folder / "masks" / name, np.repeat(mask[..., None], 3, axis=2))
    write_image_atomic(folder / name, image)


def unknown_manipulation(camera: int, index: int) -> str:
    """What photo `index` of unknown camera `camera` went through: every other one manipulated,
    Kaggle's eight in turn."""
    return MANIPULATED[(camera + index // 2) % len(MANIPULATED)] if index % 2 else UNALTERED


def unknown_manipulation_of(name: str) -> str:
    """unknown_manipulation of a file this module named `img_<camera><index:03d>_<manip|unalt>.tif`."""
    return unknown_manipulation(int(name[4]), int(name[5:8]))


def make_unknown(output: Path, camera: int, index: int, seed: int) -> None:
    manipulation = unknown_manipulation(camera, index)
    photo = render_photo(UNKNOWN_CAMERAS[camera], scene_seed(seed, UNKNOWN_STREAM, camera, index), WIDTH, HEIGHT)
    name = f"img_{camera}{index:03d}_{'manip' if index % 2 else 'unalt'}.tif"
    write_image_atomic(output / name, center_crop(apply(manipulation, photo), kaggle_crop_size(WIDTH, HEIGHT)))


def forensic_jobs(output: Path, splices_per_group: int, unknown_per_camera: int, seed: int) -> list[partial]:
    """Every file's job: per manipulation, the first half of the photos spliced, the rest clean."""
    jobs = [
        partial(make_splice, output / "splice", manipulation, group * splices_per_group + k, k % 2 == 0, seed)
        for group, manipulation in enumerate(SPLICE_MANIPULATIONS)
        for k in range(splices_per_group)
    ]
    jobs += [
        partial(make_unknown, output / "unknown", camera, k, seed)
        for camera in range(len(UNKNOWN_CAMERAS))
        for k in range(unknown_per_camera)
    ]
    return jobs


# The settings a folder's sets were made with: another run into it mixed two seeds' photos in
# one group, and replaced a user's files of the names it writes.
SETTINGS = ".forensic_sets.json"


def claim_output(output: Path, settings: dict) -> None:
    """Refuse a folder whose sets were made with other settings, or that holds files camlit did not
    make where it writes; then record these settings there."""
    recorded = output / SETTINGS
    if recorded.is_file():
        try:
            before = read_json(recorded)
        except (OSError, ValueError):
            raise CamlitError(
                f"{output}: its {SETTINGS} is not one camlit wrote; write the sets into another folder"
            ) from None
        if before != settings:
            raise CamlitError(
                f"{output}: holds measuring sets made with {recorded.read_text().strip()}, not {json.dumps(settings)}; "
                "write these into another folder"
            )
        return
    theirs = [path for part in ("splice", "unknown") for path in (output / part).rglob("*") if path.is_file()]
    if theirs:
        raise CamlitError(
            f"{output}: holds files (such as {theirs[0]}) without {SETTINGS} to say which settings made them; "
            "write the sets into another folder"
        )
    write_text_atomic(recorded, json.dumps(settings) + "\n")


def make_forensic_sets(
    output: str | os.PathLike,
    splices_per_group: int = 20,
    unknown_per_camera: int = 120,
    seed: int = 0,
    workers: int | None = None,
) -> Path:
    """Write the splice and unknown-camera sets into `output` (see the module's docstring) and return it.

    Every other photo of each splice group is spliced. Files are written atomically; the same
    settings give the same files.
    """
    output = Path(output)
    if min(splices_per_group, unknown_per_camera, seed) < 0:
        raise CamlitError("counts and seed must not be negative")
    claim_output(
        output, {"splices_per_group": splices_per_group, "unknown_per_camera": unknown_per_camera, "seed": seed}
    )
    jobs = forensic_jobs(output, splices_per_group, unknown_per_camera, seed)
    workers = min(workers or os.cpu_count() or 1, len(jobs))
    if workers <= 1:
        for job in jobs:
            job()
        return output
    with process_pool(workers) as pool:
        for done in as_completed([pool.submit(job) for job in jobs]):
            done.result()
    return output
