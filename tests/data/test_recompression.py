"""A recompressed photo's first JPEG table, and the blocks that keep to it."""

import numpy as np
from conftest import jpeg, photo

from camlit.data.recompression import primary_lattice, reachable

# A region on the 8 px grid: 128 x 128 px of a 256 px photo, blocks 8-23 down and 4-19 across.
REGION = (slice(64, 192), slice(32, 160))


def test_a_second_quantization_leaves_bins_no_first_step_reaches():
    # Multiples of 8 moved by up to 1, then rounded to multiples of 3: 7-9 -> 2 or 3, 15-17 -> 5 or 6, 23-25 -> 8.
    reached = reachable(8, 3)
    assert [bool(reached[60 + k]) for k in range(1, 9)] == [False, True, True, False, True, True, False, True]
    assert not reached[60]  # zero is every table's


def spliced(host_quality: int, donor_quality: int) -> tuple[np.ndarray, np.ndarray]:
    """A host photo and a donor photo each saved by their camera, a region of the donor pasted on
    the grid, the whole saved again at 90; and the true mask."""
    rng = np.random.default_rng(host_quality)
    host, donor = jpeg(photo(rng, 256, 256), host_quality), jpeg(photo(rng, 256, 256), donor_quality)
    host[REGION] = donor[REGION]
    mask = np.zeros((256, 256), bool)
    mask[REGION] = True
    return jpeg(host, 90), mask


def test_the_pasted_region_falls_off_the_first_table_of_a_recompressed_photo():
    image, mask = spliced(75, 97)
    fits, phase = primary_lattice(image)
    assert phase == (0, 0) and fits.shape == (32, 32)
    inside, outside = fits[10:22, 6:18], np.delete(fits, np.s_[6:26], axis=0)
    assert np.nanmedian(outside) > 0.6 and np.nanmedian(inside) < 0.2


def test_a_photo_saved_once_shows_no_first_table():
    for quality in (75, 90):
        fits, _ = primary_lattice(jpeg(photo(np.random.default_rng(quality), 256, 256), quality))
        assert fits.size == 0, quality


def test_a_pasted_region_that_keeps_a_first_table_of_its_own_is_found_by_its_window():
    # A host saved at 97 shows no first table under the last save at 90; the donor, saved at 75,
    # does, but over a quarter of the photo that is too little for the whole photo's histogram.
    image, mask = spliced(97, 75)
    fits, _ = primary_lattice(image)
    assert fits.shape == (32, 32)
    inside, outside = fits[10:22, 6:18], np.delete(fits, np.s_[6:26], axis=0)
    # As for the photo's own table: its own blocks score high, the pasted ones below half of them.
    assert np.nanmean(inside < np.nanmedian(fits) / 2) > 0.9
    assert np.nanmean(outside < np.nanmedian(fits) / 2) < 0.05
