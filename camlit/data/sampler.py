"""The epoch sampler behind CameraDataModule: which images are cropped, how often, each epoch.

Its keys (sample index, epoch, crop number) seed every crop's draw in camlit.data.datasets, so
the same seed gives the same epoch whatever the workers or ranks.
"""

from __future__ import annotations

import logging
import warnings
from collections import defaultdict
from collections.abc import Iterator, Sequence

import numpy as np
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.data import Sampler

from camlit.data import manipulations

log = logging.getLogger(__name__)


class EpochSampler(Sampler):
    """Yields (sample index, epoch, crop number): `crops_per_image` crops of a fresh random
    `load_ratio` of each class's images every epoch, all shuffled together as the seed notebook did.

    With `unaltered_share`, each class's crops of the epoch (as many as without it) are drawn that
    share from its unaltered images and the rest from its manipulated ones (`unaltered` says which
    is which), each pool's images as evenly as possible: a prepared tree holds eight manipulated
    copies of every photo, and the share would otherwise be a ninth. `manipulation_weights`
    (probabilities in MANIPULATED order) then splits the manipulated crops between the folders
    (`kinds`: each image's manipulation), by largest remainder over the ones the class has.

    Lightning calls `set_epoch`, also through its DistributedSamplerWrapper under DDP, so every
    rank draws the same subset and the wrapper gives each rank a distinct share of it.
    """

    def __init__(
        self,
        labels: Sequence[int],
        load_ratio: float = 1.0,
        seed: int = 0,
        crops_per_image: int = 1,
        unaltered: Sequence[bool] | None = None,
        unaltered_share: float | None = None,
        kinds: Sequence[str] | None = None,
        manipulation_weights: Sequence[float] | None = None,
    ):
        if not 0 < load_ratio <= 1:
            raise ValueError(f"load_ratio must be in (0, 1], got {load_ratio}")
        self.by_class: dict[int, list[int]] = defaultdict(list)
        # Per class: (unaltered indices, manipulated indices).
        self.pools: dict[int, tuple[list[int], list[int]]] = defaultdict(lambda: ([], []))
        for index, label in enumerate(labels):
            self.by_class[label].append(index)
            if unaltered is not None:
                self.pools[label][0 if unaltered[index] else 1].append(index)
        if unaltered_share is not None:
            if unaltered is None or not 0 <= unaltered_share <= 1:
                raise ValueError("unaltered_share needs `unaltered` and must be in [0, 1]")
            for label, (plain, manipulated) in self.pools.items():
                if (unaltered_share > 0 and not plain) or (unaltered_share < 1 and not manipulated):
                    raise ValueError(f"class {label} has no {'unaltered' if not plain else 'manipulated'} images")
        self.unaltered_share = unaltered_share
        # Per class: the manipulated images of each manipulation, and its weight.
        self.folders: dict[int, list[tuple[list[int], float]]] = {}
        if manipulation_weights is not None:
            if unaltered_share is None or kinds is None:
                raise ValueError("manipulation_weights needs unaltered_share and kinds")
            weight = dict(zip(manipulations.MANIPULATED, manipulation_weights, strict=True))
            # A manipulation of unknown kind (a pseudo-labelled `_manip` test image) could be any of
            # them, so it weighs their mean.
            unknown_kind = float(np.mean(manipulation_weights))
            for label, (_, manipulated) in self.pools.items():
                by_kind = defaultdict(list)
                for index in manipulated:
                    by_kind[kinds[index]].append(index)
                self.folders[label] = [
                    (indices, weight.get(kind, unknown_kind)) for kind, indices in sorted(by_kind.items())
                ]
                if unaltered_share < 1 and not any(w > 0 for _, w in self.folders[label]):
                    raise ValueError(f"class {label} has no manipulated images of a manipulation weighing more than 0")
        if crops_per_image < 1:
            raise ValueError(f"crops_per_image must be at least 1, got {crops_per_image}")
        self.load_ratio = load_ratio
        self.seed = seed
        self.crops_per_image = crops_per_image
        self.epoch = 0
        self.resume_at: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume(self, epoch: int, items: int) -> None:
        """Draw `epoch`'s own order, and leave out its first `items` in the next pass: a run
        resumed mid-epoch then trains on the rest of the epoch it stopped in, as if never stopped."""
        self.epoch = epoch
        self.resume_at = (epoch, items)

    def per_class_count(self, available: int) -> int:
        return max(1, round(self.load_ratio * available))

    def __len__(self) -> int:
        images = sum(self.per_class_count(len(indices)) for indices in self.by_class.values())
        return images * self.crops_per_image

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        rng = np.random.default_rng((self.seed, self.epoch))
        items = []
        for label in sorted(self.by_class):
            indices = self.by_class[label]
            count = self.per_class_count(len(indices))
            if self.unaltered_share is None:
                chosen = rng.choice(indices, count, replace=False).tolist()
                items.extend((index, self.epoch, crop) for index in chosen for crop in range(self.crops_per_image))
                continue
            crops = count * self.crops_per_image
            plain = round(self.unaltered_share * crops)
            draws = [(self.pools[label][0], plain), *self.manipulated_draws(label, crops - plain)]
            for pool, share in draws:
                items.extend((index, self.epoch, crop) for index, crop in spread(rng, pool, share))
        start = self.resume_at[1] if self.resume_at and self.resume_at[0] == self.epoch else 0
        self.resume_at = None
        for position in rng.permutation(len(items)).tolist()[start:]:
            yield items[position]

    def manipulated_draws(self, label: int, count: int) -> list[tuple[list[int], int]]:
        """(pool, crops) pairs that share `count` manipulated crops of a class by the weights."""
        if label not in self.folders or count == 0:
            return [(self.pools[label][1], count)]
        pools, weights = zip(*self.folders[label], strict=True)
        exact = count * np.asarray(weights) / sum(weights)
        counts = np.floor(exact).astype(int)
        # Largest remainders first; a stable sort keeps ties in folder order, so the split is fixed.
        for position in np.argsort(counts - exact, kind="stable")[: count - counts.sum()]:
            counts[position] += 1
        return list(zip(pools, counts.tolist(), strict=True))


def spread(rng: np.random.Generator, indices: Sequence[int], count: int) -> list[tuple[int, int]]:
    """`count` (index, crop number) pairs over `indices`, in random rounds that each use every
    index once, so that no image gets two crops more than another; the crop number is the round."""
    if count == 0:
        return []
    rounds = -(-count // len(indices))
    order = np.concatenate([rng.permutation(indices) for _ in range(rounds)])[:count]
    return [(int(index), position // len(indices)) for position, index in enumerate(order.tolist())]


def resume_draw(sampler: EpochSampler, trainer, batch_size: int) -> None:
    """Start the draw at the epoch the fit is at, and a run resumed mid-epoch where it stopped.

    Lightning builds the loader, and its workers start drawing, before it sets the sampler's
    epoch, so a resumed run would otherwise train its first epoch on epoch 0's crops. Stopped
    mid-epoch (SIGTERM), it runs only the epoch's remaining batches: on one device these skip
    the ones done; under DDP each rank's share is cut from the whole order, so the epoch's
    remaining batches are drawn from its start.
    """
    loop = trainer.fit_loop.epoch_loop
    done = loop.batch_progress.current.completed if loop.restarting else 0
    if done and trainer.world_size > 1:
        epoch = trainer.current_epoch
        message = f"resumed in the middle of epoch {epoch} under DDP: its last batches are drawn from its start"
        rank_zero_only(log.warning)(message)
        done = 0
    elif done:
        # Lightning warns that the loader cannot resume, as it lacks the state_dict interface
        # Lightning looks for; this skip is the resume.
        warnings.filterwarnings("ignore", "You're resuming from a checkpoint that ended before the epoch ended")
    sampler.resume(trainer.current_epoch, done * batch_size)
