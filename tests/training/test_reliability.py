"""Crash safety, resume, non-finite losses, determinism and a fuzzed image reader."""

import os
import signal
import subprocess
import sys
import time

import lightning as L
import numpy as np
import pytest
import torch
from conftest import CLASSES, FIT, fit_args, random_image

from camlit.data.datamodule import CameraDataModule
from camlit.errors import CamlitError
from camlit.imageio import UnreadableImage, read_rgb
from camlit.training.callbacks import NonFiniteLossError, NonFiniteLossGuard
from camlit.training.checkpointing import AtomicCheckpointIO, is_valid_checkpoint
from camlit.training.cli import main
from camlit.training.module import CameraClassifier
from camlit.training.resume import LatestCheckpoint, find_resume_checkpoint


def test_atomic_save_keeps_the_old_file_when_a_save_dies(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "global_step": 1}, path)

    def dies_half_way(obj, file, *args, **kwargs):
        file.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "global_step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=False)["global_step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt", "last.ckpt.sha256"]


def test_resume_falls_back_from_a_corrupt_last_checkpoint(tmp_path, caplog):
    folder = tmp_path / "version_0" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save({"state_dict": {}, "global_step": 5}, folder / "epoch004.ckpt")
    time.sleep(0.01)
    (folder / "last.ckpt").write_bytes(b"\x80\x02 truncated")
    (folder / ".last.ckpt.tmp123").write_bytes(b"left by a kill")
    assert find_resume_checkpoint(tmp_path / "version_0") == folder / "epoch004.ckpt"
    assert "last.ckpt is corrupt; resuming from" in caplog.text
    assert not (folder / ".last.ckpt.tmp123").exists()
    (folder / "epoch004.ckpt").write_bytes(b"")
    with pytest.raises(CamlitError, match="every checkpoint .* is corrupt"):
        find_resume_checkpoint(tmp_path / "version_0")


def test_resume_refuses_an_explicit_corrupt_checkpoint(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"garbage")
    with pytest.raises(SystemExit):
        main(["--resume", str(bad)])
    assert "corrupt or not a Lightning checkpoint; refusing" in capsys.readouterr().err


class BlowsUpAtStep3(CameraClassifier):
    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        return loss * float("inf") if self.global_step >= 3 else loss

    def on_train_batch_end(self, outputs, batch, batch_idx):
        # Mirror what training_step recorded for the doctored loss.
        from camlit.training.callbacks import record_nonfinite

        record_nonfinite(self.first_nonfinite_step, outputs["loss"], self.global_step - 1)


def test_non_finite_loss_stops_with_the_step_and_keeps_the_good_checkpoint(flat_tree, tmp_path):
    datamodule = CameraDataModule(
        str(flat_tree), classes=CLASSES, crop_size=32, batch_size=4, num_workers=0, synthetic_root=None
    )
    model = BlowsUpAtStep3(CLASSES, input_filter="highpass", channels_last=False)
    latest = LatestCheckpoint(dirpath=str(tmp_path / "checkpoints"))
    trainer = L.Trainer(
        max_epochs=5,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[NonFiniteLossGuard(check_every_n_steps=100), latest],
        limit_train_batches=3,
    )
    expected = r"non-finite at step 3; stopped; the last good checkpoint is .*last.ckpt"
    with pytest.raises(NonFiniteLossError, match=expected):
        trainer.fit(model, datamodule=datamodule)
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert saved["global_step"] == 3
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values() if v.is_floating_point())


def test_same_seed_same_first_losses(flat_tree, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    losses = []
    for _ in range(2):
        cli = main(
            fit_args(
                flat_tree,
                "--trainer.max_steps",
                "3",
                "--trainer.limit_val_batches",
                "0",
                "--trainer.logger",
                "false",
                "--trainer.enable_checkpointing",
                "false",
                "--data.num_workers",
                "1",
                "--model.channels_last",
                "false",
            )
        )
        losses.append(cli.trainer.callback_metrics["train/loss_step"].item())
        losses.append(cli.model.net.fc.weight.detach().clone())
    assert losses[0] == losses[2]
    assert torch.equal(losses[1], losses[3])


def wait_for(predicate, timeout: float, interval: float = 0.005):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


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


def test_reader_survives_fuzzing(tmp_path):
    rng = np.random.default_rng(0)
    import cv2

    seeds = [cv2.imencode(ext, random_image(rng, 40, 48))[1].tobytes() for ext in (".jpg", ".png", ".bmp", ".tif")]
    seeds.append(cv2.imencode(".png", rng.integers(0, 65535, (40, 48, 4), dtype=np.uint16))[1].tobytes())
    cases = [rng.integers(0, 256, int(rng.integers(0, 400)), dtype=np.uint8).tobytes() for _ in range(150)]
    for _ in range(250):
        data = bytearray(seeds[int(rng.integers(len(seeds)))])
        for _ in range(int(rng.integers(1, 12))):
            data[int(rng.integers(len(data)))] = int(rng.integers(256))
        truncated = rng.random() < 0.3
        cases.append(bytes(data[: int(rng.integers(len(data) // 2, len(data)))] if truncated else data))
    signal.alarm(120)  # a hang fails the test instead of stalling the suite
    try:
        outcomes = {"image": 0, "refused": 0}
        for index, data in enumerate(cases):
            path = tmp_path / f"case{index}.{('jpg', 'png', 'tif')[index % 3]}"
            path.write_bytes(data)
            try:
                image = read_rgb(path)
            except UnreadableImage as error:
                assert path.name in str(error)
                outcomes["refused"] += 1
            else:
                assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
                outcomes["image"] += 1
    finally:
        signal.alarm(0)
    assert outcomes["refused"] >= 150 and outcomes["image"] > 0


def test_cmyk_jpeg_is_read_as_rgb(tmp_path):
    image_module = pytest.importorskip("PIL.Image")
    image_module.new("CMYK", (40, 40), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    rgb = read_rgb(tmp_path / "cmyk.jpg")
    assert rgb.shape == (40, 40, 3)
    assert rgb[..., 0].mean() > 200 and rgb[..., 1].mean() < 60
