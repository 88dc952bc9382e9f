"""Calibration of the unknown-camera score on a run's own split, unaltered and manipulated apart."""

import json
import subprocess

import numpy as np
import pytest
import torch
from conftest import CLASSES, full_disk_at, mount_tmpfs, one_error_line, random_image, save_checkpoint, write_image

from camlit.data import manipulations
from camlit.data.datamodule import CameraDataModule
from camlit.data.quantization import FREQUENCIES, quantization_steps
from camlit.data.samples import scan
from camlit.data.undo import TABLE_COLUMNS
from camlit.errors import CamlitError
from camlit.forensics import splice
from camlit.forensics.calibrate import calibrated, calibration_rows, main, run_split
from camlit.inference import openset
from camlit.inference.features import WithFeatures
from camlit.inference.loading import load_checkpoint
from camlit.inference.predict import main as predict
from camlit.inference.running import predict_paths
from camlit.inference.tta import CropPlan
from camlit.training.checkpointing import file_hash


def test_photos_of_a_flat_tree_are_also_measured_under_kaggles_manipulations(ckpt, flat_tree):
    model, size = load_checkpoint(ckpt, "cpu")
    samples = scan(flat_tree, CLASSES)[:10]
    logits, features, labels, flags = calibration_rows(model, samples, CropPlan(size=size, count=2))
    # Each photo as it is, then under each of the eight manipulations.
    assert len(logits) == len(features) == 90 and flags.tolist() == [False] * 10 + [True] * 80
    assert labels.tolist() == [s.label for s in samples] * 9
    # The manipulated versions are other pixels, so other features, one manipulation from another too.
    versions = [features[10 * k] for k in range(9)]
    assert not any(np.allclose(versions[i], versions[j]) for i in range(9) for j in range(i))


def run_checkpoint(tmp_path, flat_tree):
    """A tiny checkpoint whose run trained on `flat_tree`, a third of it held out."""
    path = save_checkpoint(tmp_path / "run.ckpt")
    checkpoint = torch.load(path, weights_only=False)
    checkpoint["datamodule_hyper_parameters"].update(train_dir=str(flat_tree), val_fraction=0.34, seed=0)
    torch.save(checkpoint, path)
    return path


def test_calibrate_writes_a_threshold_for_each_kind_beside_the_checkpoint(tmp_path, flat_tree, capsys):
    path = run_checkpoint(tmp_path, flat_tree)
    main(["--ckpt_path", str(path), "--crops", "2", "--score", "knn", "--device", "cpu", "--splice_photos", "4"])
    model = openset.load(path)
    assert np.isfinite(model.threshold) and np.isfinite(model.threshold_manipulated)
    out = capsys.readouterr().out
    # A flat tree's validation photos count as they are and under each of the eight manipulations.
    held_out = model.photos[0]
    assert held_out > 0 and model.photos == (held_out, 8 * held_out)
    assert f"of the {held_out} unaltered and {8 * held_out} manipulated validation photos" in out
    assert "note: a 95th percentile of fewer than 100 photos" in out
    splices = json.loads(splice.calibration_path(path).read_text())
    assert splices["clean_photos"] == 4
    assert set(splices["photo_thresholds"]) == {*splice.SCORERS, splice.GAMMA_KEY}
    assert splice.photo_thresholds("disagreement", path)["disagreement"] == splices["photo_thresholds"]["disagreement"]
    # The tree's photos are PNGs of noise, with no JPEG table: the lattice method's stays as measured.
    assert splices["photo_thresholds"]["lattice"] == splice.PHOTO_THRESHOLDS["lattice"]
    assert splices["photo_thresholds"][splice.GAMMA_KEY] == splice.PHOTO_THRESHOLDS[splice.GAMMA_KEY]
    # Both name the weights they were set for; beside the checkpoint written again, the splice one is refused.
    assert splices["checkpoint_sha256"] == model.checkpoint_sha256 == file_hash(path)
    path.write_bytes(path.read_bytes() + b"written again")
    with pytest.raises(CamlitError, match=f"{splice.calibration_path(path)} was set on another checkpoint"):
        splice.photo_thresholds("disagreement", path)


def test_the_calibration_of_another_checkpoint_of_the_same_stem_is_kept(tmp_path, flat_tree, capsys):
    """run.ckpt and run.pt share run.unknown.npz and run.splice.json: calibrating one replaced the
    other's without a word, and the first was then refused everywhere as set on another checkpoint."""
    path = run_checkpoint(tmp_path, flat_tree)
    options = ["--crops", "2", "--score", "knn", "--device", "cpu", "--splice_photos", "4"]
    main(["--ckpt_path", str(path), *options])
    other = path.with_suffix(".pt")
    other.write_bytes(path.read_bytes() + b"another model")
    calibrations = [openset.calibration_path(path), splice.calibration_path(path)]
    before = [file.read_bytes() for file in calibrations]
    line = one_error_line(capsys, lambda: main(["--ckpt_path", str(other), *options]))
    assert line == (
        f"error: --ckpt_path {other}: the calibration beside it (run.unknown.npz, run.splice.json) is run.ckpt's, "
        "which shares its stem; calibrate a copy of the checkpoint under another name"
    )
    assert [file.read_bytes() for file in calibrations] == before
    main(["--ckpt_path", str(path), *options])  # its own: calibrated again
    assert openset.load(path).checkpoint_sha256 == file_hash(path)


def test_a_checkpoint_without_a_splice_calibration_gets_the_measured_threshold(tmp_path):
    measured = splice.PHOTO_THRESHOLDS["clustering"]
    assert splice.photo_thresholds("clustering", tmp_path / "a.ckpt")["clustering"] == measured
    splice.calibration_path(tmp_path / "a.ckpt").write_text("{}")
    with pytest.raises(CamlitError, match="a.splice.json"):
        splice.photo_thresholds("clustering", tmp_path / "a.ckpt")["clustering"]
    # NaN is what Python writes for a threshold that is not a number; it would judge no photo spliced.
    splice.calibration_path(tmp_path / "a.ckpt").write_text('{"photo_thresholds": {"clustering": NaN}}')
    with pytest.raises(CamlitError, match="a.splice.json: not a splice calibration"):
        splice.photo_thresholds("clustering", tmp_path / "a.ckpt")["clustering"]
    # Nested past Python's parser: a RecursionError traceback.
    splice.calibration_path(tmp_path / "a.ckpt").write_text("[" * 200_000)
    with pytest.raises(CamlitError, match="a.splice.json: not a splice calibration"):
        splice.photo_thresholds("clustering", tmp_path / "a.ckpt")["clustering"]


def test_a_prepared_tree_without_an_unaltered_folder_still_calibrates(ckpt, flat_tree, tmp_path):
    import shutil

    shutil.copytree(flat_tree, tmp_path / "prepared" / "jpeg90")
    model, size = load_checkpoint(ckpt, "cpu")
    samples = scan(tmp_path / "prepared", CLASSES)
    assert {s.manipulation for s in samples} == {"jpeg90"}
    fitted = calibrated("knn", model, samples[:12], samples[12:], CropPlan(size=size, count=2))
    assert np.isfinite(fitted.threshold)


def test_the_stem_score_is_fitted_on_the_stem_and_predict_reads_the_stem(tmp_path, flat_tree):
    path = run_checkpoint(tmp_path, flat_tree)
    main(["--ckpt_path", str(path), "--crops", "4", "--crop_grid", "--score", "relative_stem", "--device", "cpu",
          "--splice_photos", "0"])  # fmt: skip
    fitted = openset.load(path)
    model, _ = load_checkpoint(path, "cpu")
    assert (fitted.layer, fitted.crops, fitted.grid) == ("stem", 4, True)
    assert fitted.arrays["centre"].shape == (model.net.conv1.out_channels,)
    args = ["--ckpt_path", str(path), "--input", str(flat_tree / CLASSES[0]), "--output", str(tmp_path / "s.csv")]
    predictions = predict([*args, "--unknown", "--crops", "4", "--crop_grid", "--num_workers", "0", "--no_progress"])
    assert np.isfinite(openset.prediction_scores(fitted, predictions)).all()


def test_the_jpeg_score_keeps_the_training_photos_steps_and_predict_reads_each_photos(tmp_path, flat_tree):
    path = run_checkpoint(tmp_path, flat_tree)
    main(["--ckpt_path", str(path), "--crops", "2", "--score", "relative_stem_jpeg", "--device", "cpu",
          "--splice_photos", "0"])  # fmt: skip
    fitted = openset.load(path)
    assert fitted.quantization and fitted.layer == "stem" and float(fitted.arrays["step_weight"]) > 0
    # The tree's photos are PNGs of noise: no JPEG step shows, so the bank holds one table of zeros.
    assert fitted.arrays["steps"].tolist() == [[0.0] * len(FREQUENCIES)]
    # Nor a first table once saved again: the bank of first tables is empty, and kept so.
    assert fitted.arrays["first_steps"].shape == (0, len(FREQUENCIES))
    args = ["--ckpt_path", str(path), "--input", str(flat_tree / CLASSES[0]), "--output", str(tmp_path / "s.csv")]
    predictions = predict([*args, "--unknown", "--crops", "2", "--num_workers", "0", "--no_progress"])
    rows = predictions.extras[0]
    assert rows.shape[1] == len(CLASSES) + fitted.arrays["centre"].shape[0] + TABLE_COLUMNS
    assert np.isfinite(openset.prediction_scores(fitted, predictions)).all()


def test_the_stem_layer_gives_the_same_probabilities_and_the_stem_channel_means(ckpt, flat_tree):
    model, size = load_checkpoint(ckpt, "cpu")
    paths = [s.path for s in scan(flat_tree, CLASSES)[:3]]
    plan = CropPlan(size=size, count=2)
    pooled = predict_paths(WithFeatures(model), paths, plan)
    stem = predict_paths(WithFeatures(model, "stem"), paths, plan)
    assert np.array_equal(pooled.primary, stem.primary)
    widths = {
        name: rows.shape[1] - len(CLASSES) for name, rows in (("pooled", pooled.extras[0]), ("stem", stem.extras[0]))
    }
    assert widths == {"pooled": model.net.fc.in_features, "stem": model.net.conv1.out_channels}


def test_a_checkpoint_that_names_no_training_folder_asks_for_one(ckpt, tmp_path, capsys):
    line = one_error_line(capsys, lambda: main(["--ckpt_path", str(ckpt)]))
    assert f"{ckpt}: it names no training folder; give the run's with --train_dir" in line
    line = one_error_line(capsys, lambda: main(["--ckpt_path", str(ckpt), "--train_dir", str(tmp_path / "no")]))
    assert f"--train_dir {tmp_path / 'no'}: no such folder" in line
    other = tmp_path / "other"
    write_image(other / "Some-Other-Camera" / "a.png", random_image(np.random.default_rng(0), 64, 64))
    line = one_error_line(capsys, lambda: main(["--ckpt_path", str(ckpt), "--train_dir", str(other)]))
    assert "not in the class list" in line and "--data.classes" not in line  # fit's option, not calibrate's
    assert line.endswith("those are the checkpoint's: name the run's own training folder with --train_dir")
    # Refused, not killed for memory cutting a million crops of a photo.
    line = one_error_line(capsys, lambda: main(["--ckpt_path", str(ckpt), "--crops", "1000000"]))
    assert "--crops: must be at most 1024, not 1000000" in line


def test_too_few_photos_of_a_camera_are_refused_before_a_nan_calibration(tmp_path, flat_tree, capsys):
    """One camera's folder alone gave every other camera a NaN mean and a file that flags nothing;
    one photo per camera, a covariance of zeros that could not be inverted."""
    import shutil

    path = run_checkpoint(tmp_path, flat_tree)
    shutil.rmtree(flat_tree / CLASSES[1])
    args = ["--ckpt_path", str(path), "--crops", "2", "--device", "cpu", "--splice_photos", "0"]
    line = one_error_line(capsys, lambda: main(args))
    assert "needs at least 2 usable training photos" in line and f"too few of {CLASSES[1]} (0)" in line
    assert not openset.calibration_path(path).exists()


def test_a_run_that_held_out_no_usable_photo_is_refused(tmp_path, flat_tree, capsys):
    """Validation photos all smaller than the crop left nothing to set the threshold on (a traceback)."""
    rng = np.random.default_rng(0)
    for camera in CLASSES:
        write_image(tmp_path / "small" / camera / "p.png", random_image(rng, 16, 16))
    path = run_checkpoint(tmp_path, flat_tree)
    checkpoint = torch.load(path, weights_only=False)
    checkpoint["datamodule_hyper_parameters"].update(val_dir=str(tmp_path / "small"))
    torch.save(checkpoint, path)
    args = ["--ckpt_path", str(path), "--crops", "2", "--score", "knn", "--device", "cpu", "--splice_photos", "0"]
    line = one_error_line(capsys, lambda: main(args))
    assert "no usable validation photo to set the threshold on" in line


def test_a_calibration_that_cannot_be_written_is_refused_before_the_work(tmp_path, flat_tree, capsys, monkeypatch):
    """Beside a checkpoint on a read-only mount: one line before the work (a traceback after it)."""
    import camlit.forensics.calibrate as calibrate

    folder = tmp_path / "mount"
    folder.mkdir()
    mount_tmpfs(folder, "size=4m")
    try:
        path = run_checkpoint(folder, flat_tree)
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        monkeypatch.setattr(calibrate, "calibrated", lambda *args, **kwargs: pytest.fail("calibrated before the check"))
        line = one_error_line(capsys, lambda: main(["--ckpt_path", str(path), "--device", "cpu"]))
    finally:
        subprocess.run(["umount", str(folder)], check=True)
    assert f"--ckpt_path {openset.calibration_path(path)}: cannot write in {folder}" in line


@pytest.mark.parametrize("folder", ["unknown", "splice"])
def test_a_folder_where_a_calibration_file_goes_is_refused_before_either_changes(tmp_path, flat_tree, capsys, folder):
    """A folder named like the splice file failed after the work, with a traceback, and after the
    unknown-camera file had already been replaced."""
    import camlit.forensics.calibrate as calibrate

    path = run_checkpoint(tmp_path, flat_tree)
    unknown, splices = openset.calibration_path(path), splice.calibration_path(path)
    unknown.write_bytes(b"the earlier calibration")
    (splices if folder == "splice" else unknown).unlink(missing_ok=True)
    (splices if folder == "splice" else unknown).mkdir()
    args = ["--ckpt_path", str(path), "--crops", "1", "--score", "knn", "--device", "cpu", "--splice_photos", "2"]
    original = calibrate.calibrated
    calibrate.calibrated = lambda *a, **k: pytest.fail("calibrated before the check")
    try:
        line = one_error_line(capsys, lambda: main(args))
    finally:
        calibrate.calibrated = original
    assert "beside it is a folder" in line
    if folder == "splice":
        assert unknown.read_bytes() == b"the earlier calibration"


def test_unusable_training_photos_are_named_not_left_out_unseen(tmp_path, flat_tree, capsys):
    for camera in CLASSES:
        for k in range(3):
            (flat_tree / camera / f"fake{k}.png").write_bytes(b"not an image")
    path = run_checkpoint(tmp_path, flat_tree)
    main(["--ckpt_path", str(path), "--crops", "1", "--score", "knn", "--device", "cpu", "--splice_photos", "0"])
    err = capsys.readouterr().err
    # Each once, though a flat tree's validation photos are read twice (as they are, and manipulated).
    assert err.count("warning: skipped") == 9 and err.count("fake0.png") == 3


def test_a_run_folder_missing_from_here_is_named_as_the_checkpoints_not_as_an_option(tmp_path, flat_tree, capsys):
    """The checkpoint's relative training folder, missing from the working folder, was reported as
    `--train_dir ...: no such folder`, an option the user had not given."""
    path = run_checkpoint(tmp_path, flat_tree)
    checkpoint = torch.load(path, weights_only=False)
    checkpoint["datamodule_hyper_parameters"].update(train_dir="data/elsewhere/train")
    torch.save(checkpoint, path)
    line = one_error_line(capsys, lambda: main(["--ckpt_path", str(path), "--splice_photos", "0"]))
    assert f"{path}: its run's training folder data/elsewhere/train is not there" in line and "--train_dir" in line
    assert not line.startswith("error: --train_dir")


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ("a string", "its datamodule_hyper_parameters are a str"),
        ({"train_dir": 7}, "its data option train_dir is 7"),
        ({"crop_size": "224"}, "its data option crop_size is '224'"),
        ({"seed": -1}, "its data option seed is -1"),
        ({"num_workers": True}, "its data option num_workers is True"),
        ({"val_fraction": 2.0}, "its data option val_fraction is 2.0"),
    ],
)
def test_a_checkpoint_with_unusable_data_options_is_named(tmp_path, flat_tree, capsys, options, named):
    """Each ended in a traceback from deep in the split (AttributeError, TypeError), or in
    split_by_photo's error naming neither the checkpoint nor an option."""
    path = run_checkpoint(tmp_path, flat_tree)
    checkpoint = torch.load(path, weights_only=False)
    if isinstance(options, dict):
        checkpoint["datamodule_hyper_parameters"].update(options)
    else:
        checkpoint["datamodule_hyper_parameters"] = options
    torch.save(checkpoint, path)
    line = one_error_line(capsys, lambda: main(["--ckpt_path", str(path), "--splice_photos", "0"]))
    assert line == f"error: --ckpt_path {path}: not a usable camlit checkpoint ({named})"


def test_a_pipe_named_as_the_checkpoint_is_refused_before_it_is_read(tmp_path, capsys):
    """calibrate hashed it before load_checkpoint's check, and waited on it for ever."""
    import os

    pipe = tmp_path / "model.ckpt"
    os.mkfifo(pipe)
    line = one_error_line(capsys, lambda: main(["--ckpt_path", str(pipe)]))
    assert line.startswith(f"error: --ckpt_path {pipe}: ") and "name a checkpoint file" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.ckpt"]


def test_the_first_tables_bank_reads_each_training_photo_saved_again_as_a_test_photo_is_read(tmp_path):
    """A photo its camera saved at 75 keeps that table as its first one under a save at 90, and
    under one at 70 (coarser than its own) shows at most a few steps, each finer than the last."""
    from types import SimpleNamespace

    from camlit.data.synthetic import render_photo, scene_seed
    from camlit.forensics.calibrate import recompressed_first_tables

    frame = render_photo(4, scene_seed(0, 1, 4, 3), 512, 384)  # Motorola-X: JPEG quality 75
    path = write_image(tmp_path / "x.png", frame)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    tables = recompressed_first_tables([SimpleNamespace(path=path), SimpleNamespace(path=tmp_path / "bad.png")])
    assert tables.shape == (2, len(FREQUENCIES))  # jpeg70, jpeg90 of the one readable photo
    last = quantization_steps(manipulations.apply("jpeg70", frame))
    shown = tables[0] >= 2
    assert shown.sum() < 8 and np.all(tables[0][shown] < last[shown]) and (tables[1] >= 2).sum() >= 8


def test_the_first_tables_bank_saves_a_crop_again_on_its_cameras_grid(tmp_path):
    """A training crop cut off the camera's 8 px grid (camlit prepare cuts at even offsets) was
    saved again on its own grid, where no first table shows: the recipe's bank of 900 rows had
    none. Saved again on the camera's grid, as Kaggle saved the full frame, the crop shows the
    table the full frame does."""
    from types import SimpleNamespace

    from camlit.data.synthetic import render_photo, scene_seed
    from camlit.forensics.calibrate import recompressed_first_tables

    frame = render_photo(4, scene_seed(0, 1, 4, 3), 544, 416)  # Motorola-X: JPEG quality 75
    full = write_image(tmp_path / "full.png", frame)
    crop = write_image(tmp_path / "crop.png", frame[6 : 6 + 400, 2 : 2 + 528])
    tables = recompressed_first_tables([SimpleNamespace(path=full), SimpleNamespace(path=crop)])
    assert (tables[1] >= 2).sum() >= 8 and (tables[3] >= 2).sum() >= 8  # jpeg90 of each
    assert (tables[1] == tables[3]).mean() >= 0.8


def test_a_failed_write_leaves_both_calibration_files_as_they_were(tmp_path, flat_tree, capsys, monkeypatch):
    """The unknown-camera file was written, then the splice one: a failure between left a new file
    beside an old one, for another set of weights."""
    path = run_checkpoint(tmp_path, flat_tree)
    unknown, splices = openset.calibration_path(path), splice.calibration_path(path)
    unknown.write_bytes(b"the earlier calibration")
    splices.write_text("{}")
    full_disk_at(monkeypatch, splices.name)
    args = ["--ckpt_path", str(path), "--crops", "1", "--score", "knn", "--device", "cpu", "--splice_photos", "2"]
    line = one_error_line(capsys, lambda: main(args))
    assert "no space left" in line.lower()
    assert unknown.read_bytes() == b"the earlier calibration" and splices.read_text() == "{}"
    assert not list(tmp_path.glob(".*"))  # no temporary left


def test_the_split_is_the_runs_own_when_some_training_photos_are_unusable(tmp_path, flat_tree):
    """calibrate split every photo found, fit only the usable ones: one unreadable photo moved the
    draw, and photos the run trained on were taken for held-out ones."""
    (flat_tree / CLASSES[0] / f"{CLASSES[0]}-a0-empty.png").write_bytes(b"")
    path = run_checkpoint(tmp_path, flat_tree)
    hparams = torch.load(path, weights_only=False)["datamodule_hyper_parameters"]
    datamodule = CameraDataModule(**{**hparams, "classes": CLASSES, "num_workers": 0, "synthetic_root": None})
    datamodule.setup("fit")
    held_out = sorted(sample.path for sample, _ in datamodule.val_set.items)
    assert sorted(sample.path for sample in run_split(path, CLASSES)[1]) == held_out


def test_a_checkpoint_written_again_while_calibrating_is_refused_and_nothing_written(
    tmp_path, flat_tree, capsys, monkeypatch
):
    """The hash of the weights saved meanwhile was recorded with thresholds set on the old ones."""
    import camlit.forensics.calibrate

    path = run_checkpoint(tmp_path, flat_tree)
    real = camlit.forensics.calibrate.calibrated

    def saved_again_meanwhile(*args, **kwargs):
        fitted = real(*args, **kwargs)
        checkpoint = torch.load(path, weights_only=False)
        checkpoint["global_step"] += 1
        torch.save(checkpoint, path)
        return fitted

    monkeypatch.setattr(camlit.forensics.calibrate, "calibrated", saved_again_meanwhile)
    args = ["--ckpt_path", str(path), "--crops", "1", "--score", "knn", "--device", "cpu", "--splice_photos", "0"]
    line = one_error_line(capsys, lambda: main(args))
    assert line == f"error: --ckpt_path {path}: written again while calibrating; calibrate once it stays"
    assert not openset.calibration_path(path).exists()
