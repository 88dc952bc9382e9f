"""Every shipped config parses and trains one step on the CPU, so that a renamed option fails here."""

from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import random_image, write_image

from camlit.cameras import KAGGLE_CAMERAS
from camlit.training.cli import main

CONFIGS = Path(__file__).resolve().parents[2] / "scripts" / "configs"
# Each file alone, and the stack the README documents for fine-tuning.
STACKS = [(path.name,) for path in sorted(CONFIGS.glob("*.yaml"))] + [("kaggle_gpu.yaml", "finetune_imagenet.yaml")]


@pytest.fixture(scope="module")
def kaggle_tree(tmp_path_factory) -> Path:
    """A prepared-layout stand-in for data-512: Kaggle's ten cameras, 3 photos each, 64 px.

    64 px is the least that keeps a 32 px validation crop after resize0.5.
    """
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("data-512")
    for camera in KAGGLE_CAMERAS:
        for k in range(3):
            write_image(root / "unaltered" / camera / f"{camera}-p{k}.png", random_image(rng, 64, 64))
    return root


def test_every_config_is_covered():
    assert {name for stack in STACKS for name in stack} == {path.name for path in CONFIGS.glob("*.yaml")}


@pytest.mark.parametrize("stack", STACKS, ids="+".join)
def test_config_trains_one_step_on_the_cpu(stack, kaggle_tree, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = {}
    for name in stack:
        data |= (yaml.safe_load((CONFIGS / name).read_text()) or {}).get("data") or {}
    # The config's own cache setting, moved into tmp_path.
    cache = ["--data.cache_dir", str(tmp_path / "cache")] if data.get("cache_dir") else []
    args = [arg for name in stack for arg in ("--config", str(CONFIGS / name))]
    cli = main(
        [
            *args,
            "--trainer.accelerator", "cpu", "--trainer.devices", "1",
            # One training and one validation batch; fast_dev_run also keeps logs and checkpoints out.
            "--trainer.fast_dev_run", "true", "--trainer.enable_progress_bar", "false",
            "--data.train_dir", str(kaggle_tree), "--data.synthetic_root", "null",
            "--data.crop_size", "32", "--data.batch_size", "4", "--data.num_workers", "0", *cache,
            "--model.arch", "resnet_tiny",
        ]
    )  # fmt: skip
    trainer = cli.trainer
    assert trainer.state.finished and trainer.global_step == 1
    # What the config asked for is what ran, apart from the overrides.
    for option in ("crops_per_image", "load_ratio", "manipulation_p", "val_manipulations"):
        if option in data:
            assert cli.datamodule.hparams[option] == data[option], option
    assert (cli.datamodule.cache is not None) == bool(cache)
    # The metric the best checkpoint is chosen by is logged; a full run would refuse to save without it.
    monitor = cli.config.best_checkpoint.monitor
    assert monitor in trainer.callback_metrics, (monitor, sorted(trainer.callback_metrics))
