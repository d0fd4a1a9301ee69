"""The local `evaluate` metric module: loads offline from the package folder and gives `umbert_hf.evaluation.metrics` numbers."""

import math
import socket

import pytest
import torch

from umbert_hf.evaluation.evaluate_module import EVALUATE_METRIC_CONFIGS, EVALUATE_METRIC_PATH, load_outfit_metric
from umbert_hf.evaluation.metrics import accuracy_metrics, compatibility_metrics, hit_rate_metrics, roc_auc

evaluate = pytest.importorskip("evaluate")


@pytest.fixture(scope="module")
def metrics(tmp_path_factory):
    """Each configuration loaded once with `evaluate.load(folder, config)`, while opening a socket fails."""
    cache = tmp_path_factory.mktemp("evaluate_cache")
    original_connect = socket.socket.connect

    def no_network(self, *args, **kwargs):
        raise OSError("network access attempted while loading a local metric")

    socket.socket.connect = no_network
    try:
        return {
            name: evaluate.load(EVALUATE_METRIC_PATH, name, cache_dir=str(cache)) for name in EVALUATE_METRIC_CONFIGS
        }
    finally:
        socket.socket.connect = original_connect


def random_ranks(seed: int, n: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    sizes = torch.randint(5, 120, (n,), generator=generator)
    ranks = (torch.rand(n, generator=generator) * sizes).long() + 1  # in [1, size]
    return ranks, sizes


def assert_same(computed: dict, expected: dict) -> None:
    assert computed.keys() == expected.keys()
    for key, value in expected.items():
        assert computed[key] == pytest.approx(value, abs=1e-12), key


@pytest.mark.parametrize("seed", [0, 1])
def test_retrieval_matches_hit_rate_metrics(metrics, seed):
    ranks, sizes = random_ranks(seed)
    computed = metrics["retrieval"].compute(ranks=ranks.tolist(), category_sizes=sizes.tolist())
    assert_same(computed, hit_rate_metrics(ranks, sizes))
    assert {"hit_rate@1", "hit_rate@10", "hit_rate@50", "mrr", "mrr_chance"} <= computed.keys()


def test_retrieval_custom_ks_and_batches(metrics):
    ranks, sizes = random_ranks(2)
    metric = metrics["retrieval"]
    for start in range(0, len(ranks), 64):
        metric.add_batch(ranks=ranks[start : start + 64].tolist(), category_sizes=sizes[start : start + 64].tolist())
    assert_same(metric.compute(ks=[5, 20]), hit_rate_metrics(ranks, sizes, ks=(5, 20)))


def test_retrieval_with_ties_matches_hit_rate_metrics(metrics):
    ranks, sizes = random_ranks(3)
    ties = torch.minimum(sizes - ranks, torch.full_like(ranks, 4))
    computed = metrics["retrieval"].compute(ranks=ranks.tolist(), ties=ties.tolist(), category_sizes=sizes.tolist())
    assert_same(computed, hit_rate_metrics(ranks, sizes, ties=ties))


def test_retrieval_rejects_ranks_outside_the_category(metrics):
    with pytest.raises(ValueError, match="1-based"):
        metrics["retrieval"].compute(ranks=[0, 2], category_sizes=[10, 10])


@pytest.mark.parametrize("num_candidates", [4, 6])
def test_fitb_matches_accuracy_metrics(metrics, num_candidates):
    generator = torch.Generator().manual_seed(num_candidates)
    predictions = torch.randint(0, num_candidates, (300,), generator=generator)
    references = torch.randint(0, num_candidates, (300,), generator=generator)
    computed = metrics["fitb"].compute(
        predictions=predictions.tolist(), references=references.tolist(), num_candidates=num_candidates
    )
    chance = torch.full((300,), 1.0 / num_candidates, dtype=torch.double)
    assert_same(computed, accuracy_metrics(predictions == references, chance, "fitb_accuracy"))
    assert computed["fitb_accuracy_chance"] == pytest.approx(1 / num_candidates)


def test_compatibility_matches_compatibility_metrics(metrics):
    generator = torch.Generator().manual_seed(3)
    labels = torch.randint(0, 2, (250,), generator=generator)
    # Rounded scores: many ties, which the AUC must average.
    scores = (torch.randn(250, generator=generator, dtype=torch.double) + labels).round(decimals=1)
    computed = metrics["compatibility"].compute(predictions=scores.tolist(), references=labels.tolist())
    assert_same(computed, compatibility_metrics(scores, labels))
    assert computed["compatibility_auc_chance"] == 0.5


def test_compatibility_with_one_class_is_nan(metrics):
    computed = metrics["compatibility"].compute(predictions=[0.1, 0.4], references=[1, 1])
    assert math.isnan(computed["compatibility_auc"])


def test_unknown_configuration_is_refused(tmp_path):
    with pytest.raises(ValueError, match="retrieval"):
        evaluate.load(EVALUATE_METRIC_PATH, cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match="expected one of"):
        load_outfit_metric("hit_rate")


def test_shortcut_loads_the_same_module(tmp_path):
    metric = load_outfit_metric("fitb", cache_dir=str(tmp_path))
    assert metric.compute(predictions=[0, 2, 1, 3], references=[0, 2, 0, 0]) == {
        "fitb_accuracy": 0.5,
        "fitb_accuracy_chance": 0.25,
    }


@pytest.mark.parametrize("seed", range(4))
def test_roc_auc_matches_sklearn_with_ties(seed):
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (150,), generator=generator)
    labels[:2] = torch.tensor([0, 1])  # both classes present
    scores = torch.randint(0, 6 + 10 * seed, (150,), generator=generator).double() + 0.5 * labels
    expected = sklearn_metrics.roc_auc_score(labels.numpy(), scores.numpy())
    assert roc_auc(scores, labels) == pytest.approx(expected, abs=1e-12)


def test_roc_auc_all_tied_is_one_half():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    labels = torch.tensor([0, 1, 1, 0, 1])
    scores = torch.zeros(5)
    assert roc_auc(scores, labels) == pytest.approx(sklearn_metrics.roc_auc_score(labels.numpy(), scores.numpy()))
    assert roc_auc(scores, labels) == 0.5


def test_hit_rate_metrics_take_the_expectation_over_tied_positions():
    # Target behind 2 better keys and tied with 3 others: its position is uniform in 3..6.
    metrics = hit_rate_metrics(torch.tensor([3]), torch.tensor([10]), ks=(1, 4, 10), ties=torch.tensor([3]))
    assert metrics["hit_rate@1"] == 0.0
    assert metrics["hit_rate@4"] == pytest.approx(0.5)
    assert metrics["hit_rate@10"] == pytest.approx(1.0)
    assert metrics["mrr"] == pytest.approx((1 / 3 + 1 / 4 + 1 / 5 + 1 / 6) / 4)


def test_a_random_predictor_over_duplicate_embeddings_scores_chance():
    """Many items share one embedding (like products sharing a title): random predictions must score chance."""
    from umbert_hf.evaluation.metrics import OutfitEvaluator, random_predictor

    generator = torch.Generator().manual_seed(0)
    distinct = torch.randn(6, 8, generator=generator)
    embeddings = distinct[torch.randint(0, 6, (400,), generator=generator)]  # 400 items, 6 distinct embeddings
    categories = torch.arange(400) % 4
    evaluator = OutfitEvaluator(embeddings, categories, "euclidean")
    rows = torch.stack(
        [torch.nonzero(categories == slot).squeeze(1)[torch.randperm(100, generator=generator)] for slot in range(4)],
        dim=1,
    )  # (100 outfits, 4 slots)
    out = evaluator.retrieval_ranks(random_predictor(embeddings, seed=1), rows)
    metrics = hit_rate_metrics(out["ranks"], out["category_sizes"], ties=out["ties"])
    for name in ("hit_rate@1", "hit_rate@10", "mrr"):
        assert metrics[name] == pytest.approx(metrics[f"{name}_chance"], rel=0.3), name
    # Counting ties in the target's favour, as before, would have scored far above chance.
    assert (out["ranks"] <= 10).double().mean().item() > 1.5 * metrics["hit_rate@10_chance"]


def test_a_random_predictor_answers_fitb_at_chance_where_the_context_gives_the_answer_away():
    """The right candidate shares its outfit's style, so peeking at the context scores far above chance; the random
    baseline must not. Questions come in groups of 4 with the same 4 candidates, each right once: whatever the
    embeddings, a guess independent of the context gets 1 of each group's 4 right in expectation, with at most the
    variance of 1-in-4 coin flips. So it lands within 3 standard errors of 1/4."""
    from umbert_hf.evaluation.metrics import OutfitEvaluator, context_mean_predictor, random_predictor

    generator = torch.Generator().manual_seed(0)
    num_groups = 500
    num_outfits = 4 * num_groups  # one question per outfit
    styles = torch.randn(num_outfits, 8, generator=generator)
    embeddings = torch.cat([styles + 0.3 * torch.randn(num_outfits, 8, generator=generator) for _ in range(4)])
    evaluator = OutfitEvaluator(embeddings, torch.arange(4 * num_outfits) // num_outfits, "euclidean")
    rows = torch.arange(num_outfits)[:, None] + num_outfits * torch.arange(4)[None]  # outfit i: item i of each slot
    blanks = torch.randint(0, 4, (num_groups,), generator=generator).repeat_interleave(4)
    order = torch.stack([torch.randperm(4, generator=generator) for _ in range(num_outfits)])  # candidate positions
    group_outfits = (torch.arange(num_outfits) // 4 * 4)[:, None] + order  # the group's 4 outfits, shuffled
    candidates = group_outfits + num_outfits * blanks[:, None]  # their items of the blank's slot
    labels = (group_outfits == torch.arange(num_outfits)[:, None]).long().argmax(dim=1)

    def accuracy(predict) -> float:
        return evaluator.multiple_choice(predict, rows, blanks, candidates, labels)["correct"].mean().item()

    assert accuracy(context_mean_predictor()) > 0.9
    standard_error = math.sqrt(0.25 * 0.75 / num_outfits)  # 0.0097
    for seed in range(3):
        assert abs(accuracy(random_predictor(embeddings, seed=seed)) - 0.25) < 3 * standard_error


def test_constant_embeddings_and_nan_predictions_score_no_better_than_chance():
    from umbert_hf.evaluation.metrics import OutfitEvaluator, roc_auc

    embeddings = torch.ones(40, 4)
    categories = torch.arange(40) % 4
    evaluator = OutfitEvaluator(embeddings, categories, "euclidean")
    rows = torch.arange(40).view(10, 4)
    out = evaluator.retrieval_ranks(lambda inputs, masked: inputs, rows)
    metrics = hit_rate_metrics(out["ranks"], out["category_sizes"], ties=out["ties"])
    assert metrics["hit_rate@1"] == pytest.approx(metrics["hit_rate@1_chance"])
    nan_out = evaluator.retrieval_ranks(lambda inputs, masked: torch.full_like(inputs, float("nan")), rows)
    assert hit_rate_metrics(nan_out["ranks"], nan_out["category_sizes"], ties=nan_out["ties"])["hit_rate@1"] == 0.0
    fitb = evaluator.multiple_choice(
        lambda inputs, masked: inputs, rows, torch.zeros(10, dtype=torch.long), rows, torch.zeros(10, dtype=torch.long)
    )
    assert fitb["correct"].mean().item() == pytest.approx(0.25)
    assert roc_auc(torch.full((6,), float("nan")), torch.tensor([1, 0, 1, 0, 1, 0])) == 0.5


def test_nan_compatibility_scores_rank_below_every_finite_score():
    # Positives 0.9 and NaN, negatives 0.5, 0.1 and NaN. With NaN lowest, of the 6 (positive, negative) pairs 0.9 wins
    # 3, the NaN positive loses to 0.5 and 0.1 and ties the NaN negative (1/2): AUC (3 + 0.5) / 6. NaN ranked highest
    # would give (2 + 2.5) / 6 = 0.75.
    scores = torch.tensor([0.9, float("nan"), 0.5, 0.1, float("nan")])
    labels = torch.tensor([1, 1, 0, 0, 0])
    assert roc_auc(scores, labels) == pytest.approx(3.5 / 6)
    assert compatibility_metrics(scores, labels, rank_scores=scores)["compatibility_rank_auc"] == pytest.approx(3.5 / 6)


def test_rank_compatibility_scores_the_true_outfits_above_swapped_ones():
    """A predictor that recovers each slot from the others: the rank score separates true outfits from swaps."""
    from umbert_hf.evaluation.metrics import OutfitEvaluator

    generator = torch.Generator().manual_seed(0)
    styles = torch.randn(50, 8, generator=generator)
    embeddings = torch.cat([styles + 0.1 * torch.randn(50, 8, generator=generator) for _ in range(4)])
    categories = torch.arange(200) // 50
    rows = torch.arange(50)[:, None] + 50 * torch.arange(4)[None]  # outfit i: item i of every category
    swapped = rows.clone()
    swapped[:, 1] = rows[torch.randperm(50, generator=generator), 1]

    def predict(inputs, masked):
        visible = torch.ones(inputs.shape[:2])
        visible[torch.arange(inputs.shape[0]), masked] = 0
        mean = (inputs * visible[..., None]).sum(dim=1, keepdim=True) / visible.sum(dim=1)[:, None, None]
        return mean.expand_as(inputs)

    evaluator = OutfitEvaluator(embeddings, categories, "euclidean")
    true_scores = evaluator.compatibility(predict, rows)["rank_scores"]
    swap_scores = evaluator.compatibility(predict, swapped)["rank_scores"]
    labels = torch.cat([torch.ones(50), torch.zeros(50)])
    metrics = compatibility_metrics(torch.zeros(100), labels, rank_scores=torch.cat([true_scores, swap_scores]))
    assert metrics["compatibility_rank_auc"] > 0.9 and metrics["compatibility_rank_auc_chance"] == 0.5
