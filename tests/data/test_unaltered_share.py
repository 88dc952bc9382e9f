"""The share of unaltered training crops on a prepared tree, and one protocol per validation group."""

from collections import Counter

import pytest
from conftest import make_datamodule as make

from camlit.data.manipulations import MANIPULATED, MANIPULATIONS
from camlit.data.manipulations import UNALTERED as UNALTERED_NAME
from camlit.data.pseudo import UNKNOWN_MANIPULATION
from camlit.data.sampler import EpochSampler
from camlit.data.unaltered_share import unaltered_crop_share
from camlit.errors import CamlitError

# Two classes of 4 photos in nine folders: unaltered first, then 8 manipulated copies of each.
LABELS = [label for _ in range(9) for label in (0,) * 4 + (1,) * 4]
UNALTERED = [folder == 0 for folder in range(9) for _ in range(8)]


@pytest.mark.parametrize("share", [0.5, 0.3, 1.0])
def test_sampler_draws_the_share_from_unaltered_images_evenly(share):
    sampler = EpochSampler(LABELS, 0.25, 0, 4, UNALTERED, share)
    items = list(sampler)
    assert len(items) == len(sampler) == 2 * 9 * 4  # as many crops as without a share: 9 of 36 images x 4
    for label in (0, 1):
        mine = [index for index, _, _ in items if LABELS[index] == label]
        assert sum(UNALTERED[index] for index in mine) == round(share * 36)
        # Every unaltered image of the class gets as many crops as another, within one.
        counts = Counter(index for index in mine if UNALTERED[index])
        assert set(counts) == {i for i in range(72) if UNALTERED[i] and LABELS[i] == label}
        assert max(counts.values()) - min(counts.values()) <= 1
    # No crop of an image is drawn twice in an epoch, and the epoch decides the draw.
    assert len(set(items)) == len(items)
    assert items == list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != items


def test_manipulation_weights_split_the_manipulated_crops_between_the_folders():
    kinds = [name for name in MANIPULATIONS for _ in range(8)]
    weights = [3.0 if name.startswith("jpeg") else 0.0 if name == "gamma0.8" else 1.0 for name in MANIPULATED]
    probabilities = [w / sum(weights) for w in weights]
    sampler = EpochSampler(LABELS, 1.0, 0, 4, UNALTERED, 0.5, kinds, probabilities)
    items = list(sampler)
    assert len(items) == len(sampler) == 2 * 36 * 4
    for label in (0, 1):
        drawn = Counter(kinds[index] for index, _, _ in items if LABELS[index] == label)
        # 72 manipulated crops by weights 3:3:1:1:1:1:0:1 over 11: 19.6 -> 20 (largest remainders), 6.5 -> 6 or 7.
        assert drawn["unaltered"] == 72 and "gamma0.8" not in drawn
        assert drawn["jpeg70"] == drawn["jpeg90"] == 20
        assert sorted(drawn[name] for name in ("resize0.5", "resize0.8", "resize1.5", "resize2.0", "gamma1.2")) == [
            6,
            6,
            6,
            7,
            7,
        ]
    assert items == list(sampler)
    only_gamma = [UNALTERED_NAME] * 8 + ["gamma0.8"] * 64
    with pytest.raises(ValueError, match="weighing more than 0"):
        EpochSampler(LABELS, 1.0, 0, 4, UNALTERED, 0.5, only_gamma, probabilities)
    # A pseudo-labelled `_manip` image's kind is unknown: it weighs the mean weight (1/8 here).
    pseudo = [*kinds[:-8], *[UNKNOWN_MANIPULATION] * 8]
    drawn = Counter(pseudo[i] for i, _, _ in EpochSampler(LABELS, 1.0, 0, 4, UNALTERED, 0.5, pseudo, probabilities))
    assert drawn[UNKNOWN_MANIPULATION] == 2 * 9 and drawn["gamma1.2"] == 0
    # All crops unaltered: no manipulated folder is drawn from, whatever the weights.
    assert all(
        UNALTERED[index] for index, _, _ in EpochSampler(LABELS, 1.0, 0, 4, UNALTERED, 1.0, only_gamma, probabilities)
    )


def test_sampler_without_a_share_draws_images_as_they_come():
    items = list(EpochSampler(LABELS, 1.0, 0, 1, UNALTERED, None))
    assert sum(UNALTERED[index] for index, _, _ in items) == 8  # a ninth
    with pytest.raises(ValueError, match="no manipulated"):
        EpochSampler([0, 0], 1.0, 0, 1, [True, True], 0.5)


def test_datamodule_honours_the_share_and_refuses_a_tree_without_its_pools(manipulation_tree, flat_tree):
    datamodule = make(manipulation_tree, unaltered_share=0.5, crops_per_image=2)
    train = datamodule.train_set
    flags = [train[item].manipulated for item in datamodule.train_dataloader().sampler]
    assert len(flags) == 3 * 9 * 2 and sum(not flag for flag in flags) == len(flags) // 2
    assert unaltered_crop_share(train.samples, 0.5, 0.0) == 0.5
    assert unaltered_crop_share(train.samples, None, 0.5) == pytest.approx(1 / 6)
    with pytest.raises(CamlitError, match=r"--data.unaltered_share 0.5: .* no manipulated training images"):
        make(flat_tree, unaltered_share=0.5)
    with pytest.raises(CamlitError, match=r"no resize2.0 \(--data.manipulation_weights\) training images"):
        make(manipulation_tree, unaltered_share=0.5, manipulation_weights={"resize2.0": 1})
    assert make(flat_tree, unaltered_share=1.0).train_set is not None


def test_no_validation_group_mixes_prepared_and_expanded_items(manipulation_tree, caplog):
    datamodule = make(manipulation_tree, val_manipulations=["jpeg70", "resize0.5"])
    made_by = {}
    for sample, group in datamodule.val_set.items:
        # A prepared item is manipulated already (its folder's group); an expanded one is manipulated here.
        made_by.setdefault(group, set()).add("prepared" if group == sample.manipulation else "expanded")
    assert made_by == {
        "unaltered": {"prepared"},
        "jpeg70": {"prepared"},
        "gamma0.8": {"prepared"},
        "resize0.5": {"expanded"},
    }
    assert datamodule.val_set.not_expanded == ["jpeg70"]
    assert "jpeg70 scored on their prepared folders only" in caplog.text
