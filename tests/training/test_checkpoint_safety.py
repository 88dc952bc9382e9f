"""Checkpoints that could run code are refused, and damaged ones are caught by their hash."""

import os
from pathlib import Path

import pytest
import torch
from conftest import CLASSES, fit_args, random_image, write_image

import camlit.atomic
from camlit.inference import evaluate, predict
from camlit.training import cli
from camlit.training.checkpointing import AtomicCheckpointIO, is_valid_checkpoint
from camlit.training.module import CameraClassifier
from camlit.training.resume import find_resume_checkpoint


class RunsCode:
    """Unpickling this runs `touch marker`, as a shared checkpoint could."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def evil_checkpoint(path, marker):
    path.parent.mkdir(parents=True, exist_ok=True)
    hyper_parameters = {"classes": CLASSES, "note": RunsCode(marker)}
    torch.save({"state_dict": {}, "global_step": 1, "epoch": 0, "hyper_parameters": hyper_parameters}, path)
    return path


def one_error_line(capsys, call, *names):
    with pytest.raises(SystemExit) as exit_info:
        call()
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert exit_info.value.code == 2 and len(errors) == 1 and "Traceback" not in err, err
    for name in names:
        assert str(name) in errors[0]
    return errors[0]


@pytest.mark.parametrize("entry", ["predict", "evaluate", "resume", "ckpt_path"])
def test_a_checkpoint_that_runs_code_is_refused_before_it_can(entry, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "pwned"
    version = tmp_path / "lightning_logs" / "version_0"
    evil = evil_checkpoint(version / "checkpoints" / "last.ckpt", marker)
    folder = tmp_path / "images" / CLASSES[0]
    write_image(folder / "a.png", random_image(__import__("numpy").random.default_rng(0), 48, 48))
    calls = {
        "predict": lambda: predict.main(["--ckpt_path", str(evil), "--input", str(folder), "--output", "s.csv"]),
        "evaluate": lambda: evaluate.main(["--ckpt_path", str(evil), "--input", str(tmp_path / "images")]),
        "resume": lambda: cli.main(["--resume", str(evil)]),
        "ckpt_path": lambda: cli.main(fit_args(tmp_path / "images", "--ckpt_path", str(evil))),
    }
    line = one_error_line(capsys, calls[entry], evil)
    assert "could run code" in line
    assert not marker.exists()
    # A run folder holding only such a file is refused too, naming the folder.
    if entry == "resume":
        one_error_line(capsys, lambda: cli.main(["--resume", str(version)]), version)
        assert not marker.exists()


def save(path, value, size=300_000):
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.full((size,), value)}, "global_step": 1}, path)


@pytest.mark.parametrize("damage", ["random bytes", "one tensor overwritten"])
def test_damage_inside_a_checkpoint_is_caught_and_the_intact_one_used(tmp_path, caplog, damage):
    folder = tmp_path / "version_0" / "checkpoints"
    save(folder / "best.ckpt", 1.0)
    save(folder / "last.ckpt", 2.0)
    last = folder / "last.ckpt"
    data = bytearray(last.read_bytes())
    # Inside the tensor's bytes (far past the pickle), so the file still opens as a checkpoint.
    start = len(data) // 2
    patch = os.urandom(4096) if damage == "random bytes" else torch.full((1024,), 3.4e38).numpy().tobytes()
    data[start : start + 4096] = patch
    last.write_bytes(bytes(data))
    assert torch.load(last, weights_only=True)["global_step"] == 1  # what the old check accepted
    assert not is_valid_checkpoint(last)
    assert find_resume_checkpoint(folder.parent) == folder / "best.ckpt"
    assert "last.ckpt is corrupt; resuming from" in caplog.text


def kill_at_the_rename_of(path, monkeypatch) -> None:
    """Each later save of `path` dies as it renames the checkpoint into place (its hash file is written)."""
    real_replace = os.replace

    def dies_at_the_checkpoint_rename(source, target):
        if str(target) == str(path):
            raise KeyboardInterrupt
        real_replace(source, target)

    monkeypatch.setattr(camlit.atomic.os, "replace", dies_at_the_checkpoint_rename)


def test_a_kill_between_the_renames_leaves_a_checkpoint_that_matches_its_hash(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    save(path, 1.0)
    kill_at_the_rename_of(path, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        save(path, 2.0)
    monkeypatch.undo()
    hashes = tmp_path / "last.ckpt.sha256"
    assert len(hashes.read_text().split()) == 2
    assert is_valid_checkpoint(path) and torch.load(path, weights_only=True)["state_dict"]["w"][0] == 1.0
    save(path, 3.0)
    assert len(hashes.read_text().split()) == 1 and is_valid_checkpoint(path)


def test_two_kills_between_the_hash_and_the_rename_leave_the_checkpoint_valid(tmp_path, monkeypatch):
    """Each killed save lists its own hash first; the hash file must keep the one of the file that
    stayed in place, not the earlier killed save's."""
    path = tmp_path / "last.ckpt"
    save(path, 1.0)
    kill_at_the_rename_of(path, monkeypatch)
    for value in (2.0, 3.0):
        with pytest.raises(KeyboardInterrupt):
            save(path, value)
    monkeypatch.undo()
    assert is_valid_checkpoint(path) and torch.load(path, weights_only=True)["state_dict"]["w"][0] == 1.0


@pytest.mark.parametrize(("name", "named"), [("last.ckpt", "best.ckpt"), ("best.ckpt.sha256", "last.ckpt")])
def test_a_folder_named_like_a_checkpoint_is_refused_before_training(
    name, named, flat_tree, tmp_path, monkeypatch, capsys
):
    """The first save failed on it with IsADirectoryError, after an epoch and with the run folder changed."""
    monkeypatch.chdir(tmp_path)
    cli.main(fit_args(flat_tree, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2"))
    run = tmp_path / "lightning_logs" / "version_0"
    (run / "checkpoints" / name).unlink()
    (run / "checkpoints" / name).mkdir()
    before = {path: path.is_dir() or path.read_bytes() for path in run.rglob("*")}
    # The run named by its folder, and by another of its checkpoints.
    for target in (["--resume", str(run)], ["--ckpt_path", str(run / "checkpoints" / named)]):
        args = [*target, "--trainer.max_epochs", "2"]
        line = one_error_line(capsys, lambda args=args: cli.main(args), run / "checkpoints" / name)
        assert "a folder where the run writes a checkpoint" in line
        assert {path: path.is_dir() or path.read_bytes() for path in run.rglob("*")} == before


def test_a_run_folder_moved_mid_run_is_one_line_and_not_made_again(flat_tree, tmp_path, monkeypatch, capsys):
    """The next save failed in a FileNotFoundError traceback, a temporary left in the moved folder."""
    monkeypatch.chdir(tmp_path)
    step = CameraClassifier.training_step
    version = tmp_path / "lightning_logs" / "version_0"

    def training_step_then_move(self, *args, **kwargs):
        if self.global_step == 1 and version.exists():
            version.rename(tmp_path / "moved")
        return step(self, *args, **kwargs)

    monkeypatch.setattr(CameraClassifier, "training_step", training_step_then_move)
    with pytest.raises(SystemExit) as stopped:
        cli.main(fit_args(flat_tree, "--trainer.max_epochs", "1"))
    err = capsys.readouterr().err
    assert stopped.value.code == 1 and "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        f"error: {Path('lightning_logs') / 'version_0'}: moved or removed while the run wrote into it"
    ]
    assert not version.exists()
    assert not [p for p in (tmp_path / "moved").rglob(".*tmp*")]
