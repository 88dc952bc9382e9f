"""The precision a Trainer runs at, for training and for prediction alike."""

import torch

# Where the run may go to a GPU: Lightning's "auto" takes one when there is one.
GPU_ACCELERATORS = ("auto", "gpu", "cuda")


def default_precision(accelerator: object = "auto") -> str:
    """bf16-mixed where the run goes to a GPU that has bf16 natively, else 32-true: a CPU run
    (`--trainer.accelerator cpu` on a machine with a GPU too) trains as the CPU figures did."""
    if str(accelerator) not in GPU_ACCELERATORS:
        return "32-true"
    # Emulated bf16 (before Ampere) would be slower than fp32; only native support counts.
    native = torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    return "bf16-mixed" if native else "32-true"
