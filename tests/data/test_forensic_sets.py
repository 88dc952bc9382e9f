"""The forensic measuring sets: spliced photos with their true masks, and unknown cameras."""

import cv2
import numpy as np
import pytest

from camlit.data.forensic_sets import (
    SPLICE_MANIPULATIONS,
    make_forensic_sets,
    splice_mask,
    unknown_manipulation,
    unknown_manipulation_of,
)
from camlit.data.manipulations import MANIPULATED, UNALTERED
from camlit.errors import CamlitError


def test_every_other_splice_photo_has_a_region_and_its_mask_and_the_same_settings_give_the_same_files(tmp_path):
    first = make_forensic_sets(tmp_path / "a", 2, 2, workers=1)
    again = make_forensic_sets(tmp_path / "b", 2, 2, workers=1)
    for group in SPLICE_MANIPULATIONS:
        photos = sorted((first / "splice" / group).glob("*.png"))
        assert len(photos) == 2
        for k, photo in enumerate(photos):
            mask = cv2.imread(str(photo.parent / "masks" / photo.name), cv2.IMREAD_GRAYSCALE)
            image = cv2.imread(str(photo))
            assert mask.shape == image.shape[:2]
            share = (mask > 127).mean()
            assert 0.08 < share < 0.37 if k % 2 == 0 else share == 0, (group, k, share)
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert all((first / f).read_bytes() == (again / f).read_bytes() for f in files)


def test_a_splice_region_is_a_tenth_to_a_third_of_the_crop_on_even_offsets():
    rng = np.random.default_rng(0)
    for _ in range(50):
        mask = splice_mask(rng) > 0
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        assert 0.09 < mask.mean() < 0.36
        assert rows[0] % 2 == 0 and cols[0] % 2 == 0


def test_unknown_photos_are_manipulated_every_other_one_through_all_eight(tmp_path):
    make_forensic_sets(tmp_path, 0, 2, workers=1)
    names = sorted(p.name for p in (tmp_path / "unknown").iterdir())
    assert names == ["img_0000_unalt.tif", "img_0001_manip.tif", "img_1000_unalt.tif", "img_1001_manip.tif"]
    assert [unknown_manipulation_of(name) != UNALTERED for name in names] == [False, True, False, True]
    assert {unknown_manipulation(camera, index) for camera in (0, 1) for index in range(1, 16, 2)} == set(MANIPULATED)


def test_a_folder_of_other_settings_or_of_files_camlit_did_not_make_is_refused(tmp_path):
    """Seed 1 after seed 0 left one group holding photos of both; a user's file was replaced."""
    made = make_forensic_sets(tmp_path / "sets", 1, 0, workers=1)
    before = {p: p.read_bytes() for p in made.rglob("*") if p.is_file()}
    make_forensic_sets(made, 1, 0, workers=1)  # the same settings: the same set again
    with pytest.raises(CamlitError, match='made with {"splices_per_group": 1, "unknown_per_camera": 0, "seed": 0}'):
        make_forensic_sets(made, 2, 0, seed=1, workers=1)
    assert {p: p.read_bytes() for p in made.rglob("*") if p.is_file()} == before
    mine = tmp_path / "mine" / "splice" / "unaltered" / "img_000.png"
    mine.parent.mkdir(parents=True)
    mine.write_text("my notes")
    with pytest.raises(CamlitError, match="without .forensic_sets.json to say which settings made them"):
        make_forensic_sets(tmp_path / "mine", 1, 0, workers=1)
    assert mine.read_text() == "my notes"


@pytest.mark.parametrize("text", ["not json", "[" * 200_000], ids=["not_json", "nested_too_deeply"])
def test_a_settings_file_camlit_did_not_write_is_one_error(tmp_path, text):
    """Read without a guard: a JSONDecodeError or RecursionError traceback."""
    from camlit.data.forensic_sets import SETTINGS, claim_output
    from camlit.errors import CamlitError

    (tmp_path / SETTINGS).write_text(text)
    with pytest.raises(CamlitError, match=f"{tmp_path}: its {SETTINGS} is not one camlit wrote"):
        claim_output(tmp_path, {"seed": 0})
    assert (tmp_path / SETTINGS).read_text() == text
