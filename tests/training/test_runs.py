"""A run folder belongs to one run, and changes only once an operation has succeeded."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FIT, fit_args, one_error_line, save_checkpoint

from camlit.data.datamodule import CameraDataModule
from camlit.training.cli import main

pytestmark = pytest.mark.usefixtures("camlit_messages_on_stderr")

SHORT = ("--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1")


TOGETHER = """
import os, time
from pathlib import Path
from lightning.pytorch.profilers import PassThroughProfiler

class Together(PassThroughProfiler):
    # Holds each run just after Lightning has named its log folder, until every run has.

    def __init__(self, folder: str, runs: int):
        super().__init__()
        self.folder, self.runs = Path(folder), runs

    def setup(self, stage, local_rank=None, log_dir=None):
        super().setup(stage, local_rank, log_dir)
        (self.folder / str(os.getpid())).touch()
        deadline = time.monotonic() + 300
        while len(list(self.folder.iterdir())) < self.runs and time.monotonic() < deadline:
            time.sleep(0.05)
"""


@pytest.mark.slow
def test_fits_started_together_get_a_version_folder_each(flat_tree, tmp_path):
    """Both runs name their folder before either creates it: the widest a race can be."""
    (tmp_path / "together.py").write_text(TOGETHER)
    (tmp_path / "barrier").mkdir()
    profiler = {"class_path": "together.Together", "init_args": {"folder": str(tmp_path / "barrier"), "runs": 2}}
    # together.py, and the camlit of this checkout rather than whichever is installed.
    path = os.pathsep.join([str(tmp_path), str(Path(FIT).parents[1])])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    args = [sys.executable, FIT, *fit_args(flat_tree, *SHORT, "--trainer.profiler", json.dumps(profiler))]
    runs = [
        subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for run in runs:
        _, stderr = run.communicate(timeout=600)
        assert run.returncode == 0, stderr[-2000:]
    versions = sorted(p.name for p in (tmp_path / "lightning_logs").iterdir())
    assert versions == ["version_0", "version_1"]
    for version in versions:
        assert len(list((tmp_path / "lightning_logs" / version).glob("events.out.tfevents.*"))) == 1


def test_a_run_that_fails_before_training_leaves_no_version_folder(flat_tree, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    foreign = save_checkpoint(tmp_path / "foreign.ckpt", classes=["a", "b"])
    # Refused before the data work: with the defaults, the whole synthetic set was generated first.
    monkeypatch.setattr(CameraDataModule, "prepare_data", lambda self: pytest.fail("the data prepared first"))
    line = one_error_line(capsys, lambda: main(fit_args(flat_tree, "--ckpt_path", str(foreign))))
    assert "the checkpoint was trained on classes a, b" in line
    assert not (tmp_path / "lightning_logs").exists()
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    # A folder that was there already stays, and so do the runs in it.
    (tmp_path / "lightning_logs" / "version_0").mkdir(parents=True)
    one_error_line(capsys, lambda: main(fit_args(flat_tree, "--ckpt_path", str(foreign))))
    assert [p.name for p in (tmp_path / "lightning_logs").iterdir()] == ["version_0"]


def test_a_run_out_of_time_says_so_and_a_resume_needs_more(flat_tree, tmp_path, monkeypatch, capsys):
    """Resumed as it was, a run that --trainer.max_time stopped trained nothing and said nothing."""
    monkeypatch.chdir(tmp_path)
    main(fit_args(flat_tree, "--trainer.max_epochs", "1000", "--trainer.max_time", "00:00:00:01"))
    first = capsys.readouterr().err
    assert "note: stopped by --trainer.max_time" in first
    version = tmp_path / "lightning_logs" / "version_0"
    resumed = main(["--resume", str(version)])
    assert "a resume trains further only with a larger --trainer.max_time" in capsys.readouterr().err
    assert resumed.trainer.current_epoch < 1000
