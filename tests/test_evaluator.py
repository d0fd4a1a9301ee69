"""`OutfitEvaluator` and `evaluate_split` on catalogues small enough to check every number by hand."""

import math

import pytest
import torch
from accelerate import Accelerator
from support.umbert_testing import UmBertModelTester

from umbert_hf import expand_fill_in_the_blank
from umbert_hf.data.embeddings import EmbeddingsTable
from umbert_hf.data.outfit_data import CompatibilityOutfits, FitbQuestions, OutfitData, OutfitRows
from umbert_hf.evaluation.metrics import (
    OutfitEvaluator,
    accuracy_metrics,
    compatibility_metrics,
    hit_rate_metrics,
    matching_rows,
    model_predictor,
)
from umbert_hf.training.outfit import compatibility_scores, evaluate_split

# Two slots on a line (second coordinate 0). Slot 0: rows 0, 2, 4 at x = 0, 1, 3. Slot 1: rows 1, 3, 5 at x = 10,
# 11, 10 (rows 1 and 5 are identical items, like two products sharing a title embedding).
EMBEDDINGS = torch.tensor([[0.0, 0.0], [10.0, 0.0], [1.0, 0.0], [11.0, 0.0], [3.0, 0.0], [10.0, 0.0]])
CATEGORIES = torch.tensor([0, 1, 0, 1, 0, 1])
OUTFITS = torch.tensor([[0, 1], [2, 3], [4, 5]])
# Whatever the outfit, slot 0 is predicted at x = 0.9 and slot 1 at x = 10.4. Distances to the catalogue:
# slot 0: row 2 -> 0.1, row 0 -> 0.9, row 4 -> 2.1; slot 1: rows 1 and 5 -> 0.4 (tied), row 3 -> 0.6.
PREDICTION = torch.tensor([[0.9, 0.0], [10.4, 0.0]])


def constant_predictor(calls: list | None = None):
    def predict(inputs_embeds: torch.Tensor, masked_positions: torch.Tensor | None) -> torch.Tensor:
        if calls is not None:
            calls.append((inputs_embeds.clone(), None if masked_positions is None else masked_positions.clone()))
        return PREDICTION.expand(inputs_embeds.shape[0], -1, -1)

    return predict


@pytest.fixture
def evaluator():
    return OutfitEvaluator(EMBEDDINGS, CATEGORIES, "euclidean")


def test_retrieval_ranks_mask_each_slot_and_rank_the_true_item_among_its_category(evaluator):
    calls = []
    out = evaluator.retrieval_ranks(constant_predictor(calls), OUTFITS)
    # One call: every outfit repeated once per slot, that slot masked; the inputs are the catalogue embeddings.
    assert len(calls) == 1
    inputs, masked_positions = calls[0]
    assert masked_positions.tolist() == [0, 1, 0, 1, 0, 1]
    assert torch.equal(inputs, EMBEDDINGS[OUTFITS.repeat_interleave(2, dim=0)])
    # Targets in order: row 0 (2nd), row 1 (1st, tied with row 5), row 2 (1st), row 3 (3rd), row 4 (3rd),
    # row 5 (1st, tied with row 1).
    assert out["ranks"].tolist() == [2, 1, 1, 3, 3, 1]
    assert out["ties"].tolist() == [0, 1, 0, 0, 0, 1]
    assert out["category_sizes"].tolist() == [3] * 6
    metrics = hit_rate_metrics(out["ranks"], out["category_sizes"], ties=out["ties"])
    # A tied first place is worth half a hit: (0 + 1/2 + 1 + 0 + 0 + 1/2) / 6.
    assert metrics["hit_rate@1"] == pytest.approx(1 / 3)
    assert metrics["mrr"] == pytest.approx((1 / 2 + 3 / 4 + 1 + 1 / 3 + 1 / 3 + 3 / 4) / 6)


def test_identical_items_tie_and_nan_predictions_rank_last(evaluator):
    nan = evaluator.retrieval_ranks(lambda inputs, masked: torch.full_like(inputs, float("nan")), OUTFITS)
    assert nan["ranks"].tolist() == [3] * 6 and nan["ties"].tolist() == [0] * 6
    # A perfect predictor still only ties the right item with its identical copy.
    perfect = evaluator.retrieval_ranks(lambda inputs, masked: inputs, OUTFITS)
    assert perfect["ranks"].tolist() == [1] * 6
    assert perfect["ties"].tolist() == [0, 1, 0, 0, 0, 1]


def test_reconstruction_shares_credit_between_tied_items(evaluator):
    calls = []
    out = evaluator.reconstruction(constant_predictor(calls), OUTFITS)
    assert len(calls) == 1
    inputs, masked_positions = calls[0]
    assert masked_positions is None and torch.equal(inputs, EMBEDDINGS[OUTFITS])
    # Nearest to 0.9 is row 2; nearest to 10.4 are rows 1 and 5, tied.
    assert out["correct"].tolist() == pytest.approx([0, 0.5, 1, 0, 0, 0.5])
    assert out["chance"].tolist() == pytest.approx([1 / 3] * 6)


def test_multiple_choice_picks_the_nearest_candidate_and_shares_ties(evaluator):
    outfit_rows = torch.tensor([[0, 1], [2, 3], [0, 1], [0, 1]])
    blanks = torch.tensor([0, 0, 1, 1])
    candidates = torch.tensor([[0, 2, 4], [4, 2, 0], [3, 1, 5], [1, 3, 5]])
    labels = torch.tensor([0, 1, 1, 1])
    calls = []
    out = evaluator.multiple_choice(constant_predictor(calls), outfit_rows, blanks, candidates, labels)
    assert calls[0][1].tolist() == blanks.tolist()
    # Row 2 is nearest for a slot-0 blank: wrong, then right; rows 1 and 5 tie for a slot-1 blank: half, then row 3
    # is wrong.
    assert out["correct"].tolist() == pytest.approx([0, 1, 0.5, 0])
    assert out["chance"].tolist() == pytest.approx([1 / 3] * 4)
    nan = evaluator.multiple_choice(
        lambda inputs, masked: torch.full_like(inputs, float("nan")), outfit_rows, blanks, candidates, labels
    )
    assert nan["correct"].tolist() == [0, 0, 0, 0]


def test_compatibility_scores_are_mean_distances_and_mean_rank_surprises(evaluator):
    out = evaluator.compatibility(constant_predictor(), OUTFITS[:2])
    # Outfit 0: distances 0.9 (row 0) and 0.4 (row 1); outfit 1: 0.1 (row 2) and 0.6 (row 3).
    assert out["scores"].tolist() == pytest.approx([-(0.9 + 0.4) / 2, -(0.1 + 0.6) / 2])
    # Expected ranks among 3: outfit 0: 2 and 1.5 (tied first); outfit 1: 1 and 3.
    expected = [-(math.log(2 / 3) + math.log(1.5 / 3)) / 2, -(math.log(1 / 3) + math.log(3 / 3)) / 2]
    assert out["rank_scores"].tolist() == pytest.approx(expected)


def test_cosine_ranks_ignore_the_norm():
    # Slot 0: rows 0 and 1 point the same way (a tie under cosine), row 2 elsewhere. Slot 1: a single item.
    embeddings = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    evaluator = OutfitEvaluator(embeddings, torch.tensor([0, 0, 0, 1]), "cosine")

    def predict(inputs: torch.Tensor, masked: torch.Tensor | None) -> torch.Tensor:
        return torch.tensor([[1.0, 0.1], [1.0, 1.0]]).expand(inputs.shape[0], -1, -1)

    out = evaluator.retrieval_ranks(predict, torch.tensor([[1, 3], [2, 3]]))
    assert out["ranks"].tolist() == [1, 1, 3, 1] and out["ties"].tolist() == [1, 0, 0, 0]
    choice = evaluator.multiple_choice(
        predict, torch.tensor([[2, 3]]), torch.tensor([0]), torch.tensor([[2, 1]]), torch.tensor([1])
    )
    assert choice["correct"].tolist() == [1.0]
    scores = evaluator.compatibility(predict, torch.tensor([[0, 3]]))["scores"]
    assert scores.tolist() == pytest.approx([(1 / math.sqrt(1.01) + 1.0) / 2])


def test_a_target_of_another_category_is_refused(evaluator):
    with pytest.raises(ValueError, match="item of its query's category"):
        evaluator.retrieval_ranks(constant_predictor(), torch.tensor([[1, 0]]))


# ----- evaluate_split -----------------------------------------------------------------------------------------


def hand_data() -> OutfitData:
    """The catalogue above as a data split: its outfits, four FITB questions and two labelled outfits."""
    catalogue = EmbeddingsTable(
        [f"item{row}" for row in range(6)], ["shoes", "tops"] * 3, EMBEDDINGS.clone(), source="hand"
    )
    data = OutfitData(catalogue=catalogue, slots=["shoes", "tops"])
    data.outfits["validation"] = OutfitRows(["o0", "o1", "o2"], OUTFITS.clone())
    data.fitb["validation"] = FitbQuestions(
        outfit_rows=torch.tensor([[0, 1], [2, 3], [0, 1], [0, 1]]),
        blanks=torch.tensor([0, 0, 1, 1]),
        candidates=torch.tensor([[0, 2, 4], [4, 2, 0], [3, 1, 5], [1, 3, 5]]),
        labels=torch.tensor([0, 1, 1, 1]),
    )
    data.compatibility["validation"] = CompatibilityOutfits(
        rows=torch.tensor([[0, 1], [2, 5]]), labels=torch.tensor([0, 1])
    )
    return data


@pytest.mark.parametrize("batch_size", [1, 2, 64])
def test_evaluate_split_reports_every_metric_with_its_chance_level(batch_size):
    metrics = evaluate_split(
        Accelerator(cpu=True),
        constant_predictor(),
        hand_data(),
        "validation",
        EMBEDDINGS,
        "euclidean",
        batch_size,
        loss_fn=lambda rows: torch.tensor(2.5),
    )
    names = ["hit_rate@1", "hit_rate@10", "hit_rate@50", "mrr", "reconstruction_accuracy", "fitb_accuracy"]
    expected_keys = {*names, *(f"{name}_chance" for name in names), "loss"}
    expected_keys |= {"compatibility_auc", "compatibility_auc_chance"}
    expected_keys |= {"compatibility_rank_auc", "compatibility_rank_auc_chance"}
    assert set(metrics) == expected_keys
    assert metrics["hit_rate@1"] == pytest.approx(1 / 3) and metrics["hit_rate@1_chance"] == pytest.approx(1 / 3)
    assert metrics["hit_rate@10"] == 1.0 and metrics["hit_rate@10_chance"] == 1.0
    assert metrics["mrr"] == pytest.approx((1 / 2 + 3 / 4 + 1 + 1 / 3 + 1 / 3 + 3 / 4) / 6)
    assert metrics["mrr_chance"] == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)
    assert metrics["reconstruction_accuracy"] == pytest.approx(2 / 6)
    assert metrics["fitb_accuracy"] == pytest.approx(1.5 / 4) and metrics["fitb_accuracy_chance"] == pytest.approx(
        1 / 3
    )
    # The compatible outfit scores -(0.1 + 0.4) / 2 > -(0.9 + 0.4) / 2, and its items rank better (1 and 1.5 vs 2 and 1.5).
    assert metrics["compatibility_auc"] == 1.0 and metrics["compatibility_rank_auc"] == 1.0
    assert metrics["loss"] == 2.5


def test_evaluate_split_of_a_tiny_model_matches_the_evaluator():
    tester = UmBertModelTester()
    model = tester.umbert()
    slots = list(tester.categories)
    catalogue = EmbeddingsTable(tester.item_ids, tester.item_categories, tester.item_embeddings)
    data = OutfitData(catalogue=catalogue, slots=slots)
    rows = tester.outfit_rows(7)
    data.outfits["test"] = OutfitRows([f"o{index}" for index in range(7)], rows)
    embeddings = model.get_catalogue_embeddings().detach()
    metrics = evaluate_split(
        Accelerator(cpu=True), model_predictor(model), data, "test", embeddings, model.config.distance, batch_size=3
    )
    assert {"hit_rate@1", "mrr", "reconstruction_accuracy"} <= set(metrics)
    assert not any(name.startswith(("fitb", "compatibility")) for name in metrics)  # no such questions
    evaluator = OutfitEvaluator(embeddings, data.catalogue_categories, model.config.distance)
    with torch.no_grad():
        ranked = evaluator.retrieval_ranks(model_predictor(model), rows)
        reconstruction = evaluator.reconstruction(model_predictor(model), rows)
    expected = hit_rate_metrics(ranked["ranks"], ranked["category_sizes"], ties=ranked["ties"])
    expected.update(accuracy_metrics(reconstruction["correct"], reconstruction["chance"], "reconstruction_accuracy"))
    assert metrics == pytest.approx(expected)
    assert metrics["hit_rate@1_chance"] == pytest.approx(1 / tester.items_per_category)
    # The model's own retrieval scores items like the evaluator: its top-1 item is the true one exactly at rank 1.
    expanded, masked_positions = expand_fill_in_the_blank(rows)
    predictions = model.predict_masked(embeddings[expanded], masked_positions)
    _, top = model.retrieve(predictions, masked_positions, 1)
    targets = expanded.gather(1, masked_positions[:, None]).squeeze(1)
    assert torch.equal(top[:, 0] == targets, ranked["ranks"] == 1)
    assert 0 < int((ranked["ranks"] == 1).sum()) < len(targets)  # both cases occur


@pytest.mark.parametrize("batch_size", [2, 64])
def test_compatibility_positives_reuse_the_outfit_ranks_and_score_as_ranked_afresh(batch_size):
    """The positives of a compatibility split are the split's outfits: they are scored from the ranks of the outfit
    pass (not ranked again), and every score equals `OutfitEvaluator.compatibility` of that outfit alone."""
    tester = UmBertModelTester()
    model = tester.umbert().eval()
    catalogue = EmbeddingsTable(tester.item_ids, tester.item_categories, tester.item_embeddings)
    data = OutfitData(catalogue=catalogue, slots=list(tester.categories))
    rows = tester.outfit_rows(6)
    data.outfits["test"] = OutfitRows([f"o{index}" for index in range(6)], rows)
    negatives = torch.stack([rows[:, slot].roll(slot) for slot in range(rows.shape[1])], dim=1)  # new outfits
    assert not set(map(tuple, negatives.tolist())) & set(map(tuple, rows.tolist()))
    order = torch.tensor([3, 6, 0, 7, 8, 1, 2, 9, 10, 11, 4, 5])  # mixed, not in outfit order
    compatibility_rows, labels = torch.cat([rows, negatives])[order], (order < 6).long()
    data.compatibility["test"] = CompatibilityOutfits(rows=compatibility_rows, labels=labels)
    predicted: list[int] = []

    def predict(inputs_embeds, masked_positions):
        if masked_positions is not None:
            predicted.append(inputs_embeds.shape[0])
        return model_predictor(model)(inputs_embeds, masked_positions)

    embeddings = model.get_catalogue_embeddings().detach()
    metrics = evaluate_split(Accelerator(cpu=True), predict, data, "test", embeddings, "euclidean", batch_size)
    assert sum(predicted) == rows.shape[1] * 12  # the 6 outfits once, then only the 6 negatives
    evaluator = OutfitEvaluator(embeddings, data.catalogue_categories, "euclidean")
    with torch.no_grad():
        expected = evaluator.compatibility(model_predictor(model), compatibility_rows)
        fitb = evaluator.retrieval_ranks(model_predictor(model), rows)
        ranked = {"rows": rows, **{name: fitb[name].view(6, -1) for name in ("ranks", "ties", "similarities")}}
        ranked["sizes"] = fitb["category_sizes"].view(6, -1)
        scores = compatibility_scores(Accelerator(cpu=True), evaluator, predict, compatibility_rows, ranked, batch_size)
    torch.testing.assert_close(scores["scores"], expected["scores"].double())
    torch.testing.assert_close(scores["rank_scores"], expected["rank_scores"])
    assert metrics == pytest.approx(
        {**metrics, **compatibility_metrics(expected["scores"], labels, expected["rank_scores"])}
    )


def test_matching_rows_finds_equal_outfits():
    reference = torch.tensor([[0, 1], [2, 3], [4, 5]])
    assert matching_rows(torch.tensor([[2, 3], [1, 0], [0, 1], [4, 5]]), reference).tolist() == [1, -1, 0, 2]
    assert matching_rows(torch.zeros(0, 2, dtype=torch.long), reference).tolist() == []
    assert matching_rows(reference, torch.zeros(0, 2, dtype=torch.long)).tolist() == [-1, -1, -1]
