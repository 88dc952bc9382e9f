"""Splice localisation from a camera map: which tiles come from another camera, as a pixel mask.

Four methods and two combinations, compared in docs/forensics_measurements.md:

- ``disagreement``: the photo's own camera is the one with the highest summed log-probability
  over the reliable tiles; the strongest rival is the camera that beats it on most tiles, by the
  most. A tile's score is log p(rival) - log p(own).
- ``disagreement_smoothed``: the same, each tile's score averaged with its reliable neighbours
  (worse with the demo model, better with the rehearsal's).
- ``clustering`` (Bondi et al. 2017): two-means of the reliable tiles' L2-normalised pooled
  features; the larger cluster is the photo's own. A tile's score is how much nearer it lies to
  the smaller cluster's centre than to the larger's.
- ``lattice``: not the classifier but the photo's own JPEG grid (CameraMap.lattice): a block
  scores half the photo's median fit to its own quantization steps less its fit, so blocks
  pasted from another camera's photo, off the lattice, score above 0; scored per 8 px block.
  A photo saved again whole is also read against its first table, or against the table a
  pasted region kept where only a window of the photo shows one (CameraMap.primary_lattice),
  and the map with the stronger region is kept. A photo that shows no table of its own is read
  against the table a window of it shows (a pasted region's), and gets no region where none does.
- ``lattice_then_disagreement`` (the default): the lattice's region where its photo score
  reaches its threshold, else the disagreement's where its own does (each at its own
  threshold). Photos are ranked by the part that drew their region, earliest first, then by
  that part's photo score (SpliceResult.tier): a region the JPEG grid draws is the firmer one.
- ``lattice_then_disagreement_smoothed``: the same with the smoothed disagreement, which gives
  fewer clean photos a region and outlines resized splices worse.

Either way a tile scoring above 0 is foreign. Scores are interpolated between tile centres onto
the photo's pixels from reliable tiles only; the photo-level score decides whether any mask is
drawn at all (a clean photo always has a rival camera and a second cluster, only weaker).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from camlit.atomic import read_json
from camlit.errors import CamlitError
from camlit.forensics.camera_map import CameraMap
from camlit.forensics.masks import foreign_region
from camlit.training.checkpointing import CHECKPOINT_HASH, SPLICE_CALIBRATION, beside, require_calibrated_for

METHODS = (
    "disagreement", "disagreement_smoothed", "clustering", "lattice", "lattice_then_disagreement",
    "lattice_then_disagreement_smoothed",
)  # fmt: skip
# A combination tries its methods in turn, each at its own photo threshold.
COMBINATIONS = {
    "lattice_then_disagreement": ("lattice", "disagreement"),
    "lattice_then_disagreement_smoothed": ("lattice", "disagreement_smoothed"),
}
DEFAULT_METHOD = "lattice_then_disagreement"
# Photo-level scores from which a mask is drawn, for a checkpoint that `camlit calibrate` has not
# calibrated: the demo model's, chosen on a tune set of spliced and clean photos so that at most
# 5% of clean ones get a region (docs/forensics_measurements.md). The lattice method's is about the middle of
# the tune set's gap between its highest clean photo (-0.05) and its lowest spliced photo given a
# region (0.26): there no clean photo gets a region from the lattice at any threshold.
# A photo whose gamma was undone has its own (`lattice_after_gamma`): the undo's rounding moves
# clean blocks off the lattice by their brightness. Its fallback is just above the highest of the
# 14 clean validation photos under a gamma that `camlit calibrate` read a table in for the
# recipe's run (0.44; the lattice reads no model).
PHOTO_THRESHOLDS = {
    "disagreement": 7.96, "disagreement_smoothed": 4.88, "clustering": 2.7, "lattice": 0.1,
    "lattice_after_gamma": 0.45,
}  # fmt: skip
GAMMA_KEY = "lattice_after_gamma"
# A splice covers 10% of the photo or more; this share of the reliable tiles scores the photo.
TOP_SHARE = 0.05


@dataclass
class SpliceResult:
    method: str
    tile_scores: np.ndarray  # (rows, cols), above 0: foreign; NaN for unreliable tiles
    photo_score: float  # larger: more likely spliced
    own: int  # the photo's own camera (class index)
    foreign: int  # the camera the foreign tiles look most like
    spliced: bool = False
    mask: np.ndarray | None = None  # (height, width) bool, the region judged foreign
    block_scores: np.ndarray | None = None  # (block rows, block cols) the lattice method's, above 0: foreign
    # A combination's photos rank by this first, then by photo_score: the number of parts after
    # the one that drew the region (0 where none did, or the last part).
    tier: int = 0


def neighbour_mean(scores: np.ndarray, reliable: np.ndarray) -> np.ndarray:
    """Each tile's mean with its reliable 3x3 neighbours (tiles overlap by half: they share pixels)."""
    values = np.where(reliable, scores, 0).astype(np.float32)
    total = cv2.boxFilter(values, -1, (3, 3), normalize=False, borderType=cv2.BORDER_CONSTANT)
    count = cv2.boxFilter(reliable.astype(np.float32), -1, (3, 3), normalize=False, borderType=cv2.BORDER_CONSTANT)
    return np.where(reliable, total / np.maximum(count, 1), np.nan)


def top_mean(scores: np.ndarray) -> float:
    values = np.sort(scores[np.isfinite(scores)])[::-1]
    if not len(values):
        return float("-inf")
    return float(values[: max(1, int(round(TOP_SHARE * len(values))))].mean())


def disagreement(camera_map: CameraMap, smooth: bool = False) -> SpliceResult:
    reliable = camera_map.reliable
    log_p = np.log(np.clip(camera_map.probabilities, 1e-12, 1.0))
    own = int(log_p[reliable].sum(axis=0).argmax()) if reliable.any() else 0
    against = log_p - log_p[..., own : own + 1]
    evidence = np.clip(against[reliable], 0, None).sum(axis=0)
    evidence[own] = -1
    rival = int(evidence.argmax())
    scores = np.where(reliable, against[..., rival], np.nan)
    if smooth:
        scores = neighbour_mean(np.nan_to_num(scores), reliable)
    return SpliceResult("disagreement_smoothed" if smooth else "disagreement", scores, top_mean(scores), own, rival)


def two_means(points: np.ndarray, iterations: int = 20) -> np.ndarray:
    """Cluster labels (0/1) of `points`, seeded by the point farthest from the mean and the point
    farthest from that one, so the result is deterministic."""
    first = points[np.argmax(((points - points.mean(axis=0)) ** 2).sum(axis=1))]
    centres = np.stack([first, points[np.argmax(((points - first) ** 2).sum(axis=1))]])
    labels = np.zeros(len(points), dtype=np.int64)
    for _ in range(iterations):
        distances = ((points[:, None, :] - centres[None]) ** 2).sum(axis=2)
        labels = distances.argmin(axis=1)
        if labels.min() == labels.max():
            break
        centres = np.stack([points[labels == k].mean(axis=0) for k in (0, 1)])
    return labels


def clustering(camera_map: CameraMap) -> SpliceResult:
    reliable = camera_map.reliable
    features = camera_map.features.astype(np.float64)
    features /= np.linalg.norm(features, axis=-1, keepdims=True) + 1e-12
    own_class = int(camera_map.probabilities[reliable].mean(axis=0).argmax()) if reliable.any() else 0
    if reliable.sum() < 4:
        return SpliceResult("clustering", np.full(reliable.shape, np.nan), float("-inf"), own_class, own_class)
    points = features[reliable]
    labels = two_means(points)
    host = int(np.bincount(labels, minlength=2).argmax())
    if labels.min() == labels.max():
        return SpliceResult("clustering", np.full(reliable.shape, -1.0), float("-inf"), own_class, own_class)
    centres = [points[labels == k].mean(axis=0) for k in (0, 1)]
    near_host = ((features - centres[host]) ** 2).sum(axis=-1)
    near_other = ((features - centres[1 - host]) ** 2).sum(axis=-1)
    within = np.mean([((points[labels == k] - centres[k]) ** 2).sum(axis=1).mean() for k in (0, 1)])
    scores = np.where(reliable, (near_host - near_other) / (within + 1e-12), np.nan)
    # Fisher's separation of the two clusters, weighed by the smaller cluster's share: a clean
    # photo splits into two loose clusters or one tiny one.
    share = (labels != host).mean()
    separation = float(((centres[0] - centres[1]) ** 2).sum() / (within + 1e-12) * np.sqrt(share))
    other_class = int(camera_map.probabilities[reliable][labels != host].mean(axis=0).argmax())
    return SpliceResult("clustering", scores, separation, own_class, other_class)


def lattice(camera_map: CameraMap) -> SpliceResult:
    """The blocks' fits to the photo's own steps, or to its first table where it was saved again,
    whichever finds the stronger region: after a recompression every block fits the last table."""
    named = disagreement(camera_map)  # the cameras it names, for the picture's caption
    untiled = np.full(camera_map.reliable.shape, np.nan)
    result = SpliceResult("lattice", untiled, float("-inf"), named.own, named.foreign)
    for fits in (camera_map.lattice, camera_map.primary_lattice):
        if np.isfinite(fits).any():
            scores = np.nanmedian(fits) / 2 - fits
            if (photo_score := top_mean(scores)) > result.photo_score:
                result = SpliceResult("lattice", untiled, photo_score, named.own, named.foreign, block_scores=scores)
    return result


SCORERS = {
    "disagreement": disagreement,
    "disagreement_smoothed": lambda camera_map: disagreement(camera_map, smooth=True),
    "clustering": clustering,
    "lattice": lattice,
}


def calibration_path(checkpoint: str | os.PathLike) -> Path:
    """Where `camlit calibrate` keeps a checkpoint's photo thresholds: `<stem>.splice.json` beside it."""
    return beside(checkpoint, SPLICE_CALIBRATION)


def parts(method: str) -> tuple[str, ...]:
    """The methods a method tries: a combination's, or the method itself."""
    return COMBINATIONS.get(method, (method,))


def threshold_keys(method: str) -> tuple[str, ...]:
    """The photo thresholds a method reads: one per part, and the lattice's after a gamma too."""
    return tuple(key for part in parts(method) for key in ((part, GAMMA_KEY) if part == "lattice" else (part,)))


def threshold_key(part: str, camera_map: CameraMap) -> str:
    """The photo threshold a part reads for this photo: the lattice's own after a gamma."""
    return GAMMA_KEY if part == "lattice" and camera_map.gamma_undone else part


def part_threshold(threshold: float | Mapping[str, float], part: str, camera_map: CameraMap) -> float:
    """A part's photo threshold for this photo: `threshold` itself where it is one number, the
    part's own where `threshold` lacks the one after a gamma (a --threshold given for it)."""
    if not isinstance(threshold, Mapping):
        return threshold
    return threshold.get(threshold_key(part, camera_map), threshold[part])


def photo_thresholds(method: str, checkpoint: str | os.PathLike | None = None) -> dict[str, float]:
    """The checkpoint's calibrated photo threshold of each of `method`'s parts (threshold_keys),
    else the measured one (PHOTO_THRESHOLDS), also for one that an older calibration lacks."""
    path = calibration_path(checkpoint) if checkpoint is not None else None
    if path is None or not (path.exists() or path.is_symlink()):
        return {key: PHOTO_THRESHOLDS[key] for key in threshold_keys(method)}
    if not path.is_file():
        raise CamlitError(f"{path}: not a splice calibration file (a folder, or a link to none); move it away")
    try:
        calibration = read_json(path)
        stored = calibration["photo_thresholds"]
        thresholds = {key: float(stored.get(key, PHOTO_THRESHOLDS[key])) for key in threshold_keys(method)}
        if not all(math.isfinite(value) for value in thresholds.values()):
            raise ValueError("a threshold that is not a number")
        recorded = str(calibration.get(CHECKPOINT_HASH, ""))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise CamlitError(f"{path}: not a splice calibration ({error}); remake it with `camlit calibrate`") from None
    require_calibrated_for(checkpoint, recorded, path)
    return thresholds


def localise(
    camera_map: CameraMap, method: str = "disagreement", threshold: float | Mapping[str, float] = 0.0
) -> SpliceResult:
    """Tile scores, photo score and, when the photo score reaches its threshold, the foreign mask.
    `threshold`: one number, or photo_thresholds' (part_threshold picks). A combination
    gives the first part's result that draws a region, else its last part's."""
    if method not in METHODS:
        raise ValueError(f"unknown splice method {method!r}; choose from {', '.join(METHODS)}")
    tried = parts(method)
    for index, part in enumerate(tried):
        result = SCORERS[part](camera_map)
        result.spliced = result.photo_score >= part_threshold(threshold, part, camera_map)
        result.mask = foreign_region(camera_map, result) if result.spliced else np.zeros(camera_map.shape, bool)
        result.spliced = bool(result.mask.any())
        if result.spliced:
            result.tier = len(tried) - 1 - index
            break
    return result


def photo_ranks(results: Sequence[SpliceResult]) -> np.ndarray:
    """(len(results),) float: each result's rank by (tier, photo_score), equal keys equal ranks;
    for a single method, the photo scores' order."""
    keys = [(result.tier, result.photo_score) for result in results]
    rank = {key: float(position) for position, key in enumerate(sorted(set(keys)))}
    return np.array([rank[key] for key in keys])
