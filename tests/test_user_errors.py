"""Bad input and a full disk end as one `error:` line with exit status 2, and leave nothing half done."""

import csv
import errno
import logging
import os

import numpy as np
import pytest
import torch
from conftest import CLASSES, fit_args, one_error_line, photo, random_image, save_checkpoint, write_image
from conftest import make_datamodule as make

import camlit.atomic
from camlit.data.commands import prepare_main
from camlit.inference import evaluate, predict
from camlit.training import cli

pytestmark = pytest.mark.usefixtures("camlit_messages_on_stderr")

SHORT = ("--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1")


@pytest.fixture
def images(tmp_path):
    """Labelled test images: test/<name> with test_labels.csv beside it."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "test"
    names = ["a.tif", "b.tif", "c.png"]
    for name in names:
        write_image(folder / name, random_image(rng, 48, 48))
    (tmp_path / "labels.csv").write_text("fname,camera\n" + "".join(f"{n},{CLASSES[0]}\n" for n in names))
    return folder


def run_predict(ckpt, folder, output, *extra):
    args = ["--ckpt_path", str(ckpt), "--input", str(folder), "--output", str(output), "--no_progress"]
    return predict.main([*args, "--crops", "2", "--num_workers", "0", *extra])


def run_evaluate(ckpt, folder, *extra):
    args = ["--ckpt_path", str(ckpt), "--input", str(folder), "--crops", "2", "--num_workers", "0", "--no_progress"]
    return evaluate.main([*args, *extra])


@pytest.fixture
def full_disk(monkeypatch):
    """Every file camlit writes fails as on a full disk, at the moment its bytes reach the disk."""

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(camlit.atomic.os, "fsync", no_space)


def test_full_disk_in_predict_and_evaluate(ckpt, images, tmp_path, capsys, full_disk):
    output = tmp_path / "sub.csv"
    line = one_error_line(capsys, lambda: run_predict(ckpt, images, output))
    assert f"{output}: no space left on device" in line
    assert not output.exists() and not list(tmp_path.glob(".*tmp*"))
    report = tmp_path / "report.json"
    line = one_error_line(
        capsys, lambda: run_evaluate(ckpt, images, "--labels", str(tmp_path / "labels.csv"), "--json", str(report))
    )
    assert "report_confusion.png: no space left on device" in line and not report.exists()


def test_full_disk_in_fit(flat_tree, tmp_path, monkeypatch, capsys, full_disk):
    monkeypatch.chdir(tmp_path)
    line = one_error_line(capsys, lambda: cli.main(fit_args(flat_tree, *SHORT)))
    assert "last.ckpt: no space left on device; the run's checkpoints are whole" in line or "best.ckpt" in line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # Were `Parser key "size": Expected a <class 'int'>. Got value: abc`, and the same at length
        # for an option that may be null, and `required: input, output`.
        (["--input", "a", "--output", "b", "--size", "abc"], "--size: expected an integer, got abc"),
        ([], "the following arguments are required: --input, --output"),
    ],
)
def test_an_option_of_the_wrong_type_is_named_as_typed(capsys, args, message):
    assert one_error_line(capsys, lambda: prepare_main(args)) == f"error: {message}"
    line = one_error_line(capsys, lambda: cli.main(["--trainer.max_epochs", "abc"]))
    assert line == "error: --trainer.max_epochs: expected an integer or null, got abc"


def test_full_disk_in_prepare_data(tmp_path, capsys, full_disk):
    write_image(tmp_path / "train" / "Cam-0" / "p0.jpg", photo(np.random.default_rng(0), 300, 400))
    args = ["--input", str(tmp_path / "train"), "--output", str(tmp_path / "out"), "--size", "128", "--workers", "1"]
    line = one_error_line(capsys, lambda: prepare_main(args))
    # The first file written is the folder's setting, then the crops.
    assert ".prepare.json: no space left on device; every image written is whole" in line


@pytest.mark.parametrize("option", ["--output", "--probs", "--json"])
def test_an_output_option_naming_a_folder_is_refused_before_any_work(ckpt, images, tmp_path, capsys, option):
    folder = tmp_path / "a-folder"
    folder.mkdir()
    if option == "--json":
        call = lambda: run_evaluate(ckpt, images, "--labels", str(tmp_path / "labels.csv"), "--json", str(folder))  # noqa: E731
    else:
        output = folder if option == "--output" else tmp_path / "sub.csv"
        call = lambda: run_predict(ckpt, images, output, *(["--probs", str(folder)] if option == "--probs" else []))  # noqa: E731
    assert one_error_line(capsys, call) == f"error: {option} {folder}: is a folder; name a file to write"
    assert not (tmp_path / "sub.csv").exists()


@pytest.mark.parametrize("option", ["--output", "--probs"])
def test_an_output_option_ending_with_a_separator_is_refused_and_nothing_written(
    ckpt, images, tmp_path, capsys, option
):
    """`--output newdir/` names a folder not there yet: a file `newdir` was written."""
    meant = f"{tmp_path / 'newdir'}/"
    args = ["--probs", meant] if option == "--probs" else []
    output = meant if option == "--output" else tmp_path / "sub.csv"
    line = one_error_line(capsys, lambda: run_predict(ckpt, images, output, *args))
    assert line == f"error: {option} {meant}: ends with a separator, so names a folder; name a file to write"
    assert not (tmp_path / "newdir").exists() and not (tmp_path / "sub.csv").exists()


@pytest.mark.parametrize(
    "content",
    [
        "fname,camera\na.tif,HTC-1-M7\n".encode("utf-16"),
        bytes(range(256)) * 4,
    ],
    ids=["utf-16", "binary"],
)
def test_a_labels_csv_that_is_not_utf8_text(ckpt, images, tmp_path, capsys, content):
    labels = tmp_path / "odd.csv"
    labels.write_bytes(content)
    line = one_error_line(capsys, lambda: run_evaluate(ckpt, images, "--labels", str(labels)))
    assert line.startswith(f"error: --labels {labels}: not a UTF-8 CSV file")


def test_a_latin1_labels_csv_is_named_for_its_encoding_not_only_for_missing_files(ckpt, tmp_path, capsys):
    folder = tmp_path / "photos"
    write_image(folder / "café.tif", random_image(np.random.default_rng(0), 48, 48))
    labels = tmp_path / "latin1.csv"
    labels.write_bytes(f"fname,camera\ncafé.tif,{CLASSES[0]}\n".encode("latin-1"))
    line = one_error_line(capsys, lambda: run_evaluate(ckpt, folder, "--labels", str(labels)))
    assert line.startswith(f"error: --labels {labels}: 1 file(s) missing from {folder}: caf\\xe9.tif; ")
    assert line.endswith(
        "the file names hold bytes that are not UTF-8 (saved in another encoding?): save the CSV as UTF-8"
    )


def test_commas_in_class_and_file_names_are_quoted(tmp_path):
    classes = ["Cam,B", 'Cam "C"']
    ckpt = save_checkpoint(tmp_path / "commas.ckpt", classes=classes)
    folder = tmp_path / "test"
    rng = np.random.default_rng(0)
    # A lone carriage return: with "\n" as the line end csv.writer left it unquoted, and every
    # reader took it for the end of a row.
    names = ["carriage\rreturn.tif", "plain.tif", "with,comma.tif"]
    for name in names:
        write_image(folder / name, random_image(rng, 48, 48))
    output, probs = tmp_path / "sub.csv", tmp_path / "probs.csv"
    run_predict(ckpt, folder, output, "--probs", str(probs))
    with open(output, newline="") as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["fname", "camera"] and sorted(r[0] for r in rows[1:]) == names
    assert all(r[1] in classes for r in rows[1:])
    run_evaluate(ckpt, folder, "--labels", str(output))  # its own answers read back as labels
    with open(probs, newline="") as file:
        header = next(csv.reader(file))
    assert header == ["fname", *classes]


def test_a_dangling_symlink_is_named_in_prediction(ckpt, images, tmp_path, capsys):
    (images / "gone.tif").symlink_to(tmp_path / "nowhere.tif")
    line = one_error_line(capsys, lambda: run_predict(ckpt, images, tmp_path / "sub.csv"))
    assert "gone.tif" in line
    run_predict(ckpt, images, tmp_path / "sub.csv", "--skip_unreadable")
    assert "gone.tif: broken symbolic link to" in capsys.readouterr().err


def test_a_dangling_symlink_is_named_in_training(flat_tree, tmp_path, caplog):
    (flat_tree / CLASSES[0] / "gone.tif").symlink_to(tmp_path / "nowhere.tif")
    with caplog.at_level(logging.WARNING):
        datamodule = make(flat_tree)
    assert "gone.tif: broken symbolic link to" in caplog.text
    assert all("gone.tif" not in s.path for s in datamodule.train_set.samples)
    assert torch.is_tensor(datamodule.train_set[(0, 0, 0)][0])


@pytest.mark.parametrize("value", ["-1e3", "-2.5E-4", "-0.5", "-.5", "-3"])
def test_a_negative_number_in_any_notation_is_an_options_value(value, capsys):
    """`--threshold -1e3` ended as `expected one argument`: argparse took it for an option."""
    from camlit.data.commands import finite
    from camlit.errors import PlainParser

    parser = PlainParser(prog="camlit x")
    parser.add_argument("--threshold", type=finite)
    assert parser.parse_args(["--threshold", value]).threshold == float(value)
    line = one_error_line(capsys, lambda: parser.parse_args(["--threshold", "-inf"]))
    assert "--threshold: must be a finite number, not -inf" in line


@pytest.mark.parametrize(
    "command, args, option",
    [
        ("fit", ["--resume", ""], "--resume"),
        ("fit", ["--ckpt_path="], "--ckpt_path"),
        ("calibrate", ["--ckpt_path", " "], "--ckpt_path"),
        ("synthetic", ["--output", ""], "--output"),
        ("prepare", ["--input", "photos", "--output", ""], "--output"),
        ("predict", ["--ckpt_path", "x.ckpt", "--input", "", "--output", "sub.csv"], "--input"),
        ("evaluate", ["--ckpt_path", "x.ckpt", "--input", "test", "--labels="], "--labels"),
    ],
)
def test_an_empty_option_value_is_refused_not_read_as_the_working_folder(
    command, args, option, tmp_path, monkeypatch, capsys
):
    """An empty value (an unset shell variable) was the working folder: `synthetic --output ""`
    wrote a data set there, `predict --input ""` read it, and `fit --resume ""` took no --resume
    at all and trained a new run from scratch."""
    from camlit.console import command as main_of

    monkeypatch.chdir(tmp_path)
    line = one_error_line(capsys, lambda: main_of(command)(args))
    assert line == f"error: {option}: an empty value; give one"
    assert not list(tmp_path.iterdir())


def test_an_empty_value_means_none_where_an_option_says_so(capsys):
    from camlit.errors import EMPTY_MEANS_NONE, PlainParser

    parser = PlainParser(prog="camlit x")
    parser.add_argument("--tta_manipulations", default="all")
    assert "--tta_manipulations" in EMPTY_MEANS_NONE
    assert parser.parse_args(["--tta_manipulations", ""]).tta_manipulations == ""


def test_an_output_that_is_a_pipe_is_refused_before_predicting(ckpt, images, tmp_path, capsys, monkeypatch):
    """`--output /dev/null` (or a named pipe) was replaced by a plain file holding the CSV."""
    fifo = tmp_path / "sub.csv"
    os.mkfifo(fifo)
    line = one_error_line(capsys, lambda: run_predict(ckpt, images, fifo))
    assert line.startswith(f"error: --output {fifo}: not a regular file")
    assert fifo.is_fifo()
    # "-", the shell's standard output, was a file of that name.
    monkeypatch.chdir(tmp_path)
    line = one_error_line(capsys, lambda: run_predict(ckpt, images, "-"))
    assert line == "error: --output -: camlit writes files, not to standard output; name a file"
    assert not (tmp_path / "-").exists()


@pytest.mark.parametrize("path", ["too_long", "loop"])
def test_a_path_no_file_can_have_is_one_error_line(ckpt, images, tmp_path, capsys, path):
    """A name part over 255 bytes (OSError ENAMETOOLONG) or links round in a loop (pathlib's
    RuntimeError) ended in a traceback from whichever check met the path first."""
    if path == "too_long":
        bad, expected = tmp_path / ("x" * 300 + ".csv"), "a name too long for the file system"
        line = one_error_line(capsys, lambda: run_predict(ckpt, images, bad))
    else:
        bad, expected = tmp_path / "loop", "links that lead round in a loop"
        bad.symlink_to(bad)
        line = one_error_line(capsys, lambda: run_predict(bad, images, tmp_path / "sub.csv"))
    assert line.endswith(f"{bad.name}: {expected}")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["test", "labels.csv", *(["loop"] * (path == "loop"))])


def test_an_option_spelt_with_dashes_is_the_option_spelt_with_underscores(tmp_path, capsys):
    """Scripts written for dashed spellings (`--images-per-camera`, as the GPU check kit writes)
    ended at `unrecognized arguments`; no camlit option has a dash in its name."""
    from camlit.data.commands import synthetic_parser
    from camlit.errors import PlainParser

    args = synthetic_parser().parse_args(["--output", str(tmp_path), "--images-per-camera", "3", "--test-per-camera=2"])
    assert (args.images_per_camera, args.test_per_camera) == (3, 2)
    parser = PlainParser(prog="camlit x")
    parser.add_argument("--crop_size", type=int)
    parser.add_argument("--names", nargs="*")
    assert parser.parse_args(["--crop-size", "64"]).crop_size == 64
    assert parser.parse_args(["--names", "a-b", "c-d"]).names == ["a-b", "c-d"]
    parser.add_argument("--project")
    assert parser.parse_args(["--project", "--data.num-workers -1"]).project == "--data.num-workers -1"
    with pytest.raises(SystemExit) as stop:
        cli.main(["--print_config", "--trainer.max-epochs", "7", "--data.crop-size", "32"])
    assert stop.value.code == 0
    printed = capsys.readouterr().out
    assert "max_epochs: 7" in printed and "crop_size: 32" in printed


def test_a_dashed_resume_option_names_the_run_before_its_config_is_read(monkeypatch):
    """`--ckpt-path RUN/checkpoints/last.ckpt` must find the run as `--ckpt_path` does: the run's
    config.yaml, its log folder and the options the command line gives are read before parsing."""
    seen = []

    def stop(args):
        seen.extend(args)
        raise SystemExit(0)

    monkeypatch.setattr(cli, "resume_arguments", stop)
    with pytest.raises(SystemExit):
        cli.main(["--ckpt-path", "run/checkpoints/last.ckpt", "--data.cache-dir", "/elsewhere"])
    assert seen == ["--ckpt_path", "run/checkpoints/last.ckpt", "--data.cache_dir", "/elsewhere"]
