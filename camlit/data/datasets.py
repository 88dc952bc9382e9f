"""Datasets behind CameraDataModule: training crops at the keys camlit.data.sampler draws, and
validation centre crops.

Randomness never depends on the worker that happens to load a sample: every draw comes from a
generator seeded by (seed, epoch, index), so any `num_workers` and any rank layout give the same
crops for the same seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from camlit.data import manipulations
from camlit.data.batch import Batch
from camlit.data.crops import center_crop, crop, random_offset
from camlit.data.manipulations import UNALTERED, Manipulation
from camlit.data.samples import Sample
from camlit.imageio import read_rgb


def to_chw_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


def random_train_crop(
    image: np.ndarray,
    size: int,
    rng: np.random.Generator,
    even: bool = True,
    manipulation_p: float = 0.0,
    weights: Sequence[float] | None = None,
) -> tuple[np.ndarray, Manipulation | None]:
    """A random `size` crop and the manipulation applied to it (None for none).

    With probability `manipulation_p` the crop is one of the whole image manipulated, as Kaggle
    manipulated the full frame: the manipulation is drawn from MANIPULATED with `weights`
    (uniform without), among those that leave the image at least `size` on each side, and the
    crop lies at a random even offset of the manipulated frame. Only the window of the image that
    the crop needs is manipulated (`manipulations.manipulated_crops`), with the same pixels as the
    whole: a JPEG on the image's own block grid, a resize at the frame's exact scale.
    """
    height, width = image.shape[:2]
    if manipulation_p > 0 and rng.random() < manipulation_p:
        name = draw_manipulation(rng, weights, height, width, size)
        if name is not None:
            manipulation = manipulations.MANIPULATIONS[name]
            offset = random_offset(*manipulation.output_shape(height, width), size, rng, even)
            return manipulations.manipulated_crops(name, image, [offset], size)[0], manipulation
    return crop(image, *random_offset(height, width, size, rng, even), size), None


def draw_manipulation(
    rng: np.random.Generator, weights: Sequence[float] | None, height: int, width: int, size: int
) -> str | None:
    """A manipulation name drawn with `weights` among those whose output still holds a `size` crop
    (a downscale of a small image does not); None where none does."""
    names = manipulations.MANIPULATED
    chances = np.ones(len(names)) if weights is None else np.asarray(weights, dtype=float)
    fits = [min(manipulations.MANIPULATIONS[name].output_shape(height, width)) >= size for name in names]
    chances = chances * fits
    if chances.sum() <= 0:
        return None
    return names[int(rng.choice(len(names), p=chances / chances.sum()))]


def manipulation_probabilities(weights: dict[str, float] | None) -> list[float] | None:
    """`manipulation_weights` as probabilities in MANIPULATED order; None (uniform) without."""
    if not weights:
        return None
    unknown = sorted(set(weights) - set(manipulations.MANIPULATED))
    if unknown:
        raise ValueError(f"unknown manipulation {unknown[0]!r}; choose from {', '.join(manipulations.MANIPULATED)}")
    values = [float(weights.get(name, 0.0)) for name in manipulations.MANIPULATED]
    if min(values) < 0 or not 0 < sum(values) < math.inf:  # nan fails both comparisons
        raise ValueError("weights must be 0 or more, not all 0, and add up to a finite number")
    return [value / sum(values) for value in values]


class Item(NamedTuple):
    """One crop as a dataset yields it; `collate` stacks a list of them into a Batch."""

    image: torch.Tensor  # (3, H, W) uint8
    label: int
    manipulation: int
    manipulated: bool


def collate(items: list[Item]) -> Batch:
    images, labels, manipulation, manipulated = zip(*items, strict=True)
    return Batch(
        torch.stack(images),
        torch.tensor(labels, dtype=torch.long),
        torch.tensor(manipulation, dtype=torch.long),
        torch.tensor(manipulated, dtype=torch.bool),
    )


class TrainCrops(Dataset):
    """Item (index, epoch, crop number) -> one random crop of that image, its label, and its
    manipulation (its number, and whether it is manipulated: the flag a manipulation-aware model is given).

    `manipulation_p` applies to unaltered images only; over the first `ramp_epochs` epochs it
    rises linearly to its full value, so a model first learns the cameras' plain traces.

    Without a decoded cache each crop decodes its image; `cache_dir` makes that a memory copy.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        crop_size: int,
        seed: int = 0,
        even_offsets: bool = True,
        manipulation_p: float = 0.0,
        reader=read_rgb,
        manipulation_weights: Sequence[float] | None = None,
        ramp_epochs: int = 0,
    ):
        self.samples = list(samples)
        self.crop_size = crop_size
        self.seed = seed
        self.even_offsets = even_offsets
        self.manipulation_p = manipulation_p
        self.reader = reader
        self.manipulation_weights = manipulation_weights
        self.ramp_epochs = ramp_epochs

    def __len__(self) -> int:
        return len(self.samples)

    def manipulation_p_at(self, epoch: int) -> float:
        if self.ramp_epochs <= 0:
            return self.manipulation_p
        return self.manipulation_p * min(1.0, (epoch + 1) / self.ramp_epochs)

    def __getitem__(self, key: tuple[int, int, int]) -> Item:
        index, epoch, crop_number = key
        sample = self.samples[index]
        rng = np.random.default_rng((self.seed, epoch, index, crop_number))
        image = self.reader(sample.path)
        if sample.manipulation != UNALTERED:
            # A prepared manipulation folder's images are manipulated already; Kaggle never stacked two.
            crop, _ = random_train_crop(image, self.crop_size, rng, self.even_offsets)
            return Item(to_chw_tensor(crop), sample.label, manipulations.index(sample.manipulation), True)
        crop, applied = random_train_crop(
            image,
            self.crop_size,
            rng,
            self.even_offsets,
            self.manipulation_p_at(epoch),
            self.manipulation_weights,
        )
        name = UNALTERED if applied is None else applied.name
        return Item(to_chw_tensor(crop), sample.label, manipulations.index(name), applied is not None)


class CenterCrops(Dataset):
    """Validation: the exact centre crop of each image, optionally of a manipulated copy.

    Unaltered images are expanded into one item per name in `expand_with`; the manipulation runs
    on the whole image before the crop, as Kaggle made its test set. Each item carries its
    manipulation's number (Batch.manipulation), by which the model scores each manipulation.

    A manipulation that has images of its own among `samples` (a prepared folder: manipulated on
    the full frame, then cropped) is not expanded too, so that each group is scored by one
    protocol; `not_expanded` lists those names.
    """

    def __init__(self, samples: Sequence[Sample], crop_size: int, expand_with: Sequence[str] = (), reader=read_rgb):
        prepared = {sample.manipulation for sample in samples}
        self.not_expanded = [name for name in expand_with if name != UNALTERED and name in prepared]
        expand_with = [name for name in expand_with if name != UNALTERED and name not in prepared]
        self.items: list[tuple[Sample, str]] = []
        for sample in samples:
            self.items.append((sample, sample.manipulation))
            if sample.manipulation == UNALTERED:
                self.items.extend((sample, name) for name in expand_with)
        self.crop_size = crop_size
        self.reader = reader

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Item:
        sample, manipulation = self.items[index]
        image = self.reader(sample.path)
        if manipulation != sample.manipulation:
            image = manipulations.apply(manipulation, image)
        crop = to_chw_tensor(center_crop(image, self.crop_size))
        return Item(crop, sample.label, manipulations.index(manipulation), manipulation != UNALTERED)

    @property
    def group_names(self) -> list[str]:
        """The manipulations present, in their order, then any other folder names."""
        return sorted({name for _, name in self.items}, key=group_order)


def group_order(name: str) -> tuple[int, str]:
    """`unaltered` first, then Kaggle's manipulations in their order, then any other folder names."""
    number = manipulations.index(name)
    return (number, "") if number >= 0 else (len(manipulations.NAMES), name)
