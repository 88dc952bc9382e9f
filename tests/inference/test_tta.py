import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import (
    CLASSES,
    end_session,
    kill_parent,
    live_members,
    one_error_line,
    random_image,
    save_checkpoint,
    wait_for,
    write_image,
)
from threadpoolctl import threadpool_info

from camlit.data import manipulations
from camlit.forensics import inspect_command
from camlit.inference import evaluate, predict
from camlit.inference.tta import CollateCrops, CropPlan, augmented_crops, crop_loader, image_crops


def test_random_crops_are_centre_plus_even_and_reproducible():
    plan = CropPlan(size=32, count=6, seed=3)
    offsets = plan.offsets(48, 64, key=7)
    assert len(offsets) == 6 and offsets[0] == (8, 16)
    assert all(top % 2 == 0 and left % 2 == 0 for top, left in offsets[1:])
    assert all(0 <= top <= 16 and 0 <= left <= 32 for top, left in offsets)
    assert plan.offsets(48, 64, key=7) == offsets
    assert plan.offsets(48, 64, key=8) != offsets


def test_grid_crops_are_deterministic_and_even():
    offsets = CropPlan(size=32, count=4, grid=True).offsets(48, 64, key=0)
    assert offsets == [(0, 0), (0, 32), (16, 0), (16, 32)]


def test_crops_of_manipulated_versions_are_flagged_manipulated():
    image = np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    plan = CropPlan(size=32, count=2, manipulations=("gamma1.2", "resize0.5"))
    crops, applied = augmented_crops(image, plan, key=0)
    assert crops.shape == (4, 3, 32, 32) and applied.tolist() == [False, False, True, True]
    assert np.array_equal(crops[2:], image_crops(manipulations.apply("gamma1.2", image), plan, 0))
    collate = CollateCrops(torch.tensor([False, True]))
    items = [(torch.from_numpy(crops), torch.full((4,), i), None, torch.from_numpy(applied), None) for i in (0, 1)]
    assert collate(items).manipulated.tolist() == [False, False, True, True] + [True] * 4


def blas_threads(image: np.ndarray) -> np.ndarray:
    """A photo's 'description': how many threads numpy's BLAS may use where it is computed."""
    return np.array([max(pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas")])


def test_loader_workers_run_numpys_blas_on_one_thread(tmp_path):
    """camera_table's matrix products in every worker at once, each on a thread per core, would
    oversubscribe the cores (torch limits its own threads in a worker; numpy's BLAS is not torch's)."""
    if not any(pool["user_api"] == "blas" for pool in threadpool_info()):
        pytest.skip("numpy's BLAS is not one threadpoolctl knows")
    paths = [write_image(tmp_path / f"p{k}.png", random_image(np.random.default_rng(k), 48, 48)) for k in range(2)]
    loader = crop_loader(paths, CropPlan(size=32, count=1), num_workers=1, describe=blas_threads)
    assert [batch.photo_features.flatten().tolist() for batch in loader] == [[1.0, 1.0]]


def test_predict_evaluate_and_inspect_take_the_same_least_crop_size(tmp_path, capsys):
    """inspect refused a crop under 4 px; predict and evaluate took 1 to 3 px without a word."""
    ckpt = str(save_checkpoint(tmp_path / "tiny.ckpt"))
    photo = write_image(tmp_path / "images" / CLASSES[0] / "a.png", random_image(np.random.default_rng(0), 48, 48))
    commands = {
        predict.main: ["--input", str(photo.parent), "--output", str(tmp_path / "out.csv")],
        evaluate.main: ["--input", str(tmp_path / "images"), "--json", str(tmp_path / "out.json")],
        inspect_command.main: ["--input", str(photo), "--output", str(tmp_path / "inspected")],
    }
    for main, args in commands.items():
        args = ["--ckpt_path", ckpt, *args, "--crop_size", "3"]
        assert one_error_line(capsys, lambda main=main, args=args: main(args)) == (
            "error: --crop_size must be at least 4, got 3"
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "tiny.ckpt"]


LOADER_MAIN = """
import sys, time
from camlit.inference.tta import CropPlan, crop_loader

def slow_read(path):
    time.sleep(120)  # a worker busy with an item: torch's own watchdog acts only after it

if __name__ == "__main__":
    loader = crop_loader(["a.png", "b.png"], CropPlan(1, 8), num_workers=1, reader=slow_read)
    next(iter(loader))
"""


def test_prediction_loader_workers_die_with_a_killed_parent(tmp_path):
    """predict's and evaluate's loader workers lived on, re-parented, after a kill -9."""
    (tmp_path / "loader_main.py").write_text(LOADER_MAIN)
    process = subprocess.Popen([sys.executable, str(tmp_path / "loader_main.py")], start_new_session=True)
    try:
        assert wait_for(lambda: len(live_members(process.pid)) == 2, 60), "the worker never started"
        assert kill_parent(process, grace=5) == []
    finally:
        end_session(process.pid)
