"""Score a checkpoint on labelled images: accuracy overall, per class, per manipulation, Kaggle's weighted.

Labelled images come either from a DataModule-style folder (`--input` alone: `root/<camera>/*` or
`root/<manipulation>/<camera>/*`, read by camlit.samples.scan) or from a folder of test images
plus a labels CSV (`--labels`, header `fname,camera`, as the synthetic set's test_labels.csv). In
the second case an image's group is `manipulated` when its name contains `_manip`, else
`unaltered` (Kaggle's and the synthetic set's naming), or its row in `--manipulations`
(`fname,manipulation`) for the finer groups.

Predictions are made exactly as scripts/predict.py makes them (camlit.predict), with the same
crop, aggregation and balancing options.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from camlit.atomic import write_text_atomic
from camlit.datasets import group_order
from camlit.errors import CamlitError, disk_full_as_user_error
from camlit.imageio import list_images, write_image_atomic
from camlit.metrics import UNALTERED, kaggle_weighted_accuracy
from camlit.plots import confusion_matrix_image
from camlit.predict import (
    add_prediction_arguments,
    few,
    manipulated_from_name,
    predict_with,
    prepare,
    report_problems,
    require_file_paths,
    require_usable,
)
from camlit.samples import scan

MANIPULATED = "manipulated"
DEFAULT_CONFUSION = "confusion_matrix.png"


@dataclass(frozen=True)
class LabelledImage:
    path: str
    label: int
    group: str
    manipulated: bool | None  # what the model's manipulation flag is given; None when not known


# ---------------------------------------------------------------------------------------------
# Labelled data


def group_from_name(name: str) -> str:
    """Kaggle's test naming: `img_<id>_manip.tif` is manipulated, `img_<id>_unalt.tif` (or anything else) not."""
    return MANIPULATED if "_manip" in Path(name).stem else UNALTERED


def subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def check_folder_classes(root: Path, classes: Sequence[str]) -> None:
    """Every camera folder under `root` (either layout) must be one of the checkpoint's classes."""
    folders = subfolders(root)
    if any(folder.name in classes for folder in folders):
        camera_folders = folders
    else:
        camera_folders = [sub for folder in folders for sub in subfolders(folder)]
        # A flat layout none of whose folders is a known camera: its folders hold the images.
        camera_folders += [folder for folder in folders if list_images(folder)]
    unknown = sorted({folder.name for folder in camera_folders if folder.name not in classes})
    if unknown:
        raise CamlitError(
            f"--input {root}: camera folder(s) {', '.join(unknown)} not among the checkpoint's classes "
            f"({', '.join(classes)})"
        )


def labelled_folder(root: str | os.PathLike, classes: Sequence[str]) -> list[LabelledImage]:
    """A DataModule-style folder: labels from the camera folders, groups from the manipulation folders."""
    root = Path(root)
    if not root.is_dir():
        raise CamlitError(f"--input {root}: no such folder")
    check_folder_classes(root, classes)
    samples = scan(root, classes)
    images = (LabelledImage(s.path, s.label, s.manipulation, s.manipulation != UNALTERED) for s in samples)
    return sorted(images, key=lambda image: image.path)


def read_table(path: str | os.PathLike, header: tuple[str, str], option: str) -> dict[str, str]:
    """A two-column CSV with exactly `header`, as {first column: second column}; duplicates refused."""
    path = Path(path)
    if not path.is_file():
        raise CamlitError(f"{option} {path}: no such file")
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            rows = [[value.strip() for value in row] for row in csv.reader(file) if any(v.strip() for v in row)]
    except (UnicodeDecodeError, csv.Error) as error:
        raise CamlitError(f"{option} {path}: not a UTF-8 CSV file ({error})") from None
    if not rows or tuple(rows[0]) != header:
        found = ",".join(rows[0]) if rows else "nothing"
        raise CamlitError(f"{option} {path}: the header must be {','.join(header)}, found {found}")
    table: dict[str, str] = {}
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != 2:
            raise CamlitError(f"{option} {path}: line {number} has {len(row)} fields, expected 2")
        if row[0] in table:
            raise CamlitError(f"{option} {path}: {row[0]} is listed twice (line {number})")
        table[row[0]] = row[1]
    if not table:
        raise CamlitError(f"{option} {path}: no rows")
    return table


def labelled_csv(
    folder: str | os.PathLike,
    labels: str | os.PathLike,
    classes: Sequence[str],
    manipulations: str | os.PathLike | None = None,
) -> list[LabelledImage]:
    """The images named in `labels` (fname,camera), which must all be in `folder`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CamlitError(f"--input {folder}: no such folder")
    cameras = read_table(labels, ("fname", "camera"), "--labels")
    unknown = sorted(set(cameras.values()) - set(classes))
    if unknown:
        raise CamlitError(
            f"--labels {labels}: camera(s) {few(unknown)} not among the checkpoint's classes ({', '.join(classes)})"
        )
    missing = sorted(name for name in cameras if not (folder / name).is_file())
    if missing:
        raise CamlitError(f"--labels {labels}: {len(missing)} file(s) missing from {folder}: {few(missing)}")
    groups = {name: group_from_name(name) for name in cameras}
    flags = {name: manipulated_from_name(name) for name in cameras}
    if manipulations is not None:
        finer = read_table(manipulations, ("fname", "manipulation"), "--manipulations")
        absent = sorted(name for name in cameras if name not in finer)
        if absent:
            raise CamlitError(f"--manipulations {manipulations}: no row for {few(absent)}")
        groups = {name: finer[name] for name in cameras}
        flags = {name: finer[name] != UNALTERED for name in cameras}
    return [
        LabelledImage(str(folder / name), classes.index(cameras[name]), groups[name], flags[name])
        for name in sorted(cameras)
    ]


# ---------------------------------------------------------------------------------------------
# Figures


def accuracy_entry(correct: int, total: int) -> dict[str, Any]:
    return {"images": int(total), "correct": int(correct), "accuracy": correct / total if total else None}


def score(
    truth: Sequence[int], predicted: Sequence[int], groups: Sequence[str], classes: Sequence[str]
) -> dict[str, Any]:
    """Every figure of an evaluation, JSON-ready: accuracy overall, per class (of the true class),
    per group, Kaggle's weighted accuracy (None unless `unaltered` and another group are present),
    and the confusion matrix (rows true, columns predicted)."""
    truth = np.asarray(truth, dtype=np.int64)
    predicted = np.asarray(predicted, dtype=np.int64)
    groups = np.asarray(list(groups), dtype=object)
    if not (len(truth) == len(predicted) == len(groups)):
        raise ValueError("truth, predicted and groups differ in length")
    correct = truth == predicted
    num_classes = len(classes)
    matrix = np.bincount(truth * num_classes + predicted, minlength=num_classes**2).reshape(num_classes, num_classes)
    per_class = {name: accuracy_entry(correct[truth == k].sum(), (truth == k).sum()) for k, name in enumerate(classes)}
    per_group = {
        name: accuracy_entry(correct[groups == name].sum(), (groups == name).sum())
        for name in sorted(set(groups.tolist()), key=group_order)
    }
    weighted = kaggle_weighted_accuracy({name: entry["accuracy"] for name, entry in per_group.items()})
    return {
        "images": int(len(truth)),
        "correct": int(correct.sum()),
        "accuracy": float(correct.mean()) if len(truth) else None,
        "weighted_accuracy": weighted,
        "per_class": per_class,
        "per_group": per_group,
        "classes": list(classes),
        "confusion_matrix": matrix.tolist(),
    }


def percent(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:6.2f}%"


def format_report(report: dict[str, Any]) -> str:
    """The figures as a plain-text table."""
    width = max(len(name) for name in [*report["per_class"], *report["per_group"], "overall"]) + 2
    lines = [
        f"{'':{width}}{'images':>8}{'correct':>9}{'accuracy':>10}",
        f"{'overall':{width}}{report['images']:>8}{report['correct']:>9}{percent(report['accuracy']):>10}",
    ]
    weighted = report["weighted_accuracy"]
    others = [name for name in report["per_group"] if name != UNALTERED]
    rule = f"0.7 x unaltered + 0.3 x mean of {len(others)} other group(s)"
    lines.append(f"{'weighted':{width}}{'':17}{percent(weighted):>10}   {rule if weighted is not None else 'n/a'}")
    for title, section in (("per class", report["per_class"]), ("per group", report["per_group"])):
        lines.append(f"{title}:")
        for name, entry in section.items():
            lines.append(f"{name:{width}}{entry['images']:>8}{entry['correct']:>9}{percent(entry['accuracy']):>10}")
    return "\n".join(lines)


def confusion_path(args: argparse.Namespace) -> Path:
    if args.confusion:
        return Path(args.confusion)
    if args.json:
        json_path = Path(args.json)
        return json_path.with_name(f"{json_path.stem}_confusion.png")
    return Path(DEFAULT_CONFUSION)


def write_confusion(path: Path, matrix: Sequence[Sequence[int]], classes: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        write_image_atomic(path, confusion_matrix_image(np.asarray(matrix), classes))
    except (ValueError, cv2.error) as error:
        raise CamlitError(f"--confusion {path}: cannot write it ({error}); use a .png name") from None


# ---------------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evaluate.py",
        description="Score a checkpoint on labelled images: overall, per class, per manipulation group and "
        "Kaggle's weighted accuracy (0.7 x unaltered + 0.3 x mean of the manipulated groups).",
    )
    add_prediction_arguments(parser)
    parser.add_argument(
        "--labels", default=None,
        help="CSV fname,camera for the images in --input; without it --input is a DataModule-style folder "
        "(root/<camera>/* or root/<manipulation>/<camera>/*)",
    )  # fmt: skip
    parser.add_argument(
        "--manipulations", default=None,
        help="with --labels: CSV fname,manipulation giving finer groups than _unalt/_manip in the file names",
    )  # fmt: skip
    parser.add_argument("--json", default=None, help="write every figure to this JSON file (atomically)")
    parser.add_argument(
        "--confusion", default=None,
        help=f"confusion-matrix PNG; default <json stem>_confusion.png next to --json, else ./{DEFAULT_CONFUSION}",
    )  # fmt: skip
    return parser


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    if args.manipulations and not args.labels:
        raise CamlitError("--manipulations needs --labels")
    model, device, plan = prepare(args)
    classes = list(model.classes)
    if args.labels:
        images = labelled_csv(args.input, args.labels, classes, args.manipulations)
    else:
        images = labelled_folder(args.input, classes)
    paths = [image.path for image in images]
    predictions = predict_with(args, model, device, plan, paths, [image.manipulated for image in images])
    print(predictions.rate_line())
    require_usable(predictions)
    # Figures over a subset only when asked for: unusable images are an error unless skipped.
    report_problems(predictions.problems, paths, args.skip_unreadable)
    usable = predictions.usable
    kept = [image for image, ok in zip(images, usable, strict=True) if ok]
    report = score(
        [image.label for image in kept], predictions.labels[usable], [image.group for image in kept], classes
    )
    report["skipped"] = [Path(paths[i]).name for i in sorted(predictions.problems)]
    report["checkpoint"] = str(args.ckpt)
    report["input"] = str(args.input)
    report["labels"] = args.labels
    report["options"] = {
        "crops": plan.count,
        "crop_grid": plan.grid,
        "crop_size": plan.size,
        "aggregate": args.aggregate,
        "balance": args.balance,
        "manipulated": args.manipulated,
        "seed": plan.seed,
    }
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Evaluate; `argv` as on the command line. Input mistakes exit with one `error:` line, status 2."""
    args = build_parser().parse_args(argv)
    try:
        require_file_paths(json=args.json, confusion=str(confusion_path(args)))
        report = evaluate(args)
        print(format_report(report))
        picture = confusion_path(args)
        with disk_full_as_user_error("each output file is written whole or not at all"):
            write_confusion(picture, report["confusion_matrix"], report["classes"])
            report["confusion_png"] = str(picture)
            if args.json:
                write_text_atomic(args.json, json.dumps(report, indent=2) + "\n")
        print(f"confusion matrix: {picture}" + (f"; figures: {args.json}" if args.json else ""))
    except CamlitError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    return report
