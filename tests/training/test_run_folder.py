"""What a run folder promises: a shared one cannot make `--resume` run code or write elsewhere, one
process at a time runs in it, it can be placed, and what cannot be written is said before any work."""

import ast
import os
import re
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import yaml
from conftest import ROOT, fit_args, one_error_line, random_image, save_checkpoint, write_image
from lightning.pytorch.demos.boring_classes import BoringModel

from camlit.errors import CamlitError
from camlit.inference.loading import load_checkpoint
from camlit.training.cli import main
from camlit.training.resume import RunCheckpoint
from camlit.training.runfolder import RunLock, claim_version

pytestmark = pytest.mark.usefixtures("camlit_messages_on_stderr")

SHORT = ("--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1")
LAMBDA = "lightning.pytorch.callbacks.LambdaCallback"


def payloads(elsewhere: Path) -> dict[str, dict]:
    """The entries of a shared config.yaml that would run code or write outside the run, by key."""
    return {
        "trainer.callbacks": {
            "trainer": {"callbacks": [{"class_path": LAMBDA, "init_args": {"on_fit_start": "os.system"}}]}
        },
        "best_checkpoint.dirpath": {"best_checkpoint": {"dirpath": str(elsewhere)}},
        "trainer.profiler": {
            "trainer": {
                "profiler": {
                    "class_path": "lightning.pytorch.profilers.SimpleProfiler",
                    "init_args": {"dirpath": str(elsewhere), "filename": "profile"},
                }
            }
        },
        "trainer.logger": {
            "trainer": {
                "logger": {
                    "class_path": "lightning.pytorch.loggers.CSVLogger",
                    "init_args": {"save_dir": str(elsewhere)},
                }
            }
        },
        "periodic_checkpoint.filename": {"periodic_checkpoint": {"filename": "../../../../escaped{epoch}"}},
        "data.cache_dir": {"data": {"cache_dir": str(elsewhere)}},
        "model.arch": {"model": {"arch": {"class_path": "os.system", "init_args": {"command": "touch pwned"}}}},
    }


@pytest.mark.parametrize("key", list(payloads(Path("x"))))
def test_resume_refuses_a_config_that_names_code_or_writes_elsewhere(flat_tree, tmp_path, monkeypatch, capsys, key):
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    elsewhere = tmp_path / "elsewhere"
    version = tmp_path / "work" / "lightning_logs" / "version_0"
    save_checkpoint(version / "checkpoints" / "last.ckpt")
    config = {"data": {"train_dir": str(flat_tree)}, "model": {"arch": "resnet_tiny"}}
    for group, values in payloads(elsewhere)[key].items():
        config[group] = {**config.get(group, {}), **values}
    (version / "config.yaml").write_text(yaml.safe_dump(config))
    before = sorted(version.rglob("*"))
    line = one_error_line(capsys, lambda: main(["--resume", str(version), *SHORT]))
    assert f"{version / 'config.yaml'}: {key} " in line and "plain values only" in line
    assert not elsewhere.exists() and not (tmp_path / "pwned").exists()
    assert sorted(version.rglob("*")) == before


def test_a_cache_folder_under_the_working_directory_may_be_absolute(tmp_path, monkeypatch):
    """The resume command printed after a stop was refused for a run whose --data.cache_dir was an
    absolute path in the working directory, said to be outside it."""
    from camlit.training.runconfig import entry_problem

    monkeypatch.chdir(tmp_path)
    assert entry_problem("data.cache_dir", str(tmp_path / "cache"), set()) is None
    assert "outside the working directory" in entry_problem("data.cache_dir", str(tmp_path.parent / "cache"), set())
    assert "outside the working directory" in entry_problem("data.cache_dir", str(tmp_path / ".." / "cache"), set())


def test_a_run_folder_in_use_is_refused_naming_the_process(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pathlib import Path; from camlit.training.runfolder import RunLock; "
         "lock = RunLock(Path(sys.argv[1])); print('held', flush=True); sys.stdin.read()", str(tmp_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(CamlitError, match=f"{tmp_path}: the run is in use by process {holder.pid} on "):
            RunLock(tmp_path)
    finally:
        holder.communicate(timeout=60)  # its end drops the lock, however it ends
    RunLock(tmp_path).release()


@pytest.mark.parametrize("link", [".camlit.lock", "config.yaml", "checkpoints/last.ckpt", "checkpoints"])
def test_a_run_file_that_is_a_link_is_refused_and_what_it_leads_to_kept(tmp_path, link):
    """A resume wrote through each: the lock truncated the file it led to even when the resume was
    then refused, last.ckpt was replaced by a checkpoint, config.yaml rewritten."""
    run, victim = tmp_path / "version_0", tmp_path / "victim"
    (run if link == "checkpoints" else run / "checkpoints").mkdir(parents=True)
    victim.mkdir()
    (victim / "last.ckpt").write_text("precious\n")
    (run / link).symlink_to(victim if link == "checkpoints" else victim / "last.ckpt")
    with pytest.raises(CamlitError, match=f"{run / link}: a link, and the run writes its own files in its folder"):
        RunLock(run)
    assert (victim / "last.ckpt").read_text() == "precious\n" and [p.name for p in victim.iterdir()] == ["last.ckpt"]


def test_a_folder_where_the_lock_goes_is_one_line(tmp_path):
    """An IsADirectoryError traceback."""
    (tmp_path / ".camlit.lock").mkdir()
    with pytest.raises(CamlitError, match=r"\.camlit\.lock: a folder where the run keeps its lock file"):
        RunLock(tmp_path)


def test_a_new_run_takes_over_the_last_folder_only_when_its_lock_is_all_it_holds_and_nobody_holds_it(tmp_path):
    """A killed run's folder (its lock naming a process now gone) is taken over; one starting now
    (an empty lock), one in use, one holding anything else, or an older one, is not."""

    def left_by_a_killed_run(version: int) -> Path:
        folder = tmp_path / f"version_{version}"
        folder.mkdir()
        (folder / ".camlit.lock").write_text("4242 on elsewhere\n")
        return folder

    left_by_a_killed_run(0)
    left_by_a_killed_run(1)
    version, made, lock = claim_version(tmp_path)
    assert (version, made) == (1, []) and lock is not None
    assert (tmp_path / "version_1" / ".camlit.lock").read_text().startswith(f"{os.getpid()} on ")
    with pytest.raises(CamlitError, match="in use by process"):
        RunLock(tmp_path / "version_1")
    assert claim_version(tmp_path)[:1] == (2,)  # in use: the next run takes a new folder
    lock.release()

    starting = tmp_path / "version_3"
    starting.mkdir()
    (starting / ".camlit.lock").touch()
    assert claim_version(tmp_path)[::2] == (4, None)
    (tmp_path / "version_4" / "hparams.yaml").touch()
    (tmp_path / "version_4" / ".camlit.lock").write_text("4242 on elsewhere\n")
    assert claim_version(tmp_path)[::2] == (5, None)


@contextmanager
def read_only(folder: Path):
    """`folder`, unwritable even by root: a read-only tmpfs mounted there, else mode 555."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.parametrize("where", ["lightning_logs", "--trainer.default_root_dir"])
def test_an_unwritable_log_folder_is_one_line_before_any_work(flat_tree, tmp_path, monkeypatch, capsys, where):
    monkeypatch.chdir(tmp_path)
    extra = ("--trainer.default_root_dir", "runs") if where != "lightning_logs" else ()
    folder = tmp_path / ("runs" if extra else "lightning_logs")
    with read_only(folder):
        line = one_error_line(capsys, lambda: main(fit_args(flat_tree, *SHORT, *extra)))
    # Given as --trainer.default_root_dir, the folder is checked with the options, before a run folder is claimed.
    assert ("cannot write in runs" if extra else "cannot write the run there") in line and str(folder.name) in line
    assert "--trainer.default_root_dir" in line


def test_default_root_dir_places_the_run(flat_tree, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(fit_args(flat_tree, *SHORT, "--trainer.default_root_dir", "runs"))
    version = tmp_path / "runs" / "lightning_logs" / "version_0"
    assert (version / "config.yaml").is_file() and list(version.glob("events.out.tfevents.*"))
    assert (version / "checkpoints" / "last.ckpt").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flat", "runs"]


def test_a_new_run_into_a_folder_holding_a_run_is_refused(flat_tree, tmp_path, monkeypatch, capsys):
    """A saved config.yaml names its run's version: given as --config, the new run trained in that
    folder and wrote over its checkpoints and config."""
    monkeypatch.chdir(tmp_path)
    main(fit_args(flat_tree, *SHORT))
    version = tmp_path / "lightning_logs" / "version_0"
    before = {path: path.read_bytes() for path in version.rglob("*") if path.is_file()}
    line = one_error_line(capsys, lambda: main(["--config", str(version / "config.yaml"), *SHORT]))
    assert line.startswith("error: --trainer.logger.init_args.version 0: lightning_logs/version_0 holds a run")
    assert "--resume lightning_logs/version_0" in line
    assert {path: path.read_bytes() for path in version.rglob("*") if path.is_file()} == before


class FallingScore(BoringModel):
    """A score that is best at epoch 0, so best.ckpt is never improved upon."""

    def on_validation_epoch_end(self):
        self.log("score", -float(self.current_epoch))


class DeletesTheFolder(L.Callback):
    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            for path in sorted(Path(trainer.checkpoint_callback.dirpath).iterdir()):
                path.unlink()


def test_a_best_checkpoint_deleted_during_the_run_is_saved_again(tmp_path, caplog):
    best = RunCheckpoint(dirpath=tmp_path / "checkpoints", filename="best", monitor="score", mode="max")
    trainer = L.Trainer(
        max_epochs=3, limit_train_batches=2, limit_val_batches=1, logger=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path, callbacks=[best, DeletesTheFolder()],
    )  # fmt: skip
    trainer.fit(FallingScore())
    assert (tmp_path / "checkpoints" / "best.ckpt").is_file()
    assert "best.ckpt deleted during the run" in caplog.text


def test_a_legacy_format_checkpoint_loads(tmp_path):
    modern = save_checkpoint(tmp_path / "modern.ckpt")
    legacy = tmp_path / "legacy.ckpt"
    torch.save(torch.load(modern, weights_only=True), legacy, _use_new_zipfile_serialization=False)
    model, crop_size = load_checkpoint(legacy, device="cpu")
    assert crop_size == 32 and model.net.fc.out_features == 3


PRIVATE = re.compile(r"^_[a-z]")


def test_no_private_lightning_api_is_overridden_or_called():
    """camlit defines no `_name` methods (an override of Lightning's private ones would be one)
    and touches no `obj._name` attribute; os._exit is the one private name it may use."""
    found = []
    for path in sorted((ROOT / "camlit").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                found += [
                    f"{path.name}: def {f.name}"
                    for f in node.body
                    if isinstance(f, ast.FunctionDef) and PRIVATE.match(f.name)
                ]
            if isinstance(node, ast.Attribute) and PRIVATE.match(node.attr):
                if not (isinstance(node.value, ast.Name) and node.value.id == "os" and node.attr == "_exit"):
                    found.append(f"{path.name}:{node.lineno}: .{node.attr}")
    assert not found


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_full_disk_during_a_checkpoint_save_is_one_line_and_keeps_the_old_ones(
    flat_tree, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)], check=True)
    try:
        main(fit_args(flat_tree, *SHORT, "--trainer.default_root_dir", str(disk)))
        version = disk / "lightning_logs" / "version_0"
        checkpoints = version / "checkpoints"
        before = {p.name: p.read_bytes() for p in checkpoints.iterdir()}
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        (disk / "filler").write_bytes(b"\0" * (free - 200_000))  # room for logs, not for a checkpoint
        line = one_error_line(capsys, lambda: main(["--resume", str(version), "--trainer.max_epochs", "2"]))
        assert re.search(
            rf"error: {checkpoints}/\w+\.ckpt: no space left on device; the run's checkpoints are whole", line
        )
        assert {p.name: p.read_bytes() for p in checkpoints.iterdir()} == before
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_a_checkpoint_naming_code_in_its_hyperparameters_is_refused(tmp_path, monkeypatch, capsys):
    """Lightning's loader would import (and call) what `_instantiator` names; plain data can still run code."""
    from camlit.inference import predict

    (tmp_path / "probe_module.py").write_text(f"open({str(tmp_path / 'imported')!r}, 'w').close()\ndef run(*a): pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    checkpoint = torch.load(save_checkpoint(tmp_path / "model.ckpt"), weights_only=True)
    checkpoint["hyper_parameters"]["_instantiator"] = "probe_module.run"
    torch.save(checkpoint, tmp_path / "named.ckpt")
    write_image(tmp_path / "images" / "a.png", random_image(np.random.default_rng(0), 48, 48))
    args = ["--ckpt_path", str(tmp_path / "named.ckpt"), "--input", str(tmp_path / "images"), "--output", "s.csv"]
    line = one_error_line(capsys, lambda: predict.main(args))
    assert "hyper_parameters._instantiator names code to run (probe_module.run)" in line
    assert not (tmp_path / "imported").exists()


def test_a_monitor_that_validation_cannot_log_is_refused_before_training(flat_tree, tmp_path, monkeypatch, capsys):
    """kaggle_gpu.yaml monitors val/acc_weighted; without manipulated validation copies it never exists."""
    monkeypatch.chdir(tmp_path)
    args = fit_args(
        flat_tree, *SHORT, "--best_checkpoint.monitor", "val/acc_weighted", "--data.val_manipulations", "[]"
    )
    line = one_error_line(capsys, lambda: main(args))
    assert "--best_checkpoint.monitor val/acc_weighted needs" in line and "--data.val_manipulations" in line
    assert not (tmp_path / "lightning_logs").exists()
    # A misspelt name trained a whole epoch before Lightning stopped the run (with max_steps, ended
    # with exit 0 and no best.ckpt).
    line = one_error_line(capsys, lambda: main(fit_args(flat_tree, *SHORT, "--best_checkpoint.monitor", "val_acc")))
    assert line.startswith("error: --best_checkpoint.monitor val_acc: not a metric camlit logs; choose val/acc")
    assert not (tmp_path / "lightning_logs").exists()


def test_a_monitor_the_limited_validation_never_reaches_is_refused_before_training(
    manipulation_tree, tmp_path, monkeypatch, capsys
):
    """A prepared tree's validation crops come folder by folder (gamma0.8, jpeg70, unaltered):
    `--trainer.limit_val_batches 2` trained a whole epoch, then Lightning's ModelCheckpoint said
    val/acc_weighted was not found."""
    monkeypatch.chdir(tmp_path)
    monitor = ("--best_checkpoint.monitor", "val/acc_weighted", "--data.val_fraction", "0.5")
    limited = fit_args(manipulation_tree, *monitor, "--trainer.limit_train_batches", "2")
    line = one_error_line(capsys, lambda: main([*limited, "--trainer.limit_val_batches", "2"]))
    assert line == (
        "error: --trainer.limit_val_batches 2 validates the first 8 crops only, all in jpeg70, gamma0.8, so "
        "--best_checkpoint.monitor val/acc_weighted could never be logged; validate more batches, or "
        "choose --best_checkpoint.monitor val/acc"
    )
    assert not (tmp_path / "lightning_logs").exists()
    # Enough batches log it (and `1` is every batch: jsonargparse reads Lightning's int-or-float as a float).
    main([*limited, "--trainer.max_epochs", "1", "--trainer.limit_val_batches", "1"])
    assert (tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "best.ckpt").is_file()


def test_a_run_with_no_photo_held_out_for_validation_is_refused(tmp_path, monkeypatch, capsys):
    """One photo per camera: the split held none out, and the run trained without a best.ckpt,
    Lightning only warning that val/acc was not found."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    for camera in ("HTC-1-M7", "LG-Nexus-5x", "Motorola-X"):
        write_image(tmp_path / "one" / camera / "p.png", random_image(rng))
    line = one_error_line(capsys, lambda: main(fit_args(tmp_path / "one", *SHORT)))
    assert line.startswith("error: --data.val_fraction 0.2 holds out no photo of so few")
    assert not (tmp_path / "lightning_logs").exists()
    # A root the run made goes too, every folder of it (an empty new/ stayed).
    args = fit_args(tmp_path / "one", *SHORT, "--trainer.default_root_dir", "new/runs")
    assert one_error_line(capsys, lambda: main(args)).startswith("error: --data.val_fraction 0.2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one"]
    # Only what the run made: an empty folder of the user's, reached through a new one's `..`, stays.
    (tmp_path / "keep").mkdir()
    args = fit_args(tmp_path / "one", *SHORT, "--trainer.default_root_dir", "new/../keep")
    assert one_error_line(capsys, lambda: main(args)).startswith("error: --data.val_fraction 0.2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep", "one"]
    assert not any((tmp_path / "keep").iterdir())


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--best_checkpoint.monitor", "val/acc/jpeg70", "--best_checkpoint.monitor val/acc/jpeg70 needs"),
        ("--data.unaltered_share", "0.5", "--data.unaltered_share 0.5: "),
        ("--model.manipulation_flag", "true", "--model.manipulation_flag: no training crop is manipulated"),
    ],
)
def test_options_the_folders_cannot_serve_are_refused_before_the_cache_is_built(
    flat_tree, tmp_path, monkeypatch, capsys, flag, value, message
):
    """Refused after setup, each came after a whole cache build (hours for Kaggle's set), which
    also removed the older cache of another crop size."""
    monkeypatch.chdir(tmp_path)
    cache = tmp_path / "cache"
    args = fit_args(flat_tree, *SHORT, "--data.cache_dir", str(cache), "--data.val_manipulations", "[]")
    line = one_error_line(capsys, lambda: main([*args, flag, value]))
    assert line.startswith("error: ") and message in line
    assert not cache.exists() or not any(cache.iterdir())
    assert not (tmp_path / "lightning_logs").exists()


def test_a_run_that_trains_nothing_leaves_no_run_folder(flat_tree, tmp_path, monkeypatch):
    """--trainer.max_epochs 0 left a version_0 with neither config.yaml nor a checkpoint, which no
    --resume could take; resuming a finished run left an empty events file."""
    monkeypatch.chdir(tmp_path)
    main(fit_args(flat_tree, "--trainer.max_epochs", "0"))
    assert not (tmp_path / "lightning_logs").exists()
    main(fit_args(flat_tree, *SHORT))
    version = tmp_path / "lightning_logs" / "version_0"
    before = sorted(version.rglob("*"))
    main(["--resume", str(version)])
    assert sorted(version.rglob("*")) == before


def test_a_failed_start_under_a_named_version_leaves_its_folders_as_they_were(flat_tree, tmp_path, monkeypatch, capsys):
    """A named version that failed to start left its folder holding only the run's lock file."""
    monkeypatch.chdir(tmp_path)
    bad = ["--model.lr", "-1"]
    line = one_error_line(capsys, lambda: main(fit_args(flat_tree, "--trainer.logger.init_args.version", "mine", *bad)))
    assert line == "error: --model.lr must be above 0 and at most 3.4e+38, got -1.0"
    assert not (tmp_path / "lightning_logs").exists()
    # A folder of the user's, named as the version: kept as it was, without a lock file.
    (tmp_path / "lightning_logs" / "theirs").mkdir(parents=True)
    (tmp_path / "lightning_logs" / "theirs" / "notes.txt").write_text("keep")
    one_error_line(capsys, lambda: main(fit_args(flat_tree, "--trainer.logger.init_args.version", "theirs", *bad)))
    assert [p.name for p in (tmp_path / "lightning_logs" / "theirs").iterdir()] == ["notes.txt"]
    (tmp_path / "lightning_logs" / "a-file").write_text("keep")
    line = one_error_line(capsys, lambda: main(fit_args(flat_tree, "--trainer.logger.init_args.version", "a-file")))
    where = Path("lightning_logs", "a-file")
    assert line == f"error: --trainer.logger.init_args.version a-file: {where} is not a folder; name another"


def test_an_empty_config_file_is_named(flat_tree, tmp_path, capsys):
    (tmp_path / "empty.yaml").write_text("")
    line = one_error_line(capsys, lambda: main(["--config", str(tmp_path / "empty.yaml"), *fit_args(flat_tree)]))
    assert line.startswith(f"error: --config {tmp_path / 'empty.yaml'}: an empty file")


def test_resume_is_an_option_that_help_shows(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert re.search(r"^  --resume RESUME\s+continue a run", capsys.readouterr().out, re.MULTILINE)


@pytest.mark.parametrize(
    "trainer", [5, {"logger": 5}, {"logger": {"init_args": 5}}, {"logger": {"init_args": {"name": 7}}}]
)
def test_a_run_config_whose_trainer_is_not_a_mapping_is_one_line(flat_tree, tmp_path, monkeypatch, capsys, trainer):
    """An AttributeError traceback while reading where the run was logged, before any check."""
    monkeypatch.chdir(tmp_path)
    version = tmp_path / "lightning_logs" / "version_0"
    save_checkpoint(version / "checkpoints" / "last.ckpt")
    config = {"data": {"train_dir": str(flat_tree)}, "model": {"arch": "resnet_tiny"}, "trainer": trainer}
    (version / "config.yaml").write_text(yaml.safe_dump(config))
    before = {p: p.read_bytes() for p in version.rglob("*") if p.is_file()}
    line = one_error_line(capsys, lambda: main(["--resume", str(version), *SHORT]))
    assert line.startswith("error: ")
    assert {p: p.read_bytes() for p in version.rglob("*") if p.is_file()} == before


def test_a_new_run_that_fails_before_its_first_checkpoint_leaves_no_folder(flat_tree, tmp_path, monkeypatch):
    """A cache found damaged at the first read, or any failure in the first steps, left version_N
    holding a config and logs but no checkpoint: `--resume` found nothing, the next run took N+1."""
    from camlit.training.module import CameraClassifier

    monkeypatch.chdir(tmp_path)
    real_step = CameraClassifier.training_step

    def fails_in_epoch(epoch):
        def step(self, *args, **kwargs):
            if self.current_epoch == epoch:
                raise RuntimeError("broken in training")
            return real_step(self, *args, **kwargs)

        return step

    monkeypatch.setattr(CameraClassifier, "training_step", fails_in_epoch(0))
    with pytest.raises(RuntimeError, match="broken in training"):
        main(fit_args(flat_tree, *SHORT))
    assert not (tmp_path / "lightning_logs").exists()
    # Once a checkpoint is saved the run can be resumed, and its folder stays.
    monkeypatch.setattr(CameraClassifier, "training_step", fails_in_epoch(1))
    with pytest.raises(RuntimeError, match="broken in training"):
        main(fit_args(flat_tree, *SHORT[2:], "--trainer.max_epochs", "2"))
    assert (tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt").is_file()


def test_a_run_with_checkpointing_off_that_trained_keeps_its_logs_when_it_stops(
    flat_tree, tmp_path, monkeypatch, capsys
):
    """Its logs are all such a run makes: a SIGTERM after hundreds of steps deleted the whole
    version folder, events and config included, as a failed start's."""
    from camlit.termination import Terminated
    from camlit.training.module import CameraClassifier

    monkeypatch.chdir(tmp_path)
    real_step = CameraClassifier.training_step

    def stopped_in_the_second_epoch(self, *args, **kwargs):
        if self.current_epoch == 1:
            raise Terminated
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(CameraClassifier, "training_step", stopped_in_the_second_epoch)
    with pytest.raises(SystemExit) as stopped:
        main(fit_args(flat_tree, *SHORT[2:], "--trainer.max_epochs", "3", "--trainer.enable_checkpointing", "false"))
    run = Path("lightning_logs") / "version_0"
    assert stopped.value.code == 143
    assert f"stopped by SIGTERM: no checkpoint saved (checkpointing is off); the run's logs are in {run}" in (
        capsys.readouterr().err
    )
    assert (run / "config.yaml").is_file() and list(run.glob("events.out.tfevents.*"))
