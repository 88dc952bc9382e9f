"""Test-time augmentation: the crops taken of each test image, and the loader that yields them.

Besides crops of the image, a plan can take the same crops of manipulated versions of it (each
manipulation applied to the whole image, as Kaggle made its test set), as the 5th place averaged
its predictions over the manipulations.

Crops come from camlit.data.crops, on the image as camlit.imageio reads it for training. The loader
feeds Lightning's `Trainer.predict` (camlit.inference.running).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from camlit.data import manipulations
from camlit.data.batch import UNKNOWN, Batch
from camlit.data.crops import MIN_CROP_SIZE, center_offset, crop, grid_offsets, random_offset
from camlit.errors import CamlitError
from camlit.imageio import UnreadableImage, read_rgb, require_crop_fits
from camlit.workers import loader_context, one_blas_thread

DEFAULT_CROP_SIZE = 224
DEFAULT_CROPS = 10
# Each image's crops are cut together in memory (150 KB apiece at 224 px): a million asked for by
# mistake would be killed for memory rather than refused.
MAX_CROPS = 1024


def require_crop_size(size: int | None) -> None:
    """A --crop_size given is at least MIN_CROP_SIZE."""
    if size is not None and size < MIN_CROP_SIZE:
        raise CamlitError(f"--crop_size must be at least {MIN_CROP_SIZE}, got {size}")


@dataclass(frozen=True)
class CropPlan:
    """Which test-time crops to take of each image.

    Random (default): the centre crop, then `count - 1` crops at random even offsets drawn from a
    generator seeded by (`seed`, the image's crop_key), so a rerun gives the same crops. Grid: a
    deterministic even grid of `count` crops over the whole image (camlit.data.crops.grid_offsets).
    `manipulations`: names from camlit.data.manipulations whose versions of the image are cropped
    the same way too (a version too small for a crop, such as a small image halved, is left out).
    """

    size: int = DEFAULT_CROP_SIZE
    count: int = DEFAULT_CROPS
    grid: bool = False
    seed: int = 0
    manipulations: tuple[str, ...] = ()

    @property
    def most_crops(self) -> int:
        return self.count * (1 + len(self.manipulations))

    def offsets(self, height: int, width: int, key: int) -> list[tuple[int, int]]:
        if self.grid:
            return grid_offsets(height, width, self.size, self.count, even=True)
        offsets = [center_offset(height, width, self.size)]
        rng = np.random.default_rng((self.seed, key))
        offsets += [random_offset(height, width, self.size, rng, even=True) for _ in range(self.count - 1)]
        return offsets


def crop_key(path: str | os.PathLike) -> int:
    """A photo's own seed for its random crops, from its file name: its crops, and so its answer, do
    not depend on which other files lie beside it (seeded by its place in the folder, they did)."""
    name = os.fsencode(os.path.basename(path))
    return int.from_bytes(hashlib.blake2b(name, digest_size=8).digest(), "little")


def image_crops(image: np.ndarray, plan: CropPlan, key: int) -> np.ndarray:
    """HxWx3 -> (crops, 3, size, size) uint8, the crops of `plan` for the image of crop_key `key`."""
    height, width = image.shape[:2]
    crops = [crop(image, top, left, plan.size) for top, left in plan.offsets(height, width, key)]
    return np.ascontiguousarray(np.stack(crops).transpose(0, 3, 1, 2))


def augmented_crops(image: np.ndarray, plan: CropPlan, key: int) -> tuple[np.ndarray, np.ndarray]:
    """The crops of the image and of its manipulated versions, and whether each is of a version."""
    plain = image_crops(image, plan, key)
    crops, applied = [plain], [np.zeros(len(plain), dtype=bool)]
    for name in plan.manipulations:
        version = manipulations.apply(name, image)
        if min(version.shape[:2]) >= plan.size:
            crops.append(image_crops(version, plan, key))
            applied.append(np.ones(len(crops[-1]), dtype=bool))
    return np.concatenate(crops), np.concatenate(applied)


class PredictCrops(Dataset):
    """Item i -> (the crops of image i as uint8 (n, 3, size, size), n copies of i, problem, whether
    each crop is of a manipulated version of the image, and n copies of `describe(image)`, the
    whole photo's features, or None without `describe`).

    An unreadable (or too small) image gives no crops and the reason instead of raising, so one bad
    file neither kills a loader worker nor stops the run.
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike],
        plan: CropPlan,
        reader: Callable = read_rgb,
        describe: Callable[[np.ndarray], np.ndarray] | None = None,
    ):
        self.paths = [str(p) for p in paths]
        self.plan = plan
        self.reader = reader
        self.describe = describe

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple:
        path = self.paths[index]
        size = self.plan.size
        try:
            image = self.reader(path)
            require_crop_fits(path, *image.shape[:2], size)
            crops, applied = map(torch.from_numpy, augmented_crops(image, self.plan, crop_key(path)))
        except UnreadableImage as problem:
            empty = torch.empty((0, 3, size, size), dtype=torch.uint8)
            return empty, torch.empty(0, dtype=torch.long), (index, problem), torch.empty(0, dtype=torch.bool), None
        described = None
        if self.describe is not None:
            described = torch.from_numpy(np.asarray(self.describe(image), np.float32)).expand(len(crops), -1)
        return crops, torch.full((len(crops),), index, dtype=torch.long), None, applied, described


class CollateCrops:
    """One Batch of the per-image crop stacks: no labels, the images that gave no crops aside, and
    each crop's flag where its image's is known (a crop of a manipulated version of an image is
    manipulated); False otherwise, for a model that does not read it."""

    def __init__(self, manipulated: Sequence[bool] | None = None):
        self.manipulated = None if manipulated is None else torch.tensor(list(manipulated), dtype=torch.bool)

    def __call__(self, items: list) -> Batch:
        images, indices, problems, applied, described = zip(*items, strict=True)
        indices = torch.cat(indices)
        unknown = torch.full_like(indices, UNKNOWN)
        if self.manipulated is None:
            flags = torch.zeros_like(indices, dtype=torch.bool)
        else:
            flags = self.manipulated[indices] | torch.cat(applied)
        known_problems = tuple(p for p in problems if p is not None)
        rows = [d for d in described if d is not None]
        photo_features = torch.cat(rows) if rows else None
        return Batch(
            torch.cat(images), unknown, unknown, flags, image_index=indices, problems=known_problems,
            photo_features=photo_features,
        )  # fmt: skip


def crop_loader(
    paths: Sequence[str | os.PathLike],
    plan: CropPlan,
    batch_size: int = 128,
    num_workers: int = 0,
    reader: Callable = read_rgb,
    manipulated: Sequence[bool] | None = None,
    describe: Callable[[np.ndarray], np.ndarray] | None = None,
) -> DataLoader:
    """Batches of about `batch_size` crops (whole images, at least one per batch), in path order.

    For `Trainer.predict(model, dataloaders=...)`, whose CameraClassifier.predict_step returns the
    softmax of each crop. `describe` gives each crop its whole photo's features (PredictCrops).
    """
    return DataLoader(
        PredictCrops(paths, plan, reader, describe),
        batch_size=max(1, batch_size // max(1, plan.most_crops)),
        shuffle=False,
        num_workers=num_workers,
        # As training's: workers that die with this process, even by kill -9, and leave SIGTERM to it.
        multiprocessing_context=loader_context() if num_workers > 0 else None,
        worker_init_fn=one_blas_thread,
        collate_fn=CollateCrops(manipulated),
        pin_memory=torch.cuda.is_available(),
    )
