import json
import logging
import math
from pathlib import Path

import pytest
import torch

from camlit.errors import CamlitError
from camlit.models.resnet import build_resnet, load_pretrained, resnet50

DATA = Path(__file__).parent
SHAPES = json.loads((DATA / "resnet50_state_dict_shapes.json").read_text())
ORACLE = json.loads((DATA / "resnet50_oracle_logits.json").read_text())


def oracle_fill(model: torch.nn.Module) -> None:
    """The deterministic fill that resnet50_oracle_logits.json describes."""
    state = model.state_dict()
    with torch.no_grad():
        for index, (key, shape) in enumerate(SHAPES.items()):
            if key.endswith("num_batches_tracked"):
                continue
            s = torch.sin(0.37 * torch.arange(math.prod(shape), dtype=torch.float64) + index)
            if key.endswith("running_var"):
                value = 1 + 0.5 * s.abs()
            elif key.endswith("running_mean"):
                value = 0.1 * s
            elif key.endswith("bias"):
                value = 0.05 * s
            elif "bn" in key or "downsample.1" in key:
                value = 1 + 0.1 * s
            else:
                value = s * math.sqrt(3 / (math.prod(shape) / shape[0]))
            state[key].copy_(value.reshape(shape))


def oracle_input() -> torch.Tensor:
    r = torch.linspace(-1, 1, 3 * 64 * 64, dtype=torch.float64)
    return torch.stack([torch.sin(17 * r), torch.cos(5 * r) * torch.sin(41 * r)]).reshape(2, 3, 64, 64)


def test_state_dict_equals_torchvision_table():
    state = resnet50(num_classes=10).state_dict()
    assert list(state) == list(SHAPES)
    assert {k: list(v.shape) for k, v in state.items()} == SHAPES


def test_parameter_count():
    assert sum(p.numel() for p in resnet50(num_classes=10).parameters()) == 23_528_522


def test_oracle_logits_float64():
    model = resnet50(num_classes=10)
    oracle_fill(model)
    model = model.double().eval()
    with torch.no_grad():
        logits = model(oracle_input())
    expected = torch.tensor(ORACLE["logits"], dtype=torch.float64)
    assert torch.allclose(logits, expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize("size", [32, 64, 224])
def test_output_shape_any_size(size):
    model = resnet50(num_classes=7).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, size, size)).shape == (2, 7)


def test_channels_last_matches_contiguous():
    torch.manual_seed(0)
    model = resnet50().eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        model = model.to(memory_format=torch.channels_last)
        actual = model(x.to(memory_format=torch.channels_last))
    assert torch.allclose(actual, expected, atol=1e-4, rtol=1e-4)


def test_stride_placement_options():
    v15 = resnet50(stride_on_3x3=True)
    paper = resnet50(stride_on_3x3=False)
    assert v15.layer2[0].conv2.stride == (2, 2) and v15.layer2[0].conv1.stride == (1, 1)
    assert paper.layer2[0].conv1.stride == (2, 2) and paper.layer2[0].conv2.stride == (1, 1)
    # Same weights either way; only where the stride applies differs.
    assert {k: v.shape for k, v in v15.state_dict().items()} == {k: v.shape for k, v in paper.state_dict().items()}


def test_zero_init_residual():
    model = resnet50(zero_init_residual=True)
    blocks = [b for stage in (model.layer1, model.layer2, model.layer3, model.layer4) for b in stage]
    assert len(blocks) == 16
    assert all(torch.count_nonzero(b.bn3.weight) == 0 for b in blocks)
    assert torch.count_nonzero(resnet50().layer1[0].bn3.weight) > 0


def test_deeper_tables_are_one_line_each():
    model = build_resnet("resnet101", num_classes=3)
    assert len(model.layer3) == 23
    with pytest.raises(ValueError, match="unknown arch"):
        build_resnet("resnet18")


def test_load_pretrained_imagenet_head_is_skipped(tmp_path, caplog):
    source = resnet50(num_classes=1000)
    path = tmp_path / "resnet50-imagenet.pth"
    torch.save(source.state_dict(), path)
    model = resnet50(num_classes=10)
    with caplog.at_level(logging.INFO):
        skipped = load_pretrained(model, path)
    assert skipped == ["fc.weight", "fc.bias"]
    assert "skipped fc.weight" in caplog.text
    assert torch.equal(model.conv1.weight, source.conv1.weight)
    assert torch.equal(model.layer4[2].bn3.running_var, source.layer4[2].bn3.running_var)
    assert model.fc.weight.shape == (10, 2048)


def test_load_pretrained_same_classes_loads_everything(tmp_path):
    source = resnet50(num_classes=10)
    path = tmp_path / "ten.pth"
    torch.save(source.state_dict(), path)
    model = resnet50(num_classes=10)
    assert load_pretrained(model, path) == []
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_load_pretrained_bad_files(tmp_path):
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "extra.weight": torch.zeros(1)}, wrong)
    with pytest.raises(CamlitError, match=r"missing keys: .*bn1.*unexpected keys: extra.weight"):
        load_pretrained(resnet50(), wrong)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CamlitError, match="garbage.pth: not a readable"):
        load_pretrained(resnet50(), garbage)
    with pytest.raises(CamlitError, match="no such"):
        load_pretrained(resnet50(), tmp_path / "absent.pth")
    # An int where a tensor goes, and an int among the names: an AttributeError and a TypeError traceback.
    names = resnet50().state_dict()
    odd = tmp_path / "odd.pth"
    torch.save(dict.fromkeys(names, 1), odd)
    with pytest.raises(CamlitError, match=r"odd.pth: not a state_dict of named tensors \(the entry 'conv1.weight'"):
        load_pretrained(resnet50(), odd)
    torch.save({**names, 0: torch.zeros(1)}, odd)
    with pytest.raises(CamlitError, match=r"not a state_dict of named tensors \(the entry 0 is not one\)"):
        load_pretrained(resnet50(), odd)


def test_matches_torchvision_when_available():
    torchvision = pytest.importorskip("torchvision")
    reference = torchvision.models.resnet50(num_classes=10).eval()
    model = resnet50(num_classes=10).eval()
    model.load_state_dict(reference.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), reference(x), atol=1e-5)
