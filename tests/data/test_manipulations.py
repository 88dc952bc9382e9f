"""Each manipulation against the formula documented in camlit.data.manipulations, computed independently."""

import cv2
import numpy as np
import pytest

from camlit.data import manipulations
from camlit.data.manipulations import MANIPULATIONS, Kind, apply

RESIZE_FACTORS = {name: m.parameter for name, m in MANIPULATIONS.items() if m.kind is Kind.RESIZE}


def photo_like(height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """Smooth colour gradients plus noise: JPEG and cubic resampling both change such an image."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    smooth = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height) + 64], axis=-1)
    return np.clip(smooth + rng.normal(0, 12, smooth.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("quality", [70, 90])
@pytest.mark.parametrize("shape", [(48, 64), (45, 61)])
def test_jpeg_is_an_opencv_round_trip_at_that_quality(quality, shape):
    image = photo_like(*shape)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420]
    ok, encoded = cv2.imencode(".jpg", image[..., ::-1], params)
    assert ok
    expected = cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1]
    result = apply(f"jpeg{quality}", image)
    np.testing.assert_array_equal(result, expected)
    assert not np.array_equal(result, image)


def test_jpeg_qualities_differ():
    image = photo_like()
    assert not np.array_equal(apply("jpeg70", image), apply("jpeg90", image))


@pytest.mark.parametrize("gamma", [0.8, 1.2])
def test_gamma_matches_float_formula(gamma):
    # Every 8-bit value, in all three channels, each channel in a different order.
    values = np.arange(256, dtype=np.uint8).reshape(16, 16)
    image = np.stack([values, values.T, values[::-1]], axis=-1)
    expected = np.round(255.0 * (image.astype(np.float64) / 255.0) ** gamma).astype(np.uint8)
    np.testing.assert_array_equal(apply(f"gamma{gamma}", image), expected)


def test_gamma_direction():
    mid = np.full((4, 4, 3), 128, np.uint8)
    assert apply("gamma0.8", mid)[0, 0, 0] > 128  # below 1 brightens midtones
    assert apply("gamma1.2", mid)[0, 0, 0] < 128
    ends = np.array([[[0, 255, 0]]], np.uint8)
    for name in ("gamma0.8", "gamma1.2"):
        np.testing.assert_array_equal(apply(name, ends), ends)


@pytest.mark.parametrize("name", list(RESIZE_FACTORS))
@pytest.mark.parametrize("shape", [(48, 64), (45, 61), (33, 34), (101, 7), (50, 51)])
def test_resize_size_and_pixels(name, shape):
    factor = RESIZE_FACTORS[name]
    image = photo_like(*shape)
    height, width = shape
    # Python's round: 101 * 0.5 = 50.5 rounds to 50, 45 * 1.5 = 67.5 to 68.
    expected_shape = (round(height * factor), round(width * factor), 3)
    result = apply(name, image)
    assert result.shape == expected_shape
    expected = cv2.resize(image, (expected_shape[1], expected_shape[0]), interpolation=cv2.INTER_CUBIC)
    np.testing.assert_array_equal(result, expected)


def test_unaltered_is_an_equal_copy():
    image = photo_like()
    result = apply("unaltered", image)
    assert result is not image
    assert not np.shares_memory(result, image)
    np.testing.assert_array_equal(result, image)


@pytest.mark.parametrize("name", list(MANIPULATIONS))
def test_pure_and_uint8(name):
    image = photo_like(45, 61)
    before = image.copy()
    result = apply(name, image)
    np.testing.assert_array_equal(image, before)
    assert result.dtype == np.uint8 and result.ndim == 3 and result.shape[2] == 3
    assert not np.shares_memory(result, image)


@pytest.mark.parametrize("name", list(MANIPULATIONS))
def test_view_gives_the_same_as_a_copy(name):
    # camlit.data.prepare manipulates windows, which are strided views into the photo.
    image = photo_like(80, 96)
    view = image[8:72, 16:88]
    np.testing.assert_array_equal(apply(name, view), apply(name, np.ascontiguousarray(view)))


def test_unknown_name():
    with pytest.raises(ValueError, match="resize3.0"):
        apply("resize3.0", photo_like())


def test_shape_change_only_for_resize():
    for name, manipulation in MANIPULATIONS.items():
        if name not in RESIZE_FACTORS:
            assert apply(name, photo_like(45, 61)).shape == (45, 61, 3)
            assert manipulation.output_shape(45, 61) == (45, 61)


def test_manipulation_numbers_start_with_unaltered():
    assert manipulations.index("unaltered") == 0
    assert [manipulations.index(name) for name in manipulations.MANIPULATED] == list(range(1, 9))
    assert manipulations.index("my-own-folder") == -1
