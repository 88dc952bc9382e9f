import numpy as np
import pytest

from camlit.data.crops import center_crop, center_offset, crop, grid_offsets, random_offset, tile_offsets


def test_random_offsets_even_in_bounds_and_uniformish():
    rng = np.random.default_rng(0)
    offsets = np.array([random_offset(512, 384, 224, rng) for _ in range(2000)])
    assert (offsets % 2 == 0).all()
    assert offsets[:, 0].min() == 0 and offsets[:, 0].max() == 512 - 224
    assert offsets[:, 1].min() == 0 and offsets[:, 1].max() == 384 - 224
    odd = np.array([random_offset(512, 384, 224, rng, even=False) for _ in range(200)])
    assert (odd % 2 == 1).any()


def test_random_crop_shape_dtype():
    image = np.arange(100 * 120 * 3, dtype=np.uint8).reshape(100, 120, 3)
    top, left = random_offset(100, 120, 32, np.random.default_rng(1))
    patch = crop(image, top, left, 32)
    assert patch.shape == (32, 32, 3) and patch.dtype == np.uint8
    assert np.array_equal(patch, image[top : top + 32, left : left + 32])


@pytest.mark.parametrize("shape", [(512, 512), (768, 1024), (101, 99), (224, 224)])
def test_center_crop_matches_seed_slicing(shape):
    height, width = shape
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    edge = 224 // 2 if min(shape) >= 224 else 32 // 2
    size = 2 * edge
    top, left = height // 2 - edge, width // 2 - edge
    # The seed's offsets, moved to the even coordinate at or above them.
    top, left = top - top % 2, left - left % 2
    assert np.array_equal(center_crop(image, size), image[top : top + size, left : left + size])


def test_center_offset_is_even_and_within_a_pixel_of_the_centre():
    for height in range(224, 240):
        for size in (223, 224):
            top, left = center_offset(height, height + 1, size)
            assert top % 2 == 0 and left % 2 == 0
            assert 0 <= height // 2 - size // 2 - top <= 1 and 0 <= (height + 1) // 2 - size // 2 - left <= 1


def test_too_small_image_is_refused():
    with pytest.raises(ValueError, match="does not fit a 100x100"):
        random_offset(100, 100, 224, np.random.default_rng(0))


def test_grid_offsets_deterministic_even_and_spread():
    offsets = grid_offsets(512, 512, 224, 9)
    assert len(offsets) == 9 and offsets == grid_offsets(512, 512, 224, 9)
    assert all(t % 2 == 0 and left % 2 == 0 for t, left in offsets)
    assert (0, 0) in offsets and (288, 288) in offsets and (144, 144) in offsets


@pytest.mark.parametrize("count", [3, 5, 10, 16, 17])
def test_grid_offsets_reach_every_edge_with_exactly_count_crops(count):
    """Ten crops were the first ten of a 4x4 grid: the bottom 96 rows of a 512 image never seen."""
    offsets = grid_offsets(512, 512, 224, count)
    assert len(offsets) == count == len(set(offsets))
    tops, lefts = {top for top, _ in offsets}, {left for _, left in offsets}
    assert min(tops) == 0 and max(tops) == 288 and min(lefts) == 0 and max(lefts) == 288


@pytest.mark.parametrize(("height", "width"), [(1000, 224), (224, 1000), (384, 512)])
def test_grid_offsets_follow_the_images_shape(height, width):
    """A 1000x224 image took its ten crops in a square grid's rows: 3 distinct crops of 10."""
    offsets = grid_offsets(height, width, 224, 10)
    assert len(set(offsets)) == 10
    assert max(top for top, _ in offsets) == height - 224 and max(left for _, left in offsets) == width - 224


def test_one_grid_crop_is_the_centre_crop():
    """It was the top-left corner."""
    assert grid_offsets(512, 384, 224, 1) == [center_offset(512, 384, 224)]


def test_tiles_inside_frame_even_and_disjoint():
    tiles = tile_offsets(3000, 4000, 512, 100)
    assert len(tiles) == (3000 // 512) * (4000 // 512)
    covered = np.zeros((3000, 4000), np.uint8)
    for top, left in tiles:
        assert top % 2 == 0 and left % 2 == 0
        assert 0 <= top and top + 512 <= 3000 and 0 <= left and left + 512 <= 4000
        covered[top : top + 512, left : left + 512] += 1
    assert covered.max() == 1
    assert len(tile_offsets(3000, 4000, 512, 3)) == 3
