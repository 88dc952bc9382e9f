"""A camera map of one photo: every tile at the model's crop size, on a stride of half a crop.

Tiles lie on even offsets (the CFA phase of training crops) and run through `Trainer.predict`
(camlit.inference.running) with the classifier's logits and pooled features beside the softmax
(camlit.inference.features), batched, on the usual device options.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from camlit.atomic import write_bytes_atomic
from camlit.data.crops import check_fits
from camlit.data.lattice_map import block_lattice
from camlit.data.quantization import steps_and_phase
from camlit.data.recompression import primary_lattice
from camlit.data.undo import without_gamma
from camlit.forensics.reliability import reliability
from camlit.inference.features import WithFeatures, softmax, split_extras
from camlit.inference.running import Predictions, predict_paths
from camlit.inference.tta import CropPlan


def tile_stride(size: int) -> int:
    """Half a crop, rounded down to an even number of pixels."""
    return max(2, size // 4 * 2)


def tile_axis(extent: int, size: int) -> np.ndarray:
    """Tile starts along one side: 0, stride, ... while a whole tile fits."""
    return np.arange(0, extent - size + 1, tile_stride(size))


@dataclass(frozen=True)
class TilePlan(CropPlan):
    """Every tile of the photo, row by row; `count` only sizes the loader's batches."""

    def offsets(self, height: int, width: int, index: int) -> list[tuple[int, int]]:
        check_fits(height, width, self.size)
        return [(top, left) for top in tile_axis(height, self.size) for left in tile_axis(width, self.size)]


@dataclass
class CameraMap:
    """The tiles of one photo as (rows, cols) grids."""

    classes: list[str]
    shape: tuple[int, int]  # the photo's (height, width)
    size: int  # tile side
    tops: np.ndarray  # (rows,)
    lefts: np.ndarray  # (cols,)
    probabilities: np.ndarray  # (rows, cols, classes) softmax
    logits: np.ndarray  # (rows, cols, classes)
    features: np.ndarray  # (rows, cols, features) the network's pooled features
    flat: np.ndarray  # (rows, cols) bool: too little residual to judge
    clipped: np.ndarray  # (rows, cols) bool: mostly black or blown
    # Per 8x8 block of the photo's JPEG grid, at `lattice_phase` (dy, dx): how closely it sits on
    # the photo's own quantization steps (camlit.data.lattice_map.block_lattice), read
    # after undoing a gamma (camlit.data.undo); empty where the photo shows no table of its own.
    lattice: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    lattice_phase: tuple[int, int] = (0, 0)
    # The same blocks against the photo's first table, where it was saved again whole, or against
    # a pasted region's, high where a block is the photo's own as in `lattice`
    # (camlit.data.recompression.primary_lattice); empty where no first table shows.
    primary_lattice: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    # Whether a gamma was undone before the lattices were read: the undo's rounding leaves clean
    # blocks off the lattice by the photo's brightness, so those photos get their own threshold.
    gamma_undone: bool = False

    @property
    def reliable(self) -> np.ndarray:
        return ~(self.flat | self.clipped)

    def save(self, path: str | os.PathLike) -> None:
        """The grid as a .npz (atomically): every array above, the class names and the photo's shape."""
        write_bytes_atomic(path, self.npz())

    def npz(self) -> bytes:
        """save's file, in memory."""
        arrays = {name: getattr(self, name) for name in ("tops", "lefts", "probabilities", "flat", "clipped")}
        with io.BytesIO() as file:
            np.savez_compressed(
                file, **arrays, logits=self.logits, features=self.features.astype(np.float16),
                classes=np.array(self.classes), shape=np.array(self.shape), size=np.array(self.size),
                lattice=self.lattice, lattice_phase=np.array(self.lattice_phase),
                primary_lattice=self.primary_lattice, gamma_undone=np.array(self.gamma_undone),
            )  # fmt: skip
            return file.getvalue()

    @classmethod
    def load(cls, path: str | os.PathLike) -> CameraMap:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        return cls(
            [str(name) for name in arrays["classes"]], tuple(int(v) for v in arrays["shape"]), int(arrays["size"]),
            arrays["tops"], arrays["lefts"], arrays["probabilities"], arrays["logits"],
            arrays["features"].astype(np.float32), arrays["flat"], arrays["clipped"],
            arrays.get("lattice", np.zeros((0, 0), np.float32)),
            tuple(int(v) for v in arrays.get("lattice_phase", (0, 0))),
            arrays.get("primary_lattice", np.zeros((0, 0), np.float32)),
            bool(arrays.get("gamma_undone", False)),
        )  # fmt: skip


def map_from_rows(image: np.ndarray, classes: Sequence[str], size: int, extras: np.ndarray) -> CameraMap:
    """A CameraMap from one photo's pixels and its tiles' `WithFeatures` rows (in TilePlan order)."""
    height, width = image.shape[:2]
    tops, lefts = tile_axis(height, size), tile_axis(width, size)
    grid = (len(tops), len(lefts))
    logits, features = split_extras(extras, len(classes))
    logits = logits.reshape(*grid, -1)
    flat, clipped = reliability(image, tops, lefts, size)
    return CameraMap(
        list(classes), (height, width), size, tops, lefts,
        softmax(logits), logits, features.reshape(*grid, -1), flat, clipped, *photo_lattice(image),
    )  # fmt: skip


def photo_lattice(image: np.ndarray) -> tuple[np.ndarray, tuple[int, int], np.ndarray, bool]:
    """CameraMap.lattice, lattice_phase, primary_lattice and gamma_undone of a photo, once a gamma
    is undone (a gamma bends the coefficients off the lattice, and its table can be undone closely
    enough). Both maps are read on the grid steps_and_phase finds, found once."""
    undone, gamma = without_gamma(image)
    read = steps_and_phase(undone)
    return block_lattice(undone, read)[0], read[1], primary_lattice(undone, read[1])[0], gamma is not None


def predict_tiles(
    model, paths: Sequence[str | os.PathLike], size: int, batch_size: int = 256, **options
) -> Predictions:
    """Every tile of every photo through Trainer.predict, one photo per batch; `Predictions.extras`
    holds each photo's tile rows for `map_from_rows`.

    `options` are predict_paths' (device, devices, num_workers, progress, reader, manipulated).
    """
    plan = TilePlan(size=size, count=batch_size)
    return predict_paths(WithFeatures(model), paths, plan, batch_size=batch_size, **options)
