"""docs/kaggle.md's walkthrough, command for command, on a tiny Kaggle-shaped synthetic download:
prepare, fit with the rehearsal recipe shrunk to seconds, predict, and a submission in Kaggle's format."""

import csv
import json
import subprocess
import sys

import pytest
from conftest import CONFIGS, ROOT

from camlit.cameras import KAGGLE_CAMERAS
from camlit.data.manipulations import MANIPULATIONS

SCRIPTS = ROOT / "scripts"


def run(script: str, *args: str, cwd) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / script), *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{script} {' '.join(args)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


@pytest.mark.slow
def test_download_prepare_fit_predict_gives_a_kaggle_submission(tmp_path):
    data = tmp_path / "data"
    # 1. The download: Kaggle's archive unpacked into data/ (here its synthetic stand-in, 64 px test crops).
    sizes = ["--images_per_camera", "2", "--test_images", "20", "--width", "160", "--height", "128"]
    run("make_synthetic.py", "--kaggle_layout", str(data), *sizes, "--workers", "2", cwd=tmp_path)
    # 2. Prepare: every manipulation of every training photo, manipulated whole, then the centre tile.
    run("prepare_data.py", "--input", str(data / "train"), "--output", "data-512", "--size", "64", cwd=tmp_path)
    # 3. Fit the recipe (the rehearsal's, which is kaggle_gpu.yaml's scaled), shrunk to seconds.
    run(
        "fit.py", "--config", str(CONFIGS / "rehearsal_cpu.yaml"),
        "--data.train_dir", "data-512", "--data.synthetic_root", "null", "--data.cache_dir", "data-512-cache",
        "--data.crop_size", "32", "--data.batch_size", "4", "--data.num_workers", "0", "--model.arch", "resnet_tiny",
        "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.enable_progress_bar", "false",
        cwd=tmp_path,
    )  # fmt: skip
    best = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "best.ckpt"
    assert best.is_file()
    # 4. Predict the test folder into the submission file.
    run(
        "predict.py",
        "--ckpt_path",
        str(best),
        "--input",
        str(data / "test"),
        "--output",
        "submission.csv",
        cwd=tmp_path,
    )
    # 5. What Kaggle takes: fname,camera, one row per test image, every one of them, cameras from the ten.
    with open(tmp_path / "submission.csv", newline="") as file:
        rows = list(csv.reader(file))
    with open(data / "sample_submission.csv", newline="") as file:
        sample = list(csv.reader(file))
    assert rows[0] == sample[0] == ["fname", "camera"]
    names = [row[0] for row in rows[1:]]
    assert len(names) == len(set(names)) == 20
    assert sorted(names) == sorted(p.name for p in (data / "test").iterdir()) == sorted(row[0] for row in sample[1:])
    assert all(len(row) == 2 and row[1] in KAGGLE_CAMERAS for row in rows[1:])
    # The synthetic download keeps the truth: per-manipulation accuracy from its two CSVs.
    truth = ["--labels", str(data / "test_labels.csv"), "--manipulations", str(data / "test_manipulations.csv")]
    run(
        "evaluate.py",
        "--ckpt_path",
        str(best),
        "--input",
        str(data / "test"),
        *truth,
        "--json",
        "report.json",
        cwd=tmp_path,
    )
    report = json.loads((tmp_path / "report.json").read_text())
    assert list(report["per_group"]) == list(MANIPULATIONS) and report["images"] == 20
    assert report["manipulated_mean"] is not None and report["weighted_accuracy"] is not None
