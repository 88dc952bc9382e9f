"""Cut the training photos into manipulated crops, the way Kaggle made its test set.

    python scripts/prepare_data.py --input data/train --output data-512 [--tiles center|N]
        [--manipulations a,b,...] [--size 512] [--workers N]

Writes <output>/<manipulation>/<camera>/<stem>.png (or <stem>_t<k>.png with --tiles N); a rerun
only makes what is missing. See camlit.prepare.
"""

from __future__ import annotations

import argparse

from camlit.errors import CamlitError, disk_full_as_user_error
from camlit.manipulations import MANIPULATIONS
from camlit.prepare import PrepareSummary, prepare_dataset


def tiles_argument(text: str) -> str | int:
    if text == "center":
        return text
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise argparse.ArgumentTypeError(f"expected 'center' or a positive number, not {text!r}")


def main(argv: list[str] | None = None) -> PrepareSummary:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--input", required=True, help="folder of <camera>/ folders of full-size photos")
    parser.add_argument("--output", required=True, help="folder to write <manipulation>/<camera>/*.png into")
    parser.add_argument(
        "--tiles",
        type=tiles_argument,
        default="center",
        help="'center' for the single centre crop (default) or N for up to N non-overlapping tiles",
    )
    parser.add_argument(
        "--manipulations",
        default=None,
        help=f"comma-separated subset of {', '.join(MANIPULATIONS)} (default: all)",
    )
    parser.add_argument("--size", type=int, default=512, help="crop side in pixels (default 512)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: one per core)")
    args = parser.parse_args(argv)
    names = None if args.manipulations is None else [n for n in args.manipulations.split(",") if n.strip()]
    try:
        with disk_full_as_user_error("every image written is whole; free space and rerun to make the rest"):
            summary = prepare_dataset(args.input, args.output, args.tiles, names, args.size, args.workers)
    except CamlitError as error:
        parser.exit(2, f"error: {error}\n")
    print(summary)
    return summary


if __name__ == "__main__":
    main()
