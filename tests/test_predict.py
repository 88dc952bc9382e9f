import itertools
import math
import time

import lightning as L
import numpy as np
import pytest
import torch
from conftest import CLASSES, random_image, write_image

from camlit.predict import (
    CropPlan,
    aggregate,
    balanced_assignment,
    balanced_labels,
    checkpoint_crop_size,
    crop_loader,
    load_checkpoint,
    main,
    predict_crops,
)

SIZE = 32  # the crop size recorded in the test checkpoint


def save_checkpoint(path, classes=CLASSES, crop_size=SIZE):
    """A checkpoint as the CLI writes it: model hparams, weights, and the DataModule's crop_size."""
    torch.manual_seed(0)
    from camlit.module import CameraClassifier

    model = CameraClassifier(list(classes))
    trainer = L.Trainer(logger=False, enable_checkpointing=False, max_epochs=0, enable_model_summary=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(path)
    if crop_size is not None:
        checkpoint = torch.load(path, weights_only=False)
        checkpoint["datamodule_hyper_parameters"] = {"crop_size": crop_size, "batch_size": 4}
        torch.save(checkpoint, path)
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.ckpt")


@pytest.fixture
def images(tmp_path):
    """Five 48x48 test images, named out of order, as Kaggle's .tif plus one .png."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "test"
    for name in ("img_c.tif", "img_a.tif", "img_e.png", "img_b.tif", "img_d.tif"):
        write_image(folder / name, random_image(rng, 48, 48))
    return folder


def run(ckpt, folder, output, *extra):
    args = ["--ckpt", str(ckpt), "--input", str(folder), "--output", str(output), "--no-progress"]
    return main([*args, "--crops", "3", "--num-workers", "0", *extra])


# --- aggregation -----------------------------------------------------------------------------

CROPS = torch.tensor([[0.6, 0.3, 0.1], [0.1, 0.2, 0.7], [0.5, 0.4, 0.1]], dtype=torch.float64)


def test_mean_aggregate():
    probabilities, label = aggregate(CROPS, "mean")
    assert torch.allclose(probabilities, torch.tensor([0.4, 0.3, 0.3], dtype=torch.float64))
    assert label == 0


def test_geomean_aggregate_is_renormalised_product():
    probabilities, label = aggregate(CROPS, "geomean")
    geometric = torch.tensor([0.03, 0.024, 0.007], dtype=torch.float64) ** (1 / 3)
    assert torch.allclose(probabilities, geometric / geometric.sum())
    assert label == 0 and probabilities.sum().item() == pytest.approx(1.0)
    # One crop nearly ruling a class out outweighs two confident crops for it; the mean disagrees.
    vetoed = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.001, 0.999]], dtype=torch.float64)
    assert aggregate(vetoed, "mean")[1] == 0 and aggregate(vetoed, "geomean")[1] == 1
    # A zero probability does not make NaN.
    zero, label = aggregate(torch.tensor([[1.0, 0.0], [0.5, 0.5]]), "geomean")
    assert torch.isfinite(zero).all() and label == 0


def test_max_aggregate_is_the_seeds_flat_argmax():
    probabilities, label = aggregate(CROPS, "max")
    # The single most confident crop prediction is 0.7, crop 1 class 2, although the mean picks 0.
    flat = int(np.argmax(CROPS.numpy()))
    assert label == flat % 3 == 2
    assert torch.equal(probabilities, CROPS[1])
    # Ties go to the first in row-major order, as np.argmax over the flattened matrix does.
    tied = torch.tensor([[0.2, 0.8], [0.8, 0.2]])
    probabilities, label = aggregate(tied, "max")
    assert label == int(np.argmax(tied.numpy())) % 2 == 1 and torch.equal(probabilities, tied[0])


def test_unknown_aggregate():
    with pytest.raises(ValueError, match="unknown aggregate"):
        aggregate(CROPS, "median")


# --- balancing -------------------------------------------------------------------------------


def brute_force_best(scores: np.ndarray) -> float:
    n, k = scores.shape
    base, extra = divmod(n, k)
    best = -math.inf
    for labels in itertools.product(range(k), repeat=n):
        counts = np.bincount(labels, minlength=k)
        if counts.min() >= base and counts.max() <= base + (extra > 0):
            best = max(best, scores[np.arange(n), list(labels)].sum())
    return best


def test_balance_on_a_skewed_case():
    """Argmax puts all 30 images in class 0; their second choices say where they belong."""
    rows = [[0.98, 0.01, 0.01]] * 10 + [[0.55, 0.44, 0.01]] * 10 + [[0.55, 0.01, 0.44]] * 10
    probabilities = np.array(rows) + np.random.default_rng(0).uniform(0, 1e-3, (30, 3))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    assert (probabilities.argmax(axis=1) == 0).all()
    labels = balanced_labels(probabilities)
    assert labels.tolist() == [0] * 10 + [1] * 10 + [2] * 10


@pytest.mark.parametrize("count", [11, 12, 13, 2])
def test_balance_counts_when_not_divisible(count):
    probabilities = np.tile([0.9, 0.05, 0.05], (count, 1))
    counts = np.bincount(balanced_labels(probabilities), minlength=3)
    assert counts.sum() == count and counts.max() - counts.min() <= 1
    assert counts.min() == count // 3


def test_balance_is_optimal_against_brute_force():
    rng = np.random.default_rng(1)
    for case in range(120):
        n, k = int(rng.integers(1, 8)), int(rng.integers(1, 4))
        scores = np.log(rng.dirichlet(np.full(k, 0.4), size=n) + 1e-9) if case % 2 else rng.normal(size=(n, k)) * 3
        if case % 5 == 0:
            scores = np.round(scores)  # ties
        labels = balanced_assignment(scores)
        counts = np.bincount(labels, minlength=k)
        assert counts.min() == n // k and counts.max() <= n // k + (n % k > 0)
        assert scores[np.arange(n), labels].sum() == pytest.approx(brute_force_best(scores), abs=1e-9)


def test_balance_leaves_no_improving_swap_on_a_larger_case():
    scores = np.log(np.random.default_rng(3).dirichlet(np.full(4, 0.5), size=61))
    labels = balanced_assignment(scores)
    own = scores[np.arange(61), labels]
    # Swapping the classes of any two images never raises the total.
    gain = scores[:, labels] + scores[:, labels].T - own[:, None] - own[None, :]
    assert gain.max() <= 1e-9


def test_balance_is_fast_enough_for_kaggle():
    rng = np.random.default_rng(2)
    probabilities = rng.dirichlet(np.ones(10), size=2640)
    probabilities[:, 3] += 1.5  # skewed towards one class
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    start = time.perf_counter()
    labels = balanced_labels(probabilities)
    assert time.perf_counter() - start < 5
    assert np.bincount(labels, minlength=10).tolist() == [264] * 10


# --- crops -----------------------------------------------------------------------------------


def test_random_crops_are_centre_plus_even_and_reproducible():
    plan = CropPlan(size=32, count=6, seed=3)
    offsets = plan.offsets(48, 64, index=7)
    assert len(offsets) == 6 and offsets[0] == (8, 16)
    assert all(top % 2 == 0 and left % 2 == 0 for top, left in offsets[1:])
    assert all(0 <= top <= 16 and 0 <= left <= 32 for top, left in offsets)
    assert plan.offsets(48, 64, index=7) == offsets
    assert plan.offsets(48, 64, index=8) != offsets


def test_grid_crops_are_deterministic_and_even():
    offsets = CropPlan(size=32, count=4, grid=True).offsets(48, 64, index=0)
    assert offsets == [(0, 0), (0, 32), (16, 0), (16, 32)]


def test_crop_size_comes_from_the_datamodule_hyperparameters():
    assert checkpoint_crop_size({"datamodule_hyper_parameters": {"crop_size": 512}}) == 512
    assert checkpoint_crop_size({"hyper_parameters": {}}) is None


# --- the command line ------------------------------------------------------------------------


def test_writes_kaggle_csv_sorted_atomically(ckpt, images, tmp_path, capsys):
    output = tmp_path / "out" / "submission.csv"
    probs = tmp_path / "out" / "probs.csv"
    predictions = run(ckpt, images, output, "--probs", str(probs))
    lines = output.read_text().splitlines()
    assert lines[0] == "fname,camera"
    names = [line.split(",")[0] for line in lines[1:]]
    assert names == ["img_a.tif", "img_b.tif", "img_c.tif", "img_d.tif", "img_e.png"]
    assert all(line.split(",")[1] in CLASSES for line in lines[1:])
    # Only the two files asked for: no temporary file left behind.
    assert sorted(p.name for p in output.parent.iterdir()) == ["probs.csv", "submission.csv"]
    rows = [line.split(",") for line in probs.read_text().splitlines()]
    assert rows[0] == ["fname", *CLASSES] and [r[0] for r in rows[1:]] == names
    for row, line in zip(rows[1:], lines[1:], strict=True):
        values = [float(v) for v in row[1:]]
        assert sum(values) == pytest.approx(1.0, abs=1e-4)
        assert CLASSES[int(np.argmax(values))] == line.split(",")[1]
    # 48x48 images only work because the crop size (32) came from the checkpoint, not 224.
    assert predictions.crops == 15
    assert "images/s" in capsys.readouterr().out


def test_two_runs_give_identical_files(ckpt, images, tmp_path):
    run(ckpt, images, tmp_path / "a.csv", "--probs", str(tmp_path / "pa.csv"))
    run(ckpt, images, tmp_path / "b.csv", "--probs", str(tmp_path / "pb.csv"), "--num-workers", "1")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert (tmp_path / "pa.csv").read_bytes() == (tmp_path / "pb.csv").read_bytes()


def test_balance_and_grid_from_the_command_line(ckpt, images, tmp_path):
    rng = np.random.default_rng(5)
    write_image(images / "img_f.tif", random_image(rng, 48, 48))
    run(ckpt, images, tmp_path / "sub.csv", "--balance", "--crop-grid", "--aggregate", "geomean")
    cameras = [line.split(",")[1] for line in (tmp_path / "sub.csv").read_text().splitlines()[1:]]
    assert sorted(cameras) == sorted(CLASSES * 2)


def test_unreadable_images(ckpt, images, tmp_path, capsys):
    (images / "broken.jpg").write_bytes(b"\xff\xd8not really a jpeg")
    (images / "empty.tif").write_bytes(b"")
    write_image(images / "small.png", random_image(np.random.default_rng(0), 20, 20))
    output = tmp_path / "sub.csv"
    with pytest.raises(SystemExit) as exit_info:
        run(ckpt, images, output, "--num-workers", "1")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    error_lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1
    assert all(name in error_lines[0] for name in ("broken.jpg", "empty.tif", "small.png"))
    assert "Traceback" not in err
    names = [line.split(",")[0] for line in output.read_text().splitlines()[1:]]
    assert names == ["img_a.tif", "img_b.tif", "img_c.tif", "img_d.tif", "img_e.png"]
    # Accepted: the same rows, exit status 0, the files still reported.
    predictions = run(ckpt, images, tmp_path / "skip.csv", "--skip-unreadable")
    assert (tmp_path / "skip.csv").read_bytes() == output.read_bytes()
    assert len(predictions.problems) == 3
    assert "broken.jpg" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda args, tmp: args.__setitem__(1, str(tmp / "none.ckpt")), "no such checkpoint"),
        (lambda args, tmp: args.__setitem__(3, str(tmp / "nowhere")), "no such folder"),
        (lambda args, tmp: args.__setitem__(3, str(tmp / "out")), "no images"),
        (lambda args, tmp: args.extend(["--crops", "0"]), "--crops must be at least 1"),
    ],
)
def test_input_mistakes_are_one_line(ckpt, images, tmp_path, capsys, change, message):
    (tmp_path / "out").mkdir()
    args = ["--ckpt", str(ckpt), "--input", str(images), "--output", str(tmp_path / "out" / "s.csv"), "--no-progress"]
    change(args, tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("error:") and message in err and len(err.splitlines()) == 1


def test_corrupt_checkpoint(images, tmp_path, capsys):
    (tmp_path / "bad.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit):
        main(["--ckpt", str(tmp_path / "bad.ckpt"), "--input", str(images), "--output", str(tmp_path / "s.csv")])
    assert "not a loadable camlit checkpoint" in capsys.readouterr().err


def test_trainer_predict_gives_the_same_crop_probabilities(ckpt, images):
    model, size = load_checkpoint(ckpt)
    paths = sorted(images.iterdir())
    loader = crop_loader(paths, CropPlan(size=size, count=3, seed=0), batch_size=7)
    ours, problems = predict_crops(model, loader)
    assert not problems and sorted(ours) == list(range(5))
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False, precision="32-true"
    )
    theirs = torch.cat(trainer.predict(model, dataloaders=loader))
    assert theirs.shape == (15, len(CLASSES))
    assert torch.allclose(theirs, torch.cat([ours[i] for i in range(5)]), atol=1e-6)
