"""The figures of unknown-camera rejection and splice localisation, for evaluate and for measuring.

Splice folders are those camlit.data.forensic_sets writes: `<root>/<group>/<name>` photos with
their true masks in `<root>/<group>/masks/<name>` (255 pasted; all 0 for a clean photo). A root
holding photos directly is one group.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from camlit.data.manipulations import UNALTERED
from camlit.errors import CamlitError, not_a_folder
from camlit.forensics.camera_map import map_from_rows, predict_tiles
from camlit.forensics.splice import DEFAULT_METHOD, SpliceResult, localise, photo_ranks, photo_thresholds
from camlit.imageio import list_images, read_rgb
from camlit.inference.openset_report import auroc

# A clean photo with a foreign region larger than this share of it counts as a false alarm.
FALSE_REGION = 0.05


def splice_folder(root: str | os.PathLike) -> list[tuple[str, Path, Path]]:
    """(group, photo, true mask) for every photo of `root`'s groups (the folders holding masks/)."""
    root = Path(root)
    if not root.is_dir():
        raise CamlitError(f"--splices {root}: {not_a_folder(root)}")
    groups = [root] if (root / "masks").is_dir() else sorted(p for p in root.iterdir() if p.is_dir())
    # A group without masks/ left the report, and the figure of all groups, without a word.
    unmasked = [group for group in groups if not (group / "masks").is_dir() and list_images(group)]
    if unmasked:
        raise CamlitError(f"--splices: {unmasked[0]} holds photos but no masks/ folder beside them")
    groups = [group for group in groups if (group / "masks").is_dir()]
    found = [
        (group.name if group != root else UNALTERED, photo, group / "masks" / photo.name)
        for group in groups
        for photo in list_images(group)
    ]
    # A photo without its mask would count as a clean one, or drop out unseen: the figures would be wrong.
    missing = [mask for _, _, mask in found if not mask.is_file()]
    if missing:
        raise CamlitError(f"--splices: {len(missing)} photo(s) without a mask, the first {missing[0]}")
    if not found:
        raise CamlitError(f"--splices {root}: no photo with a mask in <group>/masks/ (or masks/) under it")
    return found


def read_mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
    # Decoded from bytes, as photos are (cv2.imread crashes the process on a file name that is not
    # UTF-8), and as stored: an EXIF orientation would turn the mask against its photo.
    try:
        mask = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_GRAYSCALE | cv2.IMREAD_IGNORE_ORIENTATION)
    except (OSError, cv2.error):
        mask = None
    if mask is None or mask.shape != shape:
        raise CamlitError(f"--splices: mask {path} is unreadable or not the photo's size {shape[1]}x{shape[0]}")
    # Masks of 0 and 1, as often written, read as clean at a cut of 127: their spliced photos were
    # counted as clean without a word.
    return mask > (0 if mask.max() == 1 else 127)


def pixel_f1_mcc(found: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Pixel F1 and Matthews correlation of a found mask against the true one."""
    tp = float((found & truth).sum())
    fp = float((found & ~truth).sum())
    fn = float((~found & truth).sum())
    tn = float(found.size) - tp - fp - fn
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
    denominator = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return f1, float((tp * tn - fp * fn) / denominator) if denominator else 0.0


def splice_report(groups: Sequence[str], truths: Sequence[np.ndarray], results: Sequence[SpliceResult]) -> dict:
    """Per group and over all: mean pixel F1 and MCC of the spliced photos (an empty mask scores 0),
    photo-level AUROC of spliced against clean photos (by photo_ranks), and the share of clean
    photos given a foreign region over FALSE_REGION of their pixels."""
    report: dict[str, Any] = {}
    groups = np.asarray(groups)
    ranks = photo_ranks(results)
    for name in [*dict.fromkeys(groups.tolist()), "all"]:
        chosen = np.flatnonzero(groups == name) if name != "all" else np.arange(len(groups))
        spliced = [i for i in chosen if truths[i].any()]
        clean = [i for i in chosen if not truths[i].any()]
        scores = [pixel_f1_mcc(results[i].mask, truths[i]) for i in spliced]
        report[name] = {
            "spliced": len(spliced),
            "clean": len(clean),
            "pixel_f1": float(np.mean([f1 for f1, _ in scores])) if scores else None,
            "pixel_mcc": float(np.mean([mcc for _, mcc in scores])) if scores else None,
            "photo_auroc": auroc(ranks[clean], ranks[spliced]),
            "clean_with_foreign_region": float(np.mean([results[i].mask.mean() > FALSE_REGION for i in clean]))
            if clean
            else None,
        }
    return report


def evaluate_splices(
    model,
    root: str | os.PathLike,
    size: int,
    checkpoint: str | os.PathLike | None = None,
    method: str = DEFAULT_METHOD,
    **options,
) -> dict:
    """evaluate's `--splices` report: every photo with a mask under `root` mapped, localised and scored,
    by `method` at the photo threshold calibrated beside `checkpoint` (else the measured one).

    `options` are predict_paths' (device, devices, num_workers, progress, batch_size)."""
    thresholds = photo_thresholds(method, checkpoint)
    entries = splice_folder(root)
    flags = [group != UNALTERED for group, _, _ in entries]
    predictions = predict_tiles(model, [photo for _, photo, _ in entries], size, manipulated=flags, **options)
    if not predictions.usable.all():
        names = [str(entries[i][1]) for i in np.flatnonzero(~predictions.usable)]
        raise CamlitError(f"--splices: unusable photo(s) (unreadable, or smaller than {size} px): {', '.join(names)}")
    truths, results = [], []
    for index, (_, photo, mask) in enumerate(entries):
        camera_map = map_from_rows(read_rgb(photo), model.classes, size, predictions.extras[index])
        truths.append(read_mask(mask, camera_map.shape))
        results.append(localise(camera_map, method, thresholds))
    report = splice_report([group for group, _, _ in entries], truths, results)
    threshold = thresholds[method] if len(thresholds) == 1 else thresholds
    return {"method": method, "photo_threshold": threshold, "groups": report}
