import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from camlit.data.batch import UNKNOWN, Batch
from camlit.errors import CamlitError
from camlit.models.filters import ConstrainedConv, HighPass, build_input_filter
from camlit.training.metrics import GroupedAccuracy
from camlit.training.module import CameraClassifier, CosineWithWarmup, masked_cross_entropy

CLASSES = ["a", "b", "c"]


def test_highpass_is_image_minus_local_mean():
    x = torch.randn(1, 3, 16, 16)
    residual = HighPass(scale=1.0)(x)
    local_mean = F.avg_pool2d(F.pad(x, (1, 1, 1, 1)), 3, stride=1)
    assert torch.allclose(residual[..., 1:-1, 1:-1], (x - local_mean)[..., 1:-1, 1:-1], atol=1e-6)
    flat = torch.full((1, 3, 8, 8), 0.7)
    assert HighPass()(flat)[..., 1:-1, 1:-1].abs().max() < 1e-6


def test_constrained_conv_keeps_bayar_constraint_while_learning():
    layer = ConstrainedConv()
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    for _ in range(3):
        loss = layer(torch.randn(2, 3, 12, 12)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    weight = layer.constrained_weight()
    for k in range(3):
        assert weight[k, k, 2, 2].item() == pytest.approx(-1.0)
        assert (weight[k].sum() + 1).item() == pytest.approx(1.0, abs=1e-5)
    # A flat image has zero prediction error.
    assert layer(torch.ones(1, 3, 9, 9))[..., 2:-2, 2:-2].abs().max() < 1e-5


def test_unknown_filter():
    with pytest.raises(ValueError, match="unknown input_filter 'sobel'"):
        build_input_filter("sobel")


def test_resnet_stays_torchvision_shaped_behind_any_filter():
    for name in ("none", "highpass", "constrained", "highpass_dct"):
        model = CameraClassifier(CLASSES, arch="resnet_tiny", input_filter=name)
        assert "fc.weight" in model.net.state_dict() and model.net.fc.out_features == 3


def test_normalises_uint8_on_device():
    model = CameraClassifier(CLASSES, arch="resnet_tiny", channels_last=False)
    images = torch.full((1, 3, 4, 4), 255, dtype=torch.uint8)
    x = model.preprocess(images)
    expected = (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(x[0, :, 0, 0], expected)


def test_overfits_two_tiny_batches():
    torch.manual_seed(0)
    model = CameraClassifier(CLASSES, arch="resnet_tiny", input_filter="highpass", lr=1e-3, channels_last=False)
    optimizer = model.configure_optimizers()
    batches = [
        (torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8), torch.tensor([0, 1, 2, 0, 1, 2])) for _ in range(2)
    ]
    model.train()
    losses = []
    for _ in range(4):
        for images, labels in batches:
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    assert sum(losses[-2:]) / 2 < 0.3 * sum(losses[:2]) / 2


def test_manipulation_flag_chooses_the_head():
    torch.manual_seed(0)
    model = CameraClassifier(CLASSES, arch="resnet_tiny", manipulation_flag=True, channels_last=False).eval()
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        features = model.net.forward_features(model.preprocess(images))
        logits = model(images, torch.tensor([False, True]))
        assert torch.allclose(logits[0], model.net.fc(features[0]), atol=1e-5)
        assert torch.allclose(logits[1], model.manipulated_fc(features[1]), atol=1e-5)
    with pytest.raises(CamlitError, match="needs to know whether each image is manipulated"):
        model(images)


def test_cosine_with_warmup_shape():
    schedule = CosineWithWarmup(total=100, warmup=10)
    factors = [schedule(step) for step in range(100)]
    assert factors[0] == pytest.approx(1 / 11) and factors[9] == pytest.approx(10 / 11)
    assert factors[10] == pytest.approx(1.0)
    assert factors[55] == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert all(a >= b for a, b in zip(factors[10:], factors[11:], strict=False))


@pytest.mark.parametrize(("name", "kind"), [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)])
def test_the_optimizer_is_the_one_named(name, kind):
    optimizer = CameraClassifier(CLASSES, arch="resnet_tiny", optimizer=name, weight_decay=0.01).configure_optimizers()
    assert type(optimizer) is kind and optimizer.param_groups[0]["weight_decay"] == 0.01


def test_grouped_accuracy_leaves_unknown_groups_out():
    metric = GroupedAccuracy(3)
    metric.update(torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 0, 2]), torch.tensor([0, 2, 2, UNKNOWN]))
    accuracy = metric.compute()
    assert accuracy[0] == 1.0 and torch.isnan(accuracy[1]) and accuracy[2] == 0.5


def test_weight_decay_spares_norms_and_biases():
    model = CameraClassifier(CLASSES, arch="resnet_tiny", optimizer="sgd", weight_decay=0.05)
    optimizer = model.configure_optimizers()
    assert isinstance(optimizer, torch.optim.SGD)
    decayed, spared = optimizer.param_groups
    assert decayed["weight_decay"] == 0.05 and spared["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decayed["params"]) and all(p.ndim <= 1 for p in spared["params"])


def test_predict_step_gives_probabilities():
    model = CameraClassifier(CLASSES, arch="resnet_tiny").eval()
    with torch.no_grad():
        unknown = torch.full((2,), UNKNOWN)
        images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
        probabilities = model.predict_step(Batch(images, unknown, unknown, torch.zeros(2, dtype=torch.bool)), 0)
    assert probabilities.shape == (2, 3)
    assert torch.allclose(probabilities.sum(1), torch.ones(2))


def test_manipulation_head_is_off_by_default_and_adds_its_weighted_loss():
    plain = CameraClassifier(CLASSES, arch="resnet_tiny", channels_last=False)
    assert plain.manipulation_fc is None and not any("manipulation_fc" in key for key in plain.state_dict())
    torch.manual_seed(0)
    model = CameraClassifier(CLASSES, arch="resnet_tiny", manipulation_head_weight=0.5, channels_last=False)
    assert model.manipulation_fc.out_features == 9
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    labels = torch.tensor([0, 1, 2, 0])
    manipulation = torch.tensor([0, 3, UNKNOWN, 8])
    batch = Batch(images, labels, manipulation, manipulation != 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log without a Trainer
        loss = model.training_step(batch, 1)
    features = model.net.forward_features(model.preprocess(images))
    expected_aux = F.cross_entropy(model.manipulation_fc(features)[[0, 1, 3]], manipulation[[0, 1, 3]])
    expected = F.cross_entropy(model.net.fc(features), labels) + 0.5 * expected_aux
    assert torch.allclose(loss, expected, atol=1e-5)
    loss.backward()
    assert model.manipulation_fc.weight.grad.abs().sum() > 0
    none_known = masked_cross_entropy(torch.randn(2, 9), torch.tensor([UNKNOWN, UNKNOWN]))
    assert none_known.item() == 0.0


def test_manipulation_head_weight_is_checked():
    with pytest.raises(CamlitError, match="manipulation_head_weight must be 0 or more"):
        CameraClassifier(CLASSES, arch="resnet_tiny", manipulation_head_weight=-0.1)


def test_a_camera_with_no_validation_crops_gets_no_accuracy_logged(monkeypatch):
    """torchmetrics gives 0 for a class with no samples: a camera the split left no validation
    photo read as one the model never recognised."""
    model = CameraClassifier(CLASSES, arch="resnet_tiny", channels_last=False).eval()
    logged = {}
    monkeypatch.setattr(model, "log_dict", lambda values, **kwargs: logged.update(values))
    monkeypatch.setattr(model, "log", lambda name, value, **kwargs: None)
    labels = torch.tensor([0, 0, 2, 2])
    batch = Batch(
        torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8),
        labels,
        torch.zeros(4, dtype=torch.long),
        torch.zeros(4, dtype=torch.bool),
    )
    with torch.no_grad():
        model.validation_step(batch, 0)
    model.on_validation_epoch_end()
    assert sorted(logged) == [f"val/acc_class/{CLASSES[0]}", f"val/acc_class/{CLASSES[2]}"]
    assert all(0 <= value <= 1 for value in logged.values())
