import logging
from collections import Counter

import numpy as np
import pytest
import torch
from conftest import CLASSES, add_unusable_files, bomb_png, epoch_batches, random_image, same_batch
from conftest import make_datamodule as make

from camlit.data import manipulations
from camlit.data.batch import Batch
from camlit.data.crops import center_crop
from camlit.data.datamodule import CameraDataModule
from camlit.data.datasets import random_train_crop
from camlit.data.manipulations import MANIPULATED, NAMES
from camlit.errors import CamlitError
from camlit.imageio import read_rgb


def test_train_batches_are_uint8_chw_crops(flat_tree):
    datamodule = make(flat_tree, crops_per_image=2, batch_size=4)
    batch = next(iter(datamodule.train_dataloader()))
    assert isinstance(batch, Batch)
    assert batch.images.shape == (4, 3, 32, 32) and batch.images.dtype == torch.uint8
    assert batch.labels.dtype == torch.long
    assert batch.manipulated.dtype == torch.bool and not batch.manipulated.any()
    assert batch.manipulation.tolist() == [0] * 4


def test_crops_per_image_and_load_ratio_counts(flat_tree):
    datamodule = make(flat_tree, crops_per_image=2, load_ratio=0.5, batch_size=2, val_fraction=0.34)
    train_images = len(datamodule.train_set)
    assert train_images == 12  # 4 of 6 photos per class
    batches = epoch_batches(datamodule, 0)
    labels = torch.cat([b.labels for b in batches])
    assert len(labels) == 3 * 2 * 2  # 3 classes x round(0.5 x 4) images x 2 crops
    assert torch.bincount(labels).tolist() == [4, 4, 4]


def test_same_samples_for_any_worker_count(flat_tree):
    serial = epoch_batches(make(flat_tree, crops_per_image=2, num_workers=0), 1)
    parallel = epoch_batches(make(flat_tree, crops_per_image=2, num_workers=2), 1)
    assert len(serial) == len(parallel)
    for first, second in zip(serial, parallel, strict=True):
        assert same_batch(first, second)
    other_epoch = epoch_batches(make(flat_tree, crops_per_image=2, num_workers=0), 2)
    assert not all(torch.equal(a.images, b.images) for a, b in zip(serial, other_epoch, strict=False))


def test_train_crops_come_from_the_image_on_even_offsets(flat_tree):
    datamodule = make(flat_tree, crops_per_image=3, batch_size=6)
    sample = datamodule.train_set.samples[0]
    image = read_rgb(sample.path)
    crops = [datamodule.train_set[(0, 0, k)][0].permute(1, 2, 0).numpy() for k in range(3)]
    assert not np.array_equal(crops[0], crops[1]) or not np.array_equal(crops[1], crops[2])
    for crop in crops:
        hits = [
            (top, left)
            for top in range(0, 64 - 31)
            for left in range(0, 80 - 31)
            if np.array_equal(image[top : top + 32, left : left + 32], crop)
        ]
        assert hits and all(top % 2 == 0 and left % 2 == 0 for top, left in hits)


def test_validation_is_the_exact_centre_crop(flat_tree):
    datamodule = make(flat_tree)
    image, label, manipulation, manipulated = datamodule.val_set[0]
    sample = datamodule.val_set.items[0][0]
    assert np.array_equal(image.permute(1, 2, 0).numpy(), center_crop(read_rgb(sample.path), 32))
    assert label == sample.label and manipulation == 0 and not manipulated


def test_validation_expanded_with_manipulations(flat_tree):
    datamodule = make(flat_tree, val_manipulations=["jpeg70", "resize0.5"], crop_size=16)
    assert datamodule.val_set.group_names == ["unaltered", "jpeg70", "resize0.5"]
    assert len(datamodule.val_set) == 3 * len({item[0] for item in datamodule.val_set.items})
    batch = next(iter(datamodule.val_dataloader()))
    assert isinstance(batch, Batch)
    assert batch.manipulation[:3].tolist() == [NAMES.index(n) for n in ("unaltered", "jpeg70", "resize0.5")]
    assert batch.manipulated[:3].tolist() == [False, True, True]


def test_manipulation_layout_groups_in_validation(manipulation_tree):
    datamodule = make(manipulation_tree, val_fraction=0.25)
    assert datamodule.val_set.group_names == ["unaltered", "jpeg70", "gamma0.8"]
    val_photos = {item[0].photo for item in datamodule.val_set.items}
    assert val_photos.isdisjoint({s.photo for s in datamodule.train_set.samples})


def test_on_the_fly_manipulation_gives_full_size_crops():
    rng = np.random.default_rng(0)
    image = random_image(rng, 160, 160)
    crops = [random_train_crop(image, 32, rng, manipulation_p=1.0)[0] for _ in range(50)]
    assert all(c.shape == (32, 32, 3) and c.dtype == np.uint8 for c in crops)
    plain = [random_train_crop(image, 32, np.random.default_rng(1), manipulation_p=0.0)[0] for _ in range(5)]
    offsets = [(top, left) for top in range(0, 129, 2) for left in range(0, 129, 2)]
    assert all(any(np.array_equal(p, image[t : t + 32, x : x + 32]) for t, x in offsets) for p in plain)


def test_on_the_fly_manipulation_spares_prepared_manipulations(manipulation_tree):
    plain = make(manipulation_tree, val_fraction=0.25).train_set
    augmented = make(manipulation_tree, val_fraction=0.25, manipulation_p=1.0).train_set
    changed = {"unaltered": 0, "jpeg70": 0, "gamma0.8": 0}
    for index, sample in enumerate(plain.samples):
        changed[sample.manipulation] += not torch.equal(plain[index, 0, 0][0], augmented[index, 0, 0][0])
    assert changed["jpeg70"] == changed["gamma0.8"] == 0
    assert changed["unaltered"] == sum(s.manipulation == "unaltered" for s in plain.samples)


def test_a_training_crops_flag_matches_its_manipulation(manipulation_tree):
    """Prepared manipulation folders are flagged; on-the-fly manipulation flags exactly the crops
    whose pixels it changed, and the weights choose which manipulations it draws."""
    train_set = make(manipulation_tree, val_fraction=0.25, manipulation_p=0.5).train_set
    flags = {"unaltered": [], "jpeg70": [], "gamma0.8": []}
    for index, sample in enumerate(train_set.samples):
        photo = torch.from_numpy(read_rgb(sample.path)).permute(2, 0, 1)
        windows = photo.unfold(1, 32, 2).unfold(2, 32, 2)  # every even-offset 32 px crop
        for crop in range(4):
            image, label, manipulation, manipulated = train_set[index, 0, crop]
            assert label == sample.label and manipulated == (manipulation != 0)
            if sample.manipulation == "unaltered":
                untouched = (windows == image[:, None, None]).flatten(3).all(3).all(0).any()
                assert manipulated != bool(untouched)
            else:
                assert NAMES[manipulation] == sample.manipulation
            flags[sample.manipulation].append(manipulated)
    assert all(flags["jpeg70"]) and all(flags["gamma0.8"])
    assert 0 < sum(flags["unaltered"]) < len(flags["unaltered"])
    rng = np.random.default_rng(0)
    image = random_image(rng, 160, 160)
    only = [random_train_crop(image, 32, rng, manipulation_p=1.0, weights=[1.0] + [0.0] * 7)[1] for _ in range(20)]
    assert [m.name for m in only] == ["jpeg70"] * 20


def test_manipulation_ramp_and_weights_are_checked(flat_tree):
    datamodule = make(flat_tree, manipulation_p=0.8, manipulation_ramp_epochs=4)
    assert [datamodule.train_set.manipulation_p_at(epoch) for epoch in (0, 1, 3, 9)] == pytest.approx(
        [0.2, 0.4, 0.8, 0.8]
    )
    with pytest.raises(CamlitError, match="manipulation_weights: unknown manipulation 'jpeg50'"):
        CameraDataModule(str(flat_tree), manipulation_weights={"jpeg50": 1.0})


def test_unusable_files_skipped_and_named(flat_tree, caplog):
    add_unusable_files(flat_tree / "HTC-1-M7")
    with caplog.at_level(logging.WARNING):
        datamodule = make(flat_tree)
    for name in ("zero.jpg", "text.jpg", "tiny.png", "gray.png"):
        assert sum(name in r.getMessage() for r in caplog.records) == 1, name
    assert "skipped 4 unusable image(s)" in caplog.text
    assert len(datamodule.train_set) + len({i[0] for i in datamodule.val_set.items}) == 18


@pytest.mark.parametrize("cached", [False, True])
def test_a_decompression_bomb_is_skipped_unread(flat_tree, tmp_path, caplog, cached):
    bomb_png(flat_tree / "HTC-1-M7" / "bomb.png")
    with caplog.at_level(logging.WARNING):
        datamodule = make(flat_tree, cache_dir=str(tmp_path / "cache") if cached else None)
    assert "bomb.png: 20000x20000 is 400,000,000 pixels, over the limit" in caplog.text
    assert len(datamodule.train_set) + len({i[0] for i in datamodule.val_set.items}) == 18
    with pytest.raises(CamlitError, match="--data.max_pixels must be at least 1"):
        CameraDataModule(str(flat_tree), max_pixels=0)


def test_configuration_errors(flat_tree, tmp_path, caplog):
    with pytest.raises(CamlitError, match="unknown 'jpeg50'"):
        CameraDataModule(str(flat_tree), val_manipulations=["jpeg50"])
    with pytest.raises(CamlitError, match="no such folder; run the demo"):
        make(tmp_path / "absent")
    with pytest.raises(CamlitError, match="no usable images for class Sony-NEX-7"):
        make(flat_tree, classes=CLASSES + ["Sony-NEX-7"])
    # A class listed twice got its photos under one label, and "no usable images" under the other.
    with pytest.raises(CamlitError, match=f"--data.classes: {CLASSES[0]} listed twice"):
        make(flat_tree, classes=[*CLASSES, CLASSES[0]])
    # A class named like predict's own column or answer could not be told from it in the CSVs.
    with pytest.raises(CamlitError, match="--data.classes: 'unknown' is a name predict's outputs keep"):
        make(flat_tree, classes=[*CLASSES, "unknown"])
    # 64x80 photos hold a 32 px crop, but not after resize0.5: validation failed in a traceback.
    with pytest.raises(CamlitError, match="--data.val_manipulations resize0.5: .* is smaller than the 48x48 crop"):
        make(flat_tree, crop_size=48, val_manipulations=["jpeg70", "resize0.5"])
    make(flat_tree, crop_size=32, val_manipulations=["jpeg70", "resize0.5"])
    # The cache's folder inside the training folder read as a camera's by the next run, and refused.
    with pytest.raises(CamlitError, match=f"--data.cache_dir {flat_tree / 'cache'}: a camera or manipulation folder"):
        make(flat_tree, cache_dir=str(flat_tree / "cache"))
    make(flat_tree, cache_dir=str(flat_tree / ".cache"))  # hidden: no scan reads it
    with (
        caplog.at_level(logging.WARNING),
        pytest.raises(CamlitError, match="crop_size 100 is larger than every image in"),
    ):
        make(flat_tree, crop_size=100)
    assert not [r for r in caplog.records if "skipped" in r.getMessage()]


@pytest.mark.parametrize("name", MANIPULATED)
def test_an_on_the_fly_crop_is_a_crop_of_the_whole_image_manipulated(name):
    """As Kaggle manipulated the full frame: the crop equals one at an even offset of the whole
    image manipulated. A JPEG of a patch at a random offset put its block grid off the image's own
    (7 crops in 100 on it), and a resized patch's scale was off the factor (0.8049 for 0.8)."""
    image = random_image(np.random.default_rng(0), 150, 206)
    whole = manipulations.apply(name, image)
    rng = np.random.default_rng(1)
    weights = [float(name == other) for other in MANIPULATED]
    for _ in range(6):
        crop, applied = random_train_crop(image, 32, rng, manipulation_p=1.0, weights=weights)
        assert applied.name == name and crop.shape == (32, 32, 3)
        corners = 2 * np.argwhere((whole[::2, ::2] == crop[0, 0]).all(-1))
        assert any(np.array_equal(whole[t : t + 32, x : x + 32], crop) for t, x in corners)


def test_a_manipulation_that_leaves_no_crop_is_not_drawn():
    """A 48 px image halved is 24 px: the drawn resize0.5 fell back to an unaltered crop without a
    word, so the manipulated share was lower than asked. Only manipulations that fit are drawn."""
    image = random_image(np.random.default_rng(0), 48, 48)
    rng = np.random.default_rng(2)
    drawn = Counter(random_train_crop(image, 40, rng, manipulation_p=1.0)[1].name for _ in range(300))
    assert set(drawn) == set(MANIPULATED) - {"resize0.5", "resize0.8"}
    only_halving = [float(name == "resize0.5") for name in MANIPULATED]
    assert random_train_crop(image, 40, rng, manipulation_p=1.0, weights=only_halving)[1] is None


def test_the_retired_patch_scale_is_accepted_with_a_warning(flat_tree, caplog):
    """Every saved run's config.yaml holds it, so its resume must still read it."""
    with caplog.at_level(logging.WARNING):
        CameraDataModule(str(flat_tree), manipulation_patch_scale=1.0)
    assert "manipulation_patch_scale" not in caplog.text
    with caplog.at_level(logging.WARNING):
        CameraDataModule(str(flat_tree), manipulation_patch_scale=2.0)
    assert "--data.manipulation_patch_scale has no effect" in caplog.text


def test_crops_smaller_than_any_command_takes_are_refused(flat_tree):
    """A run trained on 2 px crops finished; predict then took that size, and inspect refused it."""
    with pytest.raises(CamlitError, match="--data.crop_size must be at least 4, got 3"):
        CameraDataModule(str(flat_tree), crop_size=3)
    assert CameraDataModule(str(flat_tree), crop_size=4).hparams.crop_size == 4
