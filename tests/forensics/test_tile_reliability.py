import numpy as np

from camlit.forensics.reliability import reliability


def test_the_reliability_mask_marks_a_flat_and_a_clipped_tile():
    rng = np.random.default_rng(0)
    image = np.clip(rng.normal(128, 12, (96, 96, 3)), 0, 255).astype(np.uint8)
    image[0:32, 0:32] = 90  # flat: no residual at all
    image[64:96, 64:96] = 255  # blown highlights
    flat, clipped = reliability(image, [0, 32, 64], [0, 32, 64], 32)
    expected_flat = np.zeros((3, 3), bool)
    expected_flat[0, 0] = expected_flat[2, 2] = True  # a blown tile is flat too
    expected_clipped = np.zeros((3, 3), bool)
    expected_clipped[2, 2] = True
    np.testing.assert_array_equal(flat, expected_flat)
    np.testing.assert_array_equal(clipped, expected_clipped)
