"""Write the synthetic Kaggle-shaped camera data set; the work is camlit.data.synthetic.make_synthetic.

python scripts/make_synthetic.py --output data/synthetic [--images-per-camera 30]
    [--test-per-camera 48] [--width 1024 --height 768] [--seed 0] [--workers N]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from camlit.data.synthetic import make_synthetic


def count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True, help="folder to write, or to finish")
    parser.add_argument("--images-per-camera", type=count, default=30, help="train photos per camera")
    parser.add_argument("--test-per-camera", type=count, default=48, help="test photos per camera")
    parser.add_argument("--width", type=positive, default=1024, help="frame width in pixels")
    parser.add_argument("--height", type=positive, default=768, help="frame height in pixels")
    parser.add_argument("--seed", type=count, default=0, help="the same seed writes the same bytes")
    parser.add_argument("--workers", type=positive, default=None, help="processes (default: all cores)")
    args = parser.parse_args(argv)
    try:
        output = make_synthetic(
            args.output,
            args.images_per_camera,
            args.test_per_camera,
            args.width,
            args.height,
            args.seed,
            args.workers,
        )
    except ValueError as error:  # a frame too small for a test crop, or a folder of other settings
        parser.error(str(error))
    print(output)


if __name__ == "__main__":
    main()
