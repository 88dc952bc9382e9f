"""The precision a Trainer runs at, for training and for prediction alike."""

import torch


def default_precision() -> str:
    # Emulated bf16 (before Ampere) would be slower than fp32; only native support counts.
    native = torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    return "bf16-mixed" if native else "32-true"
