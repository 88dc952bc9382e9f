"""Every shipped config trains on the CPU on a nine-folder prepared tree, as Kaggle's data-512 is,
and the GPU recipes keep what they promise: the share of unaltered training crops, one protocol
per validation group, and the best checkpoint chosen by the recipe's monitor."""

from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import random_image, write_image

from camlit.cameras import KAGGLE_CAMERAS
from camlit.data.manipulations import MANIPULATIONS
from camlit.training.cli import main
from camlit.training.metrics import logged_metrics

CONFIGS = Path(__file__).resolve().parents[2] / "scripts" / "configs"
DEMO = ("demo.yaml",)
# The GPU recipe alone, scaled to the CPU (rehearsal_cpu.yaml stands on it), and fine-tuned as documented.
GPU_STACKS = [("kaggle_gpu.yaml",), ("rehearsal_cpu.yaml",), ("kaggle_gpu.yaml", "finetune_imagenet.yaml")]
# What rehearsal_cpu.yaml may change of kaggle_gpu.yaml: what scales, and where its data lives.
SCALING = {
    "trainer": {"accelerator", "max_epochs", "precision"},
    "data": {"crop_size", "batch_size", "num_workers", "train_dir", "synthetic_root"}
    | {"synthetic_images_per_camera", "cache_dir"},
}


def settings(*names: str) -> dict:
    """The stack's settings by section, later files over earlier ones, a file over its base."""
    merged: dict = {}
    for name in names:
        text = yaml.safe_load((CONFIGS / name).read_text()) or {}
        for layer in [settings(text.pop("base")), text] if "base" in text else [text]:
            for section, value in layer.items():
                merged[section] = {**merged.get(section, {}), **value} if isinstance(value, dict) else value
    return merged


@pytest.fixture(scope="module")
def nine_folder_tree(tmp_path_factory) -> Path:
    """A prepared data-512 stand-in: Kaggle's ten cameras, 3 photos each, in all nine folders, 64 px.

    64 px is the least that keeps a 32 px validation crop after resize0.5.
    """
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("data-512")
    for manipulation in MANIPULATIONS:
        for camera in KAGGLE_CAMERAS:
            for k in range(3):
                write_image(root / manipulation / camera / f"{camera}-p{k}.png", random_image(rng, 64, 64))
    return root


def test_every_config_file_is_tested():
    tested = {name for stack in [DEMO, *GPU_STACKS] for name in stack}
    assert tested == {path.name for path in CONFIGS.glob("*.yaml")}


def test_the_rehearsal_changes_only_what_scales():
    rehearsal = yaml.safe_load((CONFIGS / "rehearsal_cpu.yaml").read_text())
    assert rehearsal.pop("base") == "kaggle_gpu.yaml"
    assert {section: set(values) - SCALING.get(section, set()) for section, values in rehearsal.items()} == {
        section: set() for section in rehearsal
    }


def fit_on(tree: Path, stack: tuple[str, ...], tmp_path: Path):
    data = settings(*stack).get("data", {})
    # The config's own cache setting, moved into tmp_path.
    cache = ["--data.cache_dir", str(tmp_path / "cache")] if data.get("cache_dir") else []
    return main(
        [
            *(arg for name in stack for arg in ("--config", str(CONFIGS / name))),
            "--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.precision", "32-true",
            # Two training steps (jsonargparse reads 1 as 1.0, the whole epoch), then the whole validation.
            "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.num_sanity_val_steps", "0",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--data.train_dir", str(tree), "--data.synthetic_root", "null",
            "--data.crop_size", "32", "--data.batch_size", "4", "--data.num_workers", "0", *cache,
            "--model.arch", "resnet_tiny",
        ]
    )  # fmt: skip


@pytest.mark.parametrize("stack", [DEMO, *GPU_STACKS], ids="+".join)
def test_config_trains_on_a_nine_folder_tree(stack, nine_folder_tree, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = settings(*stack).get("data", {})
    cli = fit_on(nine_folder_tree, stack, tmp_path)
    trainer = cli.trainer
    assert trainer.state.finished and trainer.global_step == 2
    # What the config asked for is what ran, apart from the overrides.
    for option in ("crops_per_image", "load_ratio", "manipulation_p", "unaltered_share", "val_manipulations"):
        if option in data:
            assert cli.datamodule.hparams[option] == data[option], option
    assert (cli.datamodule.cache is not None) == bool(data.get("cache_dir"))
    # The metric the best checkpoint is chosen by is logged, and best.ckpt was chosen by it.
    monitor = cli.config.best_checkpoint.monitor
    assert monitor == (settings(*stack).get("best_checkpoint") or {}).get("monitor", "val/acc")
    assert monitor in trainer.callback_metrics, (monitor, sorted(trainer.callback_metrics))
    # Every name a monitor may take is logged (a misspelt one is refused before training).
    model = cli.model
    assert logged_metrics(model.classes, model.manipulation_fc is not None) <= set(trainer.callback_metrics)
    best = next(c for c in trainer.checkpoint_callbacks if Path(c.best_model_path or "x").stem == "best")
    assert best.monitor == monitor
    if stack in GPU_STACKS:
        check_shares_and_protocols(cli.datamodule, data)


def check_shares_and_protocols(datamodule, data: dict) -> None:
    train = datamodule.train_set
    flags = [train[item].manipulated for item in datamodule.train_dataloader().sampler]
    unaltered = sum(not flag for flag in flags) / len(flags)
    # The recipe states the share; on-the-fly manipulation would take its part of it.
    # Rounded per class and folder on this small tree: 0.375 for 0.4.
    assert unaltered == pytest.approx(data["unaltered_share"] * (1 - data["manipulation_p"]), abs=0.03)
    assert unaltered == pytest.approx(0.4, abs=0.03)
    # Each validation group is made one way only: manipulated whole, then cropped, as Kaggle's test set.
    made_by: dict[str, set[str]] = {}
    for sample, group in datamodule.val_set.items:
        made_by.setdefault(group, set()).add("prepared" if group == sample.manipulation else "expanded")
    assert made_by == {name: {"prepared"} for name in MANIPULATIONS}
