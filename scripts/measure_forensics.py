"""Measure camlit.forensics on the measuring sets: open-set scores and splice methods, side by side.

`python scripts/measure_forensics.py --ckpt_path last.ckpt --sets DIR --tune DIR --known data/synthetic/test
--json docs/results/forensics.json --work /tmp/measure`

Every model output is computed once and kept in --work (rerunning reuses it): crops' logits and
features of the run's training and validation photos, of the known test set and of the unknown
cameras; the tile maps of every splice photo. Splice thresholds are chosen on --tune (another
seed of the same generator) and reported on --sets.
"""

from __future__ import annotations

import datetime
import json
import time
from pathlib import Path

import numpy as np

from camlit.atomic import write_text_atomic
from camlit.data.forensic_sets import unknown_manipulation_of
from camlit.data.manipulations import UNALTERED
from camlit.data.samples import manipulated_from_name
from camlit.data.undo import camera_table
from camlit.errors import CamlitError, PlainParser, exit_on_user_error
from camlit.forensics import splice
from camlit.forensics.calibrate import calibration_rows, photo_rows, recompressed_first_tables, run_split
from camlit.forensics.camera_map import CameraMap, map_from_rows, photo_lattice, predict_tiles
from camlit.forensics.masks import foreign_region
from camlit.forensics.picture import camera_map_picture
from camlit.forensics.reliability import clipped_share, reliability, residual_energy
from camlit.forensics.reports import read_mask, splice_folder, splice_report
from camlit.forensics.splice import DEFAULT_METHOD, SpliceResult
from camlit.imageio import list_images, read_rgb, write_image_atomic
from camlit.inference import openset_fit
from camlit.inference.features import softmax
from camlit.inference.labelled import labelled_csv
from camlit.inference.loading import load_checkpoint
from camlit.inference.openset import SCORES, feature_layer
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


def cached_maps(model, size: int, root: Path, work: Path, limit: int | None):
    """(entries (group, photo, mask), true masks, camera maps) of a splice folder."""
    entries = splice_folder(root)
    if limit:  # the first photos of each group: spliced and clean alternate
        entries = [e for i, e in enumerate(entries) if sum(g == e[0] for g, _, _ in entries[:i]) < limit]
    work.mkdir(parents=True, exist_ok=True)
    todo = [(i, photo) for i, (_, photo, _) in enumerate(entries) if not (work / f"{i}.npz").is_file()]
    if todo:
        flags = [entries[i][0] != "unaltered" for i, _ in todo]
        predictions = predict_tiles(model, [p for _, p in todo], size, manipulated=flags, progress=True)
        for k, (i, photo) in enumerate(todo):
            camera_map = map_from_rows(read_rgb(photo), model.classes, size, predictions.extras[k])
            camera_map.save(work / f"{i}.npz")
    maps, truths = [], []
    for i, (_, photo, mask) in enumerate(entries):
        camera_map = CameraMap.load(work / f"{i}.npz")
        # The reliability masks and the lattice as the current code draws them, not as when the
        # map was kept (neither needs the model).
        image = read_rgb(photo)
        camera_map.flat, camera_map.clipped = reliability(image, camera_map.tops, camera_map.lefts, camera_map.size)
        lattice = photo_lattice(image)
        camera_map.lattice, camera_map.lattice_phase, camera_map.primary_lattice, camera_map.gamma_undone = lattice
        maps.append(camera_map)
        truths.append(read_mask(mask, camera_map.shape))
    return entries, truths, maps


def naive(camera_map: CameraMap) -> SpliceResult:
    """The issue's baseline: argmax per tile, the most frequent camera is the photo's own, every tile is used."""
    labels = camera_map.probabilities.argmax(axis=-1)
    own = int(np.bincount(labels.ravel()).argmax())
    scores = np.where(labels != own, 1.0, -1.0)
    return SpliceResult("naive", scores, float((labels != own).mean()), own, own)


SPLICE_METHODS = {"naive": naive, **splice.SCORERS}


def decide(raw: SpliceResult, full_mask: np.ndarray, threshold: float) -> SpliceResult:
    """The result with a mask when its photo score reaches `threshold` (as splice.localise decides)."""
    mask = full_mask if raw.photo_score >= threshold else np.zeros_like(full_mask)
    return SpliceResult(
        raw.method, raw.tile_scores, raw.photo_score, raw.own, raw.foreign, bool(mask.any()), mask, raw.block_scores
    )


def choose_thresholds(name: str, truths, raw, masks, maps) -> float | dict[str, float]:
    """choose_threshold; for the lattice, one on the photos whose gamma was undone and one on the
    others (splice.part_threshold picks per photo)."""
    if name != "lattice":
        return choose_threshold(truths, raw, masks)
    chosen = {}
    for key, undone in (("lattice", False), (splice.GAMMA_KEY, True)):
        kept = [i for i, camera_map in enumerate(maps) if camera_map.gamma_undone == undone]
        chosen[key] = choose_threshold(*([items[i] for i in kept] for items in (truths, raw, masks)))
    return chosen


def chosen_thresholds(figures: dict, parts) -> dict[str, float]:
    """The tune set's thresholds of a combination's parts, the lattice's two included."""
    thresholds = {}
    for part in parts:
        chosen = figures[part]["photo_threshold"]
        thresholds.update(chosen if isinstance(chosen, dict) else {part: chosen})
    return thresholds


def decided(name: str, raw, masks, maps, threshold: float | dict[str, float]) -> list[SpliceResult]:
    """Each photo's result at its threshold (splice.part_threshold)."""
    return [
        decide(r, m, splice.part_threshold(threshold, name, camera_map))
        for r, m, camera_map in zip(raw, masks, maps, strict=True)
    ]


def choose_threshold(truths, raw, masks) -> float:
    """The photo threshold with the best mean F1 on the tune set's spliced photos while at most 5%
    of its clean photos get a foreign region."""
    best, best_f1 = float("inf"), -1.0
    for threshold in sorted({r.photo_score for r in raw} | {float("-inf")}):
        decided = [decide(r, m, threshold) for r, m in zip(raw, masks, strict=True)]
        report = splice_report(["all"] * len(raw), truths, decided)["all"]
        if report["clean_with_foreign_region"] <= 0.05 and report["pixel_f1"] > best_f1:
            best, best_f1 = threshold, report["pixel_f1"]
    return best


def scored(method, maps):
    raw = [method(m) for m in maps]
    return raw, [foreign_region(m, r) for m, r in zip(maps, raw, strict=True)]


def measure_splices(model, size, args) -> dict:
    entries, truths, maps = cached_maps(
        model, size, Path(args.sets) / "splice", Path(args.work) / "test_maps", args.limit
    )
    groups = [group for group, _, _ in entries]
    tune_truths, tune_maps = truths, maps
    if args.tune:
        _, tune_truths, tune_maps = cached_maps(model, size, Path(args.tune), Path(args.work) / "tune_maps", args.limit)
    figures = {"thresholds_chosen_on": "tune set" if args.tune else "the measured set itself (optimistic)"}
    calibrated = splice.calibration_path(args.ckpt_path).is_file()
    for name, method in SPLICE_METHODS.items():
        threshold = choose_thresholds(name, tune_truths, *scored(method, tune_maps), tune_maps)
        results = decided(name, *scored(method, maps), maps, threshold)
        figures[name] = {"photo_threshold": threshold, **splice_report(groups, truths, results)}
        if calibrated and name in splice.METHODS:
            # The thresholds `camlit calibrate` set on the run's own clean validation photos.
            own = splice.photo_thresholds(name, args.ckpt_path)
            results = decided(name, *scored(method, maps), maps, own)
            figures[name]["calibrated"] = {"photo_threshold": own, **splice_report(groups, truths, results)}
    preset = {key: splice.PHOTO_THRESHOLDS[key] for key in splice.threshold_keys("lattice")}
    results = decided("lattice", *scored(splice.lattice, maps), maps, preset)
    figures["lattice"]["preset"] = {"photo_threshold": preset, **splice_report(groups, truths, results)}
    for name, parts in splice.COMBINATIONS.items():  # each part at the threshold chosen for it alone
        thresholds = chosen_thresholds(figures, parts)
        results = [splice.localise(camera_map, name, thresholds) for camera_map in maps]
        figures[name] = {"photo_thresholds": thresholds, **splice_report(groups, truths, results)}
        if calibrated:
            own = splice.photo_thresholds(name, args.ckpt_path)
            results = [splice.localise(camera_map, name, own) for camera_map in maps]
            figures[name]["calibrated"] = {"photo_thresholds": own, **splice_report(groups, truths, results)}
    if args.examples:
        thresholds = chosen_thresholds(figures, splice.parts(DEFAULT_METHOD))
        write_examples(Path(args.examples), entries, truths, maps, thresholds)
    figures["unjudged_tiles"] = {
        "flat": float(np.mean([m.flat.mean() for m in maps])),
        "clipped": float(np.mean([m.clipped.mean() for m in maps])),
    }
    figures["reliability"] = measure_reliability(entries, truths, maps)
    return figures


RESIDUAL_BINS = (0.0, 0.4, 0.8, 1.6, 3.2, float("inf"))
CLIPPED_BINS = (0.0, 0.25, 0.5, 0.75, 1.01)


def measure_reliability(entries, truths, maps) -> dict:
    """How often a tile of a clean photo agrees with the photo's own camera (the most frequent
    argmax over all its tiles), by the tile's residual energy and clipped share: what the
    reliability thresholds (camlit.forensics.reliability) leave out should agree less."""
    energy, clipped, agrees = [], [], []
    for (_, photo, _), truth, camera_map in zip(entries, truths, maps, strict=True):
        if truth.any():
            continue
        image = read_rgb(photo)
        labels = camera_map.probabilities.argmax(axis=-1)
        agrees.append((labels == np.bincount(labels.ravel()).argmax()).ravel())
        energy.append(residual_energy(image, camera_map.tops, camera_map.lefts, camera_map.size).ravel())
        clipped.append(clipped_share(image, camera_map.tops, camera_map.lefts, camera_map.size).ravel())
    energy, clipped, agrees = map(np.concatenate, (energy, clipped, agrees))

    def binned(values, edges):
        rows = {}
        for low, high in zip(edges[:-1], edges[1:], strict=True):
            inside = (values >= low) & (values < high)
            rows[f"{low:g}-{high:g}"] = {
                "tiles": int(inside.sum()),
                "agree": float(agrees[inside].mean()) if inside.any() else None,
            }
        return rows

    return {
        "clean_photos": len([t for t in truths if not t.any()]),
        "by_residual_std": binned(energy, RESIDUAL_BINS),
        "by_clipped_share": binned(clipped, CLIPPED_BINS),
    }


def write_examples(folder: Path, entries, truths, maps, thresholds: dict[str, float]) -> None:
    """forensics_clean.png and forensics_spliced.png: the first unaltered clean and spliced photos,
    by the default method at the thresholds chosen for its parts, the spliced one with its true
    mask beside."""
    for name, spliced in (("clean", False), ("spliced", True)):
        index = next(i for i, (g, _, _) in enumerate(entries) if g == "unaltered" and truths[i].any() == spliced)
        result = splice.localise(maps[index], DEFAULT_METHOD, thresholds)
        picture = camera_map_picture(
            read_rgb(entries[index][1]), maps[index], result, truths[index] if spliced else None
        )
        write_image_atomic(folder / f"forensics_{name}.png", picture)


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


def main(argv: list[str] | None = None) -> None:
    parser = PlainParser(prog="measure_forensics.py", description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt_path", required=True)
    parser.add_argument("--sets", required=True, help="camlit.data.forensic_sets output: splice/ and unknown/")
    parser.add_argument("--tune", default=None, help="a splice folder of another seed, for the thresholds")
    parser.add_argument("--examples", default=None, help="write the two example pictures into this folder")
    parser.add_argument("--limit", type=int, default=None, help="only the first N photos of each splice group")
    parser.add_argument("--known", required=True, help="the synthetic test set (test_labels.csv beside it)")
    parser.add_argument("--train_dir", default=None, help="the run's training folder (default: the checkpoint's)")
    parser.add_argument("--crops", type=int, default=10)
    parser.add_argument("--crop_grid", action="store_true", help="the crops on an even grid, not at random")
    parser.add_argument("--scores", default=",".join(SCORES), help="the open-set scores to compare, comma-separated")
    parser.add_argument(
        "--tune_unknown", default=None, help="unknown photos of another seed, to weigh the JPEG steps on"
    )
    parser.add_argument("--work", required=True)
    parser.add_argument("--json", required=True)
    parser.add_argument("--only", choices=("unknown", "splices"), default=None)
    args = parser.parse_args(argv)
    with exit_on_user_error():
        for option in ("sets", "known", "tune", "tune_unknown"):
            folder = getattr(args, option)
            if folder is not None and not Path(folder).is_dir():
                raise CamlitError(f"--{option} {folder}: no such folder")
        Path(args.work).mkdir(parents=True, exist_ok=True)
        model, size = load_checkpoint(args.ckpt_path, "cpu")
    measure(model, size, args)


def measure(model, size: int, args) -> None:
    report = {"date": datetime.date.today().isoformat(), "checkpoint": args.ckpt_path, "tile_size": size}
    report.update(sets=args.sets, tune=args.tune, known=args.known)
    if args.only != "splices":
        report["unknown"] = measure_unknown(model, size, args)
    if args.only != "unknown":
        report["splices"] = measure_splices(model, size, args)
    write_text_atomic(args.json, json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
