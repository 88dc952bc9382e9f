"""The JPEG quantization steps read back from decoded pixels."""

import numpy as np
import pytest
from conftest import jpeg, libjpeg_steps, photo

from camlit.cameras import KAGGLE_CAMERAS
from camlit.data.quantization import clipped_blocks, quantization_steps
from camlit.data.synthetic import SYNTHETIC_CAMERAS, render_photo, scene_seed


@pytest.mark.parametrize("quality", [70, 80, 90])
def test_the_steps_of_the_low_frequencies_are_read_back_after_decoding(quality):
    image = jpeg(photo(np.random.default_rng(quality), 256, 256), quality)
    expected = libjpeg_steps(quality)
    found = quantization_steps(image)
    low = slice(0, 9)  # a textured photo keeps many nonzero coefficients there
    assert found[low].tolist() == expected[low].tolist()
    # Elsewhere a step is found or not, but never a wrong one.
    assert np.all((found == 0) | (found == expected) | (expected < 2))


def test_the_grid_is_found_in_a_photo_cropped_off_it():
    image = jpeg(photo(np.random.default_rng(0), 256, 256), 80)
    assert quantization_steps(image[3:, 5:])[:9].tolist() == libjpeg_steps(80)[:9].tolist()


def test_blocks_the_decoder_clipped_are_left_out_of_the_estimate():
    # A synthetic camera's dark photo: over half its blocks hold pixels clipped to 0, whose
    # coefficients fall off the lattice; read with them, no low-frequency step showed at all.
    camera = KAGGLE_CAMERAS.index("Samsung-Galaxy-S4")
    image = render_photo(camera, scene_seed(0, 0, camera, 2), 512, 512)
    assert clipped_blocks(image, 0, 0).mean() > 0.5
    expected = libjpeg_steps(SYNTHETIC_CAMERAS[camera].jpeg_quality)
    assert quantization_steps(image)[:9].tolist() == expected[:9].tolist()


def test_a_photo_never_compressed_and_a_tiny_one_show_no_step():
    image = photo(np.random.default_rng(1), 256, 256)
    assert not quantization_steps(image).any()
    assert not quantization_steps(jpeg(image, 80)[:24, :24]).any()
