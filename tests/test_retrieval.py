"""Batched top-k retrieval against brute force, for both distances, with and without chunking."""

import pytest
import torch

from umbert_hf.retrieval import pairwise_scores, rank_of_targets, top_k


def brute_force(queries, keys, k, distance):
    if distance == "euclidean":
        scores = -torch.cdist(queries.double(), keys.double())
    else:
        scores = torch.nn.functional.cosine_similarity(queries.double()[:, None], keys.double()[None], dim=-1)
    return scores.sort(dim=1, descending=True)


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
@pytest.mark.parametrize("max_block_elements", [1 << 24, 1000, 37])
def test_top_k_equals_brute_force(distance, max_block_elements):
    generator = torch.Generator().manual_seed(1)
    queries, keys = torch.randn(53, 16, generator=generator), torch.randn(301, 16, generator=generator)
    scores, indices = top_k(queries, keys, 10, distance, max_block_elements=max_block_elements)
    expected_scores, expected_indices = brute_force(queries, keys, 10, distance)
    assert scores.shape == indices.shape == (53, 10)
    assert torch.equal(indices, expected_indices[:, :10])
    assert torch.allclose(scores.double(), expected_scores[:, :10], atol=1e-4)


def test_top_k_clips_k_and_validates_inputs():
    queries, keys = torch.randn(3, 4), torch.randn(2, 4)
    scores, indices = top_k(queries, keys, 10)
    assert indices.shape == (3, 2)
    with pytest.raises(ValueError, match="Unknown distance 'dot'"):
        top_k(queries, keys, 1, "dot")
    with pytest.raises(ValueError, match="queries have 4, keys have 5"):
        top_k(queries, torch.randn(2, 5), 1)
    with pytest.raises(ValueError, match="empty"):
        top_k(queries, torch.randn(0, 4), 1)


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_rank_of_targets_matches_sorting(distance):
    generator = torch.Generator().manual_seed(2)
    queries, keys = torch.randn(40, 8, generator=generator), torch.randn(90, 8, generator=generator)
    targets = torch.randint(90, (40,), generator=generator)
    ranks = rank_of_targets(queries, keys, targets, distance)
    order = pairwise_scores(queries, keys, distance).argsort(dim=1, descending=True)
    expected = (order == targets[:, None]).nonzero()[:, 1] + 1
    assert torch.equal(ranks, expected)
