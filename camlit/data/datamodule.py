"""CameraDataModule: random even-offset crops for training, exact centre crops for validation."""

from __future__ import annotations

import copy
import logging
import sys
from functools import partial
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.data import DataLoader

from camlit.atomic import require_writable
from camlit.cameras import KAGGLE_CAMERAS, require_class_names
from camlit.data import manipulations
from camlit.data.cache import DecodedCache, build_cache
from camlit.data.crops import MIN_CROP_SIZE
from camlit.data.datasets import CenterCrops, TrainCrops, collate, manipulation_probabilities
from camlit.data.kaggle_layout import PREPARED
from camlit.data.pseudo import pseudo_label_samples
from camlit.data.sampler import EpochSampler, resume_draw
from camlit.data.samples import (
    Sample,
    check_images,
    is_scanned_folder,
    require_every_class,
    scan,
    split_by_photo,
    usable_samples,
)
from camlit.data.unaltered_share import log_unaltered_share, require_pools, unaltered_crop_share
from camlit.errors import CamlitError, not_a_folder
from camlit.imageio import MAX_PIXELS, header_shape, read_rgb
from camlit.workers import loader_context

log = logging.getLogger(__name__)

HOW_TO_GET_DATA = (
    "run the demo on generated data with `camlit fit --config scripts/configs/demo.yaml`, "
    "or point --data.train_dir at Kaggle's train/ or a prepared data-512/"
)


def require_expanded_crops_fit(val_set: CenterCrops, crop_size: int) -> None:
    """Refuse a validation manipulation that shrinks a photo below the crop (resize0.5 of a photo
    under twice the crop): usable at its own size, it failed mid-validation in a traceback."""
    shrinking = {name for name in manipulations.NAMES if min(manipulations.get(name).output_shape(100, 100)) < 100}
    shapes = {}
    for sample, name in val_set.items:
        if name == sample.manipulation or name not in shrinking:
            continue
        shape = shapes.setdefault(sample.path, header_shape(sample.path))
        if shape is not None and min(manipulations.get(name).output_shape(*shape)) < crop_size:
            height, width = shape
            raise CamlitError(
                f"--data.val_manipulations {name}: {sample.path} ({width}x{height}) is smaller than the "
                f"{crop_size}x{crop_size} crop after it; leave {name} out, or use a smaller --data.crop_size"
            )


class CameraDataModule(L.LightningDataModule):
    """Camera-labelled photos from `train_dir` (and `val_dir`), in either layout of camlit.data.samples.

    Args:
        train_dir: `root/<camera>/*` or `root/<manipulation>/<camera>/*`.
        val_dir: a separate validation folder; without one, `val_fraction` of the photos are held
            out, stratified by class and grouped by photo.
        classes: class names; a class's index is its position here.
        crop_size: side of the square crops, never resized.
        crops_per_image: independent random crops per image per epoch, as in the seed notebook.
        load_ratio: random fraction of each class's images used in each epoch, drawn afresh.
        batch_size: crops per training step and device.
        even_offsets: keep training crops on even offsets, which preserves the CFA phase.
        unaltered_share: on a prepared tree (`root/<manipulation>/<camera>/*`), the share of each
            epoch's training crops drawn from the unaltered folder; the rest come from the
            manipulation folders. None: images are drawn as they come (a ninth unaltered on a
            nine-folder tree). `manipulation_p` then manipulates some of the unaltered share.
        manipulation_p: chance of applying a random Kaggle manipulation to a training crop of an
            unaltered image; images from a prepared manipulation folder are not manipulated again.
        manipulation_weights: relative frequency of each manipulation, e.g. `{jpeg70: 2}` (missing
            ones weigh 0); uniform when not given. It weighs the on-the-fly manipulations and, with
            `unaltered_share` on a prepared tree, the manipulation folders' shares of the crops.
        manipulation_ramp_epochs: raise `manipulation_p` linearly from the first epoch to its full
            value at this epoch (0: full from the start).
        manipulation_patch_scale: no effect; kept so that runs saved with it resume. An on-the-fly
            manipulation's crop is now the crop of the whole image manipulated, which the larger
            patches it set only approached (datasets.random_train_crop).
        val_manipulations: also score every unaltered validation image under these manipulations,
            manipulated whole, then cropped. A manipulation with a prepared folder is scored on
            that folder alone, so that no group mixes two ways of making it.
        synthetic_root: where the built-in synthetic set lives; it is generated on first use when
            `train_dir` is its `train/` folder (the demo's set), or when `train_dir` is its
            `data-512/` folder: a Kaggle-shaped download (camlit.data.kaggle_layout), prepared.
        pseudo_labels: predict.py's `--probs` CSV of test images: their most confident predictions,
            per class and separately for `_unalt` and `_manip` names, are added to training with the
            predicted camera (camlit.data.pseudo gives the rule).
        pseudo_labels_dir: the folder of the test images that `pseudo_labels` names.
        pseudo_labels_share: how much of a class's fair share of each group (group size / classes)
            to take, the most confident first.
        cache_dir: keep the decoded images here in one memory-mapped file (camlit.data.cache), built by
            `setup` and rebuilt when the files change; training then crops without decoding.
        max_pixels: an image whose header claims more pixels is skipped as unusable, unread (the
            default is Pillow's decompression-bomb limit, about 89 MP; Kaggle's photos have 24 MP at most).
    """

    def __init__(
        self,
        train_dir: str = "data/synthetic/train",
        val_dir: str | None = None,
        val_fraction: float = 0.2,
        classes: list[str] = list(KAGGLE_CAMERAS),
        crop_size: int = 224,
        crops_per_image: int = 1,
        load_ratio: float = 1.0,
        batch_size: int = 32,
        num_workers: int = 4,
        seed: int = 0,
        even_offsets: bool = True,
        unaltered_share: float | None = None,
        manipulation_p: float = 0.0,
        manipulation_weights: dict[str, float] | None = None,
        manipulation_ramp_epochs: int = 0,
        manipulation_patch_scale: float = 1.0,
        val_manipulations: list[str] = [],
        synthetic_root: str | None = "data/synthetic",
        synthetic_images_per_camera: int = 30,
        pseudo_labels: str | None = None,
        pseudo_labels_dir: str | None = None,
        pseudo_labels_share: float = 0.5,
        cache_dir: str | None = None,
        max_pixels: int = MAX_PIXELS,
    ):
        super().__init__()
        self.save_hyperparameters()
        unknown = [name for name in val_manipulations if name not in manipulations.MANIPULATIONS]
        if unknown:
            choices = ", ".join(manipulations.MANIPULATIONS)
            raise CamlitError(f"val_manipulations: unknown {unknown[0]!r}; choose from {choices}")
        require_class_names(classes)
        for name, value, valid, rule in (
            ("crop_size", crop_size, crop_size >= MIN_CROP_SIZE, f"at least {MIN_CROP_SIZE}"),
            # The sampler's length (photos times crops) and the loader's indices are machine integers.
            ("crops_per_image", crops_per_image, 1 <= crops_per_image < 2**31, "at least 1 and below 2**31"),
            (
                "batch_size",
                batch_size,
                2 <= batch_size <= sys.maxsize,
                "at least 2 (batch norm needs 2 crops) and at most 2**63 - 1",
            ),
            ("num_workers", num_workers, num_workers >= 0, "0 or more"),
            ("load_ratio", load_ratio, 0 < load_ratio <= 1, "in (0, 1]"),
            ("manipulation_p", manipulation_p, 0 <= manipulation_p <= 1, "in [0, 1]"),
            ("unaltered_share", unaltered_share, unaltered_share is None or 0 <= unaltered_share <= 1, "in [0, 1]"),
            ("manipulation_ramp_epochs", manipulation_ramp_epochs, manipulation_ramp_epochs >= 0, "0 or more"),
            ("max_pixels", max_pixels, max_pixels >= 1, "at least 1"),
            ("pseudo_labels_share", pseudo_labels_share, 0 < pseudo_labels_share <= 1, "in (0, 1]"),
            ("seed", seed, 0 <= seed < 2**32, "in [0, 2**32)"),  # numpy's seed range
        ):
            if not valid:
                raise CamlitError(f"--data.{name} must be {rule}, got {value}")
        if manipulation_patch_scale != 1.0:
            log_warning(
                "--data.manipulation_patch_scale has no effect: "
                "on-the-fly manipulations are crops of the whole image manipulated"
            )
        try:
            self.manipulation_probabilities = manipulation_probabilities(manipulation_weights)
        except ValueError as error:
            raise CamlitError(f"--data.manipulation_weights: {error}") from None
        if cache_dir:
            require_writable(cache_dir, "--data.cache_dir", folder=True)
            for option, folder in (("train_dir", train_dir), ("val_dir", val_dir)):
                if folder and is_scanned_folder(Path(cache_dir), Path(folder)):
                    # The next run would read the cache's folder as a camera's, and refuse it.
                    raise CamlitError(
                        f"--data.cache_dir {cache_dir}: a camera or manipulation folder's place in --data.{option} "
                        f"{folder}; put it elsewhere (a hidden folder such as {Path(folder) / '.cache'} will do)"
                    )
        self.classes = list(classes)
        self.train_set: TrainCrops | None = None
        self.unaltered_crop_share: float | None = None  # of the training crops, once set up
        self.val_set: CenterCrops | None = None
        self.cache: DecodedCache | None = None
        self.pseudo_labelled: list[Sample] | None = None
        # The batch size of the run resumed from (its checkpoint's): the crops it trained of the
        # epoch it stopped in are its batches done times that, whatever --data.batch_size is now.
        self.batch_size_done: int | None = None

    @property
    def generates_synthetic(self) -> bool:
        root = self.hparams.synthetic_root
        return root is not None and Path(self.hparams.train_dir).resolve() == (Path(root) / "train").resolve()

    @property
    def generates_kaggle_layout(self) -> bool:
        root = self.hparams.synthetic_root
        return root is not None and Path(self.hparams.train_dir).resolve() == (Path(root) / PREPARED).resolve()

    def prepare_data(self) -> None:
        """Only what writes to disk once per machine, and no state: the synthetic set, when asked for."""
        if self.generates_synthetic:
            from camlit.data.synthetic import is_complete, make_synthetic, require_made_as_fit_makes

            if is_complete(self.hparams.synthetic_root):
                require_made_as_fit_makes(self.hparams.synthetic_root, self.hparams.synthetic_images_per_camera)
            else:
                log.info("generating the synthetic camera data set in %s", self.hparams.synthetic_root)
                make_synthetic(Path(self.hparams.synthetic_root), self.hparams.synthetic_images_per_camera)
        if self.generates_kaggle_layout:
            from camlit.data.kaggle_layout import prepared_download

            prepared_download(self.hparams.synthetic_root, self.hparams.synthetic_images_per_camera)

    def pseudo_label_samples(self) -> list[Sample]:
        """The test images chosen by `pseudo_labels` (none without it), read once."""
        hp = self.hparams
        if self.pseudo_labelled is None:
            self.pseudo_labelled = []
            if hp.pseudo_labels:
                self.pseudo_labelled = pseudo_label_samples(
                    hp.pseudo_labels, hp.pseudo_labels_dir, self.classes, hp.pseudo_labels_share
                )
                log_pseudo_labels(self.pseudo_labelled, hp.pseudo_labels)
        return self.pseudo_labelled

    def preview(self) -> CameraDataModule | None:
        """This DataModule as set up from the folders' listing alone, before any image is decoded
        or cached (setup leaves out the unusable images as well): the options are checked against
        it first, where a refusal after setup came after a cache build (hours for Kaggle's set)
        that replaced the older cache. None for data generated on first use."""
        hp = self.hparams
        if self.generates_synthetic or self.generates_kaggle_layout or not Path(hp.train_dir).is_dir():
            return None
        train, val = self.split(scan(hp.train_dir, self.classes), scan(hp.val_dir, self.classes) if hp.val_dir else [])
        self.require_trainable(train)
        preview = copy.copy(self)
        preview.val_set = CenterCrops(val, hp.crop_size, hp.val_manipulations)
        preview.unaltered_crop_share = unaltered_crop_share(train, hp.unaltered_share, hp.manipulation_p)
        return preview

    def split(self, samples: list[Sample], val_samples: list[Sample]) -> tuple[list[Sample], list[Sample]]:
        """(training, validation) photos: `val_dir`'s, or `val_fraction` of the photos held out."""
        hp = self.hparams
        if hp.val_dir:
            return samples, val_samples
        return split_by_photo(samples, hp.val_fraction, hp.seed)

    def require_trainable(self, train: list[Sample]) -> None:
        hp = self.hparams
        require_every_class(train, self.classes, hp.train_dir)
        require_pools(train, self.classes, hp.unaltered_share, hp.train_dir, hp.manipulation_weights)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        hp = self.hparams
        if not Path(hp.train_dir).is_dir():
            raise CamlitError(f"{hp.train_dir}: {not_a_folder(hp.train_dir)}; {HOW_TO_GET_DATA}")
        found = scan(hp.train_dir, self.classes)
        found_val = scan(hp.val_dir, self.classes) if hp.val_dir else []
        self.require_trainable(self.split(found, found_val)[0])  # before a cache is built
        pseudo = self.pseudo_label_samples()
        if hp.cache_dir:
            # Under DDP every rank asks; the build lock lets one build while the others wait, then load it.
            paths = [s.path for s in [*found, *found_val, *pseudo]]
            self.cache = build_cache(hp.cache_dir, paths, hp.crop_size, hp.num_workers, hp.max_pixels)
        train, val = self.split(
            self.usable(found, hp.train_dir), self.usable(found_val, hp.val_dir) if hp.val_dir else []
        )
        if hp.val_dir and Path(hp.val_dir).resolve() == Path(hp.train_dir).resolve():
            log_warning("--data.val_dir is --data.train_dir: validation scores the photos it trains on")
        self.require_trainable(train)
        if pseudo:
            # Training only: the test images have no true label to validate against.
            train = train + self.usable(pseudo, hp.pseudo_labels)
        reader = partial(read_rgb, max_pixels=hp.max_pixels) if self.cache is None else self.cache
        self.train_set = TrainCrops(
            train,
            hp.crop_size,
            hp.seed,
            hp.even_offsets,
            hp.manipulation_p,
            reader,
            self.manipulation_probabilities,
            hp.manipulation_ramp_epochs,
        )
        self.val_set = CenterCrops(val, hp.crop_size, hp.val_manipulations, reader)
        require_expanded_crops_fit(self.val_set, hp.crop_size)
        log_split(len(train), len(val), len(self.val_set))
        self.unaltered_crop_share = unaltered_crop_share(train, hp.unaltered_share, hp.manipulation_p)
        log_unaltered_share(train, hp.unaltered_share, hp.manipulation_p)
        if self.val_set.not_expanded:
            log_warning(
                f"--data.val_manipulations: {', '.join(self.val_set.not_expanded)} scored on their prepared folders "
                "only (manipulated whole, then cropped), not also on manipulated copies of the unaltered images"
            )

    def usable(self, samples: list[Sample], where: str) -> list[Sample]:
        hp = self.hparams
        if self.cache is not None:
            return usable_samples(samples, where, hp.crop_size, self.cache.check)
        check = partial(check_images, min_size=hp.crop_size, workers=hp.num_workers, max_pixels=hp.max_pixels)
        return usable_samples(samples, where, hp.crop_size, check)

    @property
    def val_group_names(self) -> list[str]:
        """The manipulations validation scores apart (`val/acc/<name>`): those of Kaggle's present."""
        names = self.val_set.group_names if self.val_set is not None else []
        return [name for name in names if name in manipulations.MANIPULATIONS]

    def train_dataloader(self) -> DataLoader:
        hp = self.hparams
        labels = [s.label for s in self.train_set.samples]
        unaltered = [s.manipulation == manipulations.UNALTERED for s in self.train_set.samples]
        kinds = [s.manipulation for s in self.train_set.samples]
        # Without a share, images are drawn as they come and the weights act on the fly only.
        weights = self.manipulation_probabilities if hp.unaltered_share is not None else None
        sampler = EpochSampler(
            labels, hp.load_ratio, hp.seed, hp.crops_per_image, unaltered, hp.unaltered_share, kinds, weights
        )
        if self.trainer is not None:
            resume_draw(sampler, self.trainer, self.batch_size_done or hp.batch_size)
        return self.loader(
            self.train_set,
            batch_size=hp.batch_size,
            sampler=sampler,
            # A last batch of a single crop would break batch norm; keep it only on tiny sets.
            drop_last=len(sampler) > hp.batch_size,
        )

    def state_dict(self) -> dict:
        return {"batch_size": self.hparams.batch_size}

    def load_state_dict(self, state_dict: dict) -> None:
        self.batch_size_done = int(state_dict.get("batch_size") or self.hparams.batch_size)

    def val_dataloader(self) -> DataLoader:
        sampler = None
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # Each item on exactly one rank. Lightning's own DistributedSampler would pad a short share
            # with repeats, which the metrics, summed over the ranks, would count twice.
            sampler = UnrepeatedDistributedSampler(self.val_set, shuffle=False)
        return self.loader(self.val_set, batch_size=self.hparams.batch_size, sampler=sampler, shuffle=False)

    def loader(self, dataset, **kwargs) -> DataLoader:
        workers = self.hparams.num_workers
        return DataLoader(
            dataset,
            collate_fn=collate,
            num_workers=workers,
            multiprocessing_context=loader_context() if workers > 0 else None,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
            **kwargs,
        )


@rank_zero_only
def log_warning(message: str) -> None:
    log.warning(message)


@rank_zero_only
def log_pseudo_labels(samples: list[Sample], source: str) -> None:
    manipulated = sum(sample.manipulation != manipulations.UNALTERED for sample in samples)
    log.info("%d pseudo-labelled test images from %s (%d manipulated)", len(samples), source, manipulated)


@rank_zero_only
def log_split(train: int, val: int, val_items: int) -> None:
    log.info("%d training images, %d validation images (%d validation items)", train, val, val_items)
