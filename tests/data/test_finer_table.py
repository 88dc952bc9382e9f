import numpy as np
import pytest

from camlit.data import manipulations
from camlit.data.finer_table import BINS, finer_first_step, reached
from camlit.data.forensic_sets import UNKNOWN_CAMERAS
from camlit.data.quantization import quantization_steps
from camlit.data.recompression import first_steps
from camlit.data.synthetic import render_photo, scene_seed


def test_a_finer_first_step_fills_every_other_bin_twice():
    """Multiples of 2 under a last step of 3: 0, 2, 4, 6, 8 fall into bins 0, 1, 1, 2, 3."""
    assert np.allclose(reached(2, 3)[:4], [2, 1, 2, 1])
    assert reached(2, 3).shape == (BINS,)


def test_the_pattern_of_a_finer_step_is_read_and_a_plain_histogram_gives_none():
    rng = np.random.default_rng(0)
    camera = np.round(rng.laplace(0, 12, 20000) / 2) * 2  # saved with a step of 2
    saved_again = np.round(camera / 3) * 3 + rng.normal(0, 0.2, camera.size)
    assert finer_first_step(saved_again, 3) == 2
    saved_once = np.round(rng.laplace(0, 12, 20000) / 3) * 3
    assert finer_first_step(saved_once, 3) == 0
    assert finer_first_step(saved_again[:100], 3) == 0  # too few coefficients to show a pattern


@pytest.mark.parametrize("index", [0, 2])
def test_a_camera_saving_finer_than_jpeg90_shows_its_own_steps_as_the_first_table(index):
    """Kaggle's JPEG 90 over a camera saving at 93 left no bin empty, and no first step was read:
    the unknown camera's recompressed photos could not be told from known ones by their table."""
    photo = render_photo(UNKNOWN_CAMERAS[1], scene_seed(0, 9, 1, index), 512, 512)  # JPEG 93
    own = quantization_steps(photo)
    again = first_steps(manipulations.apply("jpeg90", photo))
    shown = again >= 2
    assert shown.sum() >= 8 and np.array_equal(again[shown], own[shown])
    assert (first_steps(photo) >= 2).sum() < 3  # saved once: no table shows (MIN_FIRST_STEPS)
