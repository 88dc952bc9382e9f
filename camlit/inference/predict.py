"""Predict the camera of every image in a folder, in Kaggle's submission format.

`camlit predict --ckpt_path best.ckpt --input test/ --output submission.csv`

The options are shared with evaluate (camlit.inference.options); the model runs under
Lightning's `Trainer.predict` (camlit.inference.running); the CSVs come from
camlit.inference.submission.
"""

from __future__ import annotations

import os
from pathlib import Path

from jsonargparse import Namespace

from camlit.atomic import write_all_atomic
from camlit.errors import CamlitError, CommandParser, disk_full_as_user_error, exit_on_user_error, not_a_folder
from camlit.imageio import list_images
from camlit.inference import openset
from camlit.inference.features import WithFeatures
from camlit.inference.options import (
    add_prediction_arguments,
    manipulated_flags,
    predict_with,
    prepare,
    report_problems,
    require_file_paths,
    require_no_overwrite,
    require_usable,
)
from camlit.inference.running import Predictions
from camlit.inference.submission import probabilities_csv, submission_csv
from camlit.termination import exit_on_signal


def list_input_images(folder: str | os.PathLike) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise CamlitError(f"--input {folder}: {not_a_folder(folder)}")
    paths = list_images(folder)
    if not paths:
        raise CamlitError(f"--input {folder}: no images (.jpg .jpeg .png .tif .tiff .bmp) in it")
    return paths


def build_parser() -> CommandParser:
    parser = CommandParser(
        prog="camlit predict",
        description="Predict the camera of every image in --input; write Kaggle's submission CSV (fname,camera).",
    )
    add_prediction_arguments(parser)
    parser.add_argument("--output", required=True, help="submission CSV to write (atomically)")
    parser.add_argument(
        "--probs",
        default=None,
        help="also write the aggregated class probabilities (before --balance): fname,<class1>,...",
    )
    parser.add_argument(
        "--unknown", action="store_true",
        help="name a photo `unknown` when its open-set score is above the threshold calibrated beside the "
        "checkpoint (camlit calibrate); --probs gains an unknown_score column",
    )  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> Predictions:
    """Predict; `argv` as on the command line. Input mistakes exit with one `error:` line, status 2."""
    args = build_parser().parse_args(argv)
    # The outputs are written whole at the end, so a SIGTERM leaves none half-written.
    with exit_on_user_error(), exit_on_signal(f"{args.output} not written (any older file there is as it was)"):
        return run_prediction(args)


def run_prediction(args: Namespace) -> Predictions:
    """The work of main(), whose outputs are written only once every image is predicted."""
    require_file_paths(output=args.output, probs=args.probs)
    require_no_overwrite({"output": args.output, "probs": args.probs}, {"ckpt_path": args.ckpt_path}, [args.input])
    paths = list_input_images(args.input)
    calibration = openset.load(args.ckpt_path) if args.unknown else None
    model, plan = prepare(args)
    if calibration:
        calibration.require_plan(plan)
        calibration.require_classes(len(model.classes))
    scored = WithFeatures(model, calibration.layer, calibration.quantization) if calibration else model
    predictions = predict_with(args, scored, plan, paths)
    if not predictions.primary:
        return predictions
    require_usable(predictions)
    flags = manipulated_flags(args, paths)
    scores = openset.prediction_scores(calibration, predictions, flags) if calibration else None
    unknown = calibration.is_unknown(scores, flags) if calibration else None
    files = {Path(args.output): submission_csv(predictions, unknown)}
    if args.probs:
        files[Path(args.probs)] = probabilities_csv(predictions, scores)
    with disk_full_as_user_error("the output files are written all together or not at all"):
        write_all_atomic(files)
    print(predictions.rate_line())
    report_problems(predictions.problems, predictions.paths, args.skip_unreadable)
    return predictions
