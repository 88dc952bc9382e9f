"""Resuming a run (camlit.training.resume): the checkpoint chosen, the network checked, the run's
folder, its best-k tracking and its schedule carried on."""

import hashlib
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import warnings

import pytest
import torch
import yaml
from conftest import CLASSES, FIT, dead_pid, events, fit_args, one_error_line, wait_for
from jsonargparse import Namespace
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.utilities.exceptions import SIGTERMException

from camlit.data.datamodule import CameraDataModule
from camlit.errors import CamlitError
from camlit.training.checkpointing import is_valid_checkpoint
from camlit.training.cli import main
from camlit.training.module import CameraClassifier
from camlit.training.resume import find_resume_checkpoint, resume_arguments
from camlit.training.runconfig import resume_command

pytestmark = pytest.mark.usefixtures("camlit_messages_on_stderr")

SHORT = ("--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1")


def test_resume_without_checkpoint_is_an_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lightning_logs" / "version_0" / "checkpoints").mkdir(parents=True)
    with pytest.raises(SystemExit) as exit_info:
        main(["--resume", "lightning_logs/version_0"])
    assert exit_info.value.code == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "lightning_logs" / "version_1").exists()
    # The checkpoints folder named instead of its run: the message doubled the path and stopped there.
    (tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt").write_bytes(b"")
    with pytest.raises(SystemExit):
        main(["--resume", "lightning_logs/version_0/checkpoints"])
    assert "; name the run folder lightning_logs/version_0, or one checkpoint file" in capsys.readouterr().err


@pytest.mark.parametrize("schedule", ["onecycle", "cosine"])
def test_extending_a_resumed_run_plans_its_schedule_again(flat_tree, tmp_path, monkeypatch, recwarn, schedule):
    """Without the new plan, cosine stays at LR 0 after the old end and OneCycleLR raises."""
    monkeypatch.chdir(tmp_path)
    first = main(fit_args(flat_tree, "--trainer.max_epochs", "2", "--model.schedule", schedule))
    steps_per_epoch = first.trainer.global_step // 2
    version = tmp_path / "lightning_logs" / "version_0"
    resumed = main(["--resume", str(version), "--trainer.max_epochs", "4"])
    assert resumed.trainer.global_step == 4 * steps_per_epoch
    lr_tag = min(tag for tag in events(version).Tags()["scalars"] if tag.startswith("lr-"))
    lrs = {event.step: event.value for event in events(version).Scalars(lr_tag)}
    end_of_first = max(step for step in lrs if step < 2 * steps_per_epoch)
    after = [lr for step, lr in lrs.items() if step >= 2 * steps_per_epoch]
    assert lrs[end_of_first] < 1e-4 and max(after) > 1e-4
    assert min(after) == after[-1] < 1e-4
    assert not [str(w.message) for w in recwarn if "lr_scheduler.step()" in str(w.message)]


def test_resume_falls_back_from_a_corrupt_last_checkpoint(tmp_path, caplog):
    folder = tmp_path / "version_0" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save({"state_dict": {}, "global_step": 5}, folder / "epoch004.ckpt")
    time.sleep(0.01)
    (folder / "last.ckpt").write_bytes(b"\x80\x02 truncated")
    killed = folder / f".last.ckpt.tmp{dead_pid()}"
    killed.write_bytes(b"left by a kill")
    # A live run's save in progress: a second --resume is refused at the run's lock, later.
    saving = folder / f".epoch009.ckpt.tmp{os.getpid()}"
    saving.write_bytes(b"being written")
    assert find_resume_checkpoint(tmp_path / "version_0") == folder / "epoch004.ckpt"
    assert "last.ckpt is corrupt; resuming from" in caplog.text
    assert not killed.exists() and saving.exists()
    (folder / "epoch004.ckpt").write_bytes(b"")
    with pytest.raises(CamlitError, match="every checkpoint .* is corrupt"):
        find_resume_checkpoint(tmp_path / "version_0")


def test_resume_takes_the_furthest_trained_checkpoint_not_the_newest_file(tmp_path):
    """A copy or restore writes files in any order: a touched best.ckpt of epoch 0 was resumed from,
    and the run's later epochs lost when last.ckpt was written again."""
    folder = tmp_path / "version_0" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save({"state_dict": {}, "global_step": 12, "epoch": 3}, folder / "last.ckpt")
    torch.save({"state_dict": {}, "global_step": 3, "epoch": 0}, folder / "best.ckpt")
    os.utime(folder / "last.ckpt", (1, 1))  # the older file
    assert find_resume_checkpoint(tmp_path / "version_0") == folder / "last.ckpt"
    torch.save({"state_dict": {}, "global_step": 12, "epoch": 3}, folder / "epoch003.ckpt")
    assert find_resume_checkpoint(tmp_path / "version_0") == folder / "last.ckpt"  # at a tie


def test_resume_refuses_an_explicit_corrupt_checkpoint(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"garbage")
    with pytest.raises(SystemExit):
        main(["--resume", str(bad)])
    assert "corrupt or not a Lightning checkpoint; refusing" in capsys.readouterr().err


@pytest.mark.slow
def test_sigkill_at_any_moment_then_resume_finishes_the_same_run(flat_tree, tmp_path):
    args = fit_args(flat_tree, "--trainer.max_epochs", "3", "--periodic_checkpoint.every_n_epochs", "2")
    version = tmp_path / "lightning_logs" / "version_0"
    checkpoints = version / "checkpoints"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    steps = []

    def run_and_kill(command, when):
        process = subprocess.Popen(
            [sys.executable, FIT, *command], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        assert wait_for(when, timeout=240), "the run never reached the moment to kill it"
        process.send_signal(signal.SIGKILL)
        process.wait()
        for checkpoint in checkpoints.glob("*.ckpt"):
            assert is_valid_checkpoint(checkpoint), checkpoint
        steps.append(torch.load(find_resume_checkpoint(version), weights_only=False)["global_step"])

    def saving():  # a checkpoint is being written right now
        return any(checkpoints.glob(".*.ckpt.tmp*")) and (checkpoints / "last.ckpt").exists()

    run_and_kill(args, saving)
    run_and_kill(["--resume", str(version)], saving)
    done = subprocess.run(
        [sys.executable, FIT, "--resume", str(version)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    final = torch.load(checkpoints / "last.ckpt", weights_only=False)
    steps.append(final["global_step"])
    assert final["epoch"] == 2
    assert steps == sorted(steps) and steps[-1] > steps[0]
    assert [p.name for p in (tmp_path / "lightning_logs").iterdir()] == ["version_0"]
    assert not list(checkpoints.glob(".*tmp*"))
    assert {p.name for p in checkpoints.glob("*.ckpt")} == {"best.ckpt", "epoch001.ckpt", "last.ckpt"}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (("--data.classes", str(CLASSES[::-1]).replace("'", "")), "the checkpoint was trained on classes"),
        (("--model.input_filter", "constrained"), "input_filter=highpass (here constrained)"),
        # Same shapes, another computation: the filters are fixed buffers outside the state_dict.
        (("--model.input_filter", "srm"), "input_filter=highpass (here srm)"),
        (("--model.stride_on_3x3", "false"), "stride_on_3x3=True (here False)"),
        # The optimizer's saved state holds these: SGD failed at the first step on Adam's state (and
        # the config already said sgd), a new lr was silently replaced by the saved one.
        (("--model.optimizer", "sgd"), "--model.optimizer sgd (saved: adam): a resumed run goes on"),
        (("--model.lr", "0.5"), "--model.lr 0.5 (saved: 0.001)"),
        (("--model.weight_decay", "0.1"), "--model.weight_decay 0.1 (saved: 0.0)"),
        # A KeyError 'initial_lr' traceback after config.yaml was written: every later resume failed.
        (("--trainer.max_epochs", "2", "--model.schedule", "onecycle"), "--model.schedule onecycle (saved: none)"),
    ],
)
def test_a_failed_resume_leaves_the_run_as_it_was(flat_tree, tmp_path, monkeypatch, capsys, override, message):
    monkeypatch.chdir(tmp_path)
    main(fit_args(flat_tree, *SHORT))
    version = tmp_path / "lightning_logs" / "version_0"
    before = {p.relative_to(version): p.read_bytes() for p in version.rglob("*") if p.is_file()}
    assert message in one_error_line(capsys, lambda: main(["--resume", str(version), *override]))
    assert {p.relative_to(version): p.read_bytes() for p in version.rglob("*") if p.is_file()} == before
    resumed = main(["--resume", str(version), "--trainer.max_epochs", "2"])
    assert resumed.trainer.current_epoch == 2


def test_resume_from_another_folder_keeps_best_checkpoint_tracking(flat_tree, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = main(fit_args(flat_tree, *SHORT))
    best = first.trainer.checkpoint_callback
    version = tmp_path / "lightning_logs" / "version_0"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resumed = main(["--resume", str(version), "--trainer.max_epochs", "2"])
    assert not [w for w in caught if "dirpath has changed" in str(w.message)]
    tracked = resumed.trainer.checkpoint_callback
    assert tracked.best_model_score >= best.best_model_score
    assert [os.path.basename(p) for p in tracked.best_k_models] == ["best.ckpt"]
    assert all(os.path.isfile(p) for p in tracked.best_k_models)
    assert not (elsewhere / "lightning_logs").exists()


def test_a_run_is_resumed_however_its_folder_or_checkpoint_is_spelled(flat_tree, tmp_path, monkeypatch):
    """`last.ckpt` from inside checkpoints/ started a new run nested there; `--resume .`, `..`,
    `version_0` from lightning_logs/ and a link to the run failed on an empty logger name or version."""
    monkeypatch.chdir(tmp_path)
    main(fit_args(flat_tree, *SHORT))
    runs = tmp_path / "lightning_logs"
    version = runs / "version_0"
    (tmp_path / "link").symlink_to(version)
    spellings = [
        (version / "checkpoints", ["--ckpt_path", "last.ckpt"]),
        (runs, ["--resume", "version_0"]),
        (version, ["--resume", "."]),
        (version / "checkpoints", ["--resume", ".."]),
        (tmp_path, ["--resume", "link"]),
    ]
    for epochs, (folder, spelling) in enumerate(spellings, start=2):
        monkeypatch.chdir(folder)
        resumed = main([*spelling, "--trainer.max_epochs", str(epochs)])
        assert resumed.trainer.current_epoch == epochs, spelling
        assert torch.load(version / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == epochs - 1, spelling
    assert [p.name for p in runs.iterdir()] == ["version_0"]
    assert sorted(p.name for p in version.iterdir() if p.is_dir()) == ["checkpoints"]


def test_a_run_resumed_from_another_folder_reads_the_data_it_started_on(flat_tree, tmp_path, monkeypatch, capsys):
    """A relative --data.train_dir was read from the resuming folder: there, its own data/ trained the run."""
    started, elsewhere = tmp_path / "started", tmp_path / "elsewhere"
    shutil.copytree(flat_tree, started / "data" / "train")
    shutil.copytree(flat_tree, elsewhere / "data" / "train")
    monkeypatch.chdir(started)
    main(fit_args("data/train", *SHORT))
    version, train_dir = started / "lightning_logs" / "version_0", started / "data" / "train"
    config = version / "config.yaml"
    assert f"train_dir: {train_dir}\n" in config.read_text()
    # A run saved before the paths were recorded whole: its own log folder shows where it started.
    config.write_text(config.read_text().replace(str(train_dir), "data/train"))
    before = {p: p.read_bytes() for p in version.rglob("*") if p.is_file()}
    monkeypatch.chdir(elsewhere)
    line = one_error_line(capsys, lambda: main(["--resume", str(version), "--trainer.max_epochs", "2"]))
    assert f"{config}: data.train_dir data/train is relative to the folder the run was started in" in line
    assert {p: p.read_bytes() for p in version.rglob("*") if p.is_file()} == before
    monkeypatch.chdir(started)
    main(["--resume", "lightning_logs/version_0", "--trainer.max_epochs", "2"])
    monkeypatch.chdir(elsewhere)
    resumed = main(["--resume", str(version), "--trainer.max_epochs", "3"])
    assert resumed.trainer.current_epoch == 3 and resumed.datamodule.hparams.train_dir == str(train_dir)


def test_the_resume_command_a_stop_prints_gives_a_cache_outside_the_working_folder_again(
    flat_tree, tmp_path, monkeypatch, capsys
):
    """A cache on a node's local disk, outside the working folder: the `--resume RUN` printed
    after a SIGTERM was refused there, as a run folder's config may not write outside it alone."""
    work, cache = tmp_path / "work", tmp_path / "node-local" / "cache"
    work.mkdir()
    monkeypatch.chdir(work)
    run = main(fit_args(flat_tree, *SHORT, "--data.cache_dir", str(cache)))
    command = resume_command(os.path.join("lightning_logs", "version_0"), run.config)
    assert command == f"--resume {os.path.join('lightning_logs', 'version_0')} --data.cache_dir {cache}"
    line = one_error_line(capsys, lambda: main(["--resume", "lightning_logs/version_0", "--trainer.max_epochs", "2"]))
    assert f"data.cache_dir names {cache}, outside the working directory" in line
    resumed = main([*shlex.split(command), "--trainer.max_epochs", "2"])
    assert resumed.trainer.current_epoch == 2
    # Inside the working folder the run's own value is accepted: the command is --resume alone.
    assert resume_command("run", Namespace(data=Namespace(cache_dir="cache", synthetic_root=None))) == "--resume run"

    # A callback given to the new run: its --resume refuses the saved config, and the stop line says so.
    config = tmp_path / "work" / "lightning_logs" / "version_0" / "config.yaml"
    config.write_text(config.read_text().replace("callbacks: null", "callbacks: [EarlyStopping]"))
    said = resume_command("lightning_logs/version_0", run.config)
    assert said.startswith(f"{command}, once the run's config.yaml is fit for it (")
    assert "trainer.callbacks names objects to create" in said


class CropLog(Callback):
    """Records each training batch's epoch and crops; at `stop_at` steps it stops the fit as
    SIGTERM does (Lightning's flag, its exception after the batch) and saves there as camlit does."""

    def __init__(self, stop_at: int | None = None, path: str | None = None):
        self.batches: list[tuple[int, str]] = []
        self.crops: list[tuple[int, str]] = []
        self.lrs: list[float] = []
        self.stop_at, self.path = stop_at, path

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.batches.append((trainer.current_epoch, hashlib.sha1(batch.images.numpy().tobytes()).hexdigest()[:12]))
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])
        self.crops += [
            (trainer.current_epoch, hashlib.sha1(crop.numpy().tobytes()).hexdigest()[:12]) for crop in batch.images
        ]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.stop_at:
            trainer._signal_connector.received_sigterm = True

    def on_exception(self, trainer, pl_module, exception):
        if self.path:
            trainer.save_checkpoint(self.path)


def logged_fit(root, log: CropLog, ckpt_path=None, batch_size: int = 4, schedule: str = "none") -> None:
    trainer = Trainer(
        max_epochs=2, callbacks=[log], logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0,
    )  # fmt: skip
    datamodule = CameraDataModule(
        str(root), classes=CLASSES, crop_size=32, batch_size=batch_size, num_workers=1, synthetic_root=None
    )
    try:
        model = CameraClassifier(CLASSES, arch="resnet_tiny", schedule=schedule)
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    except SIGTERMException:
        pass


@pytest.mark.parametrize("schedule", ["none", "onecycle"])
def test_a_resumed_fit_trains_on_the_crops_of_an_uninterrupted_one(flat_tree, tmp_path, recwarn, schedule):
    """Lightning's loader workers start drawing before it sets the sampler's epoch: a resumed
    epoch drew epoch 0's crops, and from its start when stopped mid-epoch. With a schedule the
    loader is built (to count the steps) before the checkpoint's place in the epoch is restored:
    the epoch's first batches trained twice and its last never."""
    whole = CropLog()
    logged_fit(flat_tree, whole, schedule=schedule)
    steps_per_epoch = sum(epoch == 0 for epoch, _ in whole.batches)
    assert len(whole.batches) == 2 * steps_per_epoch >= 4
    for stop_at in (steps_per_epoch + 1, steps_per_epoch):  # in the middle of epoch 1, at the end of epoch 0
        first = CropLog(stop_at, str(tmp_path / "stopped.ckpt"))
        logged_fit(flat_tree, first, schedule=schedule)
        assert len(first.batches) == stop_at
        rest = CropLog()
        logged_fit(flat_tree, rest, ckpt_path=tmp_path / "stopped.ckpt", schedule=schedule)
        assert first.batches + rest.batches == whole.batches
        assert first.lrs + rest.lrs == pytest.approx(whole.lrs)  # the schedule goes on where it was
    assert not [w for w in recwarn if "your dataloader is not resumable" in str(w.message)]


def test_a_run_resumed_mid_epoch_with_another_batch_size_trains_each_crop_once(flat_tree, tmp_path):
    """The crops done were counted as batches done times the new batch size: 2 crops trained twice."""
    whole = CropLog()
    logged_fit(flat_tree, whole)
    steps_per_epoch = sum(epoch == 0 for epoch, _ in whole.batches)
    first = CropLog(steps_per_epoch + 1, str(tmp_path / "stopped.ckpt"))  # one batch of 4 into epoch 1
    logged_fit(flat_tree, first)
    rest = CropLog()
    logged_fit(flat_tree, rest, ckpt_path=tmp_path / "stopped.ckpt", batch_size=2)
    done, after = ({crop for epoch, crop in log.crops if epoch == 1} for log in (first, rest))
    assert len(done) == 4 and not done & after
    # Every crop of the uninterrupted epoch is trained (a last short batch of 4 is dropped, of 2 not).
    assert {crop for epoch, crop in whole.crops if epoch == 1} <= done | after


def test_resume_names_one_target_and_a_run_folder_must_hold_its_options(tmp_path):
    folder = tmp_path / "version_0" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save({"state_dict": {}, "global_step": 5}, folder / "last.ckpt")
    # Without config.yaml, a run folder would start on the defaults instead of continuing.
    with pytest.raises(CamlitError, match="no config.yaml in the run folder"):
        resume_arguments(["--resume", str(tmp_path / "version_0")])
    # Its checkpoint file, named, continues under the options given.
    given = ["--config", "mine.yaml", "--ckpt_path", str(folder / "last.ckpt")]
    assert resume_arguments(given) == [*given, "--ckpt_path", str(folder / "last.ckpt")]
    with pytest.raises(CamlitError, match="give one; --resume takes the run's own checkpoint"):
        resume_arguments(["--resume", str(tmp_path / "version_0"), "--ckpt_path", str(folder / "last.ckpt")])
    os.mkfifo(tmp_path / "pipe.ckpt")  # there, but no file to read: not "no such" one
    with pytest.raises(CamlitError, match=r"--ckpt_path \S+pipe.ckpt: not a regular file$"):
        resume_arguments(["--ckpt_path", str(tmp_path / "pipe.ckpt")])
    with pytest.raises(CamlitError, match="gone.ckpt: no such run folder or checkpoint file"):
        resume_arguments(["--ckpt_path", str(tmp_path / "gone.ckpt")])
    with pytest.raises(CamlitError, match="^--ckpt_path nope.ckpt: no such run folder"):
        resume_arguments(["--ckpt_path", "nope.ckpt"])


def test_a_checkpoint_outside_a_runs_checkpoints_folder_names_no_run(flat_tree, tmp_path, monkeypatch):
    """A config.yaml of the user's two folders above --ckpt_path was taken for a run's: written
    over by Lightning's, and the project folder made a run folder."""
    monkeypatch.chdir(tmp_path)
    main(fit_args(flat_tree, *SHORT))
    project = tmp_path / "project"
    (project / "weights").mkdir(parents=True)
    shutil.copy(tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt", project / "weights" / "m.ckpt")
    mine = "# the user's own config, kept\ntrainer:\n  max_epochs: 2\n"
    (project / "config.yaml").write_text(mine)
    monkeypatch.chdir(project)
    cli = main([*fit_args(flat_tree, *SHORT[2:]), "--config", "config.yaml", "--ckpt_path", "weights/m.ckpt"])
    assert cli.trainer.current_epoch == 2
    assert (project / "config.yaml").read_text() == mine
    assert sorted(p.name for p in project.iterdir()) == ["config.yaml", "lightning_logs", "weights"]


def test_resuming_from_an_earlier_checkpoint_of_a_run_is_refused_and_the_run_kept(
    flat_tree, tmp_path, monkeypatch, capsys
):
    """Its later last.ckpt was written over, and the best score of then restored."""
    monkeypatch.chdir(tmp_path)
    main(fit_args(flat_tree, *SHORT))
    version = tmp_path / "lightning_logs" / "version_0"
    early = version / "checkpoints" / "early.ckpt"
    shutil.copy(version / "checkpoints" / "last.ckpt", early)
    main(["--resume", str(version), "--trainer.max_epochs", "2"])
    before = {p: p.read_bytes() for p in version.rglob("*") if p.is_file()}
    line = one_error_line(capsys, lambda: main(["--resume", str(early), "--trainer.max_epochs", "3"]))
    assert f"--resume {early}: step 2 of a run whose last.ckpt reached step 4" in line
    assert {p: p.read_bytes() for p in version.rglob("*") if p.is_file()} == before
    # The furthest checkpoint named as a file continues the run.
    assert (
        main(
            ["--resume", str(version / "checkpoints" / "last.ckpt"), "--trainer.max_epochs", "3"]
        ).trainer.current_epoch
        == 3
    )


def test_resume_and_ckpt_path_in_a_config_file_are_checked_as_on_the_command_line(
    flat_tree, tmp_path, monkeypatch, capsys
):
    """`resume:` in a --config file started a new run beside the one it named; `ckpt_path:` of a
    run's earlier checkpoint trained over its later ones, past the check the option gets."""
    monkeypatch.chdir(tmp_path)
    main(fit_args(flat_tree, *SHORT))
    version = tmp_path / "lightning_logs" / "version_0"
    early = version / "checkpoints" / "early.ckpt"
    shutil.copy(version / "checkpoints" / "last.ckpt", early)
    (tmp_path / "resume.yaml").write_text(f"resume: {version}\n")
    assert main(["--config", "resume.yaml", "--trainer.max_epochs", "2"]).trainer.current_epoch == 2
    assert [p.name for p in (tmp_path / "lightning_logs").iterdir()] == ["version_0"]
    before = {p: p.read_bytes() for p in version.rglob("*") if p.is_file()}
    (tmp_path / "early.yaml").write_text(f"ckpt_path: {early}\n")
    line = one_error_line(capsys, lambda: main(["--config", "early.yaml", "--trainer.max_epochs", "3"]))
    assert f"--ckpt_path {early}: step 2 of a run whose last.ckpt reached step 4" in line
    assert {p: p.read_bytes() for p in version.rglob("*") if p.is_file()} == before


def test_a_resumed_runs_config_holds_neither_the_checkpoint_nor_the_purge_step(
    flat_tree, tmp_path, monkeypatch, capsys
):
    """Both are how that resume started: given as --config, the saved file then continued the run
    past the refusal a saved config gets, and its purge_step hid the steps logged after it."""
    monkeypatch.chdir(tmp_path)
    main(fit_args(flat_tree, *SHORT))
    version = tmp_path / "lightning_logs" / "version_0"
    main(["--resume", str(version), "--trainer.max_epochs", "2"])
    saved = yaml.safe_load((version / "config.yaml").read_text())
    assert saved["ckpt_path"] is None and saved["trainer"]["logger"]["init_args"]["purge_step"] is None
    line = one_error_line(capsys, lambda: main(["--config", str(version / "config.yaml"), "--trainer.max_epochs", "3"]))
    assert f"{version} holds a run's checkpoints; continue it with --resume" in line


def test_steps_a_killed_run_logged_after_its_checkpoint_are_not_shown_twice(flat_tree, tmp_path, monkeypatch):
    """Resumed after a kill -9, TensorBoard drew the steps since the checkpoint twice, two values each."""
    monkeypatch.chdir(tmp_path)
    main(fit_args(flat_tree, *SHORT, "--trainer.log_every_n_steps", "1"))
    version = tmp_path / "lightning_logs" / "version_0"
    saved = {name: (version / "checkpoints" / name).read_bytes() for name in ("last.ckpt", "last.ckpt.sha256")}
    main(["--resume", str(version), "--trainer.max_epochs", "2"])
    for name, data in saved.items():  # killed before its epoch's end: the checkpoint of step 2 is the last
        (version / "checkpoints" / name).write_bytes(data)
    (version / "checkpoints" / "best.ckpt").unlink()
    (version / "checkpoints" / "best.ckpt.sha256").unlink()
    main(["--resume", str(version), "--trainer.max_epochs", "2"])
    logged = events(version)
    steps = [event.step for event in logged.Scalars("train/loss_step")]
    assert steps == sorted(set(steps)) == [0, 1, 2, 3]
    # Each validation's confusion matrix is kept, at its metrics' step.
    assert [event.step for event in logged.Images("val/confusion_matrix")] == [1, 3]
    assert [event.step for event in logged.Scalars("val/acc")] == [1, 3]


@pytest.mark.parametrize(
    ("validation", "steps"),
    [(("--trainer.check_val_every_n_epoch", "2"), 2), (("--trainer.val_check_interval", "2"), 3)],
    ids=["every_second_epoch", "within_the_epoch"],
)  # fmt: skip
def test_last_checkpoint_is_written_at_every_epoch_end_whenever_validation_runs(
    flat_tree, tmp_path, monkeypatch, caplog, validation, steps
):
    """Saved after validation only: a run validating every second epoch kept no checkpoint after
    its first (with 5, none at all, status 0), and one validating within the epoch lost each
    epoch's last steps. The save says what it saves: Lightning prints a line for a `weights_only` left unset."""
    monkeypatch.chdir(tmp_path)
    last = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    options = ["--trainer.limit_train_batches", str(steps), "--trainer.limit_val_batches", "1", *validation]
    with caplog.at_level(logging.INFO):
        main(fit_args(flat_tree, "--trainer.max_epochs", "3", *options))
    assert "weights_only" not in caplog.text
    saved = torch.load(last, weights_only=True)
    assert (saved["global_step"], saved["epoch"]) == (3 * steps, 2)
    resumed = main(["--resume", str(last.parent.parent), "--trainer.max_epochs", "4"])
    assert resumed.trainer.global_step == 4 * steps == torch.load(last, weights_only=True)["global_step"]


def test_resume_passes_over_a_weights_only_checkpoint(flat_tree, tmp_path, monkeypatch, capsys):
    """With last.ckpt damaged, --resume fell back to a `save_weights_only` best.ckpt and failed in
    a KeyError traceback on its missing optimizer state."""
    monkeypatch.chdir(tmp_path)
    main(fit_args(flat_tree, *SHORT, "--best_checkpoint.save_weights_only", "true"))
    run = tmp_path / "lightning_logs" / "version_0"
    last = run / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])
    line = one_error_line(capsys, lambda: main(["--resume", str(run), "--trainer.max_epochs", "2"]))
    assert line == f"error: {run}: no checkpoint in {run / 'checkpoints'} is whole and holds a training state to resume"


def test_a_run_with_lightnings_own_logger_is_claimed_and_resumed_in_its_folder(
    flat_tree, tmp_path, monkeypatch, capsys
):
    """`--trainer.logger true` made Lightning's TensorBoardLogger: no lock, no claimed version, and
    `--resume` of the run failed on its config.yaml (`expected true or false or null`)."""
    monkeypatch.chdir(tmp_path)
    main(fit_args(flat_tree, *SHORT, "--trainer.logger", "true"))
    version = tmp_path / "lightning_logs" / "version_0"
    config_file = version / "config.yaml"
    saved = yaml.safe_load(config_file.read_text())
    assert saved["trainer"]["logger"]["class_path"] == "lightning.pytorch.loggers.TensorBoardLogger"
    saved["trainer"]["logger"] = True  # as a run saved before camlit read `true` as its own logger
    config_file.write_text(yaml.safe_dump(saved))
    resumed = main(["--resume", str(version), "--trainer.max_epochs", "2"])
    assert resumed.trainer.current_epoch == 2
    assert torch.load(version / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 1
    assert [p.name for p in (tmp_path / "lightning_logs").iterdir()] == ["version_0"]
    # Named with `resume:` in a config file that also says `logger: true`: it started a new run.
    # Continuing it under another logger than its own is refused (jsonargparse's line), the run kept.
    (tmp_path / "again.yaml").write_text(f"resume: {version}\ntrainer:\n  logger: true\n")
    before = {p: p.read_bytes() for p in version.rglob("*") if p.is_file()}
    line = one_error_line(capsys, lambda: main(["--config", "again.yaml", "--trainer.max_epochs", "3"]))
    assert "trainer.logger" in line
    assert [p.name for p in (tmp_path / "lightning_logs").iterdir()] == ["version_0"]
    assert {p: p.read_bytes() for p in version.rglob("*") if p.is_file()} == before
