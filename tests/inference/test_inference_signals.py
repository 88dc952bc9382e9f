"""SIGTERM or Ctrl-C during predict or evaluate: it stops, writes nothing, and says so (exit status 143 or 130).
Sent to the whole process group (a terminal's Ctrl-C), it also reaches the loader workers: they end
quietly, with no second traceback from them or from torch's "worker is killed" check."""

import os
import signal

import numpy as np
import pytest
from conftest import CLASSES, random_image, start_paused, wait_for, write_image

from camlit.termination import EXIT_STATUS, INTERRUPT_STATUS

OUTPUTS = {
    "camlit.inference.predict": ["--output", "out/submission.csv", "--probs", "out/probs.csv"],
    "camlit.inference.evaluate": ["--json", "out/figures.json", "--confusion", "out/confusion.png"],
}


@pytest.mark.slow
@pytest.mark.parametrize("entry", OUTPUTS)
@pytest.mark.parametrize(("stop", "status"), [(signal.SIGTERM, EXIT_STATUS), (signal.SIGINT, INTERRUPT_STATUS)])
@pytest.mark.parametrize("workers", [0, 2], ids=["to_the_process", "to_the_group_with_loader_workers"])
def test_a_signal_stops_without_an_output_file(tmp_path, ckpt, entry, stop, status, workers):
    rng = np.random.default_rng(0)
    for k in range(4):  # predict reads a flat folder, evaluate without --labels a DataModule-style one
        folder = tmp_path / "test" / (CLASSES[k % 3] if entry.endswith("evaluate") else "")
        write_image(folder / f"img_{k}.png", random_image(rng, 48, 48))
    args = ["--ckpt_path", str(ckpt), "--input", "test", *OUTPUTS[entry]]
    args += ["--crops", "4", "--batch_size", "1", "--num_workers", str(workers), "--device", "cpu", "--no_progress"]
    (tmp_path / "out").mkdir()
    process, predicting = start_paused(
        tmp_path, "camlit.training.module.CameraClassifier.predict_step", entry, args, 0.5, new_session=True
    )
    assert wait_for(lambda: predicting.exists() or process.poll() is not None, timeout=120)
    assert process.poll() is None, process.communicate()[1][-2000:]
    if workers:
        os.killpg(process.pid, stop)
    else:
        process.send_signal(stop)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == status, stderr[-2000:]
    assert "Traceback" not in stderr and "DataLoader worker" not in stderr, stderr[-2000:]
    assert [line for line in stderr.splitlines() if line.startswith(f"stopped by {signal.Signals(stop).name}")]
    assert list((tmp_path / "out").iterdir()) == []
