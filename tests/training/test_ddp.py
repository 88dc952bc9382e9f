"""DDP on the CPU with gloo: distinct training shards, whole-set validation, one set of logs.

Validation has an odd number of items, so two ranks cannot share it evenly: each item must be
scored on exactly one rank, and the reduced accuracy must be that of the whole set.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from conftest import FIT, blocked_signals, end_session, fit_args, live_members, wait_for

from camlit.data.sampler import EpochSampler
from camlit.training.checkpointing import is_valid_checkpoint

PROBE = '''
import json
from pathlib import Path

from lightning.pytorch import Callback


class Probe(Callback):
    """Records what each rank trains on and what validation counted."""

    def __init__(self, out: str):
        self.out = Path(out)

    def write(self, trainer, kind, payload):
        name = f"{kind}-rank{trainer.global_rank}-epoch{trainer.current_epoch}.json"
        (self.out / name).write_text(json.dumps(payload))

    def on_train_epoch_start(self, trainer, pl_module):
        self.write(trainer, "train", [list(item) for item in trainer.train_dataloader.sampler])
        if trainer.current_epoch == 1:
            self.write(trainer, "logged", float(trainer.callback_metrics["train/loss_epoch"]))
        self.losses = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append([float(outputs["loss"]), len(batch.labels)])

    def on_train_epoch_end(self, trainer, pl_module):
        self.write(trainer, "losses", self.losses)

    def on_validation_epoch_start(self, trainer, pl_module):
        self.correct = []

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        predictions = pl_module(batch.images, batch.manipulated).argmax(dim=1)
        self.correct += (predictions == batch.labels).tolist()

    def on_validation_epoch_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self.write(trainer, "val", {"counted": int(pl_module.val_confusion.compute().sum()),
                                        "acc": float(pl_module.val_acc.compute()),
                                        "items": list(trainer.val_dataloaders.sampler),
                                        "correct": self.correct})
'''


@pytest.mark.slow
def test_ddp_two_cpu_processes(flat_tree, tmp_path):
    probe_dir = tmp_path / "probe"
    probe_dir.mkdir()
    (tmp_path / "ddp_probe.py").write_text(textwrap.dedent(PROBE))
    callbacks = json.dumps([{"class_path": "ddp_probe.Probe", "init_args": {"out": str(probe_dir)}}])
    args = fit_args(
        flat_tree,
        "--trainer.strategy",
        "ddp",
        "--trainer.devices",
        "2",
        "--trainer.accelerator",
        "cpu",
        "--trainer.max_epochs",
        "2",
        "--data.val_fraction",
        "0.17",
        "--data.load_ratio",
        "0.8",
        "--trainer.callbacks",
        callbacks,
    )
    # The probe, and the camlit of this checkout rather than whichever is installed.
    path = os.pathsep.join([str(tmp_path), str(Path(FIT).parents[1])])
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, FIT, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]

    # 5 training photos per class, 4 of them drawn each epoch: 12, which two ranks share evenly.
    sampler = EpochSampler([0] * 5 + [1] * 5 + [2] * 5, load_ratio=0.8, seed=0)
    for epoch in range(2):
        shards = [json.loads((probe_dir / f"train-rank{rank}-epoch{epoch}.json").read_text()) for rank in (0, 1)]
        seen = [{tuple(item) for item in shard} for shard in shards]
        assert seen[0] and seen[1] and seen[0].isdisjoint(seen[1])
        sampler.set_epoch(epoch)
        assert len(seen[0] | seen[1]) == len(sampler) == 12
        assert all(e == epoch for _, e, _ in seen[0] | seen[1])
        validation = [json.loads((probe_dir / f"val-rank{rank}-epoch{epoch}.json").read_text()) for rank in (0, 1)]
        # 1 held-out photo per class: 3 items, each on exactly one rank, none repeated to even the shares.
        items = validation[0]["items"] + validation[1]["items"]
        assert sorted(items) == [0, 1, 2]
        correct = validation[0]["correct"] + validation[1]["correct"]
        for rank in (0, 1):
            assert validation[rank]["counted"] == 3
            assert validation[rank]["acc"] == pytest.approx(sum(correct) / 3)

    # The epoch's loss is every rank's batches', weighted by their sizes, not rank 0's alone.
    batches = [
        pair for rank in (0, 1) for pair in json.loads((probe_dir / f"losses-rank{rank}-epoch0.json").read_text())
    ]
    mean = sum(loss * size for loss, size in batches) / sum(size for _, size in batches)
    for rank in (0, 1):
        assert json.loads((probe_dir / f"logged-rank{rank}-epoch1.json").read_text()) == pytest.approx(mean, rel=1e-5)

    runs = list((tmp_path / "lightning_logs").iterdir())
    assert [p.name for p in runs] == ["version_0"]
    assert len(list(runs[0].glob("events.out.tfevents.*"))) == 1
    assert sorted(p.name for p in (runs[0] / "checkpoints").glob("*.ckpt")) == ["best.ckpt", "last.ckpt"]


def start_ddp_fit(flat_tree, folder: Path, workers: int) -> subprocess.Popen:
    """A long DDP fit on two CPU processes in a session of its own, `workers` loader workers each."""
    args = fit_args(flat_tree, "--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu",
                    "--trainer.max_epochs", "1000", "--trainer.limit_val_batches", "1",
                    "--data.num_workers", str(workers))  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(FIT).parents[1]), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, FIT, *args], cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "group"),
    [(signal.SIGTERM, True), (signal.SIGINT, True), (signal.SIGTERM, False)],
    ids=["sigterm", "ctrl_c", "sigterm_to_rank_0"],
)
def test_a_signal_to_a_ddp_run_saves_the_step_on_every_rank(flat_tree, tmp_path, signum, group):
    """scancel, or a terminal's Ctrl-C, signals both ranks and their loader workers at once; `kill`
    signals rank 0 alone. Either way the ranks stop after the same batch (Lightning's own handling
    hung here, and so did a worker that took SIGTERM: the group's signal hung 3 runs in 20)."""
    last = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    process = start_ddp_fit(flat_tree, tmp_path, workers=2)
    try:
        assert wait_for(last.exists, timeout=300), process.communicate(timeout=5)[1][-3000:]
        saved_at = torch.load(last, weights_only=True)["global_step"]
        time.sleep(1)
        os.killpg(process.pid, signum) if group else process.send_signal(signum)
        _, stderr = process.communicate(timeout=240)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 128 + signum, stderr[-3000:]
    assert "Traceback" not in stderr and stderr.count(f"stopped by {signal.Signals(signum).name}:") == 1
    assert is_valid_checkpoint(last) and torch.load(last, weights_only=True)["global_step"] > saved_at


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def second_rank(session: int) -> int | None:
    """The run's second rank: the first process's child that Lightning gave LOCAL_RANK 1."""
    for pid in live_members(session):
        try:
            if pid != session and parent_of(pid) == session:
                if b"LOCAL_RANK=1" in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                    return pid
        except OSError:  # gone meanwhile
            continue
    return None


def second_rank_worker(session: int) -> int | None:
    """A loader worker of the run's second rank: a grandchild of the first process."""
    rank = second_rank(session)
    workers = [pid for pid in live_members(session) if rank is not None and parent_of(pid) == rank]
    return workers[0] if workers else None


@pytest.mark.slow
def test_a_killed_loader_worker_of_another_rank_is_one_line_naming_the_run(flat_tree, tmp_path):
    """The OOM killer's victim in the second rank: it said "nothing kept" (it holds no run folder)
    and the first printed gloo's traceback. Now the first says what is kept, once."""
    last = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    process = start_ddp_fit(flat_tree, tmp_path, workers=1)
    try:
        assert wait_for(last.exists, timeout=300), process.communicate(timeout=5)[1][-3000:]
        assert wait_for(lambda: second_rank_worker(process.pid) is not None, timeout=60)
        os.kill(second_rank_worker(process.pid), signal.SIGKILL)
        _, stderr = process.communicate(timeout=240)
    finally:
        end_session(process.pid)
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert process.returncode == 1 and "Traceback" not in stderr, stderr[-3000:]
    assert len(errors) == 1 and "nothing kept" not in errors[0], stderr[-3000:]
    assert "continue with" in errors[0] and "--resume lightning_logs/version_0" in errors[0]
    assert is_valid_checkpoint(last)


@pytest.mark.slow
def test_a_signal_while_the_second_rank_starts_stops_the_run_and_removes_its_folder(flat_tree, tmp_path):
    """scancel while the second rank was still importing torch: it died of SIGTERM, and Lightning's
    launcher SIGKILLed the first, which left a version folder holding only its lock."""
    process = start_ddp_fit(flat_tree, tmp_path, workers=2)
    try:
        assert wait_for(lambda: second_rank(process.pid) is not None, timeout=120), "no second rank started"
        second = second_rank(process.pid)
        assert wait_for(lambda: signal.SIGTERM in blocked_signals(second), timeout=30), "it holds no signal"
        os.killpg(process.pid, signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
        assert wait_for(lambda: not live_members(process.pid), 5)
    finally:
        end_session(process.pid)
    assert process.returncode == 143, stderr[-3000:]
    assert "Traceback" not in stderr and stderr.count("stopped by SIGTERM:") == 1, stderr[-3000:]
    assert not list((tmp_path / "lightning_logs").glob("version_*"))
