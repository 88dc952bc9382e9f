import numpy as np
import pytest
import torch

from camlit.inference.aggregate import aggregate

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
