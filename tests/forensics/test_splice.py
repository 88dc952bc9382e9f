import json

import numpy as np
import pytest

from camlit.errors import CamlitError
from camlit.forensics.camera_map import CameraMap, tile_axis, tile_stride
from camlit.forensics.masks import foreign_mask
from camlit.forensics.splice import (
    SpliceResult,
    calibration_path,
    disagreement,
    localise,
    photo_ranks,
    photo_thresholds,
)

SIZE, SIDE, CLASSES = 32, 128, ["A", "B", "C"]
CENTRES = np.arange(16, 113, 16)  # of the 7 x 7 tiles; the middle 3 x 3 are foreign


def known_mask() -> np.ndarray:
    """Worked out by hand: along each side the share of foreign tile centres rises linearly from 0
    at 32 to 1 at 48 and falls from 1 at 80 to 0 at 96; bilinear interpolation of the +-1 scores
    is 2 x (the product of the two sides' shares) - 1, above 0 where the product is above 1/2.
    So the edges lie at 40 and 88, and the corners are rounded."""
    pixels = np.arange(SIDE) + 0.5
    share = np.interp(pixels, CENTRES, [0, 0, 1, 1, 1, 0, 0])
    return np.outer(share, share) > 0.5


def hand_made_map(foreign: np.ndarray, flat: np.ndarray | None = None) -> CameraMap:
    """Tiles of camera A, except `foreign` ones of camera B; features two points, one per camera."""
    axis = tile_axis(SIDE, SIZE)
    grid = (len(axis), len(axis))
    probabilities = np.where(foreign[..., None], [0.1, 0.8, 0.1], [0.8, 0.1, 0.1])
    features = np.where(foreign[..., None], [0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0])
    flat = np.zeros(grid, bool) if flat is None else flat
    return CameraMap(
        CLASSES, (SIDE, SIDE), SIZE, axis, axis, probabilities, np.log(probabilities), features, flat,
        np.zeros(grid, bool),
    )  # fmt: skip


def block() -> np.ndarray:
    foreign = np.zeros((7, 7), bool)
    foreign[2:5, 2:5] = True
    return foreign


def test_tiles_are_half_a_crop_apart_on_even_offsets():
    assert tile_stride(64) == 32 and tile_stride(30) == 14
    assert tile_axis(128, 32).tolist() == [0, 16, 32, 48, 64, 80, 96]
    assert tile_axis(410, 64).tolist()[-1] == 320


def test_a_hand_made_tile_grid_gives_the_known_mask():
    truth = known_mask()
    assert truth[48:80, 40:88].all() and truth[40:88, 48:80].all() and truth.sum() < 48 * 48
    assert not truth[:40].any() and not truth[88:].any() and not truth[40, 40]
    scores = np.where(block(), 1.0, -1.0)
    np.testing.assert_array_equal(foreign_mask(hand_made_map(block()), scores), truth)


@pytest.mark.parametrize("method", ["disagreement", "clustering"])
def test_both_methods_find_the_pasted_block(method):
    camera_map = hand_made_map(block())
    result = localise(camera_map, method, threshold=0.0)
    truth = known_mask()
    assert result.spliced and (CLASSES[result.own], CLASSES[result.foreign]) == ("A", "B")
    np.testing.assert_array_equal(result.mask, truth)


def test_smoothing_the_disagreement_rounds_the_block_but_keeps_its_core():
    camera_map = hand_made_map(block())
    mask = foreign_mask(camera_map, disagreement(camera_map, smooth=True).tile_scores)
    assert mask[52:76, 52:76].all() and not mask[:32].any() and not mask[96:].any()
    result = localise(camera_map, "disagreement_smoothed", threshold=0.0)
    assert result.method == "disagreement_smoothed" and (result.mask == mask).all()


@pytest.mark.parametrize("method", ["disagreement", "disagreement_smoothed", "clustering"])
def test_a_photo_of_one_camera_gets_no_mask(method):
    result = localise(hand_made_map(np.zeros((7, 7), bool)), method, threshold=0.0)
    assert not result.spliced and not result.mask.any()


def test_unjudged_tiles_are_left_out_of_the_decision():
    # Every foreign tile is flat: nothing reliable says "B", so nothing is marked.
    result = localise(hand_made_map(block(), flat=block()), "disagreement", threshold=0.0)
    assert np.isnan(result.tile_scores[block()]).all() and not result.mask.any()


def test_blocks_off_the_photos_own_lattice_give_a_mask_at_block_resolution_on_its_grid_phase():
    # 16 x 16 blocks on a grid of phase (2, 6): those of rows 4-9 and columns 3-8 fit no lattice.
    camera_map = hand_made_map(np.zeros((7, 7), bool))
    camera_map.lattice = np.full((15, 15), 0.6, np.float32)
    camera_map.lattice[4:10, 3:9] = 0.0
    camera_map.lattice_phase = (2, 6)
    result = localise(camera_map, "lattice", threshold=0.25)
    truth = np.zeros((SIDE, SIDE), bool)
    truth[2 + 8 * 4 : 2 + 8 * 10, 6 + 8 * 3 : 6 + 8 * 9] = True
    assert result.spliced and result.photo_score == pytest.approx(0.3)
    np.testing.assert_array_equal(result.mask, truth)
    # A photo showing no table of its own gets no region from the lattice.
    camera_map.lattice = np.zeros((0, 0), np.float32)
    result = localise(camera_map, "lattice", threshold=float("-inf"))
    assert not result.spliced and result.photo_score == float("-inf")


def test_the_combination_takes_the_lattices_region_where_it_draws_one_else_the_disagreements():
    camera_map = hand_made_map(block())
    camera_map.lattice = np.full((15, 15), 0.6, np.float32)
    camera_map.lattice[4:10, 3:9] = 0.0
    thresholds = {"lattice": 0.25, "disagreement": 0.0}
    assert localise(camera_map, "lattice_then_disagreement", thresholds).method == "lattice"
    # Clean by the lattice: the classifier's tiles decide, at the disagreement's own threshold.
    camera_map.lattice[:] = 0.6
    result = localise(camera_map, "lattice_then_disagreement", thresholds)
    assert result.method == "disagreement" and result.spliced
    np.testing.assert_array_equal(result.mask, localise(camera_map, "disagreement", 0.0).mask)
    assert not localise(camera_map, "lattice_then_disagreement", {**thresholds, "disagreement": 1e9}).spliced
    # The other combination takes the smoothed disagreement's region, at that part's threshold.
    smoothed = localise(
        camera_map, "lattice_then_disagreement_smoothed", {"lattice": 0.25, "disagreement_smoothed": 0.0}
    )
    assert smoothed.method == "disagreement_smoothed" and smoothed.spliced
    np.testing.assert_array_equal(smoothed.mask, localise(camera_map, "disagreement_smoothed", 0.0).mask)


def test_a_photo_whose_gamma_was_undone_takes_the_lattices_own_threshold_for_it():
    camera_map = hand_made_map(np.zeros((7, 7), bool))
    camera_map.lattice = np.full((15, 15), 0.6, np.float32)
    camera_map.lattice[4:10, 3:9] = 0.0
    thresholds = {"lattice": 0.0, "lattice_after_gamma": 1e9}
    assert localise(camera_map, "lattice", thresholds).spliced
    camera_map.gamma_undone = True
    assert not localise(camera_map, "lattice", thresholds).spliced
    assert localise(camera_map, "lattice", 0.0).spliced  # one number serves both
    assert photo_thresholds("lattice_then_disagreement") == {
        "lattice": 0.1,
        "lattice_after_gamma": 0.45,
        "disagreement": 7.96,
    }


def test_a_combination_ranks_the_photos_its_first_part_gives_a_region_above_the_others():
    camera_map = hand_made_map(block())
    camera_map.lattice = np.full((15, 15), 0.6, np.float32)
    camera_map.lattice[4:10, 3:9] = 0.0
    thresholds = {"lattice": 0.25, "disagreement": 0.0}
    by_lattice = localise(camera_map, "lattice_then_disagreement", thresholds)
    camera_map.lattice[:] = 0.6
    by_classifier = localise(camera_map, "lattice_then_disagreement", thresholds)
    assert (by_lattice.tier, by_classifier.tier) == (1, 0)
    assert by_lattice.photo_score < by_classifier.photo_score  # two scales: the lattice's is the smaller
    assert photo_ranks([by_classifier, by_lattice]).tolist() == [0.0, 1.0]
    # A single method's ranks follow its photo scores, equal scores equal ranks.
    single = [SpliceResult("disagreement", np.zeros((1, 1)), score, 0, 0) for score in (3.0, -1.0, 3.0)]
    assert photo_ranks(single).tolist() == [1.0, 0.0, 1.0]


def test_an_older_calibration_without_a_part_falls_back_to_its_measured_threshold(tmp_path):
    calibration_path(tmp_path / "a.ckpt").write_text(json.dumps({"photo_thresholds": {"disagreement": 5.0}}))
    assert photo_thresholds("lattice_then_disagreement", tmp_path / "a.ckpt") == {
        "lattice": 0.1,
        "lattice_after_gamma": 0.45,
        "disagreement": 5.0,
    }


def test_a_folder_where_the_calibration_goes_is_refused_not_passed_over(tmp_path):
    """A folder named like the calibration file left inspect on the fallback thresholds, unsaid."""
    calibration_path(tmp_path / "a.ckpt").mkdir()
    with pytest.raises(CamlitError, match="not a splice calibration file"):
        photo_thresholds("lattice_then_disagreement", tmp_path / "a.ckpt")
    assert photo_thresholds("lattice", tmp_path / "none.ckpt")["lattice"] == 0.1  # none there: the fallback


def test_the_lattice_keeps_the_first_tables_region_where_it_is_the_stronger():
    # Saved again whole: every block fits the last table, and the pasted blocks fall off the first.
    camera_map = hand_made_map(np.zeros((7, 7), bool))
    camera_map.lattice = np.full((15, 15), 0.9, np.float32)
    camera_map.primary_lattice = np.full((15, 15), 0.8, np.float32)
    camera_map.primary_lattice[4:10, 3:9] = -0.5
    result = localise(camera_map, "lattice", threshold=0.25)
    truth = np.zeros((SIDE, SIDE), bool)
    truth[8 * 4 : 8 * 10, 8 * 3 : 8 * 9] = True
    assert result.spliced and result.photo_score == pytest.approx(0.9)
    np.testing.assert_array_equal(result.mask, truth)
    # Where the last table's map finds the stronger region, it is kept.
    camera_map.lattice[4:10, 3:9] = -1.0
    assert localise(camera_map, "lattice", threshold=0.25).photo_score == pytest.approx(1.45)


def test_a_saved_map_keeps_both_lattices_and_their_phase(tmp_path):
    camera_map = hand_made_map(block())
    camera_map.lattice = np.full((15, 15), 0.6, np.float32)
    camera_map.primary_lattice = np.arange(225, dtype=np.float32).reshape(15, 15)
    camera_map.lattice_phase = (2, 6)
    camera_map.save(tmp_path / "map.npz")
    loaded = CameraMap.load(tmp_path / "map.npz")
    np.testing.assert_array_equal(loaded.primary_lattice, camera_map.primary_lattice)
    np.testing.assert_array_equal(loaded.lattice, camera_map.lattice)
    assert loaded.lattice_phase == (2, 6)
