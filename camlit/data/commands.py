"""The command lines of `camlit prepare` and `camlit synthetic`."""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path

from jsonargparse.typing import PositiveInt

from camlit.data.kaggle_layout import DEFAULT_TEST_IMAGES, KAGGLE_HEIGHT, KAGGLE_WIDTH, make_kaggle_layout
from camlit.data.manipulations import MANIPULATIONS
from camlit.data.prepare import PrepareSummary, prepare_dataset
from camlit.data.synthetic import DEFAULT_FRAME, DEFAULT_TEST_PER_CAMERA, make_synthetic
from camlit.errors import CamlitError, CommandParser, disk_full_as_user_error, exit_on_user_error
from camlit.imageio import MAX_PIXELS
from camlit.termination import exit_on_signal


def prepare_parser() -> CommandParser:
    parser = CommandParser(
        prog="camlit prepare",
        description="Cut the training photos into manipulated crops, as Kaggle made its test set.",
    )
    parser.add_argument("--input", required=True, help="folder of <camera>/ folders of full-size photos")
    parser.add_argument("--output", required=True, help="folder to write <manipulation>/<camera>/*.png into")
    parser.add_argument(
        "--tiles", default="center",
        help="'center' for the single centre crop or N for up to N non-overlapping tiles",
    )  # fmt: skip
    parser.add_argument(
        "--manipulations", default=None, help=f"comma-separated subset of {', '.join(MANIPULATIONS)} (default: all)"
    )
    parser.add_argument("--size", type=int, default=512, help="crop side in pixels")
    parser.add_argument("--workers", type=int | None, default=None, help="processes (default: one per core)")
    add_max_pixels_argument(parser)
    return parser


def finite(text: str) -> float:
    """An argparse type: a float that is a number (not nan or inf)."""
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {text}")
    return value


def at_least(minimum: int, most: int | None = None):
    """An argparse type: an integer no smaller than `minimum`, nor larger than `most` where given."""

    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {minimum} or more, not {value}")
        if most is not None and value > most:
            raise argparse.ArgumentTypeError(f"must be at most {most}, not {value}")
        return value

    return parse


def tiles_value(text: str) -> str | int:
    return int(text) if text.isdigit() else text


def add_max_pixels_argument(parser: CommandParser) -> None:
    """--max_pixels, for every command that reads photos."""
    parser.add_argument(
        "--max_pixels", type=PositiveInt, default=MAX_PIXELS,
        help=f"refuse, unread, an image whose header claims more pixels (default {MAX_PIXELS:,}, Pillow's limit)",
    )  # fmt: skip


def require_positive(args, names: Sequence[str]) -> None:
    """Options that count something: 1 or more where given."""
    for name in names:
        value = getattr(args, name)
        if value is not None and value < 1:
            raise CamlitError(f"--{name} must be at least 1, got {value}")


def prepare_main(argv: list[str] | None = None) -> PrepareSummary:
    args = prepare_parser().parse_args(argv)
    names = None if args.manipulations is None else [n for n in args.manipulations.split(",") if n.strip()]
    with (
        exit_on_user_error(),
        exit_on_signal("every image written is whole; rerun to make the rest"),
        disk_full_as_user_error("every image written is whole; free space and rerun to make the rest"),
    ):
        require_positive(args, ("size", "workers"))
        summary = prepare_dataset(
            args.input, args.output, tiles_value(args.tiles), names, args.size, args.workers, max_pixels=args.max_pixels
        )
        print(summary)
        if summary.failures:
            # A script that goes on to fit must not take a set with photos missing for a whole one.
            raise CamlitError(
                f"--input {args.input}: {summary.failed} photo(s) not prepared (the failed: lines above); "
                "every other crop is written: fix or remove those photos and rerun, which makes only what is missing"
            )
    return summary


def synthetic_parser() -> CommandParser:
    parser = CommandParser(prog="camlit synthetic", description="Write the synthetic Kaggle-shaped camera data set.")
    parser.add_argument(
        "--output", type=Path | None, default=None, help="folder to write the demo's set into, or to finish"
    )
    parser.add_argument(
        "--kaggle_layout", type=Path | None, default=None,
        help="instead of --output: write a download shaped like Kaggle's archive (train/, test/, "
        "sample_submission.csv, and the truth CSVs), or finish one",
    )  # fmt: skip
    parser.add_argument("--images_per_camera", type=int, default=30, help="train photos per camera")
    parser.add_argument(
        "--test_per_camera", type=int | None, default=None,
        help=f"with --output: test photos per camera (default {DEFAULT_TEST_PER_CAMERA})",
    )  # fmt: skip
    parser.add_argument(
        "--test_images", type=int | None, default=None,
        help=f"with --kaggle_layout: test images, a multiple of 20 (default {DEFAULT_TEST_IMAGES})",
    )  # fmt: skip
    parser.add_argument(
        "--width", type=int | None, default=None,
        help=f"frame width in pixels (default {DEFAULT_FRAME[0]}, or {KAGGLE_WIDTH} with --kaggle_layout)",
    )  # fmt: skip
    parser.add_argument(
        "--height", type=int | None, default=None,
        help=f"frame height in pixels (default {DEFAULT_FRAME[1]}, or {KAGGLE_HEIGHT} with --kaggle_layout)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="the same seed writes the same bytes")
    parser.add_argument("--workers", type=int | None, default=None, help="processes (default: all cores)")
    return parser


def synthetic_main(argv: list[str] | None = None) -> Path:
    args = synthetic_parser().parse_args(argv)
    with (
        exit_on_user_error(),
        exit_on_signal("every file written is whole; rerun to make the rest"),
        disk_full_as_user_error("every file written is whole; free space and rerun to make the rest"),
    ):
        if (args.output is None) == (args.kaggle_layout is None):
            raise CamlitError("give one of --output and --kaggle_layout")
        # Each layout has its own test set: the other's option was ignored without a word.
        if args.output is not None and args.test_images is not None:
            raise CamlitError("--test_images: only with --kaggle_layout; --output takes --test_per_camera")
        if args.kaggle_layout is not None and args.test_per_camera is not None:
            raise CamlitError("--test_per_camera: only with --output; --kaggle_layout takes --test_images")
        require_positive(args, ("width", "height", "workers"))
        if args.kaggle_layout is not None:
            output = make_kaggle_layout(
                args.kaggle_layout,
                args.images_per_camera,
                DEFAULT_TEST_IMAGES if args.test_images is None else args.test_images,
                args.width or KAGGLE_WIDTH,
                args.height or KAGGLE_HEIGHT,
                args.seed,
                args.workers,
            )
        else:
            output = make_synthetic(
                args.output,
                args.images_per_camera,
                DEFAULT_TEST_PER_CAMERA if args.test_per_camera is None else args.test_per_camera,
                args.width or DEFAULT_FRAME[0],
                args.height or DEFAULT_FRAME[1],
                args.seed,
                args.workers,
            )
    print(output)
    return output
