"""The splice methods side by side on a measuring set (scripts/measure_forensics.py --only splices).

Each method's photo threshold is chosen on a tune set of another seed (the best mean F1 while at
most 5% of its clean photos get a region) and reported on the measured set, beside the
thresholds `camlit calibrate` set on the run's own photos. The tile maps are computed once into
the work folder; their reliability masks and lattice are drawn again by the current code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from camlit.forensics import splice
from camlit.forensics.camera_map import CameraMap, map_from_rows, photo_lattice, predict_tiles
from camlit.forensics.masks import foreign_region
from camlit.forensics.picture import camera_map_picture
from camlit.forensics.reliability import clipped_share, reliability, residual_energy
from camlit.forensics.reports import read_mask, splice_folder, splice_report
from camlit.forensics.splice import DEFAULT_METHOD, SpliceResult
from camlit.imageio import read_rgb, write_image_atomic


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
