"""Tests that kill the mutants `make mutation` found surviving (docs/mutation.md): each asserts hand-worked values of
the metrics, retrieval, masking and loss functions, so that a changed operator, constant or argument fails."""

import math

import pytest
import torch

from umbert_hf import modeling_umbert, retrieval
from umbert_hf.configuration_umbert import UmBertConfig
from umbert_hf.evaluation.metrics import (
    OutfitEvaluator,
    add_prefix,
    chance_levels_by_metric,
    context_mean_predictor,
    greater_is_better,
    is_chance_level,
    model_predictor,
    random_predictor,
    split_and_metric,
    without_chance_levels,
)
from umbert_hf.masking import expand_fill_in_the_blank, mask_slots
from umbert_hf.modeling_umbert import CatalogueTargets, catalogue_contrastive_loss, distinct_rows, outfit_loss
from umbert_hf.retrieval import (
    CategoryIndex,
    paired_scores,
    pairwise_scores,
    prepare_distinct_keys,
    prepare_keys,
    rank_of_targets,
    top_k,
)

# ----- metrics: names -------------------------------------------------------------------------------------------


def test_only_losses_are_better_when_smaller():
    assert greater_is_better("val_mrr") and greater_is_better("hit_rate@10")
    assert not greater_is_better("val_loss") and not greater_is_better("loss")


def test_chance_levels_are_recognised_by_suffix_or_baseline_suffix():
    assert is_chance_level("mrr_chance") and is_chance_level("val_accuracy_chance_uniform")
    assert not is_chance_level("mrr") and not is_chance_level("chance_mrr")
    metrics = {"val_mrr": 0.5, "val_mrr_chance": 0.1, "val_accuracy_chance_uniform": 0.2, "loss": 3.0}
    assert without_chance_levels(metrics) == {"val_mrr": 0.5, "loss": 3.0}
    # Only `<metric>_chance` names a metric's chance level; baseline-named ones are left out.
    assert chance_levels_by_metric(metrics) == {"val_mrr": 0.1}


def test_split_prefixes_name_the_split_and_the_metric():
    assert split_and_metric("val_mrr", "train") == ("validation", "mrr")
    assert split_and_metric("validation_hit_rate@1", "train") == ("validation", "hit_rate@1")
    assert split_and_metric("eval_loss", "train") == ("validation", "loss")
    assert split_and_metric("test_fitb_accuracy", "train") == ("test", "fitb_accuracy")
    assert split_and_metric("mrr", "train") == ("train", "mrr")
    assert add_prefix({"mrr": 0.5, "mrr_chance": 0.1}, "test_") == {"test_mrr": 0.5, "test_mrr_chance": 0.1}


# ----- metrics: predictors --------------------------------------------------------------------------------------


def test_context_mean_predicts_each_slot_as_the_mean_of_the_other_visible_slots():
    predict = context_mean_predictor()
    inputs = torch.tensor([[[1.0], [2.0], [4.0]], [[10.0], [20.0], [40.0]]])
    # Nothing masked: slot s is the mean of the two others.
    assert predict(inputs, None)[..., 0].tolist() == [[3.0, 2.5, 1.5], [30.0, 25.0, 15.0]]
    # Outfit 0 masks slot 0, outfit 1 slot 2: a masked slot is never seen, its prediction averages the visible ones.
    masked = predict(inputs, torch.tensor([0, 2]))
    assert masked[..., 0].tolist() == [[3.0, 4.0, 2.0], [20.0, 10.0, 15.0]]
    # Two slots, one masked: the visible slot has no other visible slot and is predicted as 0 (never NaN).
    assert predict(torch.tensor([[[1.0], [5.0]]]), torch.tensor([0]))[..., 0].tolist() == [[5.0, 0.0]]


def test_random_predictor_draws_the_catalogue_mean_plus_its_spread_times_seeded_noise():
    catalogue = torch.tensor([[0.0, 10.0], [2.0, 10.0], [4.0, 16.0]])  # mean (2, 12), std (2, 3.464)
    inputs = torch.zeros(2, 3, 2)
    first = random_predictor(catalogue, seed=7)(inputs, None)
    generator = torch.Generator().manual_seed(7)
    noise = torch.randn(2, 3, 2, generator=generator)
    expected = torch.tensor([2.0, 12.0]) + torch.tensor([2.0, math.sqrt(12.0)]) * noise
    torch.testing.assert_close(first, expected)
    # The default seed is 0, and the generator goes on: the next call draws new noise.
    predict = random_predictor(catalogue)
    draws = [predict(inputs, None) for _ in range(2)]
    torch.testing.assert_close(draws[0], random_predictor(catalogue, seed=0)(inputs, None))
    assert not torch.equal(draws[0], draws[1])


def test_model_predictor_passes_the_masked_positions_and_returns_the_reconstructions():
    calls = []

    class Model(torch.nn.Module):
        def forward(self, inputs_embeds, masked_positions=None):
            calls.append(masked_positions)
            return type("Output", (), {"reconstructions": inputs_embeds * 2})()

    inputs = torch.ones(2, 3, 4)
    out = model_predictor(Model())(inputs, torch.tensor([1, 2]))
    assert torch.equal(out, inputs * 2) and calls[0].tolist() == [1, 2]
    model_predictor(Model())(inputs, None)
    assert calls[1] is None


def test_multiple_choice_chance_is_exactly_one_over_the_candidates_in_double():
    evaluator = OutfitEvaluator(torch.eye(3), torch.zeros(3, dtype=torch.long), "euclidean")
    out = evaluator.multiple_choice(
        lambda inputs, masked: inputs,
        torch.tensor([[0]]),
        torch.tensor([0]),
        torch.tensor([[0, 1, 2]]),
        torch.tensor([0]),
    )
    assert out["chance"].dtype == torch.float64 and out["chance"].tolist() == [1 / 3]
    assert evaluator.distance == "euclidean"
    assert out["correct"].tolist() == [1.0]  # the prediction is the right item itself


# ----- retrieval ------------------------------------------------------------------------------------------------


def test_scores_default_to_the_euclidean_distance():
    queries, keys = torch.tensor([[0.0, 0.0], [3.0, 4.0]]), torch.tensor([[0.3, 0.4], [3.0, 4.0]])
    assert paired_scores(queries, keys).tolist() == pytest.approx([-0.5, 0.0])
    # Below 1 the distance is not rounded up: -0.5, not -1.
    torch.testing.assert_close(pairwise_scores(queries, keys), torch.tensor([[-0.5, -5.0], [-4.5, 0.0]]))
    assert prepare_distinct_keys(keys).prepared.distance == "euclidean"


def test_rank_of_targets_follows_the_keys_dtype_and_answers_no_query_with_empty_long_tensors():
    keys = torch.tensor([[0.0], [1.0], [2.0]])
    ranks, ties = rank_of_targets(torch.tensor([[1.9]], dtype=torch.double), keys, torch.tensor([1]))
    assert ranks.tolist() == [2] and ties.tolist() == [0]
    ranks, ties = rank_of_targets(torch.zeros(0, 1), keys, torch.zeros(0, dtype=torch.long))
    assert ranks.shape == ties.shape == (0,) and ranks.dtype == ties.dtype == torch.long


def test_rank_of_targets_covers_every_query_when_it_works_in_blocks(monkeypatch):
    generator = torch.Generator().manual_seed(8)
    queries, keys = torch.randn(10, 2, generator=generator), torch.randn(20, 2, generator=generator)
    targets = torch.randint(20, (10,), generator=generator)
    expected = rank_of_targets(queries, keys, targets)
    monkeypatch.setattr(retrieval, "DEFAULT_MAX_BLOCK_ELEMENTS", 64)  # blocks of 3 queries
    ranks, ties = rank_of_targets(queries, keys, targets)
    assert torch.equal(ranks, expected[0]) and torch.equal(ties, expected[1])
    assert ranks.shape == (10,)


def test_category_index_rank_skips_categories_without_queries_and_names_bad_targets():
    index = CategoryIndex(torch.tensor([[0.0], [1.0], [5.0], [6.0]]), torch.tensor([0, 0, 1, 1]))
    # Only category 1 is asked: category 0 has no query and is skipped, not the end of the search.
    ranks, ties = index.rank(torch.tensor([[5.9], [5.2]]), torch.tensor([1, 1]), torch.tensor([2, 2]))
    assert ranks.tolist() == [2, 1] and ties.tolist() == [0, 0]
    ranks, ties = index.rank(torch.zeros(0, 1), torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long))
    assert ranks.shape == ties.shape == (0,)
    with pytest.raises(ValueError, match=r"^`target_rows` must have shape \(2,\), got \(3,\)\.$"):
        index.rank(torch.zeros(2, 1), torch.tensor([0, 1]), torch.tensor([0, 2, 3]))
    with pytest.raises(ValueError, match=r"^Each target row must be an item of its query's category\.$"):
        index.rank(torch.zeros(1, 1), torch.tensor([0]), torch.tensor([2]))


# ----- losses ---------------------------------------------------------------------------------------------------


def infonce(logits: torch.Tensor, candidates: list[list[int]], right: list[int]) -> torch.Tensor:
    """Mean over rows of -log softmax(logits[row, candidates[row]]) at the right candidate: the reference InfoNCE."""
    losses = [
        -torch.log_softmax(logits[row, columns], dim=0)[columns.index(right[row])]
        for row, columns in enumerate(candidates)
    ]
    return torch.stack(losses).mean()


def cosine_table(predictions: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(predictions[:, None], keys[None], dim=-1)


def test_pretraining_contrastive_loss_covers_every_slot_against_the_batch_and_adds_the_mse():
    generator = torch.Generator().manual_seed(0)
    reconstructions, targets = torch.randn(2, 2, 3, generator=generator), torch.randn(2, 2, 3, generator=generator)
    scale = torch.tensor(math.log(2.0))
    # Nothing masked: the 4 slots are rows (outfit 0 slot 0, outfit 0 slot 1, outfit 1 slot 0, outfit 1 slot 1), each
    # ranked against the targets of its slot.
    logits = 2.0 * cosine_table(reconstructions.reshape(4, 3), targets.reshape(4, 3))
    expected = infonce(logits, [[0, 2], [1, 3], [0, 2], [1, 3]], [0, 1, 2, 3])
    contrastive = UmBertConfig(loss_type="contrastive", distance="cosine")
    torch.testing.assert_close(outfit_loss(contrastive, reconstructions, targets, None, scale), expected)
    both = UmBertConfig(loss_type="mse+contrastive", distance="cosine")
    mse = (reconstructions - targets).pow(2).mean()
    torch.testing.assert_close(outfit_loss(both, reconstructions, targets, None, scale), expected + mse)


def test_mse_term_uses_the_separate_mse_targets_when_given():
    generator = torch.Generator().manual_seed(1)
    reconstructions, targets, table = (torch.randn(2, 3, 4, generator=generator) for _ in range(3))
    config = UmBertConfig(loss_type="mse")
    loss = outfit_loss(config, reconstructions, targets, None, torch.tensor(0.0), mse_targets=table)
    torch.testing.assert_close(loss, (reconstructions - table).pow(2).mean())
    torch.testing.assert_close(
        outfit_loss(config, reconstructions, targets, None, torch.tensor(0.0)),
        (reconstructions - targets).pow(2).mean(),
    )


def catalogue_targets() -> CatalogueTargets:
    # Slot 0: rows 0, 1, 2 (row 1 copies row 0); slot 1: rows 3, 4, 5.
    keys = torch.tensor(
        [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0], [0.0, 1.0, 1.0]]
    )
    rows = torch.tensor([[0, 3], [2, 5]])
    return CatalogueTargets(rows, keys, torch.tensor([0, 0, 0, 1, 1, 1]), distinct_rows(keys))


def test_pretraining_catalogue_loss_ranks_every_slot_among_its_category_and_reuses_the_distinct_ids(monkeypatch):
    catalogue = catalogue_targets()
    reconstructions = torch.randn(2, 2, 3, generator=torch.Generator().manual_seed(2))
    scale = torch.tensor(math.log(2.0))
    logits = 2.0 * cosine_table(reconstructions.reshape(4, 3), catalogue.keys)
    # Target row 0 leaves out its copy (row 1); the others rank among their whole category.
    expected = infonce(logits, [[0, 2], [3, 4, 5], [0, 1, 2], [3, 4, 5]], [0, 3, 2, 5])

    def recomputed(keys):
        raise AssertionError("the catalogue's distinct ids were recomputed")

    monkeypatch.setattr(modeling_umbert, "distinct_rows", recomputed)
    config = UmBertConfig(loss_type="contrastive", distance="cosine", contrastive_negatives="catalogue")
    loss = outfit_loss(config, reconstructions, catalogue.keys[catalogue.rows], None, scale, catalogue=catalogue)
    torch.testing.assert_close(loss, expected)


def test_catalogue_loss_scales_small_euclidean_logits_by_the_spread_and_the_logit_scale():
    catalogue = catalogue_targets()
    keys = 0.1 * catalogue.keys  # a spread below 1, which must not be rounded up
    predictions = torch.tensor([[0.08, 0.01, 0.0], [0.0, 0.05, 0.05]])
    target_rows, categories = torch.tensor([2, 5]), torch.tensor([0, 1])
    scale = torch.tensor(math.log(3.0))
    spread = 2 * (keys - keys.mean(dim=0)).pow(2).sum(dim=-1).mean()
    assert spread < 0.1
    logits = -3.0 * torch.cdist(predictions, keys).pow(2) / spread
    expected = infonce(logits, [[0, 1, 2], [3, 4, 5]], [2, 5])
    loss = catalogue_contrastive_loss(
        predictions, target_rows, categories, keys, catalogue.categories, scale, "euclidean"
    )
    torch.testing.assert_close(loss, expected)


# ----- masking --------------------------------------------------------------------------------------------------


def test_masking_refuses_bad_shapes_and_slots_naming_them():
    with pytest.raises(ValueError, match=r"must be \(batch, slots, \.\.\.\), got shape \(3,\)\."):
        expand_fill_in_the_blank(torch.tensor([1, 2, 3]))
    inputs, mask = torch.zeros(2, 2, 3), torch.ones(2, 3)
    with pytest.raises(ValueError, match=r"^`masked_positions` must have shape \(2,\), got \(3,\)\.$"):
        mask_slots(inputs, torch.tensor([0, 1, 0]), mask)
    # A negative slot, or one past the last (2 slots: 0 and 1), whatever the other positions.
    for positions in ([-1, 0], [0, 2]):
        with pytest.raises(ValueError, match=r"must be slot indices in \[0, 2\), got tensor"):
            mask_slots(inputs, torch.tensor(positions), mask)


def test_mask_tokens_take_the_dtype_of_the_inputs():
    inputs = torch.zeros(2, 2, 3)
    out = mask_slots(inputs, torch.tensor([1, 0]), torch.tensor([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]], dtype=torch.double))
    assert out.dtype == torch.float32
    assert out[:, :, 0].tolist() == [[0.0, 2.0], [1.0, 0.0]]


def test_padded_category_top_k_is_as_wide_as_the_largest_category_searched_and_empty_rows_are_long():
    index = CategoryIndex(torch.tensor([[0.0], [1.0], [10.0], [11.0], [12.0]]), torch.tensor([0, 0, 1, 1, 1]))
    scores, rows = index.top_k(torch.tensor([[0.2], [11.9]]), torch.tensor([0, 1]), 50, pad=True)
    assert rows.tolist() == [[0, 1, -1], [4, 3, 2]]
    torch.testing.assert_close(scores[1], torch.tensor([-0.1, -0.9, -1.9]), atol=1e-4, rtol=0)
    for pad in (False, True):
        scores, rows = index.top_k(torch.zeros(0, 1), torch.zeros(0, dtype=torch.long), 4, pad=pad)
        assert scores.shape == rows.shape == (0, 4) and rows.dtype == torch.long


def test_top_k_follows_the_keys_dtype_and_refuses_keys_prepared_for_another_distance():
    keys = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    scores, indices = top_k(torch.tensor([[3.0, 3.0]], dtype=torch.double), keys, 1)
    assert indices.tolist() == [[1]] and scores.dtype == torch.float32
    torch.testing.assert_close(scores, torch.tensor([[-1.0]]))
    with pytest.raises(ValueError, match=r"^Keys were prepared for 'cosine', not 'euclidean'\.$"):
        top_k(keys, prepare_keys(keys, "cosine"), 1, "euclidean")


def test_top_k_input_errors_name_the_problem():
    keys = torch.zeros(3, 2)
    with pytest.raises(ValueError, match=r"^`queries` and `keys` must be 2-D, got shapes \(2,\) and \(3, 2\)\.$"):
        top_k(torch.zeros(2), keys, 1)
    with pytest.raises(ValueError, match=r"^`keys` is empty: there is nothing to retrieve from\.$"):
        top_k(torch.zeros(1, 2), torch.zeros(0, 2), 1)
    with pytest.raises(ValueError, match=r"^`k` must be at least 1, got 0\.$"):
        top_k(torch.zeros(1, 2), keys, 0)
    prepared = prepare_keys(torch.tensor([[3.0, 4.0]]))
    assert prepared.distance == "euclidean" and prepared.key_bias.tolist() == [-25.0]


def test_top_k_in_exactly_two_query_blocks_returns_every_query():
    generator = torch.Generator().manual_seed(9)
    queries, keys = torch.randn(4, 2, generator=generator), torch.randn(3, 2, generator=generator)
    expected_scores, expected_indices = top_k(queries, keys, 2)
    scores, indices = top_k(queries, keys, 2, max_block_elements=6)  # 3 keys a block: 2 queries a block
    assert torch.equal(indices, expected_indices) and torch.allclose(scores, expected_scores)


def test_category_index_checks_its_catalogue_and_counts_empty_categories():
    with pytest.raises(
        ValueError,
        match=r"^`embeddings` must be \(num_items, dim\) and `categories` \(num_items,\), got shapes \(3, 2\) and \(2,\)\.$",
    ):
        CategoryIndex(torch.zeros(3, 2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"^Item categories must lie in \[0, 2\), got -1\.$"):
        CategoryIndex(torch.zeros(2, 1), torch.tensor([-1, 1]))
    with pytest.raises(ValueError, match=r"^Item categories must lie in \[0, 2\), got 2\.$"):
        CategoryIndex(torch.zeros(2, 1), torch.tensor([0, 2]), num_categories=2)
    index = CategoryIndex(torch.zeros(3, 1), torch.tensor([0, 0, 1]), num_categories=4)
    assert index.num_categories == 4 and index.sizes.tolist() == [2, 1, 0, 0]
    assert CategoryIndex(torch.zeros(0, 1), torch.zeros(0, dtype=torch.long)).num_categories == 0
    empty = CategoryIndex(torch.zeros(0, 1), torch.zeros(0, dtype=torch.long), num_categories=3)
    assert empty.sizes.tolist() == [0, 0, 0]


def test_category_index_query_errors_name_the_problem():
    index = CategoryIndex(torch.zeros(4, 1), torch.tensor([0, 0, 2, 2]))
    with pytest.raises(ValueError, match=r"^`categories` must be \(num_queries=2,\), got shape \(3,\)\.$"):
        index.top_k(torch.zeros(2, 1), torch.tensor([0, 0, 2]), 1)
    with pytest.raises(ValueError, match=r"^Categories must lie in \[0, 3\), got -1\.$"):
        index.top_k(torch.zeros(2, 1), torch.tensor([0, -1]), 1)
