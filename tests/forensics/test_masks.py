"""A method's scores drawn at the photo's resolution."""

import numpy as np

from camlit.forensics.camera_map import CameraMap
from camlit.forensics.masks import MIN_REGION, block_pixels, large_regions


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
