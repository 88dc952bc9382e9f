"""The command lines of scripts/prepare_data.py and scripts/make_synthetic.py."""

from __future__ import annotations

import argparse
from pathlib import Path

from camlit.data.kaggle_layout import DEFAULT_TEST_IMAGES, KAGGLE_HEIGHT, KAGGLE_WIDTH, make_kaggle_layout
from camlit.data.manipulations import MANIPULATIONS
from camlit.data.prepare import PrepareSummary, prepare_dataset
from camlit.data.synthetic import make_synthetic
from camlit.errors import CamlitError, disk_full_as_user_error
from camlit.imageio import MAX_PIXELS


def tiles_argument(text: str) -> str | int:
    if text == "center":
        return text
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise argparse.ArgumentTypeError(f"expected 'center' or a positive number, not {text!r}")


def prepare_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prepare_data.py",
        description="Cut the training photos into manipulated crops, as Kaggle made its test set.",
    )
    parser.add_argument("--input", required=True, help="folder of <camera>/ folders of full-size photos")
    parser.add_argument("--output", required=True, help="folder to write <manipulation>/<camera>/*.png into")
    parser.add_argument(
        "--tiles", type=tiles_argument, default="center",
        help="'center' for the single centre crop (default) or N for up to N non-overlapping tiles",
    )  # fmt: skip
    parser.add_argument(
        "--manipulations", default=None, help=f"comma-separated subset of {', '.join(MANIPULATIONS)} (default: all)"
    )
    parser.add_argument("--size", type=int, default=512, help="crop side in pixels (default 512)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: one per core)")
    add_max_pixels_argument(parser)
    return parser


def add_max_pixels_argument(parser: argparse.ArgumentParser) -> None:
    """--max_pixels, for every command that reads photos."""
    parser.add_argument(
        "--max_pixels", type=at_least(1), default=MAX_PIXELS,
        help=f"refuse, unread, an image whose header claims more pixels (default {MAX_PIXELS:,}, Pillow's limit)",
    )  # fmt: skip


def prepare_main(argv: list[str] | None = None) -> PrepareSummary:
    parser = prepare_parser()
    args = parser.parse_args(argv)
    names = None if args.manipulations is None else [n for n in args.manipulations.split(",") if n.strip()]
    try:
        with disk_full_as_user_error("every image written is whole; free space and rerun to make the rest"):
            summary = prepare_dataset(
                args.input, args.output, args.tiles, names, args.size, args.workers, max_pixels=args.max_pixels
            )
    except CamlitError as error:
        parser.exit(2, f"error: {error}\n")
    print(summary)
    return summary


def at_least(minimum: int):
    """An argparse type: an integer no smaller than `minimum`."""

    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {minimum} or more, not {value}")
        return value

    return parse


def synthetic_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="make_synthetic.py", description="Write the synthetic Kaggle-shaped camera data set."
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--output", type=Path, help="folder to write the demo's set into, or to finish")
    where.add_argument(
        "--kaggle_layout", type=Path, metavar="OUT",
        help="write a download shaped like Kaggle's archive instead (train/, test/, sample_submission.csv, "
        "and the truth CSVs), or finish one",
    )  # fmt: skip
    parser.add_argument("--images-per-camera", type=at_least(0), default=30, help="train photos per camera")
    parser.add_argument("--test-per-camera", type=at_least(0), default=48, help="test photos per camera")
    parser.add_argument(
        "--test_images", type=at_least(0), default=DEFAULT_TEST_IMAGES,
        help=f"with --kaggle_layout: test images, a multiple of 20 (default {DEFAULT_TEST_IMAGES})",
    )  # fmt: skip
    parser.add_argument(
        "--width", type=at_least(1), default=None,
        help=f"frame width in pixels (default 1024, or {KAGGLE_WIDTH} with --kaggle_layout)",
    )  # fmt: skip
    parser.add_argument(
        "--height", type=at_least(1), default=None,
        help=f"frame height in pixels (default 768, or {KAGGLE_HEIGHT} with --kaggle_layout)",
    )  # fmt: skip
    parser.add_argument("--seed", type=at_least(0), default=0, help="the same seed writes the same bytes")
    parser.add_argument("--workers", type=at_least(1), default=None, help="processes (default: all cores)")
    return parser


def synthetic_main(argv: list[str] | None = None) -> Path:
    parser = synthetic_parser()
    args = parser.parse_args(argv)
    try:
        with disk_full_as_user_error("every file written is whole; free space and rerun to make the rest"):
            if args.kaggle_layout is not None:
                output = make_kaggle_layout(
                    args.kaggle_layout,
                    args.images_per_camera,
                    args.test_images,
                    args.width or KAGGLE_WIDTH,
                    args.height or KAGGLE_HEIGHT,
                    args.seed,
                    args.workers,
                )
            else:
                output = make_synthetic(
                    args.output,
                    args.images_per_camera,
                    args.test_per_camera,
                    args.width or 1024,
                    args.height or 768,
                    args.seed,
                    args.workers,
                )
    except CamlitError as error:  # a frame too small, a folder of other settings, an unwritable or full disk
        parser.exit(2, f"error: {error}\n")
    print(output)
    return output
