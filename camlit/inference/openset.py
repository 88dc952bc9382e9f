"""Unknown-camera rejection: an open-set score per photo, and its threshold calibrated beside the model.

Every score is larger for photos less like the training cameras, from the photo's crops' logits
and pooled features (camlit.inference.features):

- ``msp``: 1 - the largest mean softmax probability;
- ``energy``: -logsumexp of the mean logits (Liu et al. 2020);
- ``mahalanobis``: the smallest Mahalanobis distance of the photo's mean feature to a training
  camera's mean, with one shared covariance, in the training features' leading principal
  components (Lee et al. 2018);
- ``knn``: the cosine distance of the photo's L2-normalised mean feature to its k-th nearest
  training photo (Sun et al. 2022);
- ``mahalanobis_stem``: ``mahalanobis`` on the stem's channel means instead of the pooled
  features (Lee et al. 2018 score every stage): low-level statistics that the ten-way head need
  not keep apart for a camera it was not trained on;
- ``relative_stem``: ``mahalanobis_stem`` less the photo's Mahalanobis distance to one Gaussian of
  all training photos (Ren et al. 2021). What every camera shares (the scene's content, its
  exposure) moves both distances alike and cancels; what sets a camera apart from all of them
  does not.
- ``relative_stem_jpeg``: ``relative_stem``, plus how far the photo's JPEG quantization steps
  (camlit.data.quantization) are from those of every training photo: the share of the 27
  steps that differ from the nearest training photo's, times STEP_WEIGHT spreads of the training
  photos' ``relative_stem`` scores (1st to 99th percentile). A camera's own table survives in an
  unaltered photo, and in a manipulated one where the manipulation can be undone (a gamma, an
  upscale: camlit.data.undo); a photo known to be manipulated where none was undone (a
  recompression replaced the table, a downscale wiped it) has no step term.

Two thresholds, each accepting 95% of the run's validation photos of its kind: one for unaltered
photos, one for manipulated ones (every manipulation moves every score, so one threshold set on
unaltered photos rejects far more than 5% of manipulated known photos). They are stored, with what
the distance scores need, in `<checkpoint stem>.unknown.npz` beside the checkpoint.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from camlit.atomic import write_bytes_atomic
from camlit.data.quantization import FREQUENCIES
from camlit.errors import CamlitError
from camlit.inference.features import softmax, split_extras
from camlit.inference.openset_steps import (
    FIRST_READER,
    first_mismatch,
    reads_quantization,
    split_steps,
    step_mismatch,
)
from camlit.inference.tta import CropPlan
from camlit.training.checkpointing import CHECKPOINT_HASH, UNKNOWN_CALIBRATION, beside, require_calibrated_for

SCORES = ("msp", "energy", "mahalanobis", "knn", "mahalanobis_stem", "relative_stem", "relative_stem_jpeg")
ACCEPT = 0.95
NEIGHBOUR = 5


def feature_layer(method: str) -> str:
    """The WithFeatures layer that a score reads."""
    return "stem" if "_stem" in method else "pooled"


def photo_features(features: np.ndarray) -> np.ndarray:
    """A photo's (crops, F) pooled features -> its mean feature."""
    return features.mean(axis=0)


def normalised(rows: np.ndarray) -> np.ndarray:
    return rows / (np.linalg.norm(rows, axis=-1, keepdims=True) + 1e-12)


@dataclass
class OpenSetModel:
    """What a score needs of the training photos, and the calibrated threshold."""

    method: str
    threshold: float = float("nan")  # for unaltered photos, and for all when the other is NaN
    crops: int = 0  # crops per photo at calibration; scores shift with it
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    threshold_manipulated: float = float("nan")
    grid: bool = False  # the crops on an even grid, not at random
    crop_size: int = 0  # 0: not recorded
    photos: tuple[int, int] = (0, 0)  # known photos the thresholds were set on: unaltered, manipulated
    checkpoint_sha256: str = ""  # the checkpoint it was calibrated for ("": not recorded)

    def require_plan(self, plan: CropPlan, option: str = "--unknown") -> None:
        """Refuse scoring with other crops than the thresholds were set on: a mean over more crops,
        or over a grid, is less spread, so a threshold set on 10 random crops would accept more."""
        wanted = (self.crops, self.grid, self.crop_size or plan.size, ())
        if (plan.count, plan.grid, plan.size, plan.manipulations) != wanted:
            calibrated_on = describe(self.crops, self.grid, self.crop_size)
            # calibrate takes the crops' number and grid only: another size or test-time
            # manipulations can only be dropped, not calibrated.
            if (plan.size, plan.manipulations) != (wanted[2], ()):
                remedy = "drop --crop_size and --tta_manipulations"
            else:
                remedy = f"take those crops, or calibrate again with --crops {plan.count}"
                remedy += " --crop_grid" if plan.grid else ""
            raise CamlitError(
                f"{option}: the calibration beside the checkpoint was set on {calibrated_on} per photo, "
                f"without --tta_manipulations; {remedy}"
            )

    def require_classes(self, count: int, option: str = "--unknown") -> None:
        """Refuse a calibration fitted for another number of cameras than the checkpoint's: its
        distance to the nearest camera would silently leave some out."""
        fitted = len(self.arrays["class_means"]) if "class_means" in self.arrays else count
        if fitted != count:
            raise CamlitError(
                f"{option}: the calibration beside the checkpoint was fitted for {fitted} cameras, the "
                f"checkpoint has {count}; run camlit calibrate again"
            )

    @property
    def layer(self) -> str:
        return feature_layer(self.method)

    @property
    def quantization(self) -> bool:
        return reads_quantization(self.method)

    def scores(
        self,
        logits: Sequence[np.ndarray],
        features: Sequence[np.ndarray],
        manipulated: Sequence[bool | None] | None = None,
    ) -> np.ndarray:
        """One score per photo from its crops' (crops, classes) logits and (crops, F) features;
        `manipulated` (None: not known, as unaltered) matters to the scores reading JPEG steps."""
        if self.quantization:
            features, steps, first, undone = split_steps(features)
            weight = float(self.arrays["step_weight"])
            mismatch = step_mismatch(steps, self.arrays["steps"], undone > 0) * weight
            flags = np.zeros(len(steps), bool) if manipulated is None else np.array([bool(f) for f in manipulated])
            # A manipulated photo where nothing was undone: its first table, where it was saved again
            # whole over its camera's (a calibration older than the bank, or than its reader: no term).
            bank = self.arrays.get("first_steps", np.zeros((0, len(FREQUENCIES))))
            if int(self.arrays.get("first_reader", 1)) != FIRST_READER:
                bank = np.zeros((0, len(FREQUENCIES)))
            recompressed = first_mismatch(first, bank) * weight
            return self.distance_scores(features) + np.where(flags & (undone == 0), recompressed, mismatch)
        if self.method == "msp":
            return np.array([1 - softmax(rows).mean(axis=0).max() for rows in logits])
        if self.method == "energy":
            return np.array([-logsumexp(rows.mean(axis=0)) for rows in logits])
        if self.method == "knn":
            means = np.stack([photo_features(rows) for rows in features])
            similarity = normalised(means) @ self.arrays["bank"].T
            k = min(NEIGHBOUR, similarity.shape[1])
            return 1 - np.sort(similarity, axis=1)[:, -k]
        return self.distance_scores(features)

    def distance_scores(self, features: Sequence[np.ndarray]) -> np.ndarray:
        """The Mahalanobis scores (plain or relative) of the photos' mean features."""
        means = np.stack([photo_features(rows) for rows in features])
        projected = (means - self.arrays["centre"]) @ self.arrays["components"]
        gaps = projected[:, None, :] - self.arrays["class_means"][None]
        distances = np.einsum("nkd,de,nke->nk", gaps, self.arrays["precision"], gaps).min(axis=1)
        if self.method.startswith("relative"):
            # Squared distances, as Ren et al. subtract them; the global mean is 0 after centring.
            return distances - np.einsum("nd,de,ne->n", projected, self.arrays["global_precision"], projected)
        return np.sqrt(np.maximum(distances, 0))

    def calibrate(self, known_scores: np.ndarray, plan: CropPlan, manipulated: Sequence[bool] | None = None) -> None:
        """The thresholds below which ACCEPT of `known_scores` (taken with `plan`) lie (at or below:
        accepted), one per kind of photo when `manipulated` says which are which and both kinds are there."""
        scores = np.asarray(known_scores, dtype=np.float64)
        flags = np.zeros(len(scores), bool) if manipulated is None else np.asarray(manipulated, bool)
        plain = scores[~flags] if (~flags).any() else scores
        self.threshold = float(np.quantile(plain, ACCEPT, method="higher"))
        both = flags.any() and (~flags).any()
        manipulated_threshold = np.quantile(scores[flags], ACCEPT, method="higher") if both else np.nan
        self.threshold_manipulated = float(manipulated_threshold)
        self.crops, self.grid, self.crop_size = plan.count, plan.grid, plan.size
        self.photos = (int((~flags).sum()), int(flags.sum()))

    def thresholds(self, manipulated: Sequence[bool | None] | None, count: int) -> np.ndarray:
        """Each photo's threshold: the manipulated one for photos known to be manipulated."""
        flags = np.zeros(count, bool) if manipulated is None else np.array([bool(f) for f in manipulated])
        if np.isnan(self.threshold_manipulated):
            return np.full(count, self.threshold)
        return np.where(flags, self.threshold_manipulated, self.threshold)

    def is_unknown(self, scores: np.ndarray, manipulated: Sequence[bool | None] | None = None) -> np.ndarray:
        scores = np.asarray(scores)
        return scores > self.thresholds(manipulated, len(scores))

    def npz(self) -> bytes:
        """The calibration file's bytes."""
        buffer = io.BytesIO()
        np.savez(
            buffer, method=np.array(self.method), threshold=np.array(self.threshold),
            threshold_manipulated=np.array(self.threshold_manipulated), crops=np.array(self.crops),
            grid=np.array(self.grid), crop_size=np.array(self.crop_size), photos=np.array(self.photos),
            **{CHECKPOINT_HASH: np.array(self.checkpoint_sha256)}, **self.arrays,
        )  # fmt: skip
        return buffer.getvalue()

    def save(self, path: str | os.PathLike) -> None:
        write_bytes_atomic(path, self.npz())


def prediction_scores(
    model: OpenSetModel, predictions, manipulated: Sequence[bool | None] | None = None, option: str = "--unknown"
) -> np.ndarray:
    """One score per image of a `Predictions` made with `WithFeatures`; NaN for unusable images.
    `manipulated`: per image, whether it is (None: not known)."""
    scores = np.full(len(predictions.paths), np.nan)
    usable = np.flatnonzero(predictions.usable)
    if len(usable):
        num_classes = len(predictions.classes)
        rows = [split_extras(predictions.extras[i], num_classes) for i in usable]
        try:
            flags = None if manipulated is None else [manipulated[i] for i in usable]
            scores[usable] = model.scores([logits for logits, _ in rows], [features for _, features in rows], flags)
        except ValueError as error:
            raise CamlitError(
                f"{option}: the calibration beside the checkpoint is for another model ({error})"
            ) from None
    return scores


def calibration_path(checkpoint: str | os.PathLike) -> Path:
    """Where the open-set calibration of a checkpoint lives: `<stem>.unknown.npz` beside it."""
    return beside(checkpoint, UNKNOWN_CALIBRATION)


def load(checkpoint: str | os.PathLike, option: str = "--unknown") -> OpenSetModel:
    """The calibration beside `checkpoint`; `option` is the command's option that asked for it."""
    path = calibration_path(checkpoint)
    if not path.is_file():
        raise CamlitError(
            f"{option}: no open-set calibration {path} beside the checkpoint; "
            f"make it with `camlit calibrate --ckpt_path {checkpoint}`"
        )
    try:
        with np.load(path, allow_pickle=False) as data:
            stored = {name: data[name] for name in data.files}
        method, threshold, crops = str(stored.pop("method")), float(stored.pop("threshold")), int(stored.pop("crops"))
        threshold_manipulated = float(stored.pop("threshold_manipulated", np.nan))
        grid, crop_size = bool(stored.pop("grid", False)), int(stored.pop("crop_size", 0))
        photos = tuple(int(n) for n in stored.pop("photos", (0, 0)))
        recorded = str(stored.pop(CHECKPOINT_HASH, ""))
    # A truncated or damaged file: BadZipFile (a bad CRC too), EOFError (empty), TypeError (an array's shape).
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as error:
        raise CamlitError(f"{option}: {path} is not an open-set calibration ({error})") from None
    if method not in SCORES:
        raise CamlitError(f"{option}: {path} names an unknown score {method!r}")
    # NaN accepts every photo; the manipulated photos' threshold is NaN only where the run held out
    # photos of one kind, and the unaltered one then serves all.
    if np.isnan(threshold):
        raise CamlitError(f"{option}: {path} holds a threshold that is not a number; run camlit calibrate again")
    missing = [name for name in required_arrays(method) if name not in stored]
    if missing:
        raise CamlitError(
            f"{option}: {path} is not a whole {method} calibration (no {', '.join(missing)}); "
            "run camlit calibrate again"
        )
    # A NaN or an infinity scores every photo NaN (never unknown) or the same.
    damaged = [name for name, array in stored.items() if array.dtype.kind in "fc" and not np.isfinite(array).all()]
    if damaged:
        raise CamlitError(
            f"{option}: {path} holds values that are not numbers in {', '.join(damaged)}; run camlit calibrate again"
        )
    require_calibrated_for(checkpoint, recorded, path, option)
    return OpenSetModel(method, threshold, crops, stored, threshold_manipulated, grid, crop_size, photos, recorded)


def models_each_camera(method: str) -> bool:
    """Whether a score fits a mean per camera (and the spread about it), which needs photos of each."""
    return "class_means" in required_arrays(method)


def required_arrays(method: str) -> tuple[str, ...]:
    """What a score reads of its calibration file's arrays (fit writes them)."""
    if method in ("msp", "energy"):
        return ()
    if method == "knn":
        return ("bank",)
    arrays = ("centre", "components", "class_means", "precision")
    if method.startswith("relative"):
        arrays += ("global_precision",)
    return arrays + (("steps", "step_weight") if reads_quantization(method) else ())


def describe(crops: int, grid: bool, crop_size: int) -> str:
    """A calibration's crops in words: '10 random crops of 64 px'."""
    size = f" of {crop_size} px" if crop_size else ""
    return f"{crops} {'grid' if grid else 'random'} crop{'s' if crops != 1 else ''}{size}"


def logsumexp(values: np.ndarray) -> float:
    top = values.max()
    return float(top + np.log(np.exp(values - top).sum()))
