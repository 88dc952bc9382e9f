"""Undoing a gamma or an upscale reads the camera's own JPEG steps again."""

import math

import numpy as np
import pytest
from conftest import CLASSES, photo

from camlit.data.crops import crop
from camlit.data.manipulations import NAMES, apply, get, jpeg
from camlit.data.quantization import FREQUENCIES, quantization_steps
from camlit.data.samples import scan
from camlit.data.synthetic import render_photo, scene_seed
from camlit.data.undo import TABLE_COLUMNS, camera_table, trusted, undo
from camlit.forensics.camera_map import photo_lattice
from camlit.imageio import read_rgb
from camlit.inference.features import WithFeatures
from camlit.inference.loading import load_checkpoint
from camlit.inference.running import predict_paths
from camlit.inference.tta import CropPlan

SIDE = 256


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    """A synthetic Motorola-Droid-Maxx photo: JPEG quality 80, a step at every frequency read."""
    return render_photo(2, scene_seed(0, 1, 2, 7), 512, 384)


def manipulated_crop(frame: np.ndarray, name: str, shift: int) -> tuple[np.ndarray, tuple[int, int]]:
    """The frame manipulated whole, then a SIDE crop near its centre, moved by `shift` pixels."""
    image = apply(name, frame)
    top, left = (image.shape[0] - SIDE) // 2 + shift, (image.shape[1] - SIDE) // 2 + shift
    return crop(image, top, left, SIDE), (top, left)


@pytest.mark.parametrize("name", ["gamma0.8", "gamma1.2"])
def test_a_gamma_is_recognised_and_undone_to_the_cameras_steps(frame, name):
    own = quantization_steps(frame)
    for shift in (0, 1):
        table = camera_table(manipulated_crop(frame, name, shift)[0])
        assert NAMES[int(table[-1])] == name
        assert (table[:9] == own[:9]).all() and (table[: len(FREQUENCIES)] == own).sum() >= 20


@pytest.mark.parametrize("name", ["resize1.5", "resize2.0"])
def test_an_upscale_is_recognised_at_any_phase_and_undone_to_the_cameras_pixels(frame, name):
    scale, own = get(name).parameter, quantization_steps(frame)
    for shift in (0, 1):
        image, (top, left) = manipulated_crop(frame, name, shift)
        undone, found = undo(image)
        assert found == name
        # OpenCV samples output pixel o at source (o + 0.5) / scale - 0.5; the inverse starts one
        # source pixel before the first pixel's floor, and keeps the pixels it can trust.
        where = [(o + 0.5) / scale - 0.5 for o in (top, left)]
        first = [math.floor(w) - 1 + trusted(SIDE, scale, w % 1).start for w in where]
        source = frame[first[0] : first[0] + undone.shape[0], first[1] : first[1] + undone.shape[1]]
        difference = np.abs(undone.astype(int) - source)
        assert np.mean(difference == 0) > 0.9 and np.mean(difference <= 1) > 0.999
        table = camera_table(image)
        assert NAMES[int(table[-1])] == name and (table[:9] == own[:9]).all()


@pytest.mark.parametrize("name", ["unaltered", "jpeg90", "resize0.8", "resize0.5"])
def test_what_cannot_be_undone_is_left_as_it_is(frame, name):
    image = manipulated_crop(frame, name, 1)[0] if name != "resize0.5" else apply(name, frame)
    undone, found = undo(image)
    assert found is None and undone is image
    table = camera_table(image)
    assert table[-1] == 0
    # Saved again at 90 over the camera's 80, the photo keeps the camera's table as its first one;
    # a photo saved once (or resized) shows none.
    first = table[len(FREQUENCIES) : 2 * len(FREQUENCIES)]
    assert ((first >= 2).sum() >= 3) == (name == "jpeg90"), (name, first)


@pytest.mark.parametrize("value", [0, 128, 200, 255])
def test_a_flat_photo_is_not_taken_for_a_manipulated_one(value):
    rng = np.random.default_rng(value)
    for image in (np.full((384, 384, 3), value, np.uint8), np.clip(value + rng.normal(0, 0.3, (384, 384, 3)), 0, 255)):
        undone, found = undo(image.astype(np.uint8))
        assert found is None


def test_every_crop_carries_its_photos_camera_table_through_the_loader_workers(ckpt, flat_tree):
    model, size = load_checkpoint(ckpt, "cpu")
    paths = [s.path for s in scan(flat_tree, CLASSES)[:3]]
    plan = CropPlan(size=size, count=2)
    predictions = predict_paths(WithFeatures(model, "stem", quantization=True), paths, plan, num_workers=1)
    for index, path in enumerate(paths):
        rows = predictions.extras[index]
        assert rows.shape == (2, len(CLASSES) + model.net.conv1.out_channels + TABLE_COLUMNS)
        assert (rows[:, -TABLE_COLUMNS:] == camera_table(read_rgb(path))).all()


def test_a_pasted_region_falls_off_the_lattice_of_a_photo_whose_gamma_is_undone():
    rng = np.random.default_rng(5)
    host, donor = jpeg(photo(rng, 256, 256), 80), jpeg(photo(rng, 256, 256), 92)
    spliced = host.copy()
    spliced[64:160, 96:192] = donor[64:160, 96:192]
    fits, phase, _, undone = photo_lattice(apply("gamma0.8", spliced))
    assert undone
    assert phase == (0, 0) and fits.shape == (32, 32)
    inside = np.zeros(fits.shape, bool)
    inside[9:19, 13:23] = True  # the pasted blocks, less a block of the 3 x 3 smoothing at each edge
    outside = np.ones(fits.shape, bool)
    outside[7:21, 11:25] = False
    assert np.nanmax(fits[inside]) < 0.2 < np.nanmin(fits[outside])
