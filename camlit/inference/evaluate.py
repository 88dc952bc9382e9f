"""Score a checkpoint on labelled images: accuracy overall, per class, per manipulation, Kaggle's weighted.

Labelled images come either from a DataModule-style folder (`--input` alone: `root/<camera>/*` or
`root/<manipulation>/<camera>/*`, read by camlit.data.samples.scan) or from a folder of test images
plus a labels CSV (`--labels`, header `fname,camera`, as the synthetic set's test_labels.csv);
see camlit.inference.labelled.

Predictions are made exactly as `camlit predict` makes them, through `Trainer.predict`
(camlit.inference.running), with the same crop, aggregation, balancing and device options.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from jsonargparse import Namespace

from camlit.atomic import json_text, write_all_atomic
from camlit.data.manipulations import UNALTERED
from camlit.data.samples import manipulated_from_name
from camlit.errors import CamlitError, CommandParser, disk_full_as_user_error, exit_on_user_error, not_a_folder
from camlit.imageio import encoded_image, list_images, png_text, with_png_text
from camlit.inference import openset, options
from camlit.inference.evaluate_report import format_forensics, format_report, score
from camlit.inference.features import WithFeatures
from camlit.inference.labelled import labelled_csv, labelled_folder
from camlit.inference.openset_report import unknown_report
from camlit.provenance import provenance
from camlit.termination import exit_on_signal
from camlit.training.plots import confusion_matrix_image

DEFAULT_CONFUSION = "confusion_matrix.png"
WRITER = ("Software", "camlit evaluate")  # the PNG text that marks evaluate's pictures


def confusion_path(args: Namespace) -> Path:
    if args.confusion:
        return Path(args.confusion)
    if args.json:
        json_path = Path(args.json)
        return json_path.with_name(f"{json_path.stem}_confusion.png")
    return Path(DEFAULT_CONFUSION)


def confusion_png(path: Path, matrix: Sequence[Sequence[int]], classes: Sequence[str]) -> bytes:
    try:
        picture = encoded_image(path, confusion_matrix_image(np.asarray(matrix), classes))
    except (ValueError, cv2.error) as error:
        raise CamlitError(f"--confusion {path}: cannot write it ({error}); use a .png name") from None
    return with_png_text(picture, *WRITER)


def require_own_default_picture(args: Namespace, picture: Path) -> None:
    """The picture's name, where --confusion does not give it (the default, or <json stem>_confusion.png),
    replaces only a picture evaluate wrote: a user's file of that name in the folder was written over."""
    if not args.confusion and picture.exists() and png_text(picture, WRITER[0]) != WRITER[1]:
        raise CamlitError(
            f"{picture}: is there and is not a picture camlit evaluate wrote; name the picture with --confusion"
        )


def build_parser() -> CommandParser:
    parser = CommandParser(
        prog="camlit evaluate",
        description="Score a checkpoint on labelled images: overall, per class, per manipulation group and "
        "Kaggle's weighted accuracy (0.7 x unaltered + 0.3 x mean of the manipulated groups).",
    )
    options.add_prediction_arguments(parser)
    parser.add_argument(
        "--labels", default=None,
        help="CSV fname,camera for the images in --input; without it --input is a DataModule-style folder "
        "(root/<camera>/* or root/<manipulation>/<camera>/*)",
    )  # fmt: skip
    parser.add_argument(
        "--manipulations", default=None,
        help="with --labels: CSV fname,manipulation giving finer groups than _unalt/_manip in the file names",
    )  # fmt: skip
    parser.add_argument(
        "--unknown_input", default=None,
        help="folder of photos from cameras outside the class list: report the open-set AUROC and rates, "
        "unaltered and manipulated apart, with the calibration beside the checkpoint (camlit calibrate)",
    )  # fmt: skip
    parser.add_argument(
        "--splices", default=None,
        help="folder of photos with true masks in <group>/masks/ (camlit.data.forensic_sets): report pixel F1 "
        "and MCC of the found regions, photo-level AUROC, and clean photos given a foreign region",
    )  # fmt: skip
    parser.add_argument(
        "--splice_method", default=None,
        help="with --splices: how foreign regions are found, lattice_then_disagreement (the default), "
        "lattice_then_disagreement_smoothed, disagreement, disagreement_smoothed, clustering or lattice "
        "(docs/forensics.md)",
    )  # fmt: skip
    parser.add_argument("--json", default=None, help="write every figure to this JSON file (atomically)")
    parser.add_argument(
        "--confusion", default=None,
        help=f"confusion-matrix PNG; default <json stem>_confusion.png next to --json, else ./{DEFAULT_CONFUSION}",
    )  # fmt: skip
    return parser


def evaluate(args: Namespace) -> dict[str, Any] | None:
    """The report; None in the other processes of a several-device run."""
    if args.manipulations and not args.labels:
        raise CamlitError("--manipulations needs --labels")
    calibration = openset.load(args.ckpt_path, "--unknown_input") if args.unknown_input else None
    model, plan = options.prepare(args)
    if calibration:
        calibration.require_plan(plan, "--unknown_input")
        calibration.require_classes(len(model.classes), "--unknown_input")
    classes = list(model.classes)
    if args.labels:
        images = labelled_csv(args.input, args.labels, classes, args.manipulations)
    else:
        images = labelled_folder(args.input, classes)
    paths = [image.path for image in images]
    # With features beside the softmax when the open-set score needs them; the probabilities are the same.
    scored = WithFeatures(model, calibration.layer, calibration.quantization) if calibration else model
    predictions = options.predict_with(args, scored, plan, paths, [image.manipulated for image in images])
    if not predictions.primary:
        return None
    print(predictions.rate_line())
    options.require_usable(predictions)
    # Figures over a subset only when asked for: unusable images are an error unless skipped.
    options.report_problems(predictions.problems, paths, args.skip_unreadable, args.input)
    usable = predictions.usable
    kept = [image for image, ok in zip(images, usable, strict=True) if ok]
    report = score(
        [image.label for image in kept], predictions.labels[usable], [image.group for image in kept], classes
    )
    report["skipped"] = options.image_names([paths[i] for i in sorted(predictions.problems)], args.input)
    report["checkpoint"] = str(args.ckpt_path)
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
        "tta_manipulations": list(plan.manipulations),
    }
    if calibration:
        known_flags = np.array([image.group != UNALTERED for image in images])
        report["unknown_cameras"] = unknown_cameras(args, scored, plan, calibration, predictions, known_flags)
    if args.splices:
        # camlit.forensics builds on this package; it is imported only when its report is asked for.
        from camlit.forensics.reports import evaluate_splices

        report["splices"] = evaluate_splices(
            model, args.splices, plan.size, args.ckpt_path, splice_method(args.splice_method), device=args.device,
            devices=args.devices, num_workers=args.num_workers, progress=not args.no_progress,
        )  # fmt: skip
    return report


def splice_method(name: str | None) -> str:
    """--splice_method, checked; the default method when not given."""
    # camlit.forensics builds on this package; it is imported only when its report is asked for.
    from camlit.forensics.splice import DEFAULT_METHOD, METHODS

    if name is not None and name not in METHODS:
        raise CamlitError(f"--splice_method: unknown {name!r}; choose from {', '.join(METHODS)}")
    return name or DEFAULT_METHOD


def unknown_cameras(args, scored, plan, calibration, known, known_flags: np.ndarray) -> dict[str, Any]:
    """The open-set figures of the known photos just predicted against those of --unknown_input."""
    folder = Path(args.unknown_input)
    paths = list_images(folder)
    unknown = options.predict_with(args, scored, plan, paths)
    # As for the known images: figures over a subset only when asked for.
    options.report_problems(unknown.problems, paths, args.skip_unreadable, folder)
    unknown_flags = np.array([bool(manipulated_from_name(path)) for path in paths])
    known_scores = openset.prediction_scores(calibration, known, known_flags, "--unknown_input")[known.usable]
    unknown_scores = openset.prediction_scores(calibration, unknown, unknown_flags, "--unknown_input")[unknown.usable]
    figures = unknown_report(
        known_scores, known_flags[known.usable], unknown_scores, unknown_flags[unknown.usable], calibration
    )
    skipped = options.image_names([paths[i] for i in sorted(unknown.problems)], folder)
    return {"score": calibration.method, "input": str(folder), "skipped": skipped, **figures}


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    """Evaluate; `argv` as on the command line. Input mistakes exit with one `error:` line, status 2."""
    args = build_parser().parse_args(argv)
    # The figures and the picture are written whole at the end, so a SIGTERM leaves none half-written.
    with exit_on_user_error(), exit_on_signal("no figures written (any older files there are as they were)"):
        picture = confusion_path(args)
        if picture.suffix.lower() != ".png":
            raise CamlitError(f"--confusion {picture}: the picture is a PNG; use a .png name")
        # The picture's name comes from --json where --confusion is not given: name the option given.
        picture_option = "confusion" if args.confusion or not args.json else "json's picture"
        options.require_file_paths(**{"json": args.json, picture_option: str(picture)})
        require_own_default_picture(args, picture)
        for option, folder in (("--unknown_input", args.unknown_input), ("--splices", args.splices)):
            if folder and not Path(folder).is_dir():
                raise CamlitError(f"{option} {folder}: {not_a_folder(folder)}")
        if args.unknown_input and Path(args.input).is_dir() and Path(args.unknown_input).samefile(args.input):
            raise CamlitError(
                f"--unknown_input {args.unknown_input}: the folder of --input; the known photos would score as unknown"
            )
        inside = args.unknown_input and not args.labels and Path(args.input).is_dir()
        if inside and Path(args.unknown_input).resolve().is_relative_to(Path(args.input).resolve()):
            # Without --labels every folder under --input is a known camera's.
            raise CamlitError(
                f"--unknown_input {args.unknown_input}: inside --input {args.input}, whose folders are known "
                "cameras'; the known photos would score as unknown"
            )
        if args.unknown_input and not list_images(args.unknown_input):
            raise CamlitError(f"--unknown_input {args.unknown_input}: no images in it")
        if args.splice_method is not None:
            if not args.splices:
                raise CamlitError("--splice_method: only with --splices")
            splice_method(args.splice_method)
        if args.splices:
            # camlit.forensics builds on this package; it is imported only when its report is asked for.
            from camlit.forensics.reports import splice_folder

            splice_folder(args.splices)
        options.require_no_overwrite(
            {"json": args.json, picture_option: str(picture)},
            {"ckpt_path": args.ckpt_path, "labels": args.labels, "manipulations": args.manipulations},
            [folder for folder in (args.input, args.unknown_input, args.splices) if folder],
        )
        report = evaluate(args)
        if report is None:
            return None
        print("\n".join([format_report(report), *format_forensics(report)]))
        report["confusion_png"] = str(picture)
        files = {picture: confusion_png(picture, report["confusion_matrix"], report["classes"])}
        if args.json:
            files[Path(args.json)] = json_text({**report, "provenance": provenance()}).encode()
        with disk_full_as_user_error("the output files are written all together or not at all"):
            write_all_atomic(files)
        print(f"confusion matrix: {picture}" + (f"; figures: {args.json}" if args.json else ""))
    return report
