"""The measurements behind benchmark, one function per section, each adding to `figures`.

A variant's callable runs one round and returns its rate; `interleaved` takes the rounds of the
variants compared with each other in turn, so that a drifting machine load hits all of them alike.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import warnings
from collections import defaultdict
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

import cv2
import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader

from camlit.data.batch import Batch
from camlit.data.cache import build_cache
from camlit.data.datamodule import CameraDataModule
from camlit.models.resnet import resnet50
from camlit.training.module import CameraClassifier
from camlit.training.precision import default_precision

CLASSES = ["camera-a", "camera-b"]
LAYOUTS = ("nchw", "channels_last")
PRECISIONS = ("fp32", "bf16")


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How much each section does; the defaults suit a CPU, benchmark has the tiny and CUDA ones."""

    crop: int = 96
    batch: int = 8
    steps: int = 3  # timed steps per round
    warmup: int = 1  # untimed rounds, or untimed steps at the start of each fit; at least 1
    repeats: int = 3  # timed rounds; figures are their median
    images: int = 48  # photos generated for the data path
    side: int = 512
    memory_images: int = 16  # N of the N against 10N comparison
    e2e_images: int = 64
    workers: int = 2  # loader workers end to end
    round_seconds: int = 1  # least length of a loader projection round, in whole epochs
    balance_images: int = 10_000  # N of the balanced assignment's N against 10N images


def interleaved(variants: dict[str, Callable[[], float]], repeats: int, warmup: int, notes: dict) -> dict[str, float]:
    """Median rate of each variant over `repeats` rounds taken in turn, after `warmup` rounds each."""
    rates = defaultdict(list)
    live = dict(variants)
    for round_index in range(warmup + repeats):
        for name, measure in list(live.items()):
            try:
                rate = measure()
            # Whatever breaks (torch.compile, mostly) drops the variant with a one-line reason.
            except Exception as error:
                first_line = (str(error).strip().splitlines() or [""])[0]
                notes[name] = f"failed: {type(error).__name__}: {first_line[:160]}"
                del live[name]
                continue
            if round_index >= warmup:
                rates[name].append(rate)
    return {name: statistics.median(values) for name, values in rates.items()}


def cuda_missing(device: torch.device, notes: dict, section: str) -> bool:
    """Whether `device` is CUDA on a machine without it: the section has built its inputs, and stops there."""
    if device.type == "cuda" and not torch.cuda.is_available():
        notes[section] = "skipped: no CUDA device here"
        return True
    return False


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reference_config(device: torch.device) -> str:
    """The layout and precision camlit trains in on `device`, where it is held against torchvision."""
    return f"channels_last/{'bf16' if device.type == 'cuda' else 'fp32'}"


def model_section(device: torch.device, sizes: Sizes, compile: bool, figures: dict, notes: dict) -> None:
    """camlit's ResNet50 in each layout and precision; torchvision's and compile in camlit's own."""
    try:
        from torchvision.models import resnet50 as torchvision_resnet50
    except ImportError:
        torchvision_resnet50 = None
        notes["step/torchvision"] = "torchvision not installed: skipped"
    reference = reference_config(device)
    runs = [("camlit", resnet50, f"{layout}/{precision}", False) for layout in LAYOUTS for precision in PRECISIONS]
    if torchvision_resnet50 is not None:
        runs.append(("torchvision", torchvision_resnet50, reference, False))
    if compile:
        runs.append(("camlit", resnet50, reference, True))
    torch.manual_seed(0)
    images = torch.randn(sizes.batch, 3, sizes.crop, sizes.crop)
    labels = torch.randint(0, 1000, (sizes.batch,))
    # Both with the 1000-class ImageNet head, so that the two networks are the same size.
    nets = {(name, config, compiled): build(num_classes=1000) for name, build, config, compiled in runs}
    if cuda_missing(device, notes, "step"):
        return
    images, labels = images.to(device), labels.to(device)
    variants = {
        f"step/{name}/{config}{'/compiled' if compiled else ''}": step_rounds(
            net, images, labels, config, compiled, sizes
        )
        for (name, config, compiled), net in nets.items()
    }
    figures.update(interleaved(variants, sizes.repeats, sizes.warmup, notes))


def step_rounds(net, images, labels, config: str, compiled: bool, sizes: Sizes) -> Callable[[], float]:
    """A round of `sizes.steps` SGD steps on one fixed batch, returning images per second."""
    layout, precision = config.split("/")
    device = images.device
    if layout == "channels_last":
        net, images = net.to(memory_format=torch.channels_last), images.contiguous(memory_format=torch.channels_last)
    net = net.to(device).train()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    forward = torch.compile(net) if compiled else net

    def measure() -> float:
        synchronize(device)
        start = time.perf_counter()
        for _ in range(sizes.steps):
            with torch.autocast(device.type, torch.bfloat16, enabled=precision == "bf16"):
                loss = F.cross_entropy(forward(images), labels)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        synchronize(device)
        return sizes.steps * len(images) / (time.perf_counter() - start)

    return measure


def datamodule(root: Path, sizes: Sizes, workers: int = 0, **options) -> CameraDataModule:
    """Every photo under `root` trains (it is its own val_dir), so an epoch reads each file once."""
    return CameraDataModule(
        str(root), val_dir=str(root), classes=CLASSES, crop_size=sizes.crop, batch_size=sizes.batch,
        num_workers=workers, synthetic_root=None, **options,
    )  # fmt: skip


def data_section(jpeg_root: Path, png_root: Path, cache_dir: Path, sizes: Sizes, figures: dict, notes: dict) -> None:
    """Per worker: cv2.imread of the JPEGs, then the train loader on JPEG, on PNG and from the cache."""
    paths = [str(p) for p in sorted(jpeg_root.rglob("*.jpg"))]
    loaders = {"jpeg": datamodule(jpeg_root, sizes), "png": datamodule(png_root, sizes)}
    loaders["cache"] = datamodule(jpeg_root, sizes, cache_dir=str(cache_dir))
    # The same cache read as in a process's first epoch: every image's checksum checked at its first read.
    loaders["cache_first_read"] = datamodule(jpeg_root, sizes, cache_dir=str(cache_dir))
    start = time.perf_counter()
    build_cache(cache_dir, paths, sizes.crop)  # what the cache DataModules' setup builds, in this process
    figures["data/cache_build"] = len(paths) / (time.perf_counter() - start)
    for loader in loaders.values():
        loader.prepare_data()
        loader.setup("fit")  # for the cache, a check that finds it built

    def raw_imread() -> float:
        start = time.perf_counter()
        for path in paths:
            cv2.imread(path)
        return len(paths) / (time.perf_counter() - start)

    def epoch(loader: CameraDataModule) -> Callable[[], float]:
        def measure() -> float:
            if loader is loaders["cache_first_read"]:
                loader.cache.verified.clear()
            start = time.perf_counter()
            count = sum(len(batch.labels) for batch in loader.train_dataloader())
            return count / (time.perf_counter() - start)

        return measure

    # In-process loading (num_workers=0) is one worker's rate: camlit.imageio keeps OpenCV single-threaded.
    variants = {"data/raw_imread_jpeg": raw_imread} | {f"data/loader_{k}": epoch(v) for k, v in loaders.items()}
    figures.update(interleaved(variants, sizes.repeats, sizes.warmup, notes))


class StepTimer(Callback):
    """Images per second from the end of step `skip` - 1 to the end of fit, loading included."""

    def __init__(self, skip: int, device: torch.device):
        self.skip, self.device = skip, device
        self.seen, self.items, self.start, self.rate = 0, 0, 0.0, 0.0

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx: int) -> None:
        self.seen += 1
        if self.seen == self.skip:
            synchronize(self.device)
            self.start = time.perf_counter()
        elif self.seen > self.skip:
            self.items += len(batch.labels)

    def on_train_end(self, trainer, module) -> None:
        synchronize(self.device)
        self.rate = self.items / (time.perf_counter() - self.start)


def precision(device: torch.device) -> str:
    """What `scripts/fit.py` would choose on `device`."""
    return default_precision() if device.type == "cuda" else "32-true"


def fit_rate(device: torch.device, sizes: Sizes, **data) -> float:
    """Lightning with nothing but the loop: no logger, checkpoints, progress bar, summary or validation."""
    timer = StepTimer(sizes.warmup, device)
    trainer = L.Trainer(
        accelerator=device.type, devices=1, precision=precision(device), max_steps=sizes.warmup + sizes.steps,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, num_sanity_val_steps=0, benchmark=device.type == "cuda", callbacks=[timer],
    )  # fmt: skip
    trainer.fit(CameraClassifier(classes=CLASSES), **data)
    return timer.rate


def plain_rate(device: torch.device, sizes: Sizes, batches: DataLoader) -> float:
    """The same module's training_step in a hand-written loop, timed as StepTimer times a fit."""
    module = CameraClassifier(classes=CLASSES).to(device)
    module.configure_model()
    optimizer = module.configure_optimizers()
    with warnings.catch_warnings():
        # self.log without a Trainer warns and does nothing, which is what a plain loop wants.
        warnings.simplefilter("ignore")
        for index, batch in enumerate(batches):
            with torch.autocast(device.type, torch.bfloat16, enabled=precision(device) == "bf16-mixed"):
                loss = module.training_step(batch, index)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if index == sizes.warmup - 1:
                synchronize(device)
                start = time.perf_counter()
    synchronize(device)
    return (len(batches) - sizes.warmup) * sizes.batch / (time.perf_counter() - start)


def loop_section(photos: Path, cache_dir: Path, device: torch.device, sizes: Sizes, figures: dict, notes: dict) -> None:
    """Lightning fit against a plain loop on the same batches, and fit fed by the cache loader.

    The first two get the same uint8 batches, already on the device, so that only the loop
    differs. End to end, loader workers crop from the decoded cache and Lightning moves the
    pinned batches to the device without blocking; against the plain loop's rate, that is what
    the input pipeline costs.
    """
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (sizes.batch, 3, sizes.crop, sizes.crop), dtype=torch.uint8, generator=generator)
    labels = torch.arange(sizes.batch) % len(CLASSES)
    data = datamodule(photos, sizes, sizes.workers, cache_dir=str(cache_dir))
    if cuda_missing(device, notes, "framework and e2e"):
        return
    # A training batch as the DataModule gives it: unaltered crops, their labels and manipulation.
    unaltered = torch.zeros(sizes.batch, dtype=torch.long, device=device)
    batch = Batch(images.to(device), labels.to(device), unaltered, unaltered.bool())
    # batch_size=None hands each stored batch over as it is; Lightning would read a bare list as many loaders.
    batches = DataLoader([batch] * (sizes.warmup + sizes.steps), batch_size=None)
    variants = {
        "framework/lightning": lambda: fit_rate(device, sizes, train_dataloaders=batches),
        "framework/plain": lambda: plain_rate(device, sizes, batches),
        "e2e/fit_cache_loader": lambda: fit_rate(device, sizes, datamodule=data),
    }
    figures.update(interleaved(variants, sizes.repeats, 0, notes))


def memory_section(small: Path, large: Path, device: torch.device, sizes: Sizes, figures: dict, notes: dict) -> None:
    """Peak RSS of the same short fit on the N photos under `small` and the 10N under `large`."""
    # Batches no larger than the small set, so that both fits hold the same batches and only the data set grows.
    sizes = dataclasses.replace(sizes, batch=min(sizes.batch, sizes.memory_images))
    if cuda_missing(device, notes, "memory"):
        return
    for key, data_root in (("memory/peak_rss_n_mb", small), ("memory/peak_rss_10n_mb", large)):
        spec = {"root": str(data_root), "device": str(device), "sizes": dataclasses.asdict(sizes)}
        spec["threads"] = torch.get_num_threads()
        # The child imports this camlit, installed or not, and dies with this process.
        code = "import sys; sys.path.insert(0, sys.argv[2]); from camlit.workers import die_with_parent; "
        code += "die_with_parent(int(sys.argv[3])); from camlit.benchmark import sections as b; "
        code += "b.peak_rss_of_fit(sys.argv[1])"
        package_root = str(Path(__file__).resolve().parents[2])
        child = subprocess.run(
            [sys.executable, "-c", code, json.dumps(spec), package_root, str(os.getpid())],
            capture_output=True,
            text=True,
        )
        if child.returncode:
            raise RuntimeError(f"the memory fit on {data_root} failed:\n{child.stderr[-2000:]}")
        figures[key] = json.loads(child.stdout.strip().splitlines()[-1])["peak_rss_mb"]


def peak_rss_of_fit(spec_json: str) -> None:
    """In a fresh interpreter, so that nothing else counts: a short fit, then its peak RSS on stdout."""
    spec = json.loads(spec_json)
    sizes, device = Sizes(**spec["sizes"]), torch.device(spec["device"])
    torch.set_num_threads(spec["threads"])
    fit_rate(device, sizes, datamodule=datamodule(Path(spec["root"]), sizes))
    print(json.dumps({"peak_rss_mb": peak_rss_bytes() / 2**20}))


def peak_rss_bytes() -> int:
    """This process's peak RSS: VmHWM, because Linux's ru_maxrss keeps the forking parent's across exec."""
    with suppress(OSError), open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    # No /proc (macOS): ru_maxrss, which is in bytes there.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
