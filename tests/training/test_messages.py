"""What fit prints: Lightning's start-up lines once training starts, and none above an error line."""

import logging
import subprocess
import sys

from conftest import fit_args

from camlit.training.cli import main

SHORT = ("--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1")


def test_a_mistake_in_the_data_is_the_only_line_a_fit_prints(tmp_path):
    """Lightning said the seed and the devices ("Seed set to 0", "GPU available: ...") above it."""
    args = fit_args(tmp_path / "no-such-photos", *SHORT)
    fit = subprocess.run([sys.executable, "-m", "camlit", "fit", *args], cwd=tmp_path, capture_output=True, text=True)
    assert fit.returncode == 2
    assert fit.stdout == ""
    assert len(fit.stderr.splitlines()) == 1, fit.stderr
    assert fit.stderr.startswith(f"error: {tmp_path / 'no-such-photos'}: no such folder")


def test_a_run_that_trains_says_its_seed_and_devices_once_its_data_is_read(flat_tree, tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    # At INFO whatever an earlier test left them at (the benchmark quiets Lightning's loggers).
    with caplog.at_level(logging.INFO, "lightning.fabric"), caplog.at_level(logging.INFO, "lightning.pytorch"):
        main(fit_args(flat_tree, *SHORT))
    said = [record.getMessage() for record in caplog.records]
    read = next(index for index, message in enumerate(said) if message.startswith("15 training images"))
    assert said.index("Seed set to 0") > read and said.index("GPU available: False, used: False") > read
    assert not any("litlogger" in message for message in said)
