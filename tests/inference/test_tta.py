import numpy as np
import torch

from camlit.data import manipulations
from camlit.inference.tta import CollateCrops, CropPlan, augmented_crops, image_crops


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


def test_crops_of_manipulated_versions_are_flagged_manipulated():
    image = np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    plan = CropPlan(size=32, count=2, manipulations=("gamma1.2", "resize0.5"))
    crops, applied = augmented_crops(image, plan, index=0)
    assert crops.shape == (4, 3, 32, 32) and applied.tolist() == [False, False, True, True]
    assert np.array_equal(crops[2:], image_crops(manipulations.apply("gamma1.2", image), plan, 0))
    collate = CollateCrops(torch.tensor([False, True]))
    items = [(torch.from_numpy(crops), torch.full((4,), i), None, torch.from_numpy(applied), None) for i in (0, 1)]
    assert collate(items).manipulated.tolist() == [False, False, True, True] + [True] * 4
