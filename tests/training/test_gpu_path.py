"""The GPU path, checked as far as a CPU can: pinned uint8 batches, non-blocking copies, bf16 only where native."""

from pathlib import Path

import pytest
import torch
import yaml
from conftest import CLASSES, fit_args, make_datamodule

from camlit.training.cli import CamlitCLI
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
    batch_moves = [torch.uint8, torch.int64, torch.int64, torch.bool]  # crops, labels, manipulations, flags
    assert [dtype for dtype, _, _ in moves] == batch_moves * 2
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


@pytest.mark.parametrize(
    ("accelerator", "expected"), [("cpu", "32-true"), ("auto", "bf16-mixed"), ("gpu", "bf16-mixed")]
)
def test_a_fit_on_the_cpu_trains_in_32_bits_on_a_machine_with_a_bf16_gpu(
    flat_tree, tmp_path, monkeypatch, accelerator, expected
):
    """The default asked only whether a GPU with bf16 was there: `--trainer.accelerator cpu` (the
    CPU rehearsal's config) then trained the CPU in bf16-mixed, not as its figures were measured."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    monkeypatch.chdir(tmp_path)
    parsed = {}

    class ParseOnly(CamlitCLI):
        def before_instantiate_classes(self):
            parsed["precision"] = self.config.trainer.precision
            raise SystemExit(0)

    with pytest.raises(SystemExit):
        ParseOnly(args=fit_args(flat_tree, "--trainer.accelerator", accelerator))
    assert parsed["precision"] == expected
    assert default_precision(accelerator) == expected


def test_no_config_pins_the_precision():
    for path in CONFIGS.glob("*.yaml"):
        assert "precision" not in ((yaml.safe_load(path.read_text()) or {}).get("trainer") or {}), path.name
