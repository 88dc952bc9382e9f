"""A trained camlit model from its checkpoint alone, ready for `Trainer.predict`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from camlit.data.crops import MIN_CROP_SIZE
from camlit.errors import CamlitError, not_a_file
from camlit.training.checkpointing import load_plain
from camlit.training.module import CameraClassifier


def require_checkpoint_file(path: str | os.PathLike) -> Path:
    """`path` as a Path, if it is a regular file: a pipe or a device would be read without end."""
    path = Path(path)
    if not path.is_file():
        raise CamlitError(f"--ckpt_path {path}: {not_a_file(path)}; name a checkpoint file")
    return path


def load_checkpoint(path: str | os.PathLike, device: str = "auto"):
    """(CameraClassifier in eval mode on the CPU, the training crop size if the checkpoint has it).

    `device` (`--device`) only decides the memory format; the Trainer moves the model.
    """
    path = require_checkpoint_file(path)
    # The weights come from the checkpoint: a pretrained file named at training time may be gone,
    # and compiling would only add start-up time here. channels_last only pays on a GPU; on a CPU
    # it is never faster and several times slower for small crops.
    overrides: dict[str, Any] = {"pretrained": None, "compile": False}
    on_gpu = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if not on_gpu:
        overrides["channels_last"] = False
    try:
        # Hash and plain-data check first; then Lightning loads the same file, also weights only.
        checkpoint = load_plain(path, mmap=True)
        require_finite_weights(path, checkpoint)
        model = CameraClassifier.load_from_checkpoint(path, map_location="cpu", weights_only=True, **overrides)
    except CamlitError as error:
        # The model's own checks name training's options; here the checkpoint is what is wrong.
        if not str(error).startswith("--ckpt_path"):
            raise CamlitError(f"--ckpt_path {path}: not a usable camlit checkpoint ({error})") from None
        raise
    except Exception as error:  # noqa: BLE001 - a file torch or Lightning cannot load is the user's input
        # torch's own messages run to several lines of advice; the first says what failed, but for
        # its weights-only reader, whose first lines advise weights_only=False (which would run code).
        text = str(error).strip().split(UNPICKLER_ERROR)[-1]
        reason = f"{type(error).__name__}: {next((line.strip() for line in text.splitlines() if line.strip()), '')}"
        raise CamlitError(f"--ckpt_path {path}: not a loadable camlit checkpoint ({reason})") from None
    model.configure_model()
    return model.eval(), checkpoint_crop_size(checkpoint, path)


UNPICKLER_ERROR = "WeightsUnpickler error:"


def require_finite_weights(path: Path, checkpoint: Any) -> None:
    """NaN or infinite weights (a diverged run saved elsewhere) would give one class for every image."""
    state = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    for key, tensor in (state or {}).items():
        if torch.is_tensor(tensor) and tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CamlitError(f"--ckpt_path {path}: weight {key} is not finite (NaN or infinity); the run diverged")


def checkpoint_crop_size(checkpoint: dict[str, Any], path: str | os.PathLike = "") -> int | None:
    """The DataModule's crop_size saved by the CLI under datamodule_hyper_parameters, if any."""
    hparams = checkpoint.get("datamodule_hyper_parameters") or {}
    size = hparams.get("crop_size") if hasattr(hparams, "get") else None
    if not isinstance(size, int) or isinstance(size, bool):
        return None
    if size < MIN_CROP_SIZE:
        # fit never writes it; prediction would cut crops the network's strides reduce to nothing.
        raise CamlitError(
            f"--ckpt_path {path}: its training crop size {size} is under {MIN_CROP_SIZE}; not fit's checkpoint"
        )
    return size
