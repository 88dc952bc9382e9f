"""How much of the synthetic cameras' traces each manipulation leaves in a small crop: a gauge.

    python scripts/residual_statistics.py [--data data/synthetic/train] [--crop 64] [--crops 4]

26 noise-residual statistics per crop (energy per channel, its share on each 2x2 CFA phase,
neighbour correlations) and a softmax regression, fitted per manipulation on `--crops` random
even-offset crops of each manipulated training photo and scored on the centre crop of each
manipulated validation photo (the demo's split: 20% of the photos of each camera, seed 0). This
is the "statistics, per manipulation" column of docs/experiments.md: research, not a camlit command.
"""

from __future__ import annotations

import cv2
import numpy as np

from camlit.cameras import KAGGLE_CAMERAS
from camlit.data.crops import MIN_CROP_SIZE, center_crop, crop, random_offset
from camlit.data.manipulations import MANIPULATIONS, apply
from camlit.data.samples import scan, split_by_photo
from camlit.errors import CamlitError, PlainParser, exit_on_user_error
from camlit.imageio import read_rgb


def residual_features(image_crop: np.ndarray) -> np.ndarray:
    """Noise-residual statistics: energy per channel, its share on each 2x2 CFA phase, correlations."""
    image = image_crop.astype(np.float32)
    residual = (image - cv2.blur(image, (3, 3)))[1:-1, 1:-1]
    energy = (residual**2).mean(axis=(0, 1)) + 1e-3
    phases = [(residual[i::2, j::2] ** 2).mean(axis=(0, 1)) + 1e-3 for i in (0, 1) for j in (0, 1)]
    across = (residual[:, 1:] * residual[:, :-1]).mean(axis=(0, 1)) / energy
    down = (residual[1:] * residual[:-1]).mean(axis=(0, 1)) / energy
    return np.concatenate([np.log(energy), *(np.log(p / energy) for p in phases), across, down])


def held_out_accuracy(features: np.ndarray, labels: np.ndarray, train: np.ndarray, steps: int = 500) -> float:
    """Softmax regression fitted by gradient descent on the `train` rows, scored on the others."""
    mean, std = features[train].mean(0), features[train].std(0) + 1e-6
    inputs = np.hstack([(features - mean) / std, np.ones((len(features), 1))])
    targets = np.eye(len(KAGGLE_CAMERAS))[labels[train]]
    weights = np.zeros((inputs.shape[1], len(KAGGLE_CAMERAS)))
    for _ in range(steps):
        logits = inputs[train] @ weights
        probabilities = np.exp(logits - logits.max(1, keepdims=True))
        probabilities /= probabilities.sum(1, keepdims=True)
        weights -= 0.5 * (inputs[train].T @ (probabilities - targets) / len(targets) + 1e-3 * weights)
    return float(((inputs[~train] @ weights).argmax(1) == labels[~train]).mean())


def manipulation_accuracy(photos, train_paths: set[str], name: str, side: int, crops: int) -> float:
    rng = np.random.default_rng(0)
    features, labels, train = [], [], []
    for sample in photos:
        photo = apply(name, read_rgb(sample.path))
        if min(photo.shape[:2]) < side:
            height, width = photo.shape[:2]
            raise CamlitError(f"--crop {side}: larger than {sample.path} after {name} ({width}x{height})")
        is_train = sample.path in train_paths
        if is_train:
            offsets = [random_offset(*photo.shape[:2], side, rng) for _ in range(crops)]
            pieces = [crop(photo, top, left, side) for top, left in offsets]
        else:
            pieces = [center_crop(photo, side)]
        features += [residual_features(piece) for piece in pieces]
        labels += [sample.label] * len(pieces)
        train += [is_train] * len(pieces)
    return held_out_accuracy(np.array(features, np.float32), np.array(labels), np.array(train))


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = PlainParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/synthetic/train", help="root/<camera>/* photos")
    parser.add_argument("--crop", type=int, default=64, help="crop side in pixels")
    parser.add_argument("--crops", type=int, default=4, help="random crops per training photo")
    args = parser.parse_args(argv)
    with exit_on_user_error():
        if args.crop < MIN_CROP_SIZE:
            raise CamlitError(f"--crop must be at least {MIN_CROP_SIZE}, got {args.crop}")
        if args.crops < 1:
            raise CamlitError(f"--crops must be at least 1, got {args.crops}")
        photos = scan(args.data, KAGGLE_CAMERAS)
        train, _ = split_by_photo(photos, 0.2, seed=0)
        train_paths = {sample.path for sample in train}
        results = {
            name: manipulation_accuracy(photos, train_paths, name, args.crop, args.crops) for name in MANIPULATIONS
        }
    for name, accuracy in results.items():
        print(f"{name:12} {100 * accuracy:5.1f}%")
    return results
