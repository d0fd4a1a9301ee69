"""Batched top-k retrieval against brute force, for both distances, with and without chunking."""

import pytest
import torch

from umbert_hf.retrieval import candidate_credit, pairwise_scores, rank_of_targets, top_k


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
    ranks, ties = rank_of_targets(queries, keys, targets, distance)
    order = pairwise_scores(queries, keys, distance).argsort(dim=1, descending=True)
    expected = (order == targets[:, None]).nonzero()[:, 1] + 1
    assert torch.equal(ranks, expected)
    assert torch.equal(ties, torch.zeros_like(ties))


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_identical_keys_tie_and_never_favour_the_target(distance):
    keys = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0], [-1.0, 0.0]])
    queries = torch.tensor([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    ranks, ties = rank_of_targets(queries, keys, torch.tensor([2, 0, 3]), distance)
    # Query 0: the target is one of three identical best keys; query 1: behind those three; query 2: behind (1, 0).
    assert ranks.tolist() == [1, 4, 2] and ties.tolist() == [2, 1, 2]  # (1, 0) and (-1, 0) tie for query 1


def test_nan_predictions_rank_the_target_last():
    keys = torch.randn(7, 3)
    queries = torch.tensor([[float("nan")] * 3, [1.0, 2.0, 3.0]])
    ranks, ties = rank_of_targets(queries, keys, torch.tensor([4, 4]))
    assert ranks[0].item() == 7 and ties[0].item() == 0


def test_candidate_credit_shares_ties_and_gives_nan_nothing():
    scores = torch.tensor([[0.9, 0.9, 0.1, 0.9], [0.2, 0.8, 0.1, 0.0], [float("nan")] * 4, [0.5, 0.1, 0.5, 0.1]])
    right = torch.tensor([0, 1, 2, 1])
    assert candidate_credit(scores, right).tolist() == pytest.approx([1 / 3, 1.0, 0.0, 0.0])
    same = torch.zeros(4, 4, dtype=torch.bool)
    same[1, 3] = True  # candidate 3 is a copy of the right one: a tie, whatever its score
    assert candidate_credit(scores, right, same)[1].item() == pytest.approx(0.5)
