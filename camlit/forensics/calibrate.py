"""`camlit calibrate`: fit the open-set score on a run's training photos and set its
thresholds on the run's validation photos, into `<checkpoint stem>.unknown.npz` beside the checkpoint.

The split is the run's own: the checkpoint's DataModule settings (train_dir, val_fraction, seed)
through camlit.data.samples, so the validation photos are exactly those the run held out. The
score is fitted on unaltered training photos; the thresholds are set on validation photos of both
kinds: a prepared tree's manipulation folders, or else each photo also under each of Kaggle's
eight manipulations, applied whole before cropping, as Kaggle made its test set.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path

import numpy as np

from camlit.atomic import json_text, require_writable, write_all_atomic
from camlit.data import manipulations
from camlit.data.commands import at_least
from camlit.data.crops import center_crop
from camlit.data.quantization import FREQUENCIES, SIDE, steps_and_phase
from camlit.data.recompression import first_steps
from camlit.data.samples import Sample, check_images, scan, split_by_photo
from camlit.errors import CamlitError, PlainParser, disk_full_as_user_error, exit_on_user_error, not_a_folder
from camlit.forensics import splice
from camlit.forensics.camera_map import map_from_rows, predict_tiles
from camlit.imageio import MAX_PIXELS, UnreadableImage, read_rgb
from camlit.inference import openset, openset_fit
from camlit.inference.features import WithFeatures, split_extras
from camlit.inference.loading import load_checkpoint, require_checkpoint_file
from camlit.inference.openset_steps import RECOMPRESSIONS
from camlit.inference.options import report_problems
from camlit.inference.running import few, predict_paths
from camlit.inference.tta import DEFAULT_CROP_SIZE, DEFAULT_CROPS, MAX_CROPS, CropPlan
from camlit.termination import exit_on_signal
from camlit.training.checkpointing import CHECKPOINT_HASH, file_hash, load_plain, require_calibrations_not_of_a_sibling

SPLICE_PHOTOS = 100
STEADY_PHOTOS = 100  # fewer, and the 95th percentile is one of the 5 highest scores
KAGGLE_SIDE = 512  # the side of Kaggle's test images
DEFAULT_SCORE = "relative_stem_jpeg"  # the best of the seven on the demo model (docs/forensics_measurements.md)


# The run's data options calibrate reads, of the types fit saves them.
RUN_OPTIONS = {
    "train_dir": str, "val_dir": str, "val_fraction": float, "crop_size": int, "num_workers": int, "seed": int,
    "max_pixels": int,
}  # fmt: skip


def run_options(checkpoint: str | os.PathLike) -> dict:
    """The data options the run saved in its checkpoint, each of the type fit saves: another value
    ended in a traceback from deep in the split."""
    hparams = load_plain(Path(checkpoint), mmap=True).get("datamodule_hyper_parameters") or {}
    unusable = f"--ckpt_path {checkpoint}: not a usable camlit checkpoint"
    if not isinstance(hparams, dict):
        raise CamlitError(f"{unusable} (its datamodule_hyper_parameters are a {type(hparams).__name__})")
    for key, kind in RUN_OPTIONS.items():
        value = hparams.get(key)
        number = kind is float and isinstance(value, int)
        wrong_type = isinstance(value, bool) or not (isinstance(value, kind) or number)
        if value is not None and (wrong_type or kind is int and value < 0):
            raise CamlitError(f"{unusable} (its data option {key} is {value!r})")
    if not 0 < hparams.get("val_fraction", 0.2) < 1 and not hparams.get("val_dir"):
        raise CamlitError(f"{unusable} (its data option val_fraction is {hparams['val_fraction']!r})")
    return hparams


def run_split(checkpoint: str | os.PathLike, classes: Sequence[str], train_dir: str | None = None):
    """(training samples, validation samples) as the run split them: of its usable photos only, as
    fit splits them (one unreadable photo moved the draw: some photos it trained on were taken for
    held-out ones)."""
    hparams = run_options(checkpoint)
    if train_dir and not Path(train_dir).is_dir():
        raise CamlitError(f"--train_dir {train_dir}: {not_a_folder(train_dir)}; name the run's training folder")
    if not train_dir:
        train_dir = hparams.get("train_dir")
        if not train_dir:
            raise CamlitError(f"{checkpoint}: it names no training folder; give the run's with --train_dir")
        if not Path(train_dir).is_dir():
            raise CamlitError(
                f"{checkpoint}: its run's training folder {train_dir} is not there (from {Path.cwd()}); "
                "give it with --train_dir"
            )
    # The classes are the checkpoint's: a folder with other cameras is not the run's.
    remedy = "those are the checkpoint's: name the run's own training folder with --train_dir"

    def usable(samples: list[Sample]) -> list[Sample]:
        kept, problems = check_images(
            samples, hparams.get("crop_size", 0), hparams.get("num_workers", 0), hparams.get("max_pixels", MAX_PIXELS)
        )
        report_problems(dict(enumerate(problems)), [], skip=True)
        return kept

    samples = usable(scan(train_dir, classes, remedy))
    if hparams.get("val_dir"):
        return samples, usable(scan(hparams["val_dir"], classes, remedy))
    return split_by_photo(samples, hparams.get("val_fraction", 0.2), hparams.get("seed", 0))


def photo_rows(
    model,
    paths: Sequence[str | os.PathLike],
    plan: CropPlan,
    layer: str = "pooled",
    quantization: bool = False,
    **options,
):
    """Per usable photo, its crops' (logits, `layer`'s features [, the photo's camera_table]);
    and which paths were usable."""
    predictions = predict_paths(WithFeatures(model, layer, quantization), paths, plan, **options)
    # Left out as fit leaves them out of the run, but named: a calibration on fewer photos than
    # the folder holds should not pass unseen.
    report_problems(predictions.problems, predictions.paths, skip=True)
    usable = predictions.usable
    rows = [split_extras(predictions.extras[i], len(model.classes)) for i in np.flatnonzero(usable)]
    return [logits for logits, _ in rows], [features for _, features in rows], usable


class ReadManipulated:
    """A reader that gives each photo under its manipulation (`names`: path -> manipulation), whole,
    then its centre `side` x `side` crop when `side` is given (Kaggle's test images are such crops)."""

    def __init__(self, names: dict[str, str], side: int | None = None):
        self.names = names
        self.side = side

    def __call__(self, path: str | os.PathLike):
        image = manipulations.apply(self.names[str(path)], read_rgb(path))
        if self.side is None or min(image.shape[:2]) <= self.side:
            return image
        return center_crop(image, self.side)


def calibration_rows(model, samples: Sequence[Sample], plan: CropPlan, only_as_they_are: bool = False, **options):
    """(logits, features, labels, manipulated) per usable photo: the samples as they are and, when
    none of them is manipulated (and not `only_as_they_are`), each also under every one of Kaggle's
    eight manipulations: a run holds out few photos (the demo 60), and a 95th percentile of 60
    manipulated scores rests on 3 of them."""
    flags = np.array([s.manipulation != manipulations.UNALTERED for s in samples], bool)
    labels = np.array([s.label for s in samples])
    logits, features, usable = photo_rows(model, [s.path for s in samples], plan, manipulated=list(flags), **options)
    if flags.any() or only_as_they_are or not len(samples):
        return logits, features, labels[usable], flags[usable]
    # The usable photos only: an unusable one was named once already.
    kept = np.flatnonzero(usable)
    all_labels, all_flags = [labels[usable]], [flags[usable]]
    for kind in manipulations.MANIPULATED:
        names = {str(samples[i].path): kind for i in kept}
        more_logits, more_features, more_usable = photo_rows(
            model, list(names), plan, reader=ReadManipulated(names), manipulated=[True] * len(names), **options
        )
        logits, features = logits + more_logits, features + more_features
        all_labels.append(labels[kept][more_usable])
        all_flags.append(np.ones(int(more_usable.sum()), bool))
    return logits, features, np.concatenate(all_labels), np.concatenate(all_flags)


# A JPEG's minimum coded unit with chroma halved both ways: 16 x 16 px.
MCU = 16


def recompressed_first_tables(samples: Sequence[Sample]) -> np.ndarray:
    """(photos x recompressions, 27): each training photo's first table after each of Kaggle's
    recompressions, read on its centre as camera_table reads a test photo's: the reader rounds a
    first step its own way, so the bank must be read by it too. The centre is saved again rather
    than the whole photo: on the photo's 16 px grid (a JPEG's largest block, with chroma halved),
    its blocks are those of the whole photo saved again, at a fraction of the work on a large photo.
    It starts on the camera's 8 px grid as the photo shows it: Kaggle saved the full frame again,
    on the camera's grid, and a training crop need not start on it (camlit prepare cuts at even
    offsets); saved again off the grid, no first table shows."""
    rows = []
    for sample in samples:
        try:
            image = read_rgb(sample.path)
        except UnreadableImage:
            continue  # named by the pass through the model
        height, width = image.shape[:2]
        top, left = (max(0, (extent - SIDE) // 2) // MCU * MCU for extent in (height, width))
        _, (dy, dx) = steps_and_phase(image[top : top + SIDE, left : left + SIDE])
        region = image[top + dy : top + dy + SIDE, left + dx : left + dx + SIDE]
        rows += [first_steps(manipulations.apply(name, region)) for name in RECOMPRESSIONS]
    return np.array(rows, dtype=np.float32).reshape(-1, len(FREQUENCIES))


def calibrated(score: str, model, train, val, plan: CropPlan, **options) -> openset.OpenSetModel:
    """The open-set score fitted on the unaltered training photos (fitted on manipulated ones too, the
    demo model's Mahalanobis AUROC fell from 0.703 to 0.650), its two thresholds set on the
    validation photos of each kind."""
    # A prepared tree without an unaltered folder: fitted on what there is.
    unaltered = [s for s in train if s.manipulation == manipulations.UNALTERED] or list(train)
    options = {**options, "layer": openset.feature_layer(score), "quantization": openset.reads_quantization(score)}
    _, train_features, train_labels, _ = calibration_rows(model, unaltered, plan, only_as_they_are=True, **options)
    require_photos_of_every_camera(score, train_labels, model.classes)
    tables = recompressed_first_tables(unaltered) if openset.reads_quantization(score) else None
    fitted = openset_fit.fit(score, train_features, train_labels, len(model.classes), tables)
    val_logits, val_features, _, val_flags = calibration_rows(model, val, plan, **options)
    if not len(val_flags):
        raise CamlitError(
            f"no usable validation photo to set the threshold on (the run held out {len(val)} of its training "
            "folder); calibrate a run that holds some out (--data.val_fraction)"
        )
    fitted.calibrate(fitted.scores(val_logits, val_features, val_flags), plan, val_flags)
    return fitted


def require_photos_of_every_camera(score: str, labels: np.ndarray, classes: Sequence[str]) -> None:
    """A score that models each camera (a mean, and the spread about it) needs two photos of each."""
    if not openset.models_each_camera(score):
        return
    counts = np.bincount(np.asarray(labels, np.int64), minlength=len(classes))
    short = [f"{name} ({count})" for name, count in zip(classes, counts, strict=True) if count < 2]
    if short:
        raise CamlitError(
            f"--score {score} needs at least 2 usable training photos (unaltered ones, where there are) of every "
            f"camera of the checkpoint, in the run's training folder (or --train_dir); too few of {few(short)}"
        )


def splice_thresholds(model, samples: Sequence[Sample], size: int, photos: int, **options) -> dict:
    """Each splice method's photo threshold (the lattice's apart for photos whose gamma was undone),
    set so that at most 5% of the run's clean validation photos get a foreign region: up to
    `photos` of them (a seeded draw), each taken unaltered or, on a flat tree, every other one
    under one of Kaggle's manipulations, as a 512 px centre crop."""
    rng = np.random.default_rng(0)
    chosen = [samples[i] for i in sorted(rng.permutation(len(samples))[:photos])]
    kinds = manipulations.MANIPULATED
    flat = all(s.manipulation == manipulations.UNALTERED for s in chosen)
    names = {
        str(s.path): kinds[(i // 2) % len(kinds)] if flat and i % 2 else s.manipulation for i, s in enumerate(chosen)
    }
    reader = ReadManipulated(names, side=KAGGLE_SIDE)
    flags = [name != manipulations.UNALTERED for name in names.values()]
    predictions = predict_tiles(model, list(names), size, manipulated=flags, reader=reader, **options)
    report_problems(predictions.problems, predictions.paths, skip=True)
    scores = {key: [] for key in [*splice.SCORERS, splice.GAMMA_KEY]}
    usable = np.flatnonzero(predictions.usable)
    for index in usable:
        path = predictions.paths[index]
        camera_map = map_from_rows(reader(path), model.classes, size, predictions.extras[index])
        for method, scorer in splice.SCORERS.items():
            scores[splice.threshold_key(method, camera_map)].append(scorer(camera_map).photo_score)
    if not len(usable):
        raise CamlitError(f"no validation photo is large enough for {size} px tiles")
    # Strictly above the 95th percentile: a photo scoring at a threshold gets a region. Of the photos
    # a method can judge: the lattice method gives no region to a photo showing no JPEG table, and
    # a threshold set mostly on such photos would give one to every photo that shows a table.
    thresholds = {}
    for method, values in scores.items():
        judged = [value for value in values if np.isfinite(value)]
        thresholds[method] = splice.PHOTO_THRESHOLDS[method]
        if judged:
            thresholds[method] = float(np.nextafter(np.quantile(judged, openset.ACCEPT, method="higher"), np.inf))
    return {"photo_thresholds": thresholds, "clean_photos": len(usable)}


def build_parser() -> PlainParser:
    parser = PlainParser(
        prog="camlit calibrate",
        description="Fit the unknown-camera score on a run's training photos and set the threshold that accepts "
        "95% of its validation photos; camlit predict --unknown reads the file written beside the checkpoint.",
    )
    parser.add_argument("--ckpt_path", required=True, help="checkpoint written by camlit fit")
    parser.add_argument("--train_dir", default=None, help="the run's training folder (default: the checkpoint's)")
    parser.add_argument("--score", choices=openset.SCORES, default=DEFAULT_SCORE, help=f"default {DEFAULT_SCORE}")
    parser.add_argument(
        "--crops", type=at_least(1, MAX_CROPS), default=DEFAULT_CROPS, help="crops per photo, as predict's"
    )
    parser.add_argument("--crop_grid", action="store_true", help="take --crops crops on an even grid, as predict's")
    parser.add_argument(
        "--splice_photos", type=at_least(0), default=SPLICE_PHOTOS,
        help=f"validation photos mapped tile by tile to set the splice photo thresholds (default {SPLICE_PHOTOS}; "
        "0: leave the splice thresholds as they are)",
    )  # fmt: skip
    parser.add_argument("--batch_size", type=at_least(1), default=128, help="crops per forward pass")
    parser.add_argument("--device", default="auto", help="auto (default: cuda when available), cpu, cuda, cuda:1")
    return parser


def main(argv: list[str] | None = None) -> openset.OpenSetModel:
    args = build_parser().parse_args(argv)
    kept = "the calibration files beside the checkpoint are as they were"
    with exit_on_user_error(), exit_on_signal(kept):
        require_checkpoint_file(args.ckpt_path)  # before it is hashed, or a calibration file probed beside it
        # Before the work, not after it: the files go beside the checkpoint, and neither changes
        # unless both can be written.
        sidecars = [openset.calibration_path(args.ckpt_path)]
        sidecars += [splice.calibration_path(args.ckpt_path)] if args.splice_photos else []
        for path in sidecars:
            if path.is_dir():
                raise CamlitError(f"--ckpt_path: {path} beside it is a folder; calibrate writes a file there")
            require_writable(path, "--ckpt_path")
        loaded = None
        with suppress(OSError):  # what cannot be read, load_checkpoint names
            loaded = file_hash(args.ckpt_path)
        require_calibrations_not_of_a_sibling(args.ckpt_path, sidecars, loaded or "")
        model, size = load_checkpoint(args.ckpt_path, args.device)
        train, val = run_split(args.ckpt_path, model.classes, args.train_dir)
        plan = CropPlan(size=size or DEFAULT_CROP_SIZE, count=args.crops, grid=args.crop_grid)
        options = {"batch_size": args.batch_size, "device": args.device}
        fitted = calibrated(args.score, model, train, val, plan, **options)
        splices = (
            splice_thresholds(model, val, plan.size, args.splice_photos, **options) if args.splice_photos else None
        )
        # Each file names the weights it was set for: beside a checkpoint written again, it is refused.
        if loaded is None or file_hash(args.ckpt_path) != loaded:
            # A run still saving there: these thresholds are the old weights', the file the new ones.
            raise CamlitError(f"--ckpt_path {args.ckpt_path}: written again while calibrating; calibrate once it stays")
        fitted.checkpoint_sha256 = loaded
        if splices:
            splices[CHECKPOINT_HASH] = fitted.checkpoint_sha256
        files = {openset.calibration_path(args.ckpt_path): fitted.npz()}
        if splices:
            files[splice.calibration_path(args.ckpt_path)] = json_text(splices).encode()
        # Both or neither: a failure between two writes left a new file beside an old one.
        with disk_full_as_user_error("the calibration files are written all together or not at all"):
            write_all_atomic(files)
    unaltered, manipulated = fitted.photos
    print(f"{args.score} thresholds {fitted.threshold:.4g} (unaltered) and {fitted.threshold_manipulated:.4g} "
          f"(manipulated) accept 95% of the {unaltered} unaltered and {manipulated} manipulated validation photos; "
          f"written to {openset.calibration_path(args.ckpt_path)}")  # fmt: skip
    if min(unaltered, manipulated) < STEADY_PHOTOS:
        print(f"note: a 95th percentile of fewer than {STEADY_PHOTOS} photos rests on its few highest scores; "
              "a run holding out more photos (--data.val_fraction) gets steadier thresholds")  # fmt: skip
    if splices:
        print(f"splice photo thresholds give a region to at most 5% of {splices['clean_photos']} clean validation "
              f"photos; written to {splice.calibration_path(args.ckpt_path)}")  # fmt: skip
    return fitted
