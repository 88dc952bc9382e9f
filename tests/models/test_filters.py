import numpy as np
import pytest
import torch
from scipy.fft import dctn

from camlit.data.manipulations import jpeg
from camlit.models.filters import LUMA, HighPass, HighPassDCT, build_input_filter
from camlit.training.module import IMAGENET_MEAN, IMAGENET_STD, CameraClassifier


def normalised(pixels: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> (1, 3, H, W) as CameraClassifier.preprocess normalises it."""
    x = torch.from_numpy(pixels).permute(2, 0, 1)[None].float()
    mean, std = (255 * torch.tensor(v).view(1, 3, 1, 1) for v in (IMAGENET_MEAN, IMAGENET_STD))
    return (x - mean) / std


def test_highpass_dct_reads_the_block_dct_of_luma_at_every_offset():
    pixels = np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    coefficients = HighPassDCT(IMAGENET_STD).coefficients(normalised(pixels))[0].double()
    assert coefficients.shape == (63, 24, 24)
    luma = pixels.astype(np.float64) @ np.array(LUMA)
    for top, left in ((0, 0), (2, 6), (11, 5), (16, 16)):
        expected = dctn(luma[top : top + 8, left : left + 8], norm="ortho").reshape(-1)[1:]
        assert np.allclose(coefficients[:, top + 3, left + 3].numpy(), expected, atol=1e-2)


def test_highpass_dct_starts_as_highpass_and_learns_its_mix():
    front = build_input_filter("highpass_dct", IMAGENET_STD)
    x = normalised(np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8))
    assert torch.allclose(front(x), HighPass()(x))
    front(x).square().sum().backward()
    assert front.mix.weight.grad.abs().sum() > 0


def test_a_jpeg_block_grid_shows_as_zeroed_coefficients():
    """Quantised blocks (most high frequencies zero) give small magnitudes on the grid, not off it."""
    texture = np.random.default_rng(2).normal(128, 20, (64, 64, 3)).clip(0, 255).astype(np.uint8)
    decoded = jpeg(texture, quality=50)
    magnitude = HighPassDCT(IMAGENET_STD).coefficients(normalised(decoded))[0].abs()[-20:]  # high frequencies
    on_grid = magnitude[:, 3:-8:8, 3:-8:8].mean()
    off_grid = magnitude[:, 7:-8:8, 7:-8:8].mean()
    assert on_grid < 0.5 * off_grid


@pytest.mark.parametrize("name", ["highpass", "highpass_dct"])
def test_checkpoints_differ_only_by_the_front_end(name):
    keys = set(CameraClassifier(["a", "b"], arch="resnet_tiny", input_filter=name).state_dict())
    plain = set(CameraClassifier(["a", "b"], arch="resnet_tiny").state_dict())
    assert keys - plain == ({"input_filter.mix.weight"} if name == "highpass_dct" else set())
