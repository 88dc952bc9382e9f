"""Speed, overhead and memory figures for camlit, side by side with their targets.

Sections (camlit.benchmark.sections): the model step (camlit's ResNet50 against torchvision's,
NCHW against channels_last, fp32 against bf16 autocast, eager against torch.compile), the data
path (raw decode, the train loader on JPEG and PNG, the decoded cache), the framework (Lightning
`fit` against a plain loop over the same batches), memory (peak RSS of a short fit on N against
10N images) and end to end (`fit` fed by the cache loader against the bare step rate). Each
figure is the median of several timed rounds after a warm-up. `--device cuda` on a machine
without CUDA builds the device sections' inputs and notes their timings as skipped.

`--project` runs only the loader projection (camlit.benchmark.projection): whether a config's
loader, at its crops/s per worker measured here, feeds an H200 with the workers it sets.

The photos are made here, in a temporary folder: smooth scenes with sensor-like noise, saved as
JPEG q90 and as PNG, and hard-linked many times over where a section needs a large set.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import shlex
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch

from camlit.atomic import require_writable, write_json_atomic
from camlit.benchmark.balance import balance_section
from camlit.benchmark.forensics import camera_table_section
from camlit.benchmark.projection import SHIPPED_GPU_STACKS, format_projection, projection_section
from camlit.benchmark.sections import (
    CLASSES,
    Sizes,
    data_section,
    loop_section,
    memory_section,
    model_section,
    reference_config,
)
from camlit.data.commands import at_least
from camlit.errors import CamlitError, PlainParser, exit_on_user_error
from camlit.imageio import write_image_atomic
from camlit.provenance import provenance
from camlit.termination import exit_on_signal

TINY = Sizes(
    crop=32, batch=4, steps=1, repeats=2, images=8, side=64, memory_images=4, e2e_images=16, workers=1, round_seconds=0,
    balance_images=100,
)  # fmt: skip
CUDA = Sizes(
    crop=224, batch=256, steps=20, warmup=5, repeats=5, images=128, memory_images=32, e2e_images=4096,
    workers=max(1, min(12, (os.cpu_count() or 2) - 1)),
)  # fmt: skip


def targets(device: torch.device) -> list[tuple[str, str, str, str, str, float | None]]:
    """(label, ratio key, numerator, denominator, comparison, bound) of each printed ratio."""
    reference = reference_config(device)
    return [
        ("camlit / torchvision step rate", "ratio/camlit_vs_torchvision",
         f"step/camlit/{reference}", f"step/torchvision/{reference}", ">=", 0.98),
        ("Lightning fit / plain loop step rate", "ratio/lightning_vs_plain",
         "framework/lightning", "framework/plain", ">=", 0.97),
        ("train loader / raw cv2.imread, per worker", "ratio/loader_vs_raw",
         "data/loader_jpeg", "data/raw_imread_jpeg", ">=", 0.75),
        ("cache loader / JPEG loader", "ratio/cache_vs_jpeg", "data/loader_cache", "data/loader_jpeg", ">=", 10.0),
        ("cache loader, first read (checksums) / checked", "ratio/cache_first_read_vs_checked",
         "data/loader_cache_first_read", "data/loader_cache", "", None),
        ("peak RSS 10N / N images", "ratio/rss_10n_vs_n", "memory/peak_rss_10n_mb", "memory/peak_rss_n_mb", "<", 1.2),
        ("end-to-end fit / step rate", "ratio/e2e_vs_step", "e2e/fit_cache_loader", "framework/plain", "", None),
        # Near-linear work keeps most of the rate at 10N; the n x n assignment it replaced kept about 0.01.
        ("--balance rate, 10N / N images (even)", "ratio/balance_even_10n_vs_n",
         "balance/even_10n", "balance/even_n", ">=", 0.25),
        ("--balance rate, 10N / N images (skewed)", "ratio/balance_skewed_10n_vs_n",
         "balance/skewed_10n", "balance/skewed_n", ">=", 0.25),
        # numpy's BLAS on a thread per core in every loader worker oversubscribes the cores.
        ("camera table in workers, 1 / default BLAS threads", "ratio/camera_table_one_vs_default_blas",
         "forensics/camera_table_one_blas_thread", "forensics/camera_table_default_blas", ">=", 1.0),
    ]  # fmt: skip


def run(device: str = "cpu", tiny: bool = False, compile: bool = True, sizes: Sizes | None = None) -> dict:
    """Every section; returns {"figures": name -> value, "notes": name -> why absent, "targets": [...]}."""
    device = torch.device(device)
    sizes = sizes or (TINY if tiny else CUDA if device.type == "cuda" else Sizes())
    torch.backends.cudnn.benchmark = device.type == "cuda"
    figures: dict[str, float] = {}
    notes: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="camlit-benchmark-") as workdir:
        root = Path(workdir)
        jpeg_root, png_root = write_photos(root / "photos", sizes.images, sizes.side)
        skip_compile = "skipped in --tiny mode" if tiny else None if compile else "skipped (--no_compile)"
        if skip_compile:
            notes[f"step/camlit/{reference_config(device)}/compiled"] = skip_compile
        model_section(device, sizes, not skip_compile, figures, notes)
        data_section(jpeg_root, png_root, root / "cache", sizes, figures, notes)
        e2e_photos = linked_copies(jpeg_root, root / "end-to-end", sizes.e2e_images)
        loop_section(e2e_photos, root / "end-to-end-cache", device, sizes, figures, notes)
        count = sizes.memory_images
        small, large = (linked_copies(jpeg_root, root / f"memory-{n}", n) for n in (count, 10 * count))
        memory_section(small, large, device, sizes, figures, notes)
        camera_table_section(jpeg_root, sizes.crop, sizes.workers, sizes.repeats, figures, notes)
    balance_section(sizes.balance_images, figures, notes)
    return {
        "device": str(device),
        "threads": torch.get_num_threads(),
        "sizes": dataclasses.asdict(sizes),
        "figures": figures,
        "notes": notes,
        "targets": score(figures, device),
    }


def project(stacks: list[list[str]], sizes: Sizes) -> dict:
    """The loader projection alone (camlit.benchmark.projection): one row per stack of fit.py arguments."""
    figures: dict[str, float] = {}
    notes: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="camlit-benchmark-") as workdir:
        root = Path(workdir)
        # Frames twice the tile's side, so that a resize0.5 still yields a whole tile, as a Kaggle photo does.
        frames, _ = write_photos(root / "frames", sizes.images, 2 * sizes.side)
        rows = projection_section(stacks, frames, root, sizes, figures, notes)
    return {
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "sizes": dataclasses.asdict(sizes),
        "figures": figures,
        "notes": notes,
        "projections": rows,
    }


def photo(rng: np.random.Generator, side: int) -> np.ndarray:
    """A smooth random scene plus per-pixel sensor noise, which compresses about as a photo does."""
    scene = cv2.resize(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), (side, side), interpolation=cv2.INTER_CUBIC)
    return np.clip(scene + rng.normal(0, 6, scene.shape), 0, 255).astype(np.uint8)


def write_photos(root: Path, count: int, side: int) -> tuple[Path, Path]:
    """The same `count` photos as JPEG q90 under root/jpeg and as PNG under root/png, by class."""
    rng = np.random.default_rng(0)
    for index in range(count):
        pixels, folder = photo(rng, side), CLASSES[index % len(CLASSES)]
        for kind, suffix, params in (("jpeg", "jpg", [cv2.IMWRITE_JPEG_QUALITY, 90]), ("png", "png", [])):
            (root / kind / folder).mkdir(parents=True, exist_ok=True)
            write_image_atomic(root / kind / folder / f"p{index:05d}.{suffix}", pixels, params)
    return root / "jpeg", root / "png"


def linked_copies(source: Path, target: Path, count: int) -> Path:
    """`count` hard links cycling over the photos under `source`: a large set at no encoding cost."""
    files = sorted(source.rglob("*.jpg"), key=lambda path: path.name)  # classes alternate by name
    for index in range(count):
        original = files[index % len(files)]
        (target / original.parent.name).mkdir(parents=True, exist_ok=True)
        os.link(original, target / original.parent.name / f"l{index:06d}.jpg")
    return target


def score(figures: dict[str, float], device: torch.device) -> list[dict]:
    """Add each target's ratio to `figures` and say PASS or MISS; skipped when a side is missing."""
    results = []
    for label, key, numerator, denominator, comparison, bound in targets(device):
        row = {"target": label, "ratio": None, "comparison": comparison, "bound": bound, "result": "skipped"}
        if numerator in figures and denominator in figures:
            ratio = row["ratio"] = figures[key] = figures[numerator] / figures[denominator]
            if bound is None:
                row["result"] = "-"
            else:
                row["result"] = "PASS" if (ratio < bound if comparison == "<" else ratio >= bound) else "MISS"
        results.append(row)
    return results


def format_report(report: dict) -> str:
    sizes = report["sizes"]
    lines = [
        f"camlit benchmark on {report['device']} ({report['threads']} torch threads): crop {sizes['crop']}, "
        f"batch {sizes['batch']}, median of {sizes['repeats']} rounds; data-path rates are per worker",
        f"{'figure':<44}{'value':>12}  unit",
    ]
    for name, value in report["figures"].items():
        if not name.startswith("ratio/"):  # the ratios are listed with their targets below
            lines.append(f"{name:<44}{value:>12.1f}  {'MB' if name.endswith('_mb') else 'images/s'}")
    lines += notes_lines(report)
    lines.append(f"{'target':<44}{'ratio':>12}  {'goal':<9} result")
    for row in report["targets"]:
        ratio = "-" if row["ratio"] is None else f"{row['ratio']:.3f}"
        goal = "" if row["bound"] is None else f"{row['comparison']} {row['bound']:g}"
        lines.append(f"{row['target']:<44}{ratio:>12}  {goal:<9} {row['result']}")
    return "\n".join(lines)


def notes_lines(report: dict) -> list[str]:
    return [f"{name:<44}{note}" for name, note in report["notes"].items()]


def main(argv: list[str] | None = None) -> dict:
    parser = PlainParser(
        prog="camlit benchmark", description="camlit's speed, overhead and memory figures against their targets"
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--json", help="also write every figure to this file")
    parser.add_argument("--tiny", action="store_true", help="a seconds-scale run (32px crops, few images and steps)")
    parser.add_argument("--no_compile", action="store_true", help="skip torch.compile, which takes minutes on a CPU")
    parser.add_argument(
        "--threads",
        type=at_least(1),
        help="torch's CPU threads; 1 keeps a machine shared with other work from thrashing",
    )
    parser.add_argument(
        "--project", nargs="*", metavar="FIT_ARGS",
        help="only the loader projection for an H200: one quoted set of fit.py arguments per config stack, "
        "e.g. '--config scripts/configs/kaggle_gpu.yaml --data.num_workers 12' (default: the shipped GPU configs)",
    )  # fmt: skip
    for field in dataclasses.fields(Sizes):
        parser.add_argument(f"--{field.name}", type=at_least(1), help=f"override the {field.name} size")
    args = parser.parse_args(argv)
    # A stop ends the memory fit's child, removes the stand-in photos, and leaves --json as it was.
    kept = f"{args.json} not written (any older file there is as it was)" if args.json else "nothing written"
    with exit_on_user_error(), exit_on_signal(kept):
        if args.json:
            require_writable(args.json, "--json")
            if Path(args.json).is_dir():
                raise CamlitError(f"--json {args.json}: is a folder; name a file")
        report = measure(args)
        if args.json:
            write_json_atomic(args.json, {**report, "provenance": provenance()})
    return report


def split_stack(stack: str) -> list[str]:
    try:
        return shlex.split(stack)
    except ValueError as error:  # "No closing quotation"
        raise CamlitError(f"--project {stack}: {error}") from None


def measure(args: argparse.Namespace) -> dict:
    """The figures the arguments ask for, printed as they come."""
    base = TINY if args.tiny else CUDA if args.device == "cuda" else Sizes()
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(Sizes) if getattr(args, f.name)}
    for name in ("lightning.pytorch", "lightning.fabric"):  # "Seed set to 0" and the like
        logging.getLogger(name).setLevel(logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = dataclasses.replace(base, **overrides)
    # Named as benchmark's options: fit's own lines name --data.* options, which benchmark lacks.
    for name in ("batch", "memory_images"):  # the memory fit's batch is the smaller of the two
        if getattr(sizes, name) < 2:
            raise CamlitError(f"--{name} must be at least 2 (batch norm needs 2 crops), got {getattr(sizes, name)}")
    if args.project is None and sizes.crop > sizes.side:
        raise CamlitError(f"--crop {sizes.crop}: larger than the stand-in photos (--side {sizes.side})")
    if args.project is None:
        report = run(args.device, args.tiny, not args.no_compile, sizes)
        print(format_report(report))
        return report
    stacks = [split_stack(stack) for stack in args.project or SHIPPED_GPU_STACKS]
    if args.tiny:  # the configs' crops would not fit the tiny tiles
        stacks = [[*stack, "--data.crop_size", str(sizes.crop)] for stack in stacks]
    report = project(stacks, sizes)
    print("\n".join([format_projection(report["projections"], report["sizes"]), *notes_lines(report)]))
    return report
