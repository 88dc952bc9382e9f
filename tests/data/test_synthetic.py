"""The synthetic camera set: camera table, Kaggle layout, determinism, resume, label-free content."""

from __future__ import annotations

import csv
import dataclasses
import filecmp
import itertools
from pathlib import Path

import numpy as np
import pytest
from conftest import one_error_line

import camlit.data.synthetic
from camlit.cameras import KAGGLE_CAMERAS
from camlit.data.commands import synthetic_main
from camlit.data.crops import center_crop, random_offset
from camlit.data.datamodule import CameraDataModule
from camlit.data.manipulations import MANIPULATED, apply
from camlit.data.residual_statistics import held_out_accuracy, residual_features
from camlit.data.scenes import render_scene
from camlit.data.synthetic import (
    SYNTHETIC_CAMERAS,
    develop,
    encode_photo,
    is_complete,
    kaggle_crop_size,
    make_synthetic,
    plan,
    render_photo,
)
from camlit.errors import CamlitError
from camlit.imageio import read_rgb

WIDTH, HEIGHT = 128, 96  # crop side after resize0.5: 48
TINY = dict(images_per_camera=2, test_per_camera=2, width=WIDTH, height=HEIGHT, progress=False)


@pytest.fixture(scope="module")
def synthetic_set(tmp_path_factory) -> Path:
    return make_synthetic(tmp_path_factory.mktemp("synthetic") / "set", seed=3, workers=1, **TINY)


def files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def same_bytes(first: Path, second: Path) -> bool:
    return files(first) == files(second) and all(
        filecmp.cmp(first / name, second / name, shallow=False) for name in files(first)
    )


def read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def test_table_names_every_kaggle_camera_with_distinct_traces():
    assert tuple(spec.name for spec in SYNTHETIC_CAMERAS) == KAGGLE_CAMERAS
    traces = ("cfa", "demosaic", "chroma", "jpeg_quality", "shot_noise")
    for first, second in itertools.combinations(SYNTHETIC_CAMERAS, 2):
        differing = [t for t in traces if getattr(first, t) != getattr(second, t)]
        assert len(differing) >= 3, (first.name, second.name, differing)
    assert {spec.cfa for spec in SYNTHETIC_CAMERAS} == {"RGGB", "BGGR", "GRBG", "GBRG"}
    assert {spec.demosaic for spec in SYNTHETIC_CAMERAS} == {"bilinear", "vng", "ea"}


@pytest.mark.parametrize("spec", SYNTHETIC_CAMERAS, ids=lambda spec: spec.name)
def test_each_cfa_layout_keeps_a_flat_colour(spec):
    # A wrong Bayer code for the layout would swap red and blue or tint the patch.
    quiet = dataclasses.replace(spec, shot_noise=0.0, read_noise=0.0)
    scene = np.full((32, 32, 3), (0.5, 0.2, 0.05), np.float32)
    red, green, blue = develop(quiet, scene, noise_seed=0)[8:24, 8:24].reshape(-1, 3).T.astype(int)
    assert red.min() > green.max() and green.min() > blue.max()
    assert max(np.ptp(red), np.ptp(green), np.ptp(blue)) <= 2


def test_cameras_render_colour_alike():
    # Colour matrix and tone curve differ, but not so much that colour alone names the camera.
    scene = np.full((16, 16, 3), (0.5, 0.2, 0.05), np.float32)
    quiet = [dataclasses.replace(spec, shot_noise=0.0, read_noise=0.0) for spec in SYNTHETIC_CAMERAS]
    colours = np.array([develop(spec, scene, noise_seed=0)[8, 8] for spec in quiet], float)
    assert np.ptp(colours, axis=0).max() <= 20


def test_scene_has_no_camera_and_photos_are_the_cameras_jpegs():
    assert np.array_equal(render_scene(7, 64, 48), render_scene(7, 64, 48))
    photos = [render_photo(camera, 7, 64, 48) for camera in range(len(SYNTHETIC_CAMERAS))]
    assert all(photo.shape == (48, 64, 3) and photo.dtype == np.uint8 for photo in photos)
    # Same scene, different cameras: the same picture, but not the same pixels.
    assert all(np.abs(photo.astype(int) - photos[0]).mean() < 40 for photo in photos)
    assert len({photo.tobytes() for photo in photos}) == len(photos)
    assert encode_photo(SYNTHETIC_CAMERAS[4], 7, 64, 48) == encode_photo(4, 7, 64, 48)


def test_layout_names_and_labels(synthetic_set):
    assert is_complete(synthetic_set)
    for name in KAGGLE_CAMERAS:
        frames = sorted((synthetic_set / "train" / name).iterdir())
        assert [p.name for p in frames] == [f"{name}_0.jpg", f"{name}_1.jpg"]
        assert read_rgb(frames[0]).shape == (HEIGHT, WIDTH, 3)
    labels = read_csv(synthetic_set / "test_labels.csv")
    manipulations = read_csv(synthetic_set / "test_manipulations.csv")
    assert labels[0] == ["fname", "camera"] and manipulations[0] == ["fname", "manipulation"]
    names = [row[0] for row in labels[1:]]
    assert names == sorted(names) == [row[0] for row in manipulations[1:]]
    assert names == sorted(p.name for p in (synthetic_set / "test").iterdir())
    assert sorted(row[1] for row in labels[1:]) == sorted(KAGGLE_CAMERAS * 2)
    kinds = {row[0]: row[1] for row in manipulations[1:]}
    assert sum(kind == "unaltered" for kind in kinds.values()) == len(kinds) // 2
    for fname, kind in kinds.items():
        assert fname.startswith("img_") and len(fname) == len("img_0123abc_unalt.tif")
        assert fname.endswith("_unalt.tif") == (kind == "unaltered")
        assert kind == "unaltered" or kind in MANIPULATED
        crop = read_rgb(synthetic_set / "test" / fname)
        assert crop.shape == (kaggle_crop_size(WIDTH, HEIGHT),) * 2 + (3,) == (48, 48, 3)


def test_files_are_the_planned_photos(synthetic_set):
    jobs, rows = plan(synthetic_set, 2, 2, WIDTH, HEIGHT, seed=3)
    assert sorted(rows) == rows and len(rows) == 2 * len(KAGGLE_CAMERAS)
    train = next(job for job in jobs if job.manipulation is None and job.camera == 5)
    # The train frame is the camera's own JPEG file, byte for byte.
    assert train.path.read_bytes() == encode_photo(5, train.scene_seed, WIDTH, HEIGHT)
    test = next(job for job in jobs if job.manipulation == "unaltered")
    # An unaltered test image is the exact centre crop of the decoded photo (TIFF is lossless).
    photo = render_photo(test.camera, test.scene_seed, WIDTH, HEIGHT)
    assert np.array_equal(read_rgb(test.path), center_crop(photo, 48))
    manipulated = next(job for job in jobs if job.manipulation not in (None, "unaltered"))
    # Kaggle's order: the whole photo is manipulated, then cropped.
    photo = render_photo(manipulated.camera, manipulated.scene_seed, WIDTH, HEIGHT)
    assert np.array_equal(read_rgb(manipulated.path), center_crop(apply(manipulated.manipulation, photo), 48))


def test_same_seed_same_bytes_other_seed_other_bytes_and_resume(synthetic_set, tmp_path):
    again = make_synthetic(tmp_path / "again", seed=3, workers=2, **TINY)
    assert same_bytes(synthetic_set, again)
    other = make_synthetic(tmp_path / "other", seed=4, workers=1, **TINY)
    first_frame = Path("train") / KAGGLE_CAMERAS[0] / f"{KAGGLE_CAMERAS[0]}_0.jpg"
    assert (other / first_frame).read_bytes() != (again / first_frame).read_bytes()
    assert (other / "test_labels.csv").read_text() != (again / "test_labels.csv").read_text()
    # Resume: an interrupted run lacks some files and the marker; a rerun restores the same bytes.
    for victim in [*sorted((again / "test").iterdir())[::3], again / first_frame, again / ".complete"]:
        victim.unlink()
    assert not is_complete(again)
    make_synthetic(again, seed=3, workers=1, **TINY)
    assert is_complete(again) and same_bytes(synthetic_set, again)
    with pytest.raises(ValueError, match="other settings"):
        make_synthetic(again, seed=5, workers=1, **TINY)


def test_command_writes_a_set_and_refuses_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit):
        synthetic_main(["--output", str(tmp_path / "bad"), "--test_per_camera", "-2"])
    assert "--test_per_camera -2: must not be negative" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        synthetic_main(["--output", str(tmp_path / "bad"), "--seed", "-1"])
    assert "error: --seed must not be negative, got -1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        synthetic_main(["--output", str(tmp_path / "bad"), "--width", "2", "--height", "2"])
    # 3 x 3 frames are the smallest made (a 2 px test crop after x0.5); the message said 4x4.
    assert "--width 2 --height 2: frames too small for a test crop" in capsys.readouterr().err
    # A frame too large for memory ended in a traceback and left a settings file refusing every rerun.
    for size in (["--width", "100000", "--height", "100000"], ["--width", "3", "--height", "100000"]):
        with pytest.raises(SystemExit):
            synthetic_main(["--output", str(tmp_path / "bad"), *size])
        assert "frames too large" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        synthetic_main(["--output", str(tmp_path / "bad"), "--images_per_camera", "0", "--test_per_camera", "0"])
    assert "both 0: nothing to write" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    counts = ["--images_per_camera", "1", "--test_per_camera", "0", "--workers", "1"]
    synthetic_main(["--output", str(tmp_path / "set"), "--width", "64", "--height", "48", *counts])
    assert is_complete(tmp_path / "set") and capsys.readouterr().out.strip() == str(tmp_path / "set")
    assert len(list((tmp_path / "set" / "train").rglob("*.jpg"))) == len(KAGGLE_CAMERAS)


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError):
        make_synthetic(tmp_path / "x", images_per_camera=-1, progress=False)
    with pytest.raises(ValueError):
        make_synthetic(tmp_path / "y", width=2, height=2, progress=False)
    assert kaggle_crop_size(1024, 768) == 384 and kaggle_crop_size(2048, 1536) == 512


@pytest.mark.parametrize("side", [3, 8, 24])
def test_the_smallest_frames_accepted_are_made(tmp_path, side):
    """Frames of a few pixels drew a shape under half a pixel from an empty range (a ValueError),
    and the settings file left behind refused every other setting."""
    made = make_synthetic(tmp_path / "set", images_per_camera=1, test_per_camera=1, width=side, height=side, workers=1)
    assert len(list((made / "train").rglob("*.jpg"))) == len(KAGGLE_CAMERAS)


def test_only_camera_traces_carry_the_label():
    """Residual statistics of 64 px even-offset crops tell the cameras apart on unseen photos; the
    same classifier with shuffled labels, or on crop mean colour, stays near chance (0.1)."""
    photos_per_camera, crops_per_photo, side = 12, 4, 64
    rng = np.random.default_rng(0)
    crops, photo_of_crop = [], []
    for camera in range(len(SYNTHETIC_CAMERAS)):
        for k in range(photos_per_camera):
            photo = render_photo(camera, 1000 * camera + k, 160, 120)
            for _ in range(crops_per_photo):
                top, left = random_offset(120, 160, side, rng)
                crops.append(photo[top : top + side, left : left + side])
                photo_of_crop.append(camera * photos_per_camera + k)
    photo_of_crop = np.array(photo_of_crop)
    labels = photo_of_crop // photos_per_camera
    train = photo_of_crop % photos_per_camera < photos_per_camera // 2  # split by photo, not by crop
    residual = np.array([residual_features(crop) for crop in crops], np.float32)
    mean_colour = np.array([crop.reshape(-1, 3).mean(0) for crop in crops], np.float32)
    shuffled = rng.permutation(len(labels) // crops_per_photo)[photo_of_crop] // photos_per_camera
    real = held_out_accuracy(residual, labels, train)
    chance = held_out_accuracy(residual, shuffled, train)
    colour = held_out_accuracy(mean_colour, labels, train)
    print(f"residual features: {real:.3f} real labels, {chance:.3f} shuffled; mean colour: {colour:.3f}")
    assert real >= 0.6
    assert chance <= 0.3 and colour <= 0.3


def test_an_unwritable_output_is_one_line_before_any_work(read_only_folder, capsys):
    output = read_only_folder / "synthetic"
    line = one_error_line(capsys, lambda: synthetic_main(["--output", str(output), "--test_per_camera", "0"]))
    assert line.startswith(f"error: --output {output}: cannot write in {read_only_folder}")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kaggle_layout", "{tmp}/k", "--test_images", "-20"], "--test_images must not be negative, got -20"),
        # Each was ignored without a word by the other layout.
        (["--output", "{tmp}/s", "--test_images", "40"], "--test_images: only with --kaggle_layout"),
        (["--kaggle_layout", "{tmp}/k", "--test_per_camera", "4"], "--test_per_camera: only with --output"),
    ],
)
def test_a_test_set_option_of_the_other_layout_or_a_negative_count_is_refused(tmp_path, capsys, args, message):
    line = one_error_line(capsys, lambda: synthetic_main([arg.format(tmp=tmp_path) for arg in args]))
    assert line == f"error: {message}" or line.startswith(f"error: {message};")
    assert not any(tmp_path.iterdir())


def test_a_full_disk_is_one_line(small_disk, capsys):
    output = small_disk / "synthetic"
    args = ["--output", str(output), "--images_per_camera", "2", "--test_per_camera", "0", "--workers", "1"]
    line = one_error_line(capsys, lambda: synthetic_main(args))
    assert f"{output}/" in line and "no space left on device" in line
    assert not is_complete(output)


@pytest.mark.parametrize(
    "theirs", ["train/Motorola-X/Motorola-X_0.jpg", "test_labels.csv", "train/Motorola-X/IMG_0001.jpg"]
)
def test_a_folder_it_did_not_start_is_refused_and_kept(tmp_path, theirs):
    """A text file named like a photo was counted as made, a CSV of the user's replaced, and the
    set's photos went in among a real download's."""
    output = tmp_path / "mine"
    (output / theirs).parent.mkdir(parents=True, exist_ok=True)
    (output / theirs).write_text("precious")
    top = theirs.split("/")[0]
    with pytest.raises(CamlitError, match=f"{output}: holds {top} but no .synthetic.json, so it is no synthetic set"):
        make_synthetic(output, workers=1, **TINY)
    assert (output / theirs).read_text() == "precious" and not (output / ".synthetic.json").exists()
    assert sorted(path.relative_to(output).as_posix() for path in output.rglob("*") if path.is_file()) == [theirs]


def test_fit_refuses_a_finished_set_made_with_other_settings_than_its_own(tmp_path, monkeypatch):
    """fit trained on a set made by hand (`camlit synthetic --images_per_camera 5`), its settings
    never read, whatever --data.synthetic_images_per_camera said."""
    root = make_synthetic(tmp_path / "set", seed=0, workers=1, **TINY)
    options = dict(classes=KAGGLE_CAMERAS, synthetic_root=str(root), num_workers=0, crop_size=32)
    with pytest.raises(CamlitError, match=r"holds a synthetic set made with other settings \(.synthetic.json says"):
        CameraDataModule(str(root / "train"), synthetic_images_per_camera=30, **options).prepare_data()
    # Made as fit makes it (fit's defaults made the tiny set's here): trained on as it is.
    monkeypatch.setattr(camlit.data.synthetic, "DEFAULT_FRAME", (TINY["width"], TINY["height"]))
    monkeypatch.setattr(camlit.data.synthetic, "DEFAULT_TEST_PER_CAMERA", TINY["test_per_camera"])
    CameraDataModule(
        str(root / "train"), synthetic_images_per_camera=TINY["images_per_camera"], **options
    ).prepare_data()
