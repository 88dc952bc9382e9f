"""The epoch sampler: a fresh subset each epoch, crops of an image spread over it."""

from camlit.data.sampler import EpochSampler


def test_load_ratio_draws_a_new_subset_each_epoch():
    sampler = EpochSampler([0] * 20 + [1] * 20, load_ratio=0.25, seed=0)
    subsets = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        drawn = list(sampler)
        assert all(e == epoch and k == 0 for _, e, k in drawn)
        indices = [i for i, _, _ in drawn]
        assert len(indices) == 10 == len(sampler) and len(set(indices)) == 10
        assert sum(i < 20 for i in indices) == 5
        subsets.append(sorted(indices))
    assert subsets[0] != subsets[1] != subsets[2]
    sampler.set_epoch(1)
    assert sorted(i for i, _, _ in sampler) == subsets[1]


def test_crops_of_one_image_are_spread_over_the_epoch():
    sampler = EpochSampler([0] * 10 + [1] * 10, seed=0, crops_per_image=3)
    drawn = list(sampler)
    assert len(drawn) == len(sampler) == 60
    assert sorted((i, k) for i, _, k in drawn) == [(i, k) for i in range(20) for k in range(3)]
    first_positions = [next(p for p, (i, _, _) in enumerate(drawn) if i == index) for index in range(20)]
    assert max(first_positions) > 20  # not all crops of an image back to back
