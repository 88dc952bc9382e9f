"""Predict the camera of every image in a folder, in Kaggle's submission format.

`python scripts/predict.py --ckpt best.ckpt --input test/ --output submission.csv`

Everything here is shared with camlit.evaluate: the test-time crops (camlit.crops, on the image as
camlit.imageio reads it for training), the loader, the aggregation of crop predictions and the
balanced assignment. The model and its class names come from the checkpoint alone.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from camlit.crops import center_offset, crop, grid_offsets, random_offset
from camlit.datasets import worker_init
from camlit.errors import CamlitError
from camlit.imageio import UnreadableImage, list_images, read_rgb

DEFAULT_CROP_SIZE = 224
DEFAULT_CROPS = 10
AGGREGATES = ("mean", "geomean", "max")
CSV_HEADER = ("fname", "camera")


# ---------------------------------------------------------------------------------------------
# Crops


@dataclass(frozen=True)
class CropPlan:
    """Which test-time crops to take of each image.

    Random (default): the centre crop, then `count - 1` crops at random even offsets drawn from a
    generator seeded by (`seed`, image index), so a rerun gives the same crops. Grid: a
    deterministic even grid of about `count` crops (fewer when the image is too small for them).
    """

    size: int = DEFAULT_CROP_SIZE
    count: int = DEFAULT_CROPS
    grid: bool = False
    seed: int = 0

    def offsets(self, height: int, width: int, index: int) -> list[tuple[int, int]]:
        if self.grid:
            return grid_offsets(height, width, self.size, self.count, even=True)
        offsets = [center_offset(height, width, self.size)]
        rng = np.random.default_rng((self.seed, index))
        offsets += [random_offset(height, width, self.size, rng, even=True) for _ in range(self.count - 1)]
        return offsets


def image_crops(image: np.ndarray, plan: CropPlan, index: int) -> np.ndarray:
    """HxWx3 -> (crops, 3, size, size) uint8, the crops of `plan` for the image at `index`."""
    height, width = image.shape[:2]
    crops = [crop(image, top, left, plan.size) for top, left in plan.offsets(height, width, index)]
    return np.ascontiguousarray(np.stack(crops).transpose(0, 3, 1, 2))


# ---------------------------------------------------------------------------------------------
# Loading


class CropBatch(NamedTuple):
    """What the loader yields: crops of several images, the image index of each crop, and the
    (image index, reason) of each image in the batch that could not be used."""

    images: torch.Tensor
    indices: torch.Tensor
    problems: list[tuple[int, str]]


class PredictCrops(Dataset):
    """Item i -> (the crops of image i as uint8 (n, 3, size, size), n copies of i, problem).

    An unreadable (or too small) image gives no crops and the reason instead of raising, so one bad
    file neither kills a loader worker nor stops the run.
    """

    def __init__(self, paths: Sequence[str | os.PathLike], plan: CropPlan, reader: Callable = read_rgb):
        self.paths = [str(p) for p in paths]
        self.plan = plan
        self.reader = reader

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, tuple[int, str] | None]:
        path = self.paths[index]
        size = self.plan.size
        try:
            image = self.reader(path)
            height, width = image.shape[:2]
            if min(height, width) < size:
                raise UnreadableImage(f"{path}: {width}x{height} is smaller than the {size}x{size} crop")
            crops = torch.from_numpy(image_crops(image, self.plan, index))
        except UnreadableImage as error:
            empty = torch.empty((0, 3, size, size), dtype=torch.uint8)
            return empty, torch.empty(0, dtype=torch.long), (index, str(error))
        return crops, torch.full((len(crops),), index, dtype=torch.long), None


def collate_crops(batch: list[tuple[torch.Tensor, torch.Tensor, tuple[int, str] | None]]) -> CropBatch:
    """Concatenate the per-image crop stacks; keep the problems aside."""
    images, indices, problems = zip(*batch, strict=True)
    return CropBatch(torch.cat(images), torch.cat(indices), [p for p in problems if p is not None])


def crop_loader(
    paths: Sequence[str | os.PathLike],
    plan: CropPlan,
    batch_size: int = 128,
    num_workers: int = 0,
    reader: Callable = read_rgb,
) -> DataLoader:
    """Batches of about `batch_size` crops (whole images, at least one per batch), in path order.

    Works for our own loop (predict_crops) and for Lightning's `trainer.predict(model, dataloaders=...)`,
    whose CameraClassifier.predict_step returns the softmax of each crop.
    """
    dataset = PredictCrops(paths, plan, reader)
    return DataLoader(
        dataset,
        batch_size=max(1, batch_size // max(1, plan.count)),
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate_crops,
        worker_init_fn=worker_init,
        pin_memory=torch.cuda.is_available(),
    )


# ---------------------------------------------------------------------------------------------
# Aggregation and balancing


def aggregate(probabilities: torch.Tensor, rule: str = "mean") -> tuple[torch.Tensor, int]:
    """Combine the (crops, classes) softmax rows of one image into class probabilities and a label.

    - mean: the average of the rows;
    - geomean: the average of the log-probabilities, renormalised (a product of experts);
    - max: the seed notebook's rule: the single most confident crop prediction wins. The label is
      the flat argmax over the (crops x classes) matrix modulo the class count, and the returned
      probabilities are that crop's row.
    """
    if probabilities.ndim != 2 or probabilities.shape[0] == 0:
        raise ValueError(f"expected a non-empty (crops, classes) matrix, got shape {tuple(probabilities.shape)}")
    num_classes = probabilities.shape[1]
    if rule == "mean":
        combined = probabilities.mean(dim=0)
    elif rule == "geomean":
        tiny = torch.finfo(probabilities.dtype).tiny
        combined = probabilities.clamp_min(tiny).log().mean(dim=0).softmax(dim=0)
    elif rule == "max":
        flat = int(probabilities.flatten().argmax())
        # flat // num_classes is the crop, flat % num_classes the label, as in the seed.
        return probabilities[flat // num_classes], flat % num_classes
    else:
        raise ValueError(f"unknown aggregate {rule!r}; choose from {', '.join(AGGREGATES)}")
    return combined, int(combined.argmax())


def balanced_assignment(log_probabilities: np.ndarray) -> np.ndarray:
    """Labels maximising the total log-probability with every class getting an equal share.

    With n images and K classes every class receives n // K or n // K + 1 images (exactly n / K
    when K divides n), and the classes that get the extra one are part of the optimisation.

    Exact min-cost flow: source -> image -> class -> sink, where class k reaches the sink by a
    "base" arc of capacity n // K or, for at most one unit, through a shared "extra" node X whose arc
    to the sink carries n % K. Images are added one at a time, each along a shortest path in the
    residual graph (successive shortest paths; the residual never has a negative cycle, so
    Bellman-Ford is exact). Paths run over K + 2 nodes only: class a -> class b means "move the
    image of a that loses least by moving to b". O(n^2 K) with numpy, well under a second for
    Kaggle's 2640 x 10.
    """
    scores = np.asarray(log_probabilities, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"expected an (images, classes) matrix, got shape {scores.shape}")
    n, K = scores.shape
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if not np.all(np.isfinite(scores)):
        raise ValueError("balanced_assignment needs finite log-probabilities; clamp zeros first")
    cost = -scores
    base, extra = divmod(n, K)
    X, T = K, K + 1  # the extra node and the sink
    assigned = np.full(n, -1, dtype=np.int64)
    on_base = np.zeros(K, dtype=np.int64)  # flow on class -> sink
    on_extra = np.zeros(K, dtype=np.int64)  # flow on class -> X (0 or 1)
    extra_used = 0  # flow on X -> sink
    eps = 1e-12
    rows = np.arange(n)
    for image in range(n):
        weights = np.full((K + 2, K + 2), np.inf)
        if image:
            # weights[a, b]: the least extra cost of moving one image of class a to class b.
            members = assigned[:image]
            delta = cost[:image] - cost[rows[:image], members][:, None]
            order = np.argsort(members, kind="stable")
            present, starts = np.unique(members[order], return_index=True)
            weights[present, :K] = np.minimum.reduceat(delta[order], starts, axis=0)
            np.fill_diagonal(weights[:K, :K], np.inf)
        weights[:K, T] = np.where(on_base < base, 0.0, np.inf)
        if extra:
            weights[:K, X] = np.where(on_extra == 0, 0.0, np.inf)
            weights[X, :K] = np.where(on_extra == 1, 0.0, np.inf)
            weights[X, T] = 0.0 if extra_used < extra else np.inf
        # Bellman-Ford from the new image, whose arcs lead into the class nodes.
        dist = np.full(K + 2, np.inf)
        dist[:K] = cost[image]
        pred = np.full(K + 2, -1, dtype=np.int64)  # -1: reached straight from the image
        for _ in range(K + 2):
            through = dist[:, None] + weights
            best = through.argmin(axis=0)
            candidate = through[best, np.arange(K + 2)]
            better = candidate < dist - eps
            if not better.any():
                break
            dist[better] = candidate[better]
            pred[better] = best[better]
        if not np.isfinite(dist[T]):
            raise AssertionError("no augmenting path; the capacities do not add up")  # cannot happen
        path = [T]
        while pred[path[-1]] >= 0:
            path.append(int(pred[path[-1]]))
            if len(path) > K + 3:
                raise AssertionError("cycle in the shortest-path tree")
        path.reverse()  # first node is a class: where the new image goes
        moves = []
        for u, v in zip(path, path[1:], strict=False):
            if u < K and v < K:
                inside = np.flatnonzero(members == u)
                moves.append((int(inside[delta[inside, v].argmin()]), v))
            elif u < K and v == T:
                on_base[u] += 1
            elif u < K and v == X:
                on_extra[u] += 1
            elif u == X and v < K:
                on_extra[v] -= 1
            elif u == X and v == T:
                extra_used += 1
        for mover, target in moves:
            assigned[mover] = target
        assigned[image] = path[0]
    return assigned


def balanced_labels(probabilities: np.ndarray) -> np.ndarray:
    """balanced_assignment on probabilities (zeros clamped to the smallest positive double)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    return balanced_assignment(np.log(np.clip(probabilities, np.finfo(np.float64).tiny, None)))


# ---------------------------------------------------------------------------------------------
# The model


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CamlitError(f"--device {name}: no CUDA device here")
    try:
        return torch.device(name)
    except RuntimeError as error:
        raise CamlitError(f"--device {name}: {error}") from None


def load_checkpoint(path: str | os.PathLike, device: torch.device | str = "cpu"):
    """(CameraClassifier in eval mode on `device`, the training crop size if the checkpoint has it)."""
    from camlit.module import CameraClassifier

    path = Path(path)
    if not path.is_file():
        raise CamlitError(f"--ckpt {path}: no such checkpoint file")
    # The weights come from the checkpoint: a pretrained file named at training time may be gone,
    # and compiling would only add start-up time here. channels_last only pays on a GPU; on a CPU
    # it is never faster and several times slower for small crops.
    overrides: dict[str, Any] = {"pretrained": None, "compile": False}
    if torch.device(device).type != "cuda":
        overrides["channels_last"] = False
    try:
        model = CameraClassifier.load_from_checkpoint(path, map_location="cpu", weights_only=False, **overrides)
        checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except CamlitError:
        raise
    except Exception as error:  # noqa: BLE001 - a file torch or Lightning cannot load is the user's input
        reason = f"{type(error).__name__}: {error}"
        raise CamlitError(f"--ckpt {path}: not a loadable camlit checkpoint ({reason})") from None
    model.configure_model()
    model.eval().to(device)
    return model, checkpoint_crop_size(checkpoint)


def checkpoint_crop_size(checkpoint: dict[str, Any]) -> int | None:
    """The DataModule's crop_size saved by the CLI under datamodule_hyper_parameters, if any."""
    hparams = checkpoint.get("datamodule_hyper_parameters") or {}
    size = hparams.get("crop_size") if hasattr(hparams, "get") else None
    return int(size) if isinstance(size, int) and size > 0 else None


def autocast_for(device: torch.device):
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


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
                probabilities = model.predict_step((images, batch.indices), batch_index).float().cpu()
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
) -> Predictions:
    """Crops, model, aggregation (and optionally the balanced assignment) for every path."""
    if rule not in AGGREGATES:
        raise CamlitError(f"--aggregate {rule}: choose from {', '.join(AGGREGATES)}")
    classes = list(model.classes)
    loader = crop_loader(paths, plan, batch_size, num_workers, reader)
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
        labels[usable] = balanced_labels(probabilities[usable])
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
# Output


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write `text` to a temporary file in the same folder, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(temporary, "w", encoding="utf-8", newline="") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def csv_text(rows: Sequence[Sequence[str]]) -> str:
    for row in rows:
        for value in row:
            if any(c in value for c in ',"\n\r'):
                raise CamlitError(f"cannot write {value!r} to a plain CSV (comma, quote or newline in it)")
    return "".join(",".join(row) + "\n" for row in rows)


def submission_rows(predictions: Predictions) -> list[tuple[str, str]]:
    """(fname, camera) for every usable image, sorted by file name."""
    rows = [
        (Path(path).name, predictions.classes[label])
        for path, label in zip(predictions.paths, predictions.labels, strict=True)
        if label >= 0
    ]
    return sorted(rows)


def probability_rows(predictions: Predictions) -> list[tuple[str, ...]]:
    rows = [
        (Path(path).name, *(f"{p:.6g}" for p in row))
        for path, row, label in zip(predictions.paths, predictions.probabilities, predictions.labels, strict=True)
        if label >= 0
    ]
    return sorted(rows)


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


def prepare(args: argparse.Namespace):
    """(model, device, crop plan) from the shared options."""
    check_prediction_arguments(args)
    device = pick_device(args.device)
    model, trained_size = load_checkpoint(args.ckpt, device)
    size = args.crop_size or trained_size or DEFAULT_CROP_SIZE
    return model, device, CropPlan(size=size, count=args.crops, grid=args.crop_grid, seed=args.seed)


def run_prediction(args: argparse.Namespace, paths: Sequence[str | os.PathLike]) -> Predictions:
    model, device, plan = prepare(args)
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
    )


def unreadable_message(problems: dict[int, str], paths: Sequence[str]) -> str:
    names = [Path(paths[i]).name for i in sorted(problems)]
    shown = ", ".join(names[:20]) + (f", ... ({len(names)} in all)" if len(names) > 20 else "")
    return f"{len(names)} unreadable image(s): {shown}"


def report_problems(problems: dict[int, str], paths: Sequence[str], skip: bool) -> None:
    """Every reason on stderr; unless `skip`, end with one `error:` line naming the files, exit 2."""
    if not problems:
        return
    for index in sorted(problems):
        print(f"warning: skipped {problems[index]}", file=sys.stderr)
    if not skip:
        raise CamlitError(f"{unreadable_message(problems, paths)}; rerun with --skip-unreadable to accept that")


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
        paths = list_input_images(args.input)
        predictions = run_prediction(args, paths)
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
