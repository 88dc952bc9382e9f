from camlit.inference.tta import CropPlan


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
