"""Can a config's loader feed an H200? Its crops/s per worker measured here, projected over its workers.

A config stack (fit.py arguments: `--config` files and overrides) is read by the CLI's own parser,
so layering, defaults and renamed options behave exactly as in `scripts/fit.py`. Its data settings
then load a stand-in for its training folder, made the way scripts/prepare_data.py makes data-512:
the benchmark's photos manipulated into all nine folders and cut to centre tiles, saved as PNG.
One round loads whole epochs in this process (num_workers 0: one worker's work, batching
included) for at least `Sizes.round_seconds`; the figure is the median over rounds.

The projection assumes the GPU machine's cores are as fast as this one's and that workers scale
linearly, which holds while there are more free cores than workers.
"""

from __future__ import annotations

import itertools
import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from camlit.benchmark.sections import CLASSES, Sizes, interleaved
from camlit.data.datamodule import CameraDataModule
from camlit.data.prepare import prepare_dataset
from camlit.errors import CamlitError
from camlit.training.cli import CamlitCLI
from camlit.training.config_base import expand_config_bases

# The shipped configs live in a checkout's scripts/configs, beside this package.
CONFIGS = Path(__file__).resolve().parents[2] / "scripts" / "configs"
# The configs that train on a GPU, as the README and docs/usage.md run them.
SHIPPED_GPU_STACKS = (
    f"--config {CONFIGS / 'kaggle_gpu.yaml'}",
    f"--config {CONFIGS / 'kaggle_gpu.yaml'} --config {CONFIGS / 'finetune_imagenet.yaml'}",
)
# A ResNet50 training step at 224 px in bf16 on one H200; MLPerf reports about 7,950 images/s.
GPU_IMAGES_PER_S = 5500
GOAL_CROPS_PER_S = 6000
MAX_WORKERS = 14


class ConfigReader(CamlitCLI):
    """The CLI's parse of a config stack, building nothing: no run folder, model, trainer or data."""

    def before_instantiate_classes(self) -> None:
        pass

    def instantiate_classes(self) -> None:
        pass


def data_settings(fit_args: list[str]) -> dict:
    with warnings.catch_warnings():
        # LightningCLI warns that the benchmark's own command line is not the one it parses; it is meant not to be.
        warnings.filterwarnings("ignore", "LightningCLI's args parameter", UserWarning)
        return ConfigReader(args=expand_config_bases(fit_args)).config.data.as_dict()


def loader_rate(data: CameraDataModule, round_seconds: float) -> Callable[[], float]:
    """A round: whole epochs, each a fresh draw, until `round_seconds` have passed; crops per second."""
    loader = data.train_dataloader()
    epochs = itertools.count()

    def measure() -> float:
        count, start = 0, time.perf_counter()
        while True:
            loader.sampler.set_epoch(next(epochs))
            count += sum(len(labels) for _, labels, *_ in loader)
            elapsed = time.perf_counter() - start
            if elapsed >= round_seconds:
                return count / elapsed

    return measure


def projection_section(
    stacks: list[list[str]], frames: Path, workdir: Path, sizes: Sizes, figures: dict, notes: dict
) -> list[dict]:
    """One row per stack: its settings, its measured rate per worker, and what its workers would feed."""
    standin = workdir / "data-512"
    prepare_dataset(frames, standin, size=sizes.side, workers=1, progress=False)
    rows, variants = [], {}
    for index, fit_args in enumerate(stacks):
        settings = data_settings(fit_args)
        cache_dir = str(workdir / f"cache-{index}") if settings["cache_dir"] else None
        # Validation is not timed, so it is not expanded.
        standin_data = dict(
            train_dir=str(standin), val_dir=None, classes=CLASSES, synthetic_root=None, val_manipulations=[]
        )
        try:
            # Checked as fit checks them (--data.num_workers -1 was projected), then loaded in this process.
            data = CameraDataModule(**(settings | standin_data | {"cache_dir": cache_dir}))
            data.hparams.num_workers = 0
            data.prepare_data()
            data.setup("fit")
        except CamlitError as error:
            stack = " ".join(fit_args)
            raise CamlitError(f"--project '{stack}': {error} (the stand-in tiles: --side {sizes.side})") from None
        key = f"projection/{index}/crops_per_worker"
        variants[key] = loader_rate(data, sizes.round_seconds)
        row = {name: settings[name] for name in ("crop_size", "crops_per_image", "manipulation_p")}
        row |= {"stack": " ".join(fit_args), "key": key, "workers": settings["num_workers"], "cache": bool(cache_dir)}
        rows.append(row)
    figures.update(interleaved(variants, sizes.repeats, sizes.warmup, notes))
    for row in rows:
        rate = figures.get(row["key"])
        if rate is None:  # the loader failed; interleaved noted why
            row["result"] = "failed"
            continue
        projected = rate * row["workers"]
        row |= {
            "per_worker": rate,
            "projected": projected,
            "workers_needed": math.ceil(GPU_IMAGES_PER_S / rate),
            "gpu_busy": min(1.0, projected / GPU_IMAGES_PER_S),
            "result": "PASS" if projected >= GOAL_CROPS_PER_S and row["workers"] <= MAX_WORKERS else "MISS",
        }
    return rows


def format_projection(rows: list[dict], sizes: dict) -> str:
    lines = [
        f"loader projection: {sizes['side']} px PNG centre tiles in all nine manipulation folders, crops/s per "
        f"worker measured here; an H200 trains {GPU_IMAGES_PER_S:,} images/s; goal >= {GOAL_CROPS_PER_S:,} "
        f"crops/s with <= {MAX_WORKERS} workers",
        f"{'crop':>5}{'crops/img':>10}{'manip_p':>8}{'cache':>6}{'per worker':>11}{'workers':>8}"
        f"{'projected':>10}{'needed':>7}{'GPU busy':>9}  result  config",
    ]
    for row in rows:
        settings = f"{row['crop_size']:>5}{row['crops_per_image']:>10}{row['manipulation_p']:>8g}"
        settings += f"{'yes' if row['cache'] else 'no':>6}"
        if row["result"] == "failed":
            figures = f"{'-':>11}{row['workers']:>8}{'-':>10}{'-':>7}{'-':>9}"
        else:
            figures = (
                f"{row['per_worker']:>11,.0f}{row['workers']:>8}{row['projected']:>10,.0f}"
                f"{row['workers_needed']:>7}{row['gpu_busy']:>9.0%}"
            )
        lines.append(f"{settings}{figures}  {row['result']:<6}  {stack_label(row['stack'])}")
    return "\n".join(lines)


def stack_label(stack: str) -> str:
    """The stack as typed, with the shipped configs' folder left out."""
    return stack.replace(f"{CONFIGS}/", "")
