"""Forensic front ends that sit before the ResNet and feed it the noise residual.

Camera traces (demosaicing, sensor noise, JPEG) live in the high frequencies that scene content
swamps; a residual front end removes the scene so the network does not have to learn to.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

InputFilter = Literal["none", "highpass", "srm", "constrained", "highpass_dct"]


class HighPass(nn.Module):
    """Fixed residual: each channel minus its 3x3 local mean, times `scale`."""

    def __init__(self, scale: float = 8.0):
        super().__init__()
        kernel = -torch.ones(3, 3) / 9
        kernel[1, 1] += 1
        self.register_buffer("weight", (scale * kernel).expand(3, 1, 3, 3).clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight.to(x.dtype), padding=1, groups=3)


# Fridrich & Kodovsky's spatial rich model: the first-order "spam", the 5x5 "KV" and the
# second-order kernels, as RGB-N (Zhou et al., 2018) used them, each normalised by its divisor.
SRM_KERNELS = (
    [[0, 0, 0, 0, 0], [0, -1, 2, -1, 0], [0, 2, -4, 2, 0], [0, -1, 2, -1, 0], [0, 0, 0, 0, 0]],
    [[-1, 2, -2, 2, -1], [2, -6, 8, -6, 2], [-2, 8, -12, 8, -2], [2, -6, 8, -6, 2], [-1, 2, -2, 2, -1]],
    [[0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 1, -2, 1, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]],
)
SRM_DIVISORS = (4, 12, 2)
LUMA = (0.299, 0.587, 0.114)


class SRMLuma(nn.Module):
    """Fixed SRM high-pass bank on luma only: three residual channels that carry no chroma.

    JPEG's 4:2:0 subsampling erases the colour traces that an RGB residual leans on, at any
    quality; luma keeps its full resolution, so what a model learns here survives re-compression.
    `channel_std` undoes the per-channel normalisation, so the luma is the image's own.
    """

    def __init__(self, channel_std: tuple[float, float, float], scale: float = 8.0):
        super().__init__()
        bank = torch.tensor(SRM_KERNELS, dtype=torch.float32) / torch.tensor(SRM_DIVISORS).view(3, 1, 1)
        mix = torch.tensor(LUMA) * torch.tensor(channel_std) / (sum(channel_std) / 3)
        weight = scale * bank[:, None] * mix.view(1, 3, 1, 1)  # (out, in, 5, 5)
        self.register_buffer("weight", weight, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight.to(x.dtype), padding=2)


def luma_weights(channel_std: tuple[float, float, float]) -> torch.Tensor:
    """(1, 3, 1, 1) weights giving luma in 0..255 pixel units from channels normalised by `channel_std`
    (the mean only shifts the DC term, which no residual here uses)."""
    return (255 * torch.tensor(LUMA) * torch.tensor(channel_std)).view(1, 3, 1, 1)


def dct_basis(block: int = 8) -> torch.Tensor:
    """(block*block, block, block): JPEG's orthonormal 2-D DCT-II basis, DC first, row-major by frequency."""
    n = torch.arange(block, dtype=torch.float64)
    k = n.view(-1, 1)
    basis_1d = torch.cos(torch.pi * (2 * n + 1) * k / (2 * block)) * torch.sqrt(torch.tensor(2.0 / block))
    basis_1d[0] /= torch.sqrt(torch.tensor(2.0))
    return torch.einsum("ux,vy->uvxy", basis_1d, basis_1d).reshape(block * block, block, block).float()


class HighPassDCT(nn.Module):
    """The HighPass residual plus a learned mix of luma's 8x8 DCT coefficient magnitudes.

    A camera's JPEG quantises each 8x8 block's DCT coefficients, zeroing most high frequencies;
    that pattern outlives a second compression (double-compression statistics, as CAT-Net reads
    them), where pixel residuals and chroma do not. The DCT runs at every offset (stride 1), so the
    block grid of the photo, at any phase within a crop, is among the channels. The 63 AC
    magnitudes, log1p-compressed so that a zeroed coefficient stands out, are mixed into the three
    residual channels by a 1x1 convolution that starts at zero: at initialisation the front end is
    `highpass` exactly, and the ResNet behind it is unchanged.
    """

    def __init__(self, channel_std: tuple[float, float, float], block: int = 8):
        super().__init__()
        self.highpass = HighPass()
        self.register_buffer("luma", luma_weights(channel_std), persistent=False)
        self.register_buffer("basis", dct_basis(block)[1:, None], persistent=False)  # AC only
        self.mix = nn.Conv2d(block * block - 1, 3, kernel_size=1, bias=False)
        nn.init.zeros_(self.mix.weight)

    def coefficients(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 63, H, W): at (i, j), the AC coefficients of the block whose top-left is (i - 3, j - 3)."""
        luma = F.conv2d(x, self.luma.to(x.dtype))
        before, after = (self.basis.shape[-1] - 1) // 2, self.basis.shape[-1] // 2
        return F.conv2d(F.pad(luma, (before, after, before, after), mode="replicate"), self.basis.to(x.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.highpass(x) + self.mix(torch.log1p(self.coefficients(x).abs()))


class ConstrainedConv(nn.Module):
    """Bayar & Stamm (2018): a learnable prediction-error filter per output channel.

    Output channel k predicts input channel k's centre pixel from its neighbourhood in all channels:
    the centre tap of channel k is fixed at -1 and the other taps sum to 1. The constraint is
    applied in every forward, so the optimiser sees it as a reparametrisation.
    """

    def __init__(self, kernel_size: int = 5, channels: int = 3):
        super().__init__()
        self.weight = nn.Parameter(torch.rand(channels, channels, kernel_size, kernel_size))
        centre = torch.zeros_like(self.weight)
        centre[range(channels), range(channels), kernel_size // 2, kernel_size // 2] = 1
        self.register_buffer("centre", centre, persistent=False)

    def constrained_weight(self) -> torch.Tensor:
        others = self.weight * (1 - self.centre)
        return others / others.sum(dim=(1, 2, 3), keepdim=True) - self.centre

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.constrained_weight().to(x.dtype)
        return F.conv2d(x, weight, padding=self.weight.shape[-1] // 2)


def build_input_filter(name: InputFilter, channel_std: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> nn.Module:
    if name == "none":
        return nn.Identity()
    if name == "highpass":
        return HighPass()
    if name == "srm":
        return SRMLuma(channel_std)
    if name == "constrained":
        return ConstrainedConv()
    if name == "highpass_dct":
        return HighPassDCT(channel_std)
    raise ValueError(f"unknown input_filter {name!r}; choose none, highpass, srm, constrained or highpass_dct")
