"""SIGTERM during predict: it stops, writes nothing, and says so (exit status 143)."""

import signal

import numpy as np
import pytest
from conftest import random_image, start_paused, wait_for, write_image

from camlit.termination import EXIT_STATUS


@pytest.mark.slow
def test_sigterm_during_predict_stops_without_an_output_file(tmp_path, ckpt):
    rng = np.random.default_rng(0)
    for k in range(4):
        write_image(tmp_path / "test" / f"img_{k}.png", random_image(rng, 48, 48))
    args = ["--ckpt", str(ckpt), "--input", "test", "--output", "out/submission.csv", "--probs", "out/probs.csv"]
    args += ["--crops", "4", "--batch-size", "1", "--num-workers", "0", "--device", "cpu", "--no-progress"]
    (tmp_path / "out").mkdir()
    process, predicting = start_paused(
        tmp_path, "camlit.training.module.CameraClassifier.predict_step", "camlit.inference.predict", args, 0.5
    )
    assert wait_for(predicting.exists, timeout=120), process.communicate()[1][-2000:]
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == EXIT_STATUS, stderr[-2000:]
    assert "Traceback" not in stderr
    assert [line for line in stderr.splitlines() if line.startswith("stopped by SIGTERM")]
    assert list((tmp_path / "out").iterdir()) == []
