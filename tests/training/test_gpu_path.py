"""The GPU path, checked as far as a CPU can: pinned uint8 batches, non-blocking copies, bf16 only where native."""

from pathlib import Path

import pytest
import torch
import yaml
from conftest import CLASSES, make_datamodule

from camlit.training.module import CameraClassifier
from camlit.training.precision import default_precision

CONFIGS = Path(__file__).resolve().parents[2] / "scripts" / "configs"


@pytest.mark.parametrize("cuda", [False, True])
def test_loaders_pin_memory_only_with_a_gpu(flat_tree, monkeypatch, cuda):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    datamodule = make_datamodule(flat_tree)
    # Only the loaders are made: iterating a pinning one needs a real GPU.
    assert datamodule.train_dataloader().pin_memory is cuda
    assert datamodule.val_dataloader().pin_memory is cuda


def test_batches_go_to_the_gpu_as_uint8_without_blocking(flat_tree, monkeypatch):
    datamodule = make_datamodule(flat_tree)
    model = CameraClassifier(classes=CLASSES, arch="resnet_tiny")
    train, val = next(iter(datamodule.train_dataloader())), next(iter(datamodule.val_dataloader()))
    moves = []

    def record(tensor, *args, **kwargs):
        moves.append((tensor.dtype, args, kwargs))
        return tensor

    monkeypatch.setattr(torch.Tensor, "to", record)
    gpu = torch.device("cuda", 0)
    for batch in (train, val):
        model.transfer_batch_to_device(batch, gpu, 0)
    # Images as uint8, a quarter of float32's bytes; the module normalises them on the device (test_module).
    train_moves = [torch.uint8, torch.int64, torch.int64, torch.bool]  # Batch: crops, labels, manipulation, flags
    assert [dtype for dtype, _, _ in moves] == [*train_moves, torch.uint8, torch.int64, torch.int64]
    assert all(args == (gpu,) and kwargs == {"non_blocking": True} for _, args, kwargs in moves)


@pytest.mark.parametrize(
    ("cuda", "native_bf16", "expected"),
    [(False, False, "32-true"), (True, False, "32-true"), (True, True, "bf16-mixed")],
    ids=["cpu", "gpu-emulating-bf16", "gpu-with-bf16"],
)
def test_bf16_mixed_only_where_the_gpu_has_it(monkeypatch, cuda, native_bf16, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)

    def is_bf16_supported(including_emulation=True):
        # As torch answers: a GPU that only emulates bf16 (a V100, a T4) counts unless told not to.
        return native_bf16 or including_emulation

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    assert default_precision() == expected


def test_no_config_pins_the_precision():
    for path in CONFIGS.glob("*.yaml"):
        assert "precision" not in ((yaml.safe_load(path.read_text()) or {}).get("trainer") or {}), path.name
