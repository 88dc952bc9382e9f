import json
import os
from pathlib import Path

import cv2
import lightning as L
import numpy as np
import pytest
import torch
from conftest import CLASSES, full_disk_at, one_error_line, refused_before_predicting, write_image

import camlit.inference.options
from camlit.atomic import write_csv_atomic
from camlit.inference.evaluate import main
from camlit.inference.evaluate_report import score
from camlit.inference.labelled import group_from_name, labelled_csv
from camlit.training.module import CameraClassifier
from camlit.training.plots import CELL

# Solid colours: the stub model below predicts class k for a crop whose brightest channel is k.
COLOURS = {0: (200, 10, 10), 1: (10, 200, 10), 2: (10, 10, 200)}

# (name, class the stub predicts, true class): unaltered 3/4, manipulated 2/4 right.
TEST_SET = [
    ("img_a0_unalt.tif", 0, 0),
    ("img_a1_unalt.tif", 1, 1),
    ("img_a2_unalt.tif", 2, 2),
    ("img_a3_unalt.tif", 0, 1),
    ("img_b0_manip.tif", 0, 0),
    ("img_b1_manip.tif", 2, 1),
    ("img_b2_manip.tif", 2, 2),
    ("img_b3_manip.tif", 1, 2),
]
CONFUSION = [[2, 0, 0], [1, 1, 1], [0, 1, 2]]


def colour_logits(self, images: torch.Tensor, manipulated: torch.Tensor | None = None) -> torch.Tensor:
    """Stands in for CameraClassifier.forward: logits are the mean of each colour channel."""
    return images.float().mean(dim=(2, 3)) / 10


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "model.ckpt"
    model = CameraClassifier(list(CLASSES), arch="resnet_tiny")
    trainer = L.Trainer(logger=False, enable_checkpointing=False, max_epochs=0, enable_model_summary=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(path)
    return path


@pytest.fixture
def stub_model(monkeypatch):
    monkeypatch.setattr(CameraClassifier, "forward", colour_logits)


def solid(predicted: int, size: int = 48) -> np.ndarray:
    return np.full((size, size, 3), COLOURS[predicted], dtype=np.uint8)


@pytest.fixture
def test_folder(tmp_path):
    """test/ with the images of TEST_SET, and test_labels.csv in the synthetic set's format."""
    folder = tmp_path / "test"
    for name, predicted, _ in TEST_SET:
        write_image(folder / name, solid(predicted))
    labels = "".join(f"{name},{CLASSES[true]}\n" for name, _, true in TEST_SET)
    (tmp_path / "test_labels.csv").write_text("fname,camera\n" + labels)
    return folder


def evaluate(ckpt, folder, *extra):
    args = ["--ckpt_path", str(ckpt), "--input", str(folder), "--crop_size", "32", "--crops", "2"]
    return main([*args, "--num_workers", "0", "--no_progress", *extra])


def test_score_on_known_answers():
    truth = [true for _, _, true in TEST_SET]
    predicted = [p for _, p, _ in TEST_SET]
    groups = [group_from_name(name) for name, _, _ in TEST_SET]
    report = score(truth, predicted, groups, CLASSES)
    assert report["images"] == 8 and report["correct"] == 5
    assert report["accuracy"] == pytest.approx(5 / 8)
    assert [report["per_class"][name]["accuracy"] for name in CLASSES] == pytest.approx([1, 1 / 3, 2 / 3])
    assert report["per_group"]["unaltered"]["accuracy"] == pytest.approx(3 / 4)
    assert report["per_group"]["manipulated"]["accuracy"] == pytest.approx(2 / 4)
    assert report["weighted_accuracy"] == pytest.approx(0.7 * 3 / 4 + 0.3 * 2 / 4)
    assert report["confusion_matrix"] == CONFUSION


def test_score_without_a_class_or_manipulated_images():
    report = score([0, 0], [0, 1], ["unaltered", "unaltered"], CLASSES)
    assert report["per_class"][CLASSES[2]] == {"images": 0, "correct": 0, "accuracy": None}
    assert report["weighted_accuracy"] is None and report["accuracy"] == 0.5
    assert report["manipulated_mean"] is None


def test_score_per_manipulation_with_the_manipulated_mean():
    # unaltered 2/2; jpeg70 1/2; resize0.5 0/1: the mean of the two manipulations, not of their 3 images.
    truth, predicted = [0, 1, 0, 1, 2], [0, 1, 0, 2, 0]
    groups = ["unaltered", "unaltered", "jpeg70", "jpeg70", "resize0.5"]
    report = score(truth, predicted, groups, CLASSES)
    assert list(report["per_group"]) == ["unaltered", "jpeg70", "resize0.5"]
    assert report["manipulated_mean"] == pytest.approx(0.25)
    assert report["weighted_accuracy"] == pytest.approx(0.7 * 1 + 0.3 * 0.25)


def test_group_from_kaggle_names():
    assert group_from_name("img_0002a04_manip.tif") == "manipulated"
    assert group_from_name("img_001e31c_unalt.tif") == "unaltered"
    assert group_from_name("photo.jpg") == "unaltered"


def test_labels_csv(ckpt, test_folder, tmp_path, stub_model, capsys):
    json_path = tmp_path / "results" / "eval.json"
    report = evaluate(ckpt, test_folder, "--labels", str(tmp_path / "test_labels.csv"), "--json", str(json_path))
    assert report["accuracy"] == pytest.approx(5 / 8)
    written = json.loads(json_path.read_text())
    assert written["accuracy"] == pytest.approx(5 / 8)
    assert written["weighted_accuracy"] == pytest.approx(0.675)
    assert written["per_group"]["unaltered"] == {"images": 4, "correct": 3, "accuracy": 0.75}
    assert written["per_group"]["manipulated"] == {"images": 4, "correct": 2, "accuracy": 0.5}
    assert [written["per_class"][name]["accuracy"] for name in CLASSES] == pytest.approx([1, 1 / 3, 2 / 3])
    assert written["confusion_matrix"] == CONFUSION and written["classes"] == CLASSES
    assert written["options"]["crop_size"] == 32 and written["options"]["aggregate"] == "mean"
    assert written["provenance"]["versions"]["torch"] == torch.__version__
    # The PNG goes next to the JSON, a decodable picture of the 3x3 grid; no temporary files left.
    picture = json_path.with_name("eval_confusion.png")
    assert sorted(p.name for p in json_path.parent.iterdir()) == ["eval.json", "eval_confusion.png"]
    assert min(cv2.imread(str(picture)).shape[:2]) > 3 * CELL
    table = capsys.readouterr().out
    assert "overall" in table and " 62.50%" in table and " 67.50%" in table
    assert all(name in table for name in [*CLASSES, "unaltered", "manipulated"])


def test_finer_groups_from_a_manipulations_csv(ckpt, test_folder, tmp_path, stub_model, monkeypatch, capsys):
    groups = {"img_b0_manip.tif": "jpeg70", "img_b1_manip.tif": "gamma0.8", "img_b2_manip.tif": "gamma0.8"}
    groups["img_b3_manip.tif"] = "gamma0.8"
    rows = "".join(f"{name},{groups.get(name, 'unaltered')}\n" for name, _, _ in TEST_SET)
    (tmp_path / "test_manipulations.csv").write_text("fname,manipulation\n" + rows)
    monkeypatch.chdir(tmp_path)
    report = evaluate(
        ckpt, test_folder, "--labels", str(tmp_path / "test_labels.csv"),
        "--manipulations", str(tmp_path / "test_manipulations.csv"), "--aggregate", "max",
    )  # fmt: skip
    assert {name: entry["accuracy"] for name, entry in report["per_group"].items()} == pytest.approx(
        {"unaltered": 3 / 4, "jpeg70": 1.0, "gamma0.8": 1 / 3}
    )
    assert report["weighted_accuracy"] == pytest.approx(0.7 * 3 / 4 + 0.3 * (1 + 1 / 3) / 2)
    # Without --json the PNG lands in the working folder.
    assert (tmp_path / "confusion_matrix.png").is_file()
    assert "warning" not in capsys.readouterr().err
    # A group of the user's own counts as manipulated, and says so: a misspelt `unaltered` did silently.
    (tmp_path / "test_manipulations.csv").write_text("fname,manipulation\n" + rows.replace("unaltered", "unalterd"))
    report = evaluate(
        ckpt, test_folder, "--labels", str(tmp_path / "test_labels.csv"),
        "--manipulations", str(tmp_path / "test_manipulations.csv"), "--aggregate", "max", "--json", "again.json",
    )  # fmt: skip
    assert "unalterd" in report["per_group"] and report["weighted_accuracy"] is None
    warning = capsys.readouterr().err
    assert "group(s) unalterd are not among camlit's (unaltered, jpeg70," in warning
    assert "they count as manipulated" in warning


def test_the_default_picture_replaces_only_one_evaluate_wrote(
    ckpt, test_folder, tmp_path, stub_model, monkeypatch, capsys
):
    """A user's confusion_matrix.png in the working folder was written over without a word."""
    monkeypatch.chdir(tmp_path)
    users = write_image(tmp_path / "confusion_matrix.png", solid(2))
    before = users.read_bytes()
    labels = ("--labels", str(tmp_path / "test_labels.csv"))
    line = one_line_error(capsys, lambda: evaluate(ckpt, test_folder, *labels))
    assert line.startswith(
        f"error: {Path('confusion_matrix.png')}: is there and is not a picture camlit evaluate wrote"
    )
    assert users.read_bytes() == before
    users.unlink()
    evaluate(ckpt, test_folder, *labels)
    os.utime(users, (0, 0))
    evaluate(ckpt, test_folder, *labels)  # its own is replaced
    assert users.stat().st_mtime > 0 and cv2.imread(str(users)) is not None


def test_the_picture_named_after_the_json_replaces_only_one_evaluate_wrote(
    ckpt, test_folder, tmp_path, stub_model, capsys
):
    """With --json X, a user's X_confusion.png was written over without a word."""
    users = write_image(tmp_path / "eval_confusion.png", solid(2))
    before = users.read_bytes()
    args = ("--labels", str(tmp_path / "test_labels.csv"), "--json", str(tmp_path / "eval.json"))
    line = one_line_error(capsys, lambda: evaluate(ckpt, test_folder, *args))
    assert line.startswith(f"error: {users}: is there and is not a picture camlit evaluate wrote")
    assert users.read_bytes() == before and not (tmp_path / "eval.json").exists()
    evaluate(ckpt, test_folder, *args, "--confusion", str(tmp_path / "mine.png"))  # named: allowed
    assert users.read_bytes() == before


def test_a_full_disk_leaves_the_json_and_the_picture_as_they_were(
    ckpt, test_folder, tmp_path, stub_model, capsys, monkeypatch
):
    """The picture was written, then the JSON: a full disk between left a new picture beside an
    old JSON, figures from two runs."""
    args = ("--labels", str(tmp_path / "test_labels.csv"), "--json", str(tmp_path / "eval.json"))
    evaluate(ckpt, test_folder, *args)
    picture, figures = tmp_path / "eval_confusion.png", tmp_path / "eval.json"
    before = picture.read_bytes(), figures.read_bytes()
    write_image(test_folder / "img_a3_unalt.tif", solid(1))  # predicted right now: other figures
    full_disk_at(monkeypatch, "eval.json")
    line = one_line_error(capsys, lambda: evaluate(ckpt, test_folder, *args))
    assert "no space left" in line.lower()
    assert (picture.read_bytes(), figures.read_bytes()) == before
    assert not list(tmp_path.glob(".*"))  # no temporary left


def test_unusable_images_in_a_tree_are_named_by_their_path_under_input(ckpt, tmp_path, stub_model, capsys):
    """Every camera folder holds a p0.png: the base name alone did not say which one was unusable."""
    root = tmp_path / "data-512"
    for k, camera in enumerate(CLASSES):
        write_image(root / "unaltered" / camera / "p0.png", solid(k))
    (root / "unaltered" / CLASSES[1] / "p0.png").write_bytes(b"garbage")
    shown = str(Path("unaltered", CLASSES[1], "p0.png"))
    with pytest.raises(SystemExit):
        evaluate(ckpt, root)
    assert f"image(s) (unreadable, or smaller than the crop): {shown};" in capsys.readouterr().err
    report = evaluate(ckpt, root, "--skip_unreadable")
    assert report["skipped"] == [shown]


def test_datamodule_style_folder(ckpt, tmp_path, stub_model):
    root = tmp_path / "data-512"
    # unaltered: all 3 right; jpeg70: 1 of 3 right (classes 1 and 2 predicted as 0).
    for k, camera in enumerate(CLASSES):
        write_image(root / "unaltered" / camera / "p0.png", solid(k))
        write_image(root / "jpeg70" / camera / "p0.png", solid(0))
    report = evaluate(ckpt, root, "--json", str(tmp_path / "eval.json"), "--crop_grid")
    assert report["per_group"]["unaltered"]["accuracy"] == 1.0
    assert report["per_group"]["jpeg70"]["accuracy"] == pytest.approx(1 / 3)
    assert report["accuracy"] == pytest.approx(4 / 6)
    assert report["weighted_accuracy"] == pytest.approx(0.7 + 0.3 / 3)
    assert report["confusion_matrix"] == [[2, 0, 0], [1, 1, 0], [1, 0, 1]]
    assert (tmp_path / "eval_confusion.png").is_file()


def test_unreadable_image_fails_unless_skipped(ckpt, test_folder, tmp_path, stub_model, capsys):
    (test_folder / "img_a3_unalt.tif").write_bytes(b"garbage")
    labels = str(tmp_path / "test_labels.csv")
    with pytest.raises(SystemExit) as exit_info:
        evaluate(ckpt, test_folder, "--labels", labels, "--json", str(tmp_path / "e.json"))
    assert exit_info.value.code == 2 and "img_a3_unalt.tif" in capsys.readouterr().err
    assert not (tmp_path / "e.json").exists()
    report = evaluate(ckpt, test_folder, "--labels", labels, "--json", str(tmp_path / "e.json"), "--skip_unreadable")
    assert report["images"] == 7 and report["skipped"] == ["img_a3_unalt.tif"]
    assert report["per_group"]["unaltered"]["accuracy"] == 1.0


def one_line_error(capsys, call) -> str:
    with pytest.raises(SystemExit) as exit_info:
        call()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("error:") and len(err.splitlines()) == 1, err
    return err


def test_an_unwritable_json_is_refused_before_any_work(ckpt, test_folder, tmp_path, read_only_folder, capsys):
    args = ["--ckpt_path", str(ckpt), "--input", str(test_folder), "--labels", str(tmp_path / "test_labels.csv")]
    args += ["--json", str(read_only_folder / "eval.json"), "--confusion", str(tmp_path / "c.png"), "--no_progress"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(camlit.inference.options, "predict_paths", lambda *a, **k: pytest.fail("predicted first"))
        line = one_error_line(capsys, lambda: main(args))
    assert line.startswith(f"error: --json {read_only_folder}/eval.json: cannot write in {read_only_folder}")


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        (("--json", "{labels}"), "--json {labels}: is also --labels"),
        (("--json", "{ckpt}"), "--json {ckpt}: is also --ckpt_path"),
        (("--json", "{tmp}/e.png", "--confusion", "{tmp}/e.png"), "--confusion {tmp}/e.png: is also --json"),
        (("--confusion", "{input}/img_new.png"), "an image name inside the input folder"),
        # The picture named after --json was blamed on --confusion, not given.
        (("--json", "{input}/e.json"), "error: --json's picture {input}/e_confusion.png: an image name inside"),
        (("--confusion", "{tmp}/c.jpg"), "--confusion {tmp}/c.jpg: the picture is a PNG"),
    ],
)
def test_an_output_that_would_replace_an_input_is_refused(ckpt, test_folder, tmp_path, capsys, outputs, message):
    names = {"labels": tmp_path / "test_labels.csv", "ckpt": ckpt, "tmp": tmp_path, "input": test_folder}
    args = ["--ckpt_path", str(ckpt), "--input", str(test_folder), "--labels", str(names["labels"]), "--no_progress"]
    args += [value.format(**names) for value in outputs]
    line = refused_before_predicting(capsys, main, args, untouched=(names["labels"], ckpt))
    assert message.format(**names) in line


def test_labels_keep_the_spaces_of_file_names(tmp_path):
    """predict writes `fname,camera` with csv.writer, which leaves a leading space unquoted."""
    names = [" lead space.tif", "trail space .tif", "plain.tif"]
    for name in names:
        write_image(tmp_path / "test" / name, solid(0))
    write_csv_atomic(tmp_path / "labels.csv", [("fname", "camera"), *((name, CLASSES[0]) for name in names)])
    images = labelled_csv(tmp_path / "test", tmp_path / "labels.csv", CLASSES)
    assert sorted(image.path for image in images) == sorted(str(tmp_path / "test" / name) for name in names)


def test_images_without_a_label_are_named_as_left_out(tmp_path, capsys):
    """A labels file listing part of the folder scored that part without a word."""
    names = ["a.tif", "b.tif", "c.tif"]
    for name in names:
        write_image(tmp_path / "test" / name, solid(0))
    write_csv_atomic(tmp_path / "labels.csv", [("fname", "camera"), ("b.tif", CLASSES[0])])
    images = labelled_csv(tmp_path / "test", tmp_path / "labels.csv", CLASSES)
    assert [Path(image.path).name for image in images] == ["b.tif"]
    err = capsys.readouterr().err
    assert "warning: --labels" in err and "2 image(s) in" in err and "a.tif, c.tif" in err


def test_unknown_camera_in_labels(ckpt, test_folder, tmp_path, capsys):
    labels = tmp_path / "labels.csv"
    labels.write_text("fname,camera\nimg_a0_unalt.tif,Nokia-3310\nimg_a1_unalt.tif,HTC-1-M7\n")
    err = one_line_error(capsys, lambda: evaluate(ckpt, test_folder, "--labels", str(labels)))
    assert "Nokia-3310" in err and "HTC-1-M7, LG-Nexus-5x, Motorola-X" in err


def test_missing_files_in_labels(ckpt, test_folder, tmp_path, capsys):
    labels = tmp_path / "labels.csv"
    labels.write_text("fname,camera\nimg_a0_unalt.tif,HTC-1-M7\nimg_zz_unalt.tif,HTC-1-M7\n")
    err = one_line_error(capsys, lambda: evaluate(ckpt, test_folder, "--labels", str(labels)))
    assert "1 file(s) missing" in err and "img_zz_unalt.tif" in err


@pytest.mark.parametrize("name", ["../elsewhere/img_x_unalt.tif", "ABSOLUTE", "sub/img_a0_unalt.tif"])
def test_a_labels_row_naming_a_path_is_refused(ckpt, test_folder, tmp_path, capsys, name):
    """A photo outside the folder evaluated was scored as part of it."""
    outside = tmp_path / "elsewhere" / "img_x_unalt.tif"
    write_image(outside, solid(0))
    (test_folder / "sub").mkdir()
    write_image(test_folder / "sub" / "img_a0_unalt.tif", solid(1))
    name = str(outside) if name == "ABSOLUTE" else name
    labels = tmp_path / "labels.csv"
    labels.write_text(f"fname,camera\nimg_a0_unalt.tif,HTC-1-M7\n{name},HTC-1-M7\n")
    line = one_line_error(capsys, lambda: evaluate(ckpt, test_folder, "--labels", str(labels)))
    assert line.strip() == f"error: --labels {labels}: {name} is a path; name files directly in {test_folder}"


@pytest.mark.parametrize(
    ("row", "named"), [(" ,HTC-1-M7", "line 3 has no fname"), ("img_a1_unalt.tif,", "line 3 has no camera")]
)
def test_a_labels_row_with_an_empty_field_is_named_by_its_line(ckpt, test_folder, tmp_path, capsys, row, named):
    """A blank file name was `1 file(s) missing from DIR: ` naming nothing; a blank camera
    `camera(s)  not among ...`."""
    labels = tmp_path / "labels.csv"
    labels.write_text(f"fname,camera\nimg_a0_unalt.tif,HTC-1-M7\n{row}\n")
    assert f"--labels {labels}: {named}" in one_line_error(
        capsys, lambda: evaluate(ckpt, test_folder, "--labels", str(labels))
    )


def test_bad_labels_header(ckpt, test_folder, tmp_path, capsys):
    labels = tmp_path / "labels.csv"
    labels.write_text("file,label\nimg_a0_unalt.tif,HTC-1-M7\n")
    err = one_line_error(capsys, lambda: evaluate(ckpt, test_folder, "--labels", str(labels)))
    assert "header must be fname,camera" in err


def test_images_beside_the_camera_folders_are_named_as_left_out(tmp_path, capsys):
    """An image at the top of a DataModule-style --input was left out of the figures without a word."""
    from camlit.inference.labelled import labelled_folder

    write_image(tmp_path / "flat" / "HTC-1-M7" / "p0.png", solid(0))
    write_image(tmp_path / "flat" / "stray.png", solid(1))
    images = labelled_folder(tmp_path / "flat", ["HTC-1-M7", "LG-Nexus-5x"])
    assert [Path(image.path).name for image in images] == ["p0.png"]
    assert "1 image(s) beside the camera folders left out" in capsys.readouterr().err


def test_class_folders_that_differ_from_the_checkpoint(ckpt, tmp_path, capsys):
    for camera in ("HTC-1-M7", "Canon-EOS"):
        write_image(tmp_path / "flat" / camera / "p0.png", solid(0))
    err = one_line_error(capsys, lambda: evaluate(ckpt, tmp_path / "flat"))
    assert "Canon-EOS" in err and "not among the checkpoint's classes" in err
    for camera in ("Canon-EOS", "Nikon-D70"):
        write_image(tmp_path / "other" / camera / "p0.png", solid(0))
    err = one_line_error(capsys, lambda: evaluate(ckpt, tmp_path / "other"))
    assert "Canon-EOS, Nikon-D70" in err
