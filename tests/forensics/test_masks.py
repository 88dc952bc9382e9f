"""A method's scores drawn at the photo's resolution."""

import numpy as np

from camlit.forensics.camera_map import CameraMap
from camlit.forensics.masks import MIN_REGION, block_pixels, large_regions, solid_regions


def test_block_scores_cover_their_8_px_blocks_at_the_grids_phase():
    camera_map = CameraMap([], (20, 21), 8, np.zeros(0), np.zeros(0), *[np.zeros((0, 0))] * 5, lattice_phase=(3, 5))
    scores = np.array([[1.0, np.nan], [-2.0, 4.0]])
    pixels = block_pixels(camera_map, scores)
    assert pixels.shape == (20, 21)
    assert (pixels[3:11, 5:13] == 1).all() and (pixels[11:19, 5:13] == -2).all() and (pixels[11:19, 13:21] == 4).all()
    # Off the grid (the first rows and columns, the last row) and unjudged blocks: never foreign.
    assert (pixels[:3] == -np.inf).all() and (pixels[:, :5] == -np.inf).all() and (pixels[19] == -np.inf).all()
    assert (pixels[3:11, 13:21] == -np.inf).all()


def test_regions_under_the_smallest_splice_are_dropped():
    mask = np.zeros((100, 100), bool)
    mask[:10, :10] = True  # 1% of the photo
    mask[50:70, 50:70] = True  # 4%
    kept = large_regions(mask)
    assert MIN_REGION == 0.02
    assert not kept[:10, :10].any() and kept[50:70, 50:70].all() and kept.sum() == 400


def test_a_regions_holes_are_filled_and_a_bay_open_to_the_host_is_not():
    mask = np.zeros((100, 100), bool)
    mask[20:60, 20:60] = True
    mask[30:40, 30:40] = False  # a hole: blocks too flat to judge inside the pasted region
    mask[45:60, 45:50] = False  # a bay: open to the rest of the photo at the region's edge
    solid = solid_regions(mask)
    assert solid[30:40, 30:40].all()
    assert not solid[45:60, 45:50].any()
    assert not solid[:20].any() and solid.sum() == 40 * 40 - 15 * 5


def test_holes_of_dropped_regions_stay_empty():
    mask = np.zeros((100, 100), bool)
    mask[10:14, 10:14] = True
    mask[11:13, 11:13] = False  # a ring under MIN_REGION: dropped, hole and all
    assert not solid_regions(mask).any()
