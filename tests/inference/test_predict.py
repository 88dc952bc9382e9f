import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import (
    CLASSES,
    ROOT,
    bomb_png,
    full_disk_at,
    one_error_line,
    random_image,
    refused_before_predicting,
    save_checkpoint,
    write_image,
)

from camlit.data import manipulations
from camlit.errors import CamlitError
from camlit.imageio import read_rgb
from camlit.inference import evaluate
from camlit.inference.loading import checkpoint_crop_size, load_checkpoint
from camlit.inference.options import manipulated_from_name, tta_manipulations
from camlit.inference.predict import main
from camlit.inference.running import predict_paths, trainer_devices
from camlit.inference.tta import CropPlan, crop_key, image_crops

SIZE = 32  # the crop size recorded in the test checkpoint


@pytest.fixture
def images(tmp_path):
    """Five 48x48 test images, named out of order, as Kaggle's .tif plus one .png."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "test"
    for name in ("img_c.tif", "img_a.tif", "img_e.png", "img_b.tif", "img_d.tif"):
        write_image(folder / name, random_image(rng, 48, 48))
    return folder


def run(ckpt, folder, output, *extra):
    args = ["--ckpt_path", str(ckpt), "--input", str(folder), "--output", str(output), "--no_progress"]
    return main([*args, "--crops", "3", "--num_workers", "0", *extra])


# --- checkpoint ------------------------------------------------------------------------------


def test_crop_size_comes_from_the_datamodule_hyperparameters():
    assert checkpoint_crop_size({"datamodule_hyper_parameters": {"crop_size": 512}}) == 512
    assert checkpoint_crop_size({"hyper_parameters": {}}) is None


# --- the command line ------------------------------------------------------------------------


def test_writes_kaggle_csv_sorted_atomically(ckpt, images, tmp_path, capsys):
    output = tmp_path / "out" / "submission.csv"
    probs = tmp_path / "out" / "probs.csv"
    predictions = run(ckpt, images, output, "--probs", str(probs))
    lines = output.read_text().splitlines()
    assert lines[0] == "fname,camera"
    names = [line.split(",")[0] for line in lines[1:]]
    assert names == ["img_a.tif", "img_b.tif", "img_c.tif", "img_d.tif", "img_e.png"]
    assert all(line.split(",")[1] in CLASSES for line in lines[1:])
    # Only the two files asked for: no temporary file left behind.
    assert sorted(p.name for p in output.parent.iterdir()) == ["probs.csv", "submission.csv"]
    rows = [line.split(",") for line in probs.read_text().splitlines()]
    assert rows[0] == ["fname", *CLASSES] and [r[0] for r in rows[1:]] == names
    for row, line in zip(rows[1:], lines[1:], strict=True):
        values = [float(v) for v in row[1:]]
        assert sum(values) == pytest.approx(1.0, abs=1e-4)
        assert CLASSES[int(np.argmax(values))] == line.split(",")[1]
    # 48x48 images only work because the crop size (32) came from the checkpoint, not 224.
    assert predictions.crops == 15
    assert "images/s" in capsys.readouterr().out


def test_a_file_name_that_is_not_utf8_is_written_as_its_bytes(ckpt, images, tmp_path):
    name = os.fsdecode(b"img_\xff.tif")  # a Latin-1 name, as an old camera or archive may leave
    (images / "img_a.tif").rename(images / name)
    run(ckpt, images, tmp_path / "s.csv")
    rows = (tmp_path / "s.csv").read_bytes().splitlines()
    assert b"img_\xff.tif" in [row.split(b",")[0] for row in rows[1:]]
    # And reads back: evaluate refused its own answers as "not a UTF-8 CSV file".
    args = ["--ckpt_path", str(ckpt), "--input", str(images), "--labels", str(tmp_path / "s.csv")]
    report = evaluate.main([*args, "--json", str(tmp_path / "e.json"), "--num_workers", "0", "--no_progress"])
    assert report["images"] == len(rows) - 1 and report["skipped"] == []


def test_a_full_disk_leaves_the_submission_and_the_probabilities_as_they_were(
    ckpt, images, tmp_path, capsys, monkeypatch
):
    """The submission was written, then --probs: a full disk between left a new submission beside
    the probabilities of another run."""
    output, probs = tmp_path / "submission.csv", tmp_path / "probs.csv"
    output.write_text("fname,camera\nolder,run\n")
    probs.write_text("the older run's\n")
    full_disk_at(monkeypatch, "probs.csv")
    line = one_error_line(capsys, lambda: run(ckpt, images, output, "--probs", str(probs)))
    assert "no space left" in line.lower()
    assert output.read_text() == "fname,camera\nolder,run\n" and probs.read_text() == "the older run's\n"
    assert not list(tmp_path.glob(".*"))  # no temporary left


def test_two_runs_give_identical_files(ckpt, images, tmp_path):
    run(ckpt, images, tmp_path / "a.csv", "--probs", str(tmp_path / "pa.csv"))
    run(ckpt, images, tmp_path / "b.csv", "--probs", str(tmp_path / "pb.csv"), "--num_workers", "1")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert (tmp_path / "pa.csv").read_bytes() == (tmp_path / "pb.csv").read_bytes()


def test_balance_and_grid_from_the_command_line(ckpt, images, tmp_path):
    rng = np.random.default_rng(5)
    write_image(images / "img_f.tif", random_image(rng, 48, 48))
    run(ckpt, images, tmp_path / "sub.csv", "--balance", "--crop_grid", "--aggregate", "geomean")
    cameras = [line.split(",")[1] for line in (tmp_path / "sub.csv").read_text().splitlines()[1:]]
    assert sorted(cameras) == sorted(CLASSES * 2)


def test_unreadable_images(ckpt, images, tmp_path, capsys):
    (images / "broken.jpg").write_bytes(b"\xff\xd8not really a jpeg")
    (images / "empty.tif").write_bytes(b"")
    write_image(images / "small.png", random_image(np.random.default_rng(0), 20, 20))
    output = tmp_path / "sub.csv"
    with pytest.raises(SystemExit) as exit_info:
        run(ckpt, images, output, "--num_workers", "1")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    error_lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1
    assert all(name in error_lines[0] for name in ("broken.jpg", "empty.tif", "small.png"))
    assert "Traceback" not in err
    names = [line.split(",")[0] for line in output.read_text().splitlines()[1:]]
    assert names == ["img_a.tif", "img_b.tif", "img_c.tif", "img_d.tif", "img_e.png"]
    # Accepted: the same rows, exit status 0, the files still reported.
    predictions = run(ckpt, images, tmp_path / "skip.csv", "--skip_unreadable")
    assert (tmp_path / "skip.csv").read_bytes() == output.read_bytes()
    assert len(predictions.problems) == 3
    assert "broken.jpg" in capsys.readouterr().err


@pytest.mark.parametrize("option", ["--output", "--probs"])
def test_an_unwritable_output_is_refused_before_any_work(ckpt, images, tmp_path, read_only_folder, capsys, option):
    import camlit.inference.options

    outputs = {"--output": str(tmp_path / "s.csv"), "--probs": None, option: str(read_only_folder / "x" / "s.csv")}
    args = ["--ckpt_path", str(ckpt), "--input", str(images), "--no_progress"]
    args += [item for name, path in outputs.items() if path for item in (name, path)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(camlit.inference.options, "predict_paths", lambda *a, **k: pytest.fail("predicted first"))
        line = one_error_line(capsys, lambda: main(args))
    assert line.startswith(f"error: {option} {read_only_folder}/x/s.csv: cannot write in {read_only_folder}")


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        (("--output", "{tmp}/s.csv", "--probs", "{ckpt}"), "--probs {ckpt}: is also --ckpt_path"),
        (("--output", "{tmp}/s.csv", "--probs", "{tmp}/s.csv"), "--probs {tmp}/s.csv: is also --output"),
        (("--output", "{input}/img_a.tif"), "--output {input}/img_a.tif: an image name inside the input folder"),
        (("--output", "{ckpt}.sha256"), "--output {ckpt}.sha256: is also a file camlit keeps beside --ckpt_path"),
        (
            ("--output", "{tmp}/s.csv", "--probs", "{stem}.unknown.npz"),
            "--probs {stem}.unknown.npz: is also a file camlit keeps beside --ckpt_path",
        ),
        # Another checkpoint of the run, or a file in its checkpoints folder, was replaced.
        (("--output", "{tmp}/s.csv", "--probs", "{tmp}/last.ckpt"), "--probs {tmp}/last.ckpt: a checkpoint's name"),
        (("--output", "{run}/s.csv"), "--output {run}/s.csv: a checkpoint's name, or one of a run's own files"),
        # A CSV over the run's config.yaml: --resume then refused the run ("not a config").
        (("--output", "{run}/../config.yaml"), "--output {run}/../config.yaml: a checkpoint's name, or one of a run's"),
        (("--output", "{tmp}/s.csv", "--probs", "{run}/../hparams.yaml"), "hparams.yaml: a checkpoint's name, or one"),
    ],
)
def test_an_output_that_would_replace_an_input_is_refused(ckpt, images, tmp_path, capsys, outputs, message):
    run = tmp_path / "lightning_logs" / "version_0" / "checkpoints"
    run.mkdir(parents=True)
    (run / "last.ckpt").write_bytes(ckpt.read_bytes())
    names = {"tmp": tmp_path, "ckpt": ckpt, "input": images, "stem": ckpt.with_suffix(""), "run": run}
    args = ["--ckpt_path", str(ckpt), "--input", str(images), "--no_progress"]
    args += [value.format(**names) for value in outputs]
    (run.parent / "config.yaml").write_text("trainer: {}\n")
    line = refused_before_predicting(
        capsys, main, args, untouched=(ckpt, images / "img_a.tif", run.parent / "config.yaml")
    )
    assert message.format(**names) in line
    assert not (tmp_path / "s.csv").exists() and not (run.parent / "hparams.yaml").exists()


def test_a_decompression_bomb_is_named_as_unreadable_images_are(ckpt, images, tmp_path, capsys):
    bomb_png(images / "bomb.png")
    line = one_error_line(capsys, lambda: run(ckpt, images, tmp_path / "s.csv"))
    assert "1 unusable image(s)" in line and "bomb.png" in line
    assert len((tmp_path / "s.csv").read_text().splitlines()) == 1 + 5
    # Raised far enough, the limit lets a smaller image through.
    assert len(run(ckpt, images, tmp_path / "t.csv", "--skip_unreadable", "--max_pixels", "2304").problems) == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda args, tmp: args.__setitem__(1, str(tmp / "none.ckpt")), "none.ckpt: no such file; name a checkpoint"),
        # A folder was "no such checkpoint file".
        (lambda args, tmp: args.__setitem__(1, str(tmp)), ": a folder; name a checkpoint file"),
        (lambda args, tmp: args.__setitem__(3, str(tmp / "nowhere")), "no such folder"),
        # A photo named as the folder was "no such folder", though it was there.
        (lambda args, tmp: args.__setitem__(3, args[1]), "model.ckpt: a file, not a folder"),
        (lambda args, tmp: args.__setitem__(3, str(tmp / "out")), "no images"),
        (lambda args, tmp: args.extend(["--crops", "0"]), "--crops must be 1 to 1024, got 0"),
        # Refused before any image is read, not killed for memory cutting them.
        (lambda args, tmp: args.extend(["--crops", "1000000"]), "--crops must be 1 to 1024, got 1000000"),
        (lambda args, tmp: args.extend(["--seed", "-1"]), "--seed must be 0 or more, got -1"),
        (lambda args, tmp: args.extend(["--crop_size", "64"]), "smaller than the 64x64 crop; choose a smaller"),
        (
            lambda args, tmp: args.extend(["--tta_manipulations", "jpeg90,jpeg50"]),
            "--tta_manipulations: unknown 'jpeg50'",
        ),
    ],
)
def test_input_mistakes_are_one_line(ckpt, images, tmp_path, capsys, change, message):
    (tmp_path / "out").mkdir()
    output = str(tmp_path / "out" / "s.csv")
    args = ["--ckpt_path", str(ckpt), "--input", str(images), "--output", output, "--no_progress"]
    change(args, tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("error:") and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out" / "s.csv").exists()


@pytest.mark.parametrize(
    "content", [b"not a checkpoint", bytes(np.random.default_rng(0).integers(0, 256, 5000, np.uint8))]
)
def test_corrupt_checkpoint(images, tmp_path, capsys, content):
    (tmp_path / "bad.ckpt").write_bytes(content)
    with pytest.raises(SystemExit):
        main(["--ckpt_path", str(tmp_path / "bad.ckpt"), "--input", str(images), "--output", str(tmp_path / "s.csv")])
    err = capsys.readouterr().err
    # Random bytes: torch's reader opened with advice to load the file with weights_only=False.
    assert "not a loadable camlit checkpoint" in err and "weights_only" not in err


@pytest.mark.parametrize("saved", [torch.zeros(3), [1, 2]], ids=["a_tensor", "a_list"])
def test_a_file_of_plain_data_that_is_no_checkpoint_is_one_line(images, tmp_path, capsys, saved):
    """Lightning's reader indexed a saved tensor as a checkpoint: torch printed a deprecation
    warning before the error line."""
    import warnings

    torch.save(saved, tmp_path / "plain.ckpt")
    args = ["--ckpt_path", str(tmp_path / "plain.ckpt"), "--input", str(images), "--output", str(tmp_path / "s.csv")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = one_error_line(capsys, lambda: main(args))
    assert f"holds a {type(saved).__name__}, not a checkpoint's dict" in line
    assert [str(warning.message) for warning in caught] == []


def test_a_checkpoint_with_nan_weights_is_refused_before_any_work(images, tmp_path, capsys):
    path = save_checkpoint(tmp_path / "nan.ckpt")
    checkpoint = torch.load(path, weights_only=False)
    key = next(k for k, v in checkpoint["state_dict"].items() if v.is_floating_point() and "fc" in k)
    checkpoint["state_dict"][key][0] = float("nan")
    torch.save(checkpoint, path)
    line = one_error_line(capsys, lambda: run(path, images, tmp_path / "s.csv"))
    assert str(path) in line and key in line and "not finite" in line
    assert not (tmp_path / "s.csv").exists()


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("classes", [], "empty class list"),
        # fit refuses these; a checkpoint edited or saved by other code must be refused as well.
        ("classes", ["fname", *CLASSES[1:]], "'fname' is a name predict's outputs keep"),
        ("classes", ["unknown", *CLASSES[1:]], "'unknown' is a name predict's outputs keep"),
        ("classes", [CLASSES[0], *CLASSES[:2]], "listed twice"),
        ("crop_size", 2, "training crop size 2 is under 4"),
    ],
)
def test_a_checkpoint_fit_would_not_have_written_is_named_not_trainings_options(
    images, tmp_path, capsys, key, value, reason
):
    path = save_checkpoint(tmp_path / "edited.ckpt")
    checkpoint = torch.load(path, weights_only=False)
    where = "datamodule_hyper_parameters" if key == "crop_size" else "hyper_parameters"
    checkpoint.setdefault(where, {})[key] = value
    torch.save(checkpoint, path)
    line = one_error_line(capsys, lambda: run(path, images, tmp_path / "s.csv"))
    assert line.startswith(f"error: --ckpt_path {path}: ") and reason in line
    assert not (tmp_path / "s.csv").exists()


def test_trainer_predict_gives_the_softmax_of_each_crop_under_its_image(ckpt, images):
    """The Trainer's answer for each image is the mean softmax of the network on that image's crops."""
    model, size = load_checkpoint(ckpt)
    paths = sorted(images.iterdir())
    plan = CropPlan(size=size, count=3, seed=0)
    # batch_size 7 puts two images (6 crops) in a batch, so the crops are filed under their images.
    predictions = predict_paths(model, paths, plan, batch_size=7, device="cpu")
    assert not predictions.problems and predictions.crops == 15
    for index, path in enumerate(paths):
        crops = torch.from_numpy(image_crops(read_rgb(path), plan, crop_key(path)))
        with torch.no_grad():
            expected = model(crops).softmax(dim=1).mean(dim=0).double().numpy()
        assert np.allclose(predictions.probabilities[index], expected, atol=1e-6)


def test_prediction_shows_no_deprecation_from_lightnings_own_loop(ckpt, images):
    """torch deprecates the LeafSpec that Lightning's prediction loop builds: a warning on every
    predict that a user of camlit cannot act on."""
    import warnings

    model, size = load_checkpoint(ckpt)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        before = list(warnings.filters)
        predict_paths(model, sorted(images.iterdir()), CropPlan(size=size, count=1), device="cpu")
        assert warnings.filters == before  # no filter left behind
    assert not [w for w in caught if "LeafSpec" in str(w.message)]


def test_a_photos_answer_does_not_depend_on_the_files_beside_it(ckpt, images, tmp_path):
    """Random crops were seeded by the photo's place in the folder: the same file read as one
    camera alone and as another once broken links were added beside it."""
    model, size = load_checkpoint(ckpt)
    plan = CropPlan(size=size, count=4, seed=0)
    photo = sorted(images.iterdir())[-1]
    alone = predict_paths(model, [photo], plan, device="cpu")
    among = predict_paths(model, sorted(images.iterdir()), plan, device="cpu")
    # The same crops; batched with others, float sums may differ in the last bits.
    np.testing.assert_allclose(alone.probabilities[0], among.probabilities[-1], rtol=0, atol=1e-6)
    assert crop_key(photo) == crop_key(tmp_path / photo.name) != crop_key(tmp_path / "other.png")


def test_tta_manipulations_average_the_image_and_its_manipulated_versions(ckpt, images):
    """Each image's answer is the mean softmax over its crops and the same crops of each version
    manipulated whole; a version too small for the crop (48 px halved) is left out."""
    model, size = load_checkpoint(ckpt)
    paths = sorted(images.iterdir())
    plan = CropPlan(size=size, count=2, seed=0, manipulations=tta_manipulations("jpeg90, resize0.5,gamma0.8"))
    predictions = predict_paths(model, paths, plan, batch_size=7, device="cpu")
    assert not predictions.problems and predictions.crops == 5 * 2 * 3
    # Said beside the count, where it went unsaid.
    assert predictions.left_out_copies == 5
    assert predictions.rate_line().endswith("; 5 manipulated copies smaller than the crop left out")
    for index, path in enumerate(paths):
        image = read_rgb(path)
        versions = [image, manipulations.apply("jpeg90", image), manipulations.apply("gamma0.8", image)]
        crops = torch.from_numpy(np.concatenate([image_crops(version, plan, crop_key(path)) for version in versions]))
        with torch.no_grad():
            expected = model(crops).softmax(dim=1).mean(dim=0).double().numpy()
        assert np.allclose(predictions.probabilities[index], expected, atol=1e-6)
    assert tta_manipulations("all") == manipulations.MANIPULATED and tta_manipulations("") == ()
    # `all` among names was "unknown 'all'; choose from all, ...".
    with pytest.raises(CamlitError, match=r"--tta_manipulations all,jpeg90: `all` stands alone"):
        tta_manipulations("all,jpeg90")


def test_device_names_become_the_trainers_accelerator():
    assert trainer_devices("cpu") == ("cpu", 1)
    if not torch.cuda.is_available():
        assert trainer_devices("auto") == ("cpu", 1)
        with pytest.raises(CamlitError, match="no CUDA device"):
            trainer_devices("cuda:1")
    with pytest.raises(CamlitError, match="expected auto, cpu, cuda or cuda:N"):
        trainer_devices("tpu")
    with pytest.raises(CamlitError, match="--device cpu:1: expected auto, cpu, cuda or cuda:N"):
        trainer_devices("cpu:1")
    assert trainer_devices("cpu", 2) == ("cpu", 2)
    with pytest.raises(CamlitError, match="names one device; use --device cuda with --devices 2"):
        trainer_devices("cuda:0", 2)


@pytest.mark.slow
@pytest.mark.parametrize("entry", [[str(ROOT / "scripts" / "predict.py")], ["-m", "camlit", "predict"]])
def test_two_processes_give_the_same_files_as_one(ckpt, images, tmp_path, entry):
    """--devices 2 on the CPU: DDP with gloo, each process predicting its share of the images.
    Lightning starts the second process with the first's command line, `camlit predict` too."""
    one = tmp_path / "one.csv"
    run(ckpt, images, one, "--probs", str(tmp_path / "one_probs.csv"), "--device", "cpu")
    args = ["--ckpt_path", str(ckpt), "--input", str(images), "--crops", "3", "--num_workers", "0", "--no_progress"]
    two = tmp_path / "two.csv"
    done = subprocess.run(
        [sys.executable, *entry, *args, "--output", str(two),
         "--probs", str(tmp_path / "two_probs.csv"), "--device", "cpu", "--devices", "2"],
        cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert two.read_text() == one.read_text()
    assert (tmp_path / "two_probs.csv").read_text() == (tmp_path / "one_probs.csv").read_text()


SHIFTED_LISTING = """
import os

import camlit.inference.predict as predict

listed = predict.list_input_images


def list_input_images(folder):
    # The folder as the second process found it: an image gone after the first listed it.
    paths = listed(folder)
    return paths if os.environ.get("LOCAL_RANK", "0") == "0" else paths[1:]


if __name__ == "__main__":
    predict.list_input_images = list_input_images
    predict.main()
"""


@pytest.mark.slow
def test_processes_that_listed_different_images_predict_nothing(ckpt, images, tmp_path):
    """Each process lists --input itself: one image gone between the two listings gave 20 of 40
    rows a neighbour's probabilities. Now one error line, exit 2, no file written."""
    script = tmp_path / "shifted_predict.py"
    script.write_text(SHIFTED_LISTING)
    output = tmp_path / "two.csv"
    args = ["--ckpt_path", str(ckpt), "--input", str(images), "--output", str(output), "--crops", "3",
            "--num_workers", "0", "--no_progress", "--device", "cpu", "--devices", "2"]  # fmt: skip
    done = subprocess.run(
        [sys.executable, str(script), *args], cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert errors == [
        "error: the images changed while the 2 processes started (they listed 5, 4 images in all); nothing was "
        "predicted: run again once the input stays as it is"
    ]
    assert not output.exists()


@pytest.mark.slow
@pytest.mark.parametrize("stdout", ["closed pipe", "/dev/full"])
def test_a_stdout_that_closes_or_fills_costs_only_what_was_printed_there(ckpt, images, tmp_path, stdout):
    """`camlit predict | head -1`, or a full disk under stdout: a BrokenPipeError (or ENOSPC)
    traceback and status 1, before the unreadable images were named and status 2 given."""
    (images / "img_f.tif").write_bytes(b"II*\x00 not a TIFF")
    args = ["--ckpt_path", str(ckpt), "--input", str(images), "--output", str(tmp_path / "sub.csv")]
    command = [sys.executable, "-m", "camlit", "predict", *args, "--crops", "3", "--num_workers", "0", "--no_progress"]
    if stdout == "/dev/full":
        if not os.path.exists("/dev/full"):
            pytest.skip("no /dev/full here")
        with open("/dev/full", "w") as full:
            done = subprocess.run(command, stdout=full, stderr=subprocess.PIPE, text=True, timeout=300)
        returncode, stderr = done.returncode, done.stderr
    else:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        process.stdout.close()  # the reader gone before the first line, as `| true` is
        stderr = process.stderr.read()
        returncode = process.wait(timeout=300)
    assert "Traceback" not in stderr, stderr[-2000:]
    assert returncode == 2 and "error: 1 unusable image(s) (unreadable, or smaller than the crop): img_f.tif" in stderr
    assert "warning: stdout: " in stderr and "what camlit printed there is lost" in stderr
    assert len((tmp_path / "sub.csv").read_text().splitlines()) == 6  # the header and the five readable images


def test_more_devices_than_images_run_on_as_many_as_there_are_images(ckpt, images, tmp_path):
    """Each DDP process needs an image of its own: one image with --devices 2 runs in one process."""
    one = tmp_path / "one"
    one.mkdir()
    first = sorted(images.iterdir())[0]
    (one / first.name).write_bytes(first.read_bytes())
    run(ckpt, one, tmp_path / "one.csv", "--device", "cpu", "--devices", "2")
    assert len((tmp_path / "one.csv").read_text().splitlines()) == 2


# --- the manipulation flag -------------------------------------------------------------------


@pytest.fixture(scope="module")
def flag_ckpt(tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("flag") / "flag.ckpt", manipulation_flag=True)


@pytest.fixture
def kaggle_names(tmp_path):
    """Two unaltered and two manipulated 48x48 images, named as Kaggle's test set."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "kaggle"
    for name in ("img_1_unalt.tif", "img_2_manip.tif", "img_3_unalt.tif", "img_4_manip.tif"):
        write_image(folder / name, random_image(rng, 48, 48))
    return folder


def test_the_flag_is_read_from_names():
    assert [manipulated_from_name(n) for n in ("img_0a_manip.tif", "img_0b_unalt.tif", "photo.tif")] == [
        True,
        False,
        None,
    ]


def test_a_checkpoint_round_trips_the_flag(flag_ckpt, kaggle_names, tmp_path):
    """The checkpoint rebuilds the flag's head, and the flag from the names decides which head
    classifies each image: the same pixels give other probabilities when named _manip."""
    model, _ = load_checkpoint(flag_ckpt)
    assert model.hparams.manipulation_flag and model.manipulated_fc is not None
    by_name = run(flag_ckpt, kaggle_names, tmp_path / "a.csv", "--probs", str(tmp_path / "a_probs.csv"))
    forced = run(flag_ckpt, kaggle_names, tmp_path / "b.csv", "--manipulated", "no")
    names = [Path(p).name for p in by_name.paths]
    manipulated = [names.index("img_2_manip.tif"), names.index("img_4_manip.tif")]
    unaltered = [names.index("img_1_unalt.tif"), names.index("img_3_unalt.tif")]
    assert np.allclose(by_name.probabilities[unaltered], forced.probabilities[unaltered])
    assert not np.allclose(by_name.probabilities[manipulated], forced.probabilities[manipulated])


def test_a_missing_flag_is_a_clear_error(flag_ckpt, images, tmp_path, capsys):
    output = tmp_path / "s.csv"
    with pytest.raises(SystemExit) as exit_info:
        run(flag_ckpt, images, output)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("error:") == 1 and "Traceback" not in err
    assert "--manipulated yes" in err and "img_a.tif" in err
    assert not output.exists()
    assert len(run(flag_ckpt, images, output, "--manipulated", "yes").paths) == 5
