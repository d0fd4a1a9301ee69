"""Batched top-k retrieval and the per-category index against brute force, for both distances, with and without
chunking; honest ranks when keys tie."""

import pytest
import torch

from umbert_hf.retrieval import (
    DISTANCES,
    CategoryIndex,
    candidate_credit,
    paired_scores,
    pairwise_scores,
    prepare_distinct_keys,
    rank_of_targets,
    top_k,
    top_one_credit,
)


def brute_force(queries, keys, k, distance):
    if distance == "euclidean":
        scores = -torch.cdist(queries.double(), keys.double())
    else:
        scores = torch.nn.functional.cosine_similarity(queries.double()[:, None], keys.double()[None], dim=-1)
    return scores.sort(dim=1, descending=True)


@pytest.mark.parametrize("distance", DISTANCES)
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


@pytest.mark.parametrize("distance", DISTANCES)
def test_rank_of_targets_matches_sorting(distance):
    generator = torch.Generator().manual_seed(2)
    queries, keys = torch.randn(40, 8, generator=generator), torch.randn(90, 8, generator=generator)
    targets = torch.randint(90, (40,), generator=generator)
    ranks, ties = rank_of_targets(queries, keys, targets, distance)
    order = pairwise_scores(queries, keys, distance).argsort(dim=1, descending=True)
    expected = (order == targets[:, None]).nonzero()[:, 1] + 1
    assert torch.equal(ranks, expected)
    assert torch.equal(ties, torch.zeros_like(ties))


@pytest.mark.parametrize("distance", DISTANCES)
def test_identical_keys_tie_and_never_favour_the_target(distance):
    keys = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0], [-1.0, 0.0]])
    queries = torch.tensor([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    ranks, ties = rank_of_targets(queries, keys, torch.tensor([2, 0, 3]), distance)
    # Query 0: the target is one of three identical best keys; query 1: behind those three; query 2: behind (1, 0).
    assert ranks.tolist() == [1, 4, 2] and ties.tolist() == [2, 1, 2]  # (1, 0) and (-1, 0) tie for query 1


@pytest.mark.parametrize("distance", DISTANCES)
def test_nan_and_infinite_predictions_rank_the_target_last(distance):
    keys = torch.randn(7, 3, generator=torch.Generator().manual_seed(3)).abs() + 0.1
    inf = float("inf")
    queries = torch.tensor([[float("nan")] * 3, [1.0, 2.0, 3.0], [inf, 1.0, 1.0], [inf, -inf, 0.0]])
    ranks, ties = rank_of_targets(queries, keys, torch.tensor([4, 4, 4, 4]), distance)
    assert ranks[[0, 2, 3]].tolist() == [7, 7, 7] and ties[[0, 2, 3]].tolist() == [0, 0, 0]
    assert 1 <= ranks[1].item() <= 7


def test_candidate_credit_shares_ties_and_gives_nan_nothing():
    inf = float("inf")
    scores = torch.tensor(
        [[0.9, 0.9, 0.1, 0.9], [0.2, 0.8, 0.1, 0.0], [float("nan")] * 4, [0.5, 0.1, 0.5, 0.1], [-inf] * 4]
    )  # the last row: an infinite prediction is at distance inf from every candidate
    right = torch.tensor([0, 1, 2, 1, 0])
    assert candidate_credit(scores, right).tolist() == pytest.approx([1 / 3, 1.0, 0.0, 0.0, 0.0])
    same = torch.zeros(5, 4, dtype=torch.bool)
    same[1, 3] = True  # candidate 3 is a copy of the right one: a tie, whatever its score
    assert candidate_credit(scores, right, same)[1].item() == pytest.approx(0.5)


@pytest.mark.parametrize("distance", DISTANCES)
def test_pairwise_and_paired_scores_agree_with_brute_force(distance):
    generator = torch.Generator().manual_seed(3)
    queries, keys = torch.randn(7, 5, generator=generator), torch.randn(11, 5, generator=generator)
    expected = brute_force(queries, keys, 11, distance)[0].max(dim=1).values
    assert torch.allclose(pairwise_scores(queries, keys, distance).max(dim=1).values.double(), expected, atol=1e-5)
    assert torch.allclose(
        pairwise_scores(queries, keys, distance), paired_scores(queries[:, None], keys[None], distance), atol=1e-5
    )
    if distance == "euclidean":
        assert torch.allclose(
            pairwise_scores(queries, keys, squared=True), -(torch.cdist(queries, keys) ** 2), atol=1e-4
        )
    with pytest.raises(ValueError, match="Unknown distance 'dot'"):
        paired_scores(queries, queries, "dot")


def category_catalogue(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """90 items in 3 categories of 60, 20 and 10 items; rows 60..69 (category 0) are copies of rows 0..9."""
    embeddings = torch.randn(90, 6, generator=generator)
    embeddings[60:70] = embeddings[0:10]
    categories = torch.tensor([0] * 50 + [1] * 10 + [0] * 10 + [1] * 10 + [2] * 10)
    return embeddings, categories


@pytest.mark.parametrize("distance", DISTANCES)
def test_category_index_searches_only_the_query_category(distance):
    generator = torch.Generator().manual_seed(4)
    embeddings, categories = category_catalogue(generator)
    index = CategoryIndex(embeddings, categories, distance)
    assert index.sizes.tolist() == [60, 20, 10] and index.num_categories == 3
    queries = torch.randn(25, 6, generator=generator)
    query_categories = torch.randint(3, (25,), generator=generator)
    scores, rows = index.top_k(queries, query_categories, 4)
    assert scores.shape == rows.shape == (25, 4)
    for query, category, found_scores, found_rows in zip(queries, query_categories, scores, rows):
        candidates = torch.nonzero(categories == category).squeeze(1)
        expected_scores, order = brute_force(query[None], embeddings[candidates], 4, distance)
        assert torch.allclose(found_scores.double(), expected_scores[0, :4], atol=1e-4)
        assert set(found_rows.tolist()) <= set(candidates.tolist())
    # k is clipped to the smallest category searched; queries of a single category use all of it.
    assert index.top_k(queries, query_categories, 50)[1].shape == (25, 10)
    assert index.top_k(queries[:3], torch.zeros(3, dtype=torch.long), 50)[1].shape == (3, 50)


@pytest.mark.parametrize("distance", DISTANCES)
def test_category_index_ranks_equal_rank_of_targets_per_category(distance):
    generator = torch.Generator().manual_seed(5)
    embeddings, categories = category_catalogue(generator)
    index = CategoryIndex(embeddings, categories, distance)
    target_rows = torch.tensor([0, 60, 55, 80, 85, 3, 63, 89])
    queries = embeddings[target_rows] + 0.5 * torch.randn(8, 6, generator=generator)
    ranks, ties = index.rank(queries, categories[target_rows], target_rows)
    for i, row in enumerate(target_rows.tolist()):
        candidates = torch.nonzero(categories == categories[row]).squeeze(1)
        position = candidates.tolist().index(row)
        expected = rank_of_targets(queries[i : i + 1], embeddings[candidates], torch.tensor([position]), distance)
        assert (ranks[i].item(), ties[i].item()) == (expected[0].item(), expected[1].item())
    assert ties[[0, 1, 5, 6]].tolist() == [1, 1, 1, 1]  # rows 0/60 and 3/63 are copies: they always tie
    # The deduplicated keys are prepared once and reused by every later ranking.
    assert index.distinct_keys(0) is index.distinct_keys(0)
    with pytest.raises(ValueError, match="item of its query's category"):
        index.rank(queries[:1], torch.tensor([1]), torch.tensor([0]))


@pytest.mark.parametrize("distance", DISTANCES)
def test_top_one_credit_equals_the_rank_one_share_of_rank_of_targets(distance, monkeypatch):
    """The probe settles most queries, never wrongly: the credit is `(ranks == 1) / (ties + 1)` exactly, whether the
    target is the nearest, one of tied nearest copies, beaten by a hair, or the prediction is NaN."""
    generator = torch.Generator().manual_seed(11)
    keys = torch.randn(300, 8, generator=generator)
    keys[7] = keys[3]  # copies tie
    keys[150] = keys[3] * 1.000001  # a near copy: beaten or not by a hair
    targets = torch.randint(300, (200,), generator=generator)
    targets[:4] = torch.tensor([3, 7, 150, 3])
    queries = torch.randn(200, 8, generator=generator)
    queries[:60] = keys[targets[:60]] + 0.01 * torch.randn(60, 8, generator=generator)  # often the nearest
    queries[:4] = keys[3]  # exactly on the copies
    queries[5] = float("nan")
    ranks, ties = rank_of_targets(queries, keys, targets, distance)
    expected = (ranks == 1).double() / (ties + 1).double()
    import umbert_hf.retrieval as retrieval

    ranked = []
    monkeypatch.setattr(
        retrieval, "rank_of_targets", lambda q, *args: ranked.append(len(q)) or rank_of_targets(q, *args)
    )
    for probe_size in (4, 16, 1024):  # 1024 > 300 / 2: no probe, every query ranked
        ranked.clear()
        credit = top_one_credit(queries, keys, targets, distance, probe_size=probe_size)
        assert torch.equal(credit, expected)
        if probe_size == 16:
            assert sum(ranked) < 120  # the probe settled most of the 140 random queries
    assert ranked == [200]
    assert 0 < int((expected > 0).sum()) < 200  # both kinds occur
    index = CategoryIndex(keys, torch.arange(300) % 2, distance)
    target_rows = torch.arange(200)  # query i's target is row i, an item of category i % 2
    categories = target_rows % 2
    index_ranks, index_ties = index.rank(queries, categories, target_rows)
    torch.testing.assert_close(
        index.top_one_credit(queries, categories, target_rows), (index_ranks == 1).double() / (index_ties + 1).double()
    )


def test_rank_of_targets_accepts_prepared_distinct_keys():
    generator = torch.Generator().manual_seed(6)
    keys = torch.randn(20, 4, generator=generator)
    keys[5] = keys[2]
    queries, targets = torch.randn(9, 4, generator=generator), torch.randint(20, (9,), generator=generator)
    distinct = prepare_distinct_keys(keys, "cosine")
    assert distinct.group_sizes.sum().item() == 20 and distinct.prepared.keys.shape == (19, 4)
    direct = rank_of_targets(queries, keys, targets, "cosine")
    prepared = rank_of_targets(queries, distinct, targets, "cosine")
    assert torch.equal(direct[0], prepared[0]) and torch.equal(direct[1], prepared[1])
    with pytest.raises(ValueError, match="prepared for 'cosine'"):
        rank_of_targets(queries, distinct, targets, "euclidean")


def test_category_index_errors_name_the_problem():
    index = CategoryIndex(torch.randn(4, 2), torch.tensor([0, 0, 2, 2]), "euclidean")
    queries = torch.randn(2, 2)
    with pytest.raises(ValueError, match="Category 1 has no items"):
        index.top_k(queries, torch.tensor([0, 1]), 1)
    with pytest.raises(ValueError, match="lie in \\[0, 3\\), got 3"):
        index.top_k(queries, torch.tensor([0, 3]), 1)
    with pytest.raises(ValueError, match="`k` must be at least 1"):
        index.top_k(queries, torch.tensor([0, 2]), 0)
    with pytest.raises(ValueError, match="Unknown distance 'l1'"):
        CategoryIndex(torch.randn(4, 2), torch.tensor([0, 0, 1, 1]), "l1")
    empty_scores, empty_rows = index.top_k(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long), 2)
    assert empty_scores.shape == empty_rows.shape == (0, 2)


def test_category_index_pads_per_category_instead_of_cutting_to_the_smallest():
    embeddings = torch.tensor([[0.0], [1.0], [10.0], [11.0], [12.0], [13.0], [14.0]])
    categories = torch.tensor([0, 0, 1, 1, 1, 1, 1])
    index = CategoryIndex(embeddings, categories, "euclidean")
    queries, query_categories = torch.tensor([[0.2], [12.2]]), torch.tensor([0, 1])

    _, cut_rows = index.top_k(queries, query_categories, 4)
    assert cut_rows.tolist() == [[0, 1], [4, 5]]  # without `pad`: as wide as the smallest category searched

    scores, rows = index.top_k(queries, query_categories, 4, pad=True)
    assert rows.tolist() == [[0, 1, -1, -1], [4, 5, 3, 6]]
    assert scores[0, 2:].isnan().all() and not scores[1].isnan().any()
    alone_scores, alone_rows = index.top_k(queries[1:], query_categories[1:], 4, pad=True)
    assert torch.equal(alone_rows, rows[1:]) and torch.equal(alone_scores, scores[1:])


@pytest.mark.parametrize("distance", DISTANCES)
def test_exact_search_ignores_autocast(distance):
    """Evaluation runs under `accelerator.autocast()`: with `--mixed_precision bf16` a bf16 product would reorder near
    items and a bf16 count of better keys would round every rank above 256. Search stays in the keys' precision."""
    generator = torch.Generator().manual_seed(12)
    keys, queries = torch.randn(2000, 16, generator=generator), torch.randn(40, 16, generator=generator)
    targets = torch.randint(2000, (40,), generator=generator)
    expected = rank_of_targets(queries, keys, targets, distance), top_k(queries, keys, 5, distance)
    expected_credit = top_one_credit(queries, keys, targets, distance, probe_size=64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ranks = rank_of_targets(queries, keys, targets, distance)
        found = top_k(queries, keys, 5, distance)
        credit = top_one_credit(queries, keys, targets, distance, probe_size=64)
    assert int(expected[0][0].max()) > 256  # ranks a bf16 count could not hold
    for got, want in zip((*ranks, *found, credit), (*expected[0], *expected[1], expected_credit)):
        assert torch.equal(got, want)


def test_searches_inside_and_outside_inference_mode_share_no_scratch_block():
    """The pipeline searches under `torch.inference_mode()`; a scratch block made there cannot be written outside."""
    import threading

    generator = torch.Generator().manual_seed(13)
    keys, queries = torch.randn(300, 8, generator=generator), torch.randn(5, 8, generator=generator)
    targets = torch.arange(5)
    expected = rank_of_targets(queries, keys, targets), top_k(queries, keys, 3)
    results, errors = [], []

    def search_in_a_fresh_thread():  # a new thread has no scratch block yet: the first one is made in inference mode
        try:
            with torch.inference_mode():
                results.append((rank_of_targets(queries, keys, targets), top_k(queries, keys, 3)))
            results.append((rank_of_targets(queries, keys, targets), top_k(queries, keys, 3)))
        except RuntimeError as error:
            errors.append(error)

    thread = threading.Thread(target=search_in_a_fresh_thread)
    thread.start()
    thread.join()
    assert not errors and len(results) == 2
    for got in results:
        for got_part, want_part in zip((*got[0], *got[1]), (*expected[0], *expected[1])):
            assert torch.equal(got_part, want_part)
