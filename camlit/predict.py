"""Predict the camera of every image in a folder, in Kaggle's submission format.

`python scripts/predict.py --ckpt best.ckpt --input test/ --output submission.csv`

Everything here is shared with camlit.evaluate: the test-time crops and their loader (camlit.tta),
the aggregation of crop predictions (camlit.aggregate) and the balanced assignment
(camlit.balance). The model and its class names come from the checkpoint alone (camlit.inference);
the CSV is written by camlit.submission.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from camlit.aggregate import AGGREGATES, aggregate
from camlit.atomic import write_text_atomic
from camlit.balance import balanced_labels
from camlit.errors import CamlitError, disk_full_as_user_error
from camlit.imageio import is_too_small, list_images, read_rgb
from camlit.inference import autocast_for, load_checkpoint, pick_device
from camlit.submission import CSV_HEADER, csv_text, probability_rows, submission_rows
from camlit.tta import DEFAULT_CROP_SIZE, DEFAULT_CROPS, CropPlan, crop_loader

# ---------------------------------------------------------------------------------------------
# Running


@dataclass
class Predictions:
    """Per image (in `paths` order): aggregated probabilities and labels; NaN rows / -1 labels for
    images in `problems` (index -> reason)."""

    paths: list[str]
    classes: list[str]
    probabilities: np.ndarray
    labels: np.ndarray
    problems: dict[int, str] = field(default_factory=dict)
    crops: int = 0
    seconds: float = 0.0

    @property
    def usable(self) -> np.ndarray:
        return self.labels >= 0

    def rate_line(self) -> str:
        images = int(self.usable.sum())
        rate = images / self.seconds if self.seconds > 0 else float("inf")
        return f"{images} images ({self.crops} crops) in {self.seconds:.2f} s: {rate:.1f} images/s"


def predict_crops(
    model,
    loader: DataLoader,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> tuple[dict[int, torch.Tensor], dict[int, str]]:
    """Softmax of every crop, by image index (CPU float32 tensors (crops, classes)), and problems.

    Runs the module's own predict_step, so the figures are the ones `trainer.predict` gives.
    """
    device = torch.device(device)
    by_image: dict[int, torch.Tensor] = {}
    problems: list[tuple[int, str]] = []
    bar = progress_bar(len(loader.dataset), progress)
    model.eval()
    with torch.inference_mode(), autocast_for(device):
        for batch_index, batch in enumerate(loader):
            problems.extend(batch.problems)
            if len(batch.images):
                images = batch.images.to(device, non_blocking=True)
                flags = None if batch.manipulated is None else batch.manipulated.to(device, non_blocking=True)
                step_batch = batch._replace(images=images, manipulated=flags)
                probabilities = model.predict_step(step_batch, batch_index).float().cpu()
                indices, counts = torch.unique_consecutive(batch.indices, return_counts=True)
                for index, rows in zip(indices.tolist(), probabilities.split(counts.tolist()), strict=True):
                    by_image[index] = rows
            bar.update(len(batch.problems) + len(torch.unique_consecutive(batch.indices)))
    bar.close()
    return by_image, dict(problems)


def progress_bar(total: int, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit="img", desc="predict", dynamic_ncols=True, file=sys.stderr)


class _NoBar:
    def update(self, _: int) -> None:
        pass

    def close(self) -> None:
        pass


def predict_paths(
    model,
    paths: Sequence[str | os.PathLike],
    plan: CropPlan,
    rule: str = "mean",
    balance: bool = False,
    batch_size: int = 128,
    num_workers: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = False,
    reader: Callable = read_rgb,
    manipulated: Sequence[bool | None] | None = None,
) -> Predictions:
    """Crops, model, aggregation (and optionally the balanced assignment) for every path.

    `manipulated` says, per path, whether the image is manipulated (None: not known). A model
    trained with the manipulation flag needs it for every image; `balance` assigns within each
    group separately when every image's group is known and both groups are present.
    """
    if rule not in AGGREGATES:
        raise CamlitError(f"--aggregate {rule}: choose from {', '.join(AGGREGATES)}")
    classes = list(model.classes)
    flags = list(manipulated) if manipulated is not None else [None] * len(paths)
    known = None not in flags
    if model.manipulated_fc is not None and not known:
        unknown = [Path(path).name for path, flag in zip(paths, flags, strict=True) if flag is None]
        raise CamlitError(
            "the checkpoint's model was trained with --model.manipulation_flag and needs to know whether each "
            f"image is manipulated, but the name of {few(unknown)} says neither _manip nor _unalt; "
            "pass --manipulated yes or --manipulated no"
        )
    loader = crop_loader(paths, plan, batch_size, num_workers, reader, flags if known else None)
    start = time.perf_counter()
    by_image, problems = predict_crops(model, loader, device, progress)
    seconds = time.perf_counter() - start
    probabilities = np.full((len(paths), len(classes)), np.nan)
    labels = np.full(len(paths), -1, dtype=np.int64)
    for index, rows in by_image.items():
        combined, label = aggregate(rows, rule)
        probabilities[index] = combined.double().numpy()
        labels[index] = label
    if balance:
        usable = labels >= 0
        groups = [flag for flag, ok in zip(flags, usable, strict=True) if ok]
        per_group = known and len(set(groups)) > 1
        labels[usable] = balanced_labels(probabilities[usable], groups if per_group else None)
    return Predictions(
        [str(p) for p in paths],
        classes,
        probabilities,
        labels,
        problems,
        crops=sum(len(rows) for rows in by_image.values()),
        seconds=seconds,
    )


# ---------------------------------------------------------------------------------------------
# Command line


def add_prediction_arguments(parser: argparse.ArgumentParser) -> None:
    """Crop, aggregation and loader options, shared with scripts/evaluate.py."""
    parser.add_argument("--ckpt", required=True, help="checkpoint written by scripts/fit.py")
    parser.add_argument("--input", required=True, help="folder of images")
    parser.add_argument(
        "--crops", type=int, default=DEFAULT_CROPS,
        help=f"crops per image (default {DEFAULT_CROPS}): the centre crop plus random even-offset crops",
    )  # fmt: skip
    parser.add_argument("--crop-grid", action="store_true", help="take --crops crops on a deterministic even grid")
    parser.add_argument(
        "--crop-size", type=int, default=None,
        help=f"crop side; default: the checkpoint's training crop size, else {DEFAULT_CROP_SIZE}",
    )  # fmt: skip
    parser.add_argument(
        "--aggregate", choices=AGGREGATES, default="mean",
        help="combine crops by the mean softmax (default), the renormalised geometric mean, or the seed's "
        "max rule (the single most confident crop prediction)",
    )  # fmt: skip
    parser.add_argument(
        "--balance", action="store_true",
        help="give every class an equal share of the images (Kaggle's test set has 264 per class), "
        "by the optimal assignment under the aggregated probabilities",
    )  # fmt: skip
    parser.add_argument(
        "--manipulated", choices=("names", "yes", "no"), default="names",
        help="whether the images are manipulated: from the file names (default; Kaggle's _manip/_unalt), "
        "or yes/no for all of them. A model trained with the manipulation flag needs it; --balance uses it "
        "to balance each group on its own",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of the random crops (default 0)")
    parser.add_argument("--batch-size", type=int, default=128, help="crops per forward pass (default 128)")
    parser.add_argument("--num-workers", type=int, default=min(4, os.cpu_count() or 1), help="loader workers")
    parser.add_argument("--device", default="auto", help="auto (default: cuda when available), cpu, cuda, cuda:1")
    parser.add_argument(
        "--skip-unreadable", action="store_true",
        help="leave unreadable images out (still reported) instead of ending with exit status 2",
    )  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def check_prediction_arguments(args: argparse.Namespace) -> None:
    for name in ("crops", "batch_size"):
        if getattr(args, name) < 1:
            raise CamlitError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.crop_size is not None and args.crop_size < 1:
        raise CamlitError(f"--crop-size must be at least 1, got {args.crop_size}")
    if args.num_workers < 0:
        raise CamlitError(f"--num-workers must be 0 or more, got {args.num_workers}")


def require_file_paths(**options: str | None) -> None:
    """Output options must name files; refused before any work when one names a folder."""
    for option, path in options.items():
        if path is not None and Path(path).is_dir():
            raise CamlitError(f"--{option} {path}: is a folder; name a file to write")


def prepare(args: argparse.Namespace):
    """(model, device, crop plan) from the shared options."""
    check_prediction_arguments(args)
    device = pick_device(args.device)
    model, trained_size = load_checkpoint(args.ckpt, device)
    size = args.crop_size or trained_size or DEFAULT_CROP_SIZE
    return model, device, CropPlan(size=size, count=args.crops, grid=args.crop_grid, seed=args.seed)


def run_prediction(args: argparse.Namespace, paths: Sequence[str | os.PathLike]) -> Predictions:
    return predict_with(args, *prepare(args), paths)


def manipulated_from_name(path: str | os.PathLike) -> bool | None:
    """Kaggle's test naming: `img_<id>_manip.tif` is manipulated, `img_<id>_unalt.tif` is not;
    None when the name says neither."""
    stem = Path(path).stem
    if "_manip" in stem:
        return True
    if "_unalt" in stem:
        return False
    return None


def manipulated_flags(
    args: argparse.Namespace, paths: Sequence[str | os.PathLike], known: Sequence[bool | None] | None = None
) -> list[bool | None]:
    """Per path, whether it is manipulated: --manipulated yes/no for all, else `known` (what the
    caller knows, e.g. evaluate's manipulation folders), else the file name."""
    if args.manipulated != "names":
        return [args.manipulated == "yes"] * len(paths)
    if known is not None:
        return list(known)
    return [manipulated_from_name(path) for path in paths]


def few(names: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def predict_with(
    args: argparse.Namespace,
    model,
    device,
    plan: CropPlan,
    paths: Sequence[str | os.PathLike],
    known: Sequence[bool | None] | None = None,
):
    """Prediction with the crop, aggregation, flag and loader options of the command line."""
    return predict_paths(
        model,
        paths,
        plan,
        rule=args.aggregate,
        balance=args.balance,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        device=device,
        progress=not args.no_progress,
        manipulated=manipulated_flags(args, paths, known),
    )


def unusable_message(problems: dict[int, str], paths: Sequence[str]) -> str:
    names = [Path(paths[i]).name for i in sorted(problems)]
    shown = ", ".join(names[:20]) + (f", ... ({len(names)} in all)" if len(names) > 20 else "")
    return f"{len(names)} unusable image(s) (unreadable, or smaller than the crop): {shown}"


def require_usable(predictions: Predictions) -> None:
    """One line, and no output written, when not a single image could be used."""
    if predictions.usable.any():
        return
    reasons = [predictions.problems[i] for i in sorted(predictions.problems)]
    hint = "; choose a smaller --crop-size" if all(map(is_too_small, reasons)) else ""
    raise CamlitError(f"none of the {len(reasons)} images in --input is usable, e.g. {reasons[0]}{hint}")


def report_problems(problems: dict[int, str], paths: Sequence[str], skip: bool) -> None:
    """Every reason on stderr; unless `skip`, end with one `error:` line naming the files, exit 2."""
    if not problems:
        return
    for index in sorted(problems):
        print(f"warning: skipped {problems[index]}", file=sys.stderr)
    if not skip:
        raise CamlitError(f"{unusable_message(problems, paths)}; rerun with --skip-unreadable to accept that")


def list_input_images(folder: str | os.PathLike) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise CamlitError(f"--input {folder}: no such folder")
    paths = list_images(folder)
    if not paths:
        raise CamlitError(f"--input {folder}: no images (.jpg .jpeg .png .tif .tiff .bmp) in it")
    return paths


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="predict.py",
        description="Predict the camera of every image in --input; write Kaggle's submission CSV (fname,camera).",
    )
    add_prediction_arguments(parser)
    parser.add_argument("--output", required=True, help="submission CSV to write (atomically)")
    parser.add_argument(
        "--probs",
        default=None,
        help="also write the aggregated class probabilities (before --balance): fname,<class1>,...",
    )
    return parser


def main(argv: list[str] | None = None) -> Predictions:
    """Predict; `argv` as on the command line. Input mistakes exit with one `error:` line, status 2."""
    args = build_parser().parse_args(argv)
    try:
        require_file_paths(output=args.output, probs=args.probs)
        paths = list_input_images(args.input)
        predictions = run_prediction(args, paths)
        require_usable(predictions)
        with disk_full_as_user_error("each output file is written whole or not at all"):
            write_text_atomic(args.output, csv_text([CSV_HEADER, *submission_rows(predictions)]))
            if args.probs:
                header = ("fname", *predictions.classes)
                write_text_atomic(args.probs, csv_text([header, *probability_rows(predictions)]))
        print(predictions.rate_line())
        report_problems(predictions.problems, predictions.paths, args.skip_unreadable)
    except CamlitError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    return predictions
