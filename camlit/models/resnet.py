"""ResNet-50/101/152 written by hand from He et al. 2016, Table 1.

Module names and registration order follow torchvision, so that its ImageNet checkpoints load
key for key. No torchvision import: the architecture is this file.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from camlit.errors import CamlitError

log = logging.getLogger(__name__)

# Blocks per stage (conv2_x .. conv5_x); each other depth is one more line here.
STAGE_TABLES: dict[str, tuple[int, int, int, int]] = {
    "resnet50": (3, 4, 6, 3),
    "resnet101": (3, 4, 23, 3),
    "resnet152": (3, 8, 36, 3),
    # One block per stage at an eighth of the width (0.13 M parameters): for tests and smoke runs.
    "resnet_tiny": (1, 1, 1, 1),
}
STEM_WIDTH = {"resnet_tiny": 8}  # 64 for the others, as in the paper
STAGE_MULTIPLIERS = (1, 2, 4, 8)
STAGE_STRIDES = (1, 2, 2, 2)


def conv_bn(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False)
    return conv, nn.BatchNorm2d(out_channels)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4), BN after each conv, ReLU after the residual sum.

    `stride_on_3x3=True` is torchvision's "v1.5"; False puts the stride on the first 1x1 as in the
    paper (and the seed notebook).
    """

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1, stride_on_3x3: bool = True):
        super().__init__()
        out_channels = width * self.expansion
        self.conv1, self.bn1 = conv_bn(in_channels, width, 1, stride=1 if stride_on_3x3 else stride)
        self.conv2, self.bn2 = conv_bn(width, width, 3, stride=stride if stride_on_3x3 else 1)
        self.conv3, self.bn3 = conv_bn(width, out_channels, 1)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(*conv_bn(in_channels, out_channels, 1, stride=stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + shortcut)


class ResNet(nn.Module):
    """Stem (7x7/2 conv, BN, ReLU, 3x3/2 max-pool), four bottleneck stages, global pool, linear head."""

    def __init__(
        self,
        blocks_per_stage: tuple[int, ...] = STAGE_TABLES["resnet50"],
        num_classes: int = 10,
        stride_on_3x3: bool = True,
        zero_init_residual: bool = False,
        stem_width: int = 64,
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(3, stem_width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_channels = stem_width
        widths = [stem_width * multiplier for multiplier in STAGE_MULTIPLIERS]
        for index, (num_blocks, width, stride) in enumerate(
            zip(blocks_per_stage, widths, STAGE_STRIDES, strict=True), start=1
        ):
            blocks = []
            for block_index in range(num_blocks):
                block_stride = stride if block_index == 0 else 1
                blocks.append(Bottleneck(in_channels, width, block_stride, stride_on_3x3))
                in_channels = width * Bottleneck.expansion
            setattr(self, f"layer{index}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, num_classes)
        self.reset_parameters(zero_init_residual)

    def reset_parameters(self, zero_init_residual: bool = False) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if zero_init_residual:
            # Each block starts as the identity, which helps deep nets train from scratch (Goyal et al.).
            for module in self.modules():
                if isinstance(module, Bottleneck):
                    nn.init.zeros_(module.bn3.weight)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def stages(self, stem: torch.Tensor) -> torch.Tensor:
        """The stem's output -> the pooled features of the last stage."""
        x = self.layer4(self.layer3(self.layer2(self.layer1(stem))))
        return torch.flatten(self.avgpool(x), 1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x))


def build_resnet(arch: str = "resnet50", **kwargs) -> ResNet:
    if arch not in STAGE_TABLES:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(STAGE_TABLES)}")
    return ResNet(STAGE_TABLES[arch], stem_width=STEM_WIDTH.get(arch, 64), **kwargs)


def resnet50(**kwargs) -> ResNet:
    return build_resnet("resnet50", **kwargs)


def load_pretrained(model: ResNet, path: str | Path) -> list[str]:
    """Load a torchvision ResNet state_dict file (e.g. resnet50-*.pth) into `model`.

    Every tensor must match; `fc.*` is skipped only when the class count differs. Returns the
    skipped keys.
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CamlitError(f"{path}: no such pretrained weights file") from None
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same one-line error
        raise CamlitError(f"{path}: not a readable PyTorch state_dict ({error})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CamlitError(f"{path}: holds a {type(state).__name__}, not a state_dict")
    odd = [key for key, value in state.items() if not isinstance(key, str) or not isinstance(value, torch.Tensor)]
    if odd:
        # A traceback each: an int where a tensor goes (`.shape`), an int key among the names (sorted).
        raise CamlitError(f"{path}: not a state_dict of named tensors (the entry {odd[0]!r} is not one)")
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CamlitError(
            f"{path}: not a {len(own)}-key ResNet state_dict of this depth; "
            f"missing keys: {_preview(missing)}; unexpected keys: {_preview(unexpected)}"
        )
    skipped = []
    if state["fc.weight"].shape != own["fc.weight"].shape:
        skipped = ["fc.weight", "fc.bias"]
        log.info(
            "%s: head has %d classes, model has %d; keeping the new head (skipped %s)",
            path,
            state["fc.weight"].shape[0],
            own["fc.weight"].shape[0],
            ", ".join(skipped),
        )
    mismatched = [
        f"{key} {tuple(state[key].shape)} vs {tuple(own[key].shape)}"
        for key in own
        if key not in skipped and state[key].shape != own[key].shape
    ]
    if mismatched:
        raise CamlitError(f"{path}: shape mismatch: {_preview(mismatched)}")
    model.load_state_dict({k: v for k, v in state.items() if k not in skipped}, strict=not skipped)
    return skipped


def _preview(items: list[str], limit: int = 6) -> str:
    if not items:
        return "none"
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more
