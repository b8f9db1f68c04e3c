import math

import pytest
import torch

from sqft.sparsify.masks import magnitude_score, nm_mask, parse_pattern, unstructured_mask, wanda_score


def test_wanda_picks_the_papers_weight_where_magnitude_differs():
    # W = [1, 2, 3, 4], ‖X‖ = [100, 10, 1, 0.1]: Wanda scores |W|·‖X‖ = [100, 20, 3, 0.4]
    W = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    sq_norm = torch.tensor([100.0, 10.0, 1.0, 0.1]) ** 2
    wanda = unstructured_mask(wanda_score(W, sq_norm), 0.5)
    magnitude = unstructured_mask(magnitude_score(W), 0.5)
    assert wanda.tolist() == [[False, False, True, True]]  # prunes 3 and 4 (scores 3, 0.4)
    assert magnitude.tolist() == [[True, True, False, False]]  # prunes 1 and 2


@pytest.mark.parametrize("p", [0.0, 0.1, 0.25, 0.5, 0.7, 0.99])
@pytest.mark.parametrize("in_f", [7, 64, 100])
def test_every_row_gets_exactly_floor_in_p_zeros(p, in_f):
    score = torch.rand(13, in_f, generator=torch.Generator().manual_seed(0))
    pruned = unstructured_mask(score, p)
    assert (pruned.sum(dim=1) == math.floor(in_f * p)).all()
    # and they are the lowest scores of the row
    if 0 < math.floor(in_f * p) < in_f:
        assert (score[pruned].reshape(13, -1).amax(1) <= score[~pruned].reshape(13, -1).amin(1)).all()


@pytest.mark.parametrize("n,m", [(2, 4), (4, 8), (1, 4)])
def test_nm_pattern_is_valid(n, m):
    score = torch.rand(9, 32, generator=torch.Generator().manual_seed(1))
    pruned = nm_mask(score, n, m)
    assert (pruned.reshape(9, -1, m).sum(-1) == n).all()


def test_ties_are_broken_deterministically_by_column():
    score = torch.ones(3, 8)
    pruned = unstructured_mask(score, 0.5)
    assert pruned[:, :4].all() and not pruned[:, 4:].any()
    assert torch.equal(nm_mask(score, 2, 4), torch.tensor([[1, 1, 0, 0] * 2] * 3, dtype=torch.bool))


@pytest.mark.parametrize("bad", ["4:2", "2:2", "0:4", "2-4", "a:b", "2:4:8"])
def test_bad_patterns_are_refused(bad):
    with pytest.raises(ValueError, match="N:M|0 < N < M"):
        parse_pattern(bad)
