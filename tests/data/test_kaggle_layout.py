"""The Kaggle-shaped synthetic download: the archive's layout, balanced test groups, Kaggle's order, resume."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from camlit.cameras import KAGGLE_CAMERAS
from camlit.data.commands import synthetic_main
from camlit.data.crops import center_crop
from camlit.data.datamodule import CameraDataModule
from camlit.data.kaggle_layout import (
    PLACEHOLDER_CAMERA,
    PREPARED,
    make_kaggle_layout,
    manipulations_of_camera,
    plan_kaggle,
    prepared_download,
)
from camlit.data.manipulations import MANIPULATED, UNALTERED, apply
from camlit.data.synthetic import encode_photo, is_complete, kaggle_crop_size, render_photo
from camlit.errors import CamlitError
from camlit.imageio import read_rgb

WIDTH, HEIGHT = 160, 128  # test crops of 64 px, the side of resize0.5's 80x64 frame
TINY = dict(photos_per_camera=1, test_images=20, width=WIDTH, height=HEIGHT, seed=2, progress=False)


@pytest.fixture(scope="module")
def download(tmp_path_factory) -> Path:
    return make_kaggle_layout(tmp_path_factory.mktemp("kaggle") / "download", workers=1, **TINY)


def read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="") as file:
        return list(csv.reader(file))


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_archive_layout_and_its_csvs(download):
    assert is_complete(download)
    assert sorted(p.name for p in (download / "train").iterdir()) == sorted(KAGGLE_CAMERAS)
    for camera in KAGGLE_CAMERAS:
        assert [p.name for p in (download / "train" / camera).iterdir()] == [f"{camera}_0.jpg"]
    tests = sorted(p.name for p in (download / "test").iterdir())
    assert len(tests) == 20 and all(name.endswith(("_unalt.tif", "_manip.tif")) for name in tests)
    assert all(read_rgb(download / "test" / name).shape == (64, 64, 3) for name in tests)
    submission, labels = read_csv(download / "sample_submission.csv"), read_csv(download / "test_labels.csv")
    manipulations = read_csv(download / "test_manipulations.csv")
    assert submission[0] == labels[0] == ["fname", "camera"] and manipulations[0] == ["fname", "manipulation"]
    assert [row[0] for row in submission[1:]] == [row[0] for row in labels[1:]] == tests
    assert {row[1] for row in submission[1:]} == {PLACEHOLDER_CAMERA}
    assert Counter(row[1] for row in labels[1:]) == {camera: 2 for camera in KAGGLE_CAMERAS}
    for name, manipulation in manipulations[1:]:
        assert name.endswith("_unalt.tif") == (manipulation == UNALTERED)
        assert manipulation in (UNALTERED, *MANIPULATED)


def test_files_are_the_cameras_photos_manipulated_whole_then_cropped(download):
    jobs, _ = plan_kaggle(download, 1, 20, WIDTH, HEIGHT, 2)
    train = next(job for job in jobs if job.manipulation is None)
    assert train.path.read_bytes() == encode_photo(train.camera, train.scene_seed, WIDTH, HEIGHT)
    for kind in (UNALTERED, "resize2.0"):
        job = next(job for job in jobs if job.manipulation == kind)
        photo = render_photo(job.camera, job.scene_seed, WIDTH, HEIGHT)
        assert np.array_equal(read_rgb(job.path), center_crop(apply(kind, photo), kaggle_crop_size(WIDTH, HEIGHT)))


def test_the_default_test_set_is_balanced_per_camera_and_per_manipulation():
    per_camera = [Counter(manipulations_of_camera(camera, 24)) for camera in range(len(KAGGLE_CAMERAS))]
    assert all(counts == {name: 3 for name in MANIPULATED} for counts in per_camera)
    _, rows = plan_kaggle(Path("unused"), 0, 480, WIDTH, HEIGHT, 0)
    groups = Counter(manipulation for _, _, manipulation in rows)
    assert groups == {UNALTERED: 240, **{name: 30 for name in MANIPULATED}}
    assert Counter((camera, m == UNALTERED) for _, camera, m in rows) == {
        (camera, unaltered): 24 for camera in KAGGLE_CAMERAS for unaltered in (True, False)
    }


def test_rerun_finishes_an_interrupted_download_and_refuses_other_settings(download, tmp_path):
    copy = make_kaggle_layout(tmp_path / "again", workers=2, **TINY)
    assert files(copy) == files(download)
    for victim in [*sorted((copy / "test").iterdir())[::4], copy / "sample_submission.csv", copy / ".complete"]:
        victim.unlink()
    make_kaggle_layout(copy, workers=1, **TINY)
    assert files(copy) == files(download)
    with pytest.raises(CamlitError, match=r"other settings \(.kaggle_layout.json says \[.*, 2\], not \[.*, 3\]\)"):
        make_kaggle_layout(copy, workers=1, **{**TINY, "seed": 3})


def test_command_writes_a_download_and_refuses_unbalanced_sizes(tmp_path, capsys):
    with pytest.raises(SystemExit):
        synthetic_main(["--kaggle_layout", str(tmp_path / "bad"), "--test_images", "30"])
    assert "--test_images must be a multiple of 20" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    sizes = ["--images_per_camera", "1", "--test_images", "0", "--width", "64", "--height", "64"]
    synthetic_main(["--kaggle_layout", str(tmp_path / "set"), *sizes, "--workers", "1"])
    assert is_complete(tmp_path / "set") and read_csv(tmp_path / "set" / "sample_submission.csv") == [
        ["fname", "camera"]
    ]


def test_a_download_is_made_and_prepared_on_first_use_only(tmp_path, monkeypatch):
    root = tmp_path / "kaggle-synthetic"
    prepared = prepared_download(root, 1, 20, WIDTH, HEIGHT, workers=1)
    assert prepared == root / PREPARED and is_complete(root)
    for manipulation in (UNALTERED, *MANIPULATED):
        tiles = sorted((prepared / manipulation).rglob("*.png"))
        assert len(tiles) == len(KAGGLE_CAMERAS) and read_rgb(tiles[0]).shape == (64, 64, 3)
    # Made once: a second call neither renders nor prepares.
    monkeypatch.setattr("camlit.data.kaggle_layout.prepare_dataset", None)
    monkeypatch.setattr("camlit.data.kaggle_layout.make_kaggle_layout", None)
    assert prepared_download(root, 1, 20, WIDTH, HEIGHT, workers=1) == prepared


def test_the_datamodule_makes_the_download_when_training_on_its_data_512(tmp_path, monkeypatch):
    made = []
    monkeypatch.setattr("camlit.data.kaggle_layout.prepared_download", lambda *args: made.append(args))
    root = tmp_path / "kaggle-synthetic"
    options = dict(synthetic_root=str(root), synthetic_images_per_camera=7)
    datamodule = CameraDataModule(str(root / PREPARED), **options)
    datamodule.prepare_data()
    assert made == [(str(root), 7)]
    with pytest.raises(CamlitError, match="no such folder"):  # the stand-in made nothing
        datamodule.setup("fit")
    assert not CameraDataModule(str(tmp_path / "elsewhere"), **options).generates_kaggle_layout


def test_a_users_file_of_its_names_is_refused_and_kept(tmp_path):
    """A sample_submission.csv of the user's was replaced without a word."""
    output = tmp_path / "download"
    output.mkdir()
    (output / "sample_submission.csv").write_text("my,own\n")
    with pytest.raises(CamlitError, match="holds sample_submission.csv but no .kaggle_layout.json"):
        make_kaggle_layout(output, workers=1, **TINY)
    assert (output / "sample_submission.csv").read_text() == "my,own\n"
