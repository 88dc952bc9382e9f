"""The per-block lattice maps: a pasted region falls off the photo's table, or keeps its own."""

import numpy as np
from conftest import jpeg, libjpeg_steps, photo

from camlit.cameras import KAGGLE_CAMERAS
from camlit.data.lattice_map import block_lattice, own_steps
from camlit.data.quantization import quantization_steps
from camlit.data.synthetic import render_photo, scene_seed


def test_a_region_pasted_from_a_photo_of_another_quality_falls_off_the_photos_lattice():
    rng = np.random.default_rng(5)
    host, donor = jpeg(photo(rng, 256, 256), 80), jpeg(photo(rng, 256, 256), 92)
    spliced = host.copy()
    spliced[64:160, 96:192] = donor[64:160, 96:192]
    fits, phase = block_lattice(spliced)
    assert phase == (0, 0) and fits.shape == (32, 32)
    inside = np.zeros(fits.shape, bool)
    inside[9:19, 13:23] = True  # the pasted blocks, less a block of the 3 x 3 smoothing at each edge
    outside = np.ones(fits.shape, bool)
    outside[7:21, 11:25] = False
    assert np.nanmax(fits[inside]) < 0.2 < np.nanmin(fits[outside]) and np.nanmedian(fits[outside]) > 0.5
    # A photo that was never a JPEG shows no table, so no lattice to fall off.
    assert block_lattice(photo(rng, 256, 256))[0].size == 0


def test_a_region_with_a_table_pasted_on_a_photo_without_one_is_found_by_its_window():
    # A synthetic camera saving at 98 shows 5 steps of its own; a region of a camera saving at 75,
    # 6% of the photo, shows its table only in the window that holds it, and its blocks are then
    # the foreign ones.
    host_camera, donor_camera = KAGGLE_CAMERAS.index("Sony-NEX-7"), KAGGLE_CAMERAS.index("Motorola-X")
    host = render_photo(host_camera, scene_seed(0, 0, host_camera, 0), 512, 512).copy()
    host[128:256, 128:256] = render_photo(donor_camera, scene_seed(0, 0, donor_camera, 0), 512, 512)[128:256, 128:256]
    assert (quantization_steps(host) >= 2).sum() < 8
    fits, phase = block_lattice(host)
    assert phase == (0, 0) and fits.shape == (64, 64)
    inside, outside = fits[17:31, 17:31], np.delete(fits, np.s_[15:33], axis=0)
    assert np.nanmean(inside < np.nanmedian(fits) / 2) > 0.9
    assert np.nanmean(outside < np.nanmedian(fits) / 2) < 0.05


def test_the_lattice_map_leaves_clipped_blocks_unjudged():
    image = jpeg(photo(np.random.default_rng(6), 256, 256), 80)
    image[64:104:8, 96:136:8] = [0, 0, 90]  # one pixel clipped in two channels in each of 5 x 5 blocks
    fits, phase = block_lattice(image)
    assert phase == (0, 0)
    assert np.isnan(fits[9:12, 13:16]).all()  # the blocks whose 3 x 3 neighbours are all clipped
    assert not np.isnan(fits[:8]).any()


def test_a_clean_photo_with_one_channel_saturated_keeps_its_lattice():
    # Half the photo's red at or near 255, clipped again by the decoder: with every such block
    # judged, 37-51% of that half's blocks fell below half the photo's median fit (foreign).
    rng = np.random.default_rng(2)
    image = photo(rng, 256, 256).astype(np.int32)
    image[:, 128:, 0] = 215 + image[:, 128:, 0] // 4
    image = jpeg(np.clip(image, 0, 255).astype(np.uint8), 80)
    assert (image[:, 128:, 0] == 255).mean() > 0.2
    fits, _ = block_lattice(image)
    saturated = fits[:, 17:]
    assert np.isnan(saturated).mean() < 0.5  # most of its blocks are still judged
    assert np.mean(saturated < np.nanmedian(fits) / 2) < 0.05


def test_a_splice_that_dilutes_the_photos_steps_does_not_hide_them_from_the_lattice_map():
    rng = np.random.default_rng(5)
    spliced = jpeg(photo(rng, 256, 256), 85)
    spliced[:, :128] = photo(rng, 256, 128)  # half the photo never compressed
    expected = libjpeg_steps(85)[:9]
    assert (quantization_steps(spliced)[:9] != expected).any()  # the whole photo's fit, diluted
    steps, phase = own_steps(spliced)
    assert phase == (0, 0) and steps[:9].tolist() == expected.tolist()
