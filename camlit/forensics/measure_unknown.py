"""The open-set scores side by side on known and unknown photos (scripts/measure_forensics.py --only unknown).

Every model output (the crops' logits and features of the run's training and validation photos,
of the known test set and of the unknown cameras) is computed once into the work folder.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from camlit.data.forensic_sets import unknown_manipulation_of
from camlit.data.manipulations import UNALTERED
from camlit.data.samples import manipulated_from_name
from camlit.data.undo import camera_table
from camlit.forensics.calibrate import calibration_rows, photo_rows, recompressed_first_tables, run_split
from camlit.imageio import list_images, read_rgb
from camlit.inference import openset_fit
from camlit.inference.features import softmax
from camlit.inference.labelled import labelled_csv
from camlit.inference.openset import feature_layer
from camlit.inference.openset_report import auroc, unknown_report
from camlit.inference.openset_steps import reads_quantization, split_steps, step_mismatch
from camlit.inference.tta import CropPlan


def cached_rows(path: Path, compute):
    """(logits, features, labels, manipulated flags) per photo, computed once into `path`."""
    if not path.is_file():
        logits, features, labels, flags = compute()
        np.savez(
            path, logits=np.stack(logits), features=np.stack(features), labels=np.asarray(labels),
            manipulated=np.asarray(flags, bool),
        )  # fmt: skip
    with np.load(path) as data:
        return list(data["logits"]), list(data["features"]), data["labels"], data["manipulated"]


def unknown_rows(model, size, args, reads: tuple[str, bool]) -> dict:
    """Logits, the (layer, quantization) features and manipulated flags per photo of the run's
    training (unaltered) and validation photos, the known test set and the unknown photos, each
    computed once into --work."""
    work = Path(args.work)
    layer, quantization = reads
    suffix = ("" if layer == "pooled" else f"_{layer}") + ("_jpeg" if quantization else "")
    plan = CropPlan(size=size, count=args.crops, grid=args.crop_grid)
    train, val = run_split(args.ckpt_path, model.classes, args.train_dir)
    # Fitted on the unaltered training photos, as calibrate.calibrated does.
    unaltered = [s for s in train if s.manipulation == UNALTERED] or list(train)
    _, features, labels, _ = cached_rows(
        work / f"train{suffix}.npz",
        lambda: calibration_rows(model, unaltered, plan, only_as_they_are=True, layer=layer, quantization=quantization),
    )
    rows = {"train": (features, labels)}
    if quantization:
        bank = work / "first_tables.npy"
        if not bank.is_file():
            np.save(bank, recompressed_first_tables(unaltered))
        rows["first_tables"] = np.load(bank)
    rows["val"] = cached_rows(
        work / f"val{suffix}.npz", lambda: calibration_rows(model, val, plan, layer=layer, quantization=quantization)
    )
    images = labelled_csv(args.known, Path(args.known).parent / "test_labels.csv", model.classes)
    known_flags = np.array([image.manipulated for image in images])

    def known_rows():
        logits, features, usable = photo_rows(
            model, [i.path for i in images], plan, layer=layer, quantization=quantization, manipulated=list(known_flags)
        )
        return logits, features, np.array([i.label for i in images])[usable], known_flags[usable]

    rows["known"] = cached_rows(work / f"known{suffix}.npz", known_rows)

    def unknown_photo_rows(folder: Path):
        paths = list_images(folder)
        flags = np.array([manipulated_from_name(p) for p in paths])
        logits, features, usable = photo_rows(
            model, paths, plan, layer=layer, quantization=quantization, manipulated=list(flags)
        )
        return logits, features, [], flags[usable]

    rows["unknown"] = cached_rows(
        work / f"unknown{suffix}.npz", lambda: unknown_photo_rows(Path(args.sets) / "unknown")
    )
    if args.tune_unknown:
        rows["tune_unknown"] = cached_rows(
            work / f"tune_unknown{suffix}.npz", lambda: unknown_photo_rows(Path(args.tune_unknown))
        )
    return rows


def measure_unknown(model, size, args) -> dict:
    scores = args.scores.split(",")
    reads = {score: (feature_layer(score), reads_quantization(score)) for score in scores}
    rows = {read: unknown_rows(model, size, args, read) for read in sorted(set(reads.values()))}
    # Every layer's rows carry the same logits.
    known_logits, _, known_labels, known_flags = next(iter(rows.values()))["known"]
    # As evaluate.py scores by default: the mean softmax of the crops.
    correct = np.array([softmax(logits).mean(axis=0).argmax() for logits in known_logits]) == known_labels
    figures = {
        "closed_set_accuracy": {
            "unaltered": float(correct[~known_flags].mean()),
            "manipulated": float(correct[known_flags].mean()),
        }
    }
    for score in scores:
        layer = rows[reads[score]]
        (train_features, train_labels), (val_logits, val_features, _, val_flags) = layer["train"], layer["val"]
        fitted = openset_fit.fit(score, train_features, train_labels, len(model.classes), layer.get("first_tables"))
        plan = CropPlan(size=size, count=args.crops, grid=args.crop_grid)
        fitted.calibrate(fitted.scores(val_logits, val_features, val_flags), plan, val_flags)
        known = fitted.scores(*layer["known"][:2], layer["known"][3])
        unknown_logits, unknown_features, _, unknown_flags = layer["unknown"]
        unknown = fitted.scores(unknown_logits, unknown_features, unknown_flags)
        figures[score] = unknown_report(known, layer["known"][3], unknown, unknown_flags, fitted)
        figures[score]["manipulated_auroc_by_manipulation"] = by_manipulation(
            known[layer["known"][3]], unknown, list_images(Path(args.sets) / "unknown")
        )
        if reads_quantization(score):
            figures[score]["steps"] = step_figures(fitted, layer["known"], layer["unknown"])
            if "tune_unknown" in layer:
                # The weight chosen without the test photos: the run's validation photos against
                # unknown photos of another seed.
                tune = step_figures(fitted, layer["val"], layer["tune_unknown"])
                figures[score]["steps"]["tune_auroc_by_weight"] = tune["auroc_by_weight"]
    if any(reads_quantization(score) for score in scores):
        figures["quantization_seconds_per_photo"] = quantization_seconds(list_images(Path(args.sets) / "unknown"))
    return figures


def by_manipulation(known_manipulated: np.ndarray, unknown: np.ndarray, paths) -> dict:
    """Per manipulation, the AUROC of the unknown photos under it against every known manipulated
    photo, and how many there are (the unknown rows follow list_images' order; none where one
    was unusable)."""
    if len(paths) != len(unknown):
        return {}
    kinds = np.array([unknown_manipulation_of(path.name) for path in paths])
    return {
        kind: {"unknown": int((kinds == kind).sum()), "auroc": auroc(known_manipulated, unknown[kinds == kind])}
        for kind in dict.fromkeys(sorted(kinds))
        if kind != UNALTERED
    }


WEIGHTS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)


def step_figures(fitted, known_rows, unknown_rows) -> dict:
    """For the unaltered photos (and under "undone" for the manipulated ones where a manipulation
    was undone): the AUROC of the step mismatch alone, the share of photos with a step differing
    from the nearest training photo's, and the score's AUROC with the mismatch weighed WEIGHTS
    times its default weight; and the share of manipulated photos where one was undone."""
    weight = float(fitted.arrays["step_weight"])
    tables = {}
    for name, (_, features, _, flags) in (("known", known_rows), ("unknown", unknown_rows)):
        stems, steps, _, undone = split_steps(features)
        tables[name] = (
            fitted.distance_scores(stems), step_mismatch(steps, fitted.arrays["steps"], undone > 0),
            np.asarray(flags, bool), undone > 0,
        )  # fmt: skip

    def figures(kind: str) -> dict:
        parts = {}
        for name, (distance, mismatch, flags, undone) in tables.items():
            chosen = ~flags if kind == "unaltered" else flags & undone
            parts[name] = distance[chosen], mismatch[chosen]
        (known_distance, known_mismatch), (unknown_distance, unknown_mismatch) = parts["known"], parts["unknown"]
        return {
            "mismatch_alone_auroc": auroc(known_mismatch, unknown_mismatch),
            "known_with_a_differing_step": float(np.mean(known_mismatch > 0)),
            "unknown_with_a_differing_step": float(np.mean(unknown_mismatch > 0)),
            "auroc_by_weight": {
                f"{factor:g}x": auroc(
                    known_distance + factor * weight * known_mismatch,
                    unknown_distance + factor * weight * unknown_mismatch,
                )
                for factor in WEIGHTS
            },
        }

    undone_share = {name: float(undone[flags].mean()) for name, (_, _, flags, undone) in tables.items()}
    return {"weight": weight, **figures("unaltered"), "undone": figures("undone"), "manipulated_undone": undone_share}


def quantization_seconds(paths) -> float:
    """The mean time of one photo's camera_table (camlit.data.undo), one core."""
    images = [read_rgb(path) for path in paths]
    start = time.perf_counter()
    for image in images:
        camera_table(image)
    return (time.perf_counter() - start) / max(1, len(images))
