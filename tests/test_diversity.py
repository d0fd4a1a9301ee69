"""Diverse suggestions: maximal marginal relevance in `retrieval`, `complete(..., diversity=)`, the pipeline and the CLI."""

import math

import pytest
import torch
from support.umbert_testing import UmBertModelTester
from transformers import pipeline

from umbert_hf import UmBertModel
from umbert_hf.apps.cli import main as cli_main
from umbert_hf.retrieval import (
    check_diversity,
    diversity_pool_size,
    maximal_marginal_relevance,
    pairwise_scores,
)


def reference_mmr(relevance, candidates, present, k, diversity, distance):
    """The greedy MMR of one row, written plainly: the rule the vectorised one must follow."""
    left = [position for position in range(len(relevance)) if present[position]]
    low, high = min(float(relevance[p]) for p in left), max(float(relevance[p]) for p in left)
    relevance = [(float(value) - low) / (high - low) for value in relevance]  # 1 for the best, 0 for the worst
    similarity = pairwise_scores(candidates, candidates, distance)
    least = min(float(similarity[a, b]) for a in left for b in left)
    identical = 1.0 if distance == "cosine" else 0.0
    similarity = (similarity - least) / (identical - least)  # 1 for a copy, 0 for the least similar pair
    picks = []
    while left and len(picks) < k:

        def objective(position):
            if not picks:
                return (1 - diversity) * float(relevance[position])
            closest = max(float(similarity[position, pick]) for pick in picks)
            return (1 - diversity) * float(relevance[position]) - diversity * closest

        best = max(objective(position) for position in left)
        pick = next(position for position in left if objective(position) == best)  # the first of equal maxima
        picks.append(pick)
        left.remove(pick)
    return picks + [-1] * (min(k, len(relevance)) - len(picks))


# ----- the re-ranking -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
@pytest.mark.parametrize("diversity", [0.0, 0.2, 0.5, 0.8, 1.0])
def test_the_batched_picks_follow_the_greedy_rule(distance, diversity):
    generator = torch.Generator().manual_seed(3)
    candidates = torch.randn(6, 12, 5, generator=generator)
    relevance = torch.randn(6, 12, generator=generator).sort(dim=1, descending=True).values
    present = torch.ones(6, 12, dtype=torch.bool)
    present[2, 9:] = False  # a row padded at its end (a category of 9 items)
    candidates[2, 9:] = 100.0  # padding (row 0's embedding, in `suggest`) must not stretch the similarity scale
    picks = maximal_marginal_relevance(relevance, candidates, present, 10, diversity, distance)
    assert picks.shape == (6, 10) and picks.dtype == torch.long
    for row in range(6):
        expected = reference_mmr(relevance[row], candidates[row], present[row], 10, diversity, distance)
        assert picks[row].tolist() == expected
    assert picks[2].tolist()[9:] == [-1]


def test_zero_diversity_keeps_the_relevance_order_and_an_exact_copy_comes_last():
    item = torch.tensor([1.0, 0.0])
    candidates = torch.stack([item, item.clone(), torch.tensor([0.0, 1.0]), torch.tensor([-1.0, 0.0])])[None]
    relevance = torch.tensor([[-0.1, -0.1, -0.5, -0.9]])  # the item and its copy tie at the top
    present = torch.ones(1, 4, dtype=torch.bool)
    assert maximal_marginal_relevance(relevance, candidates, present, 4, 0.0).tolist() == [[0, 1, 2, 3]]
    # On the 0-1 scales: relevance 1, 1, 0.5, 0; similarity to the first pick 1 (the copy), 0.29, 0.
    # A little diversity lets the copy's relevance win; more moves it down.
    assert maximal_marginal_relevance(relevance, candidates, present, 4, 0.05).tolist() == [[0, 1, 2, 3]]
    assert maximal_marginal_relevance(relevance, candidates, present, 4, 0.5).tolist() == [[0, 2, 1, 3]]
    # Full diversity: after the most relevant, the farthest from every pick (the opposite item), and the copy last.
    assert maximal_marginal_relevance(relevance, candidates, present, 4, 1.0).tolist() == [[0, 3, 2, 1]]


def test_a_row_with_nan_relevance_keeps_its_order():
    relevance = torch.tensor([[0.9, 0.5, 0.1], [float("nan")] * 3])
    candidates = torch.zeros(2, 3, 2)
    present = torch.tensor([[True, True, True], [True, True, False]])
    picks = maximal_marginal_relevance(relevance, candidates, present, 3, 0.7)
    assert picks[1].tolist() == [0, 1, -1]


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_the_picks_do_not_depend_on_the_scale_of_the_scores_or_embeddings(distance):
    generator = torch.Generator().manual_seed(5)
    candidates = torch.randn(4, 20, 6, generator=generator)
    relevance = torch.randn(4, 20, generator=generator).sort(dim=1, descending=True).values
    present = torch.ones(4, 20, dtype=torch.bool)
    picks = maximal_marginal_relevance(relevance, candidates, present, 8, 0.5, distance)
    for scale in (1e-3, 1e3):  # distances and relevance ranges far below and above 1
        scaled = maximal_marginal_relevance(relevance * scale, candidates * scale, present, 8, 0.5, distance)
        assert torch.equal(scaled, picks)


@pytest.mark.parametrize("bad", [-0.1, 1.5, math.nan, math.inf, "0.5", True, None])
def test_diversity_outside_zero_to_one_is_refused(bad):
    with pytest.raises(ValueError, match=r"`diversity` must be a number in \[0, 1\]"):
        check_diversity(bad)


def test_shapes_are_checked_and_the_pool_is_at_least_fifty():
    with pytest.raises(ValueError, match="`candidates` must be"):
        maximal_marginal_relevance(torch.zeros(2, 3), torch.zeros(2, 4, 5), torch.ones(2, 3, dtype=torch.bool), 2, 0.5)
    assert [diversity_pool_size(k) for k in (1, 10, 11, 40)] == [50, 50, 55, 200]


# ----- in the model, the pipeline and the command line --------------------------------------------------------


@pytest.fixture
def tester():
    return UmBertModelTester()


@pytest.fixture
def model(tester):
    return tester.umbert()


def outfits_of(tester, count):
    return [tester.outfit_dict(rows, blank=n % 4) for n, rows in enumerate(tester.outfit_rows(count).tolist())]


def test_complete_with_zero_diversity_is_the_plain_ranking(tester, model):
    outfits = outfits_of(tester, 8)
    assert model.complete(outfits, top_k=7, diversity=0) == model.complete(outfits, top_k=7)


def test_diverse_suggestions_rerank_the_most_relevant_items(tester, model):
    outfits = outfits_of(tester, 8)
    plain = model.complete(outfits, top_k=10)  # every item of the category (10 per category)
    for diversity in (0.3, 1.0):
        diverse = model.complete(outfits, top_k=5, diversity=diversity)
        for outfit, plain_answer, answer in zip(outfits, plain, diverse):
            blank = next(slot for slot, value in outfit.items() if value is None)
            assert len(answer) == 5 and len({entry["item_id"] for entry in answer}) == 5
            assert {entry["item_id"] for entry in answer} <= {tester.item_ids[row] for row in tester.rows_of(blank)}
            assert answer[0] == plain_answer[0]  # the first pick is the most relevant
            # Each score stays the item's relevance, as the plain ranking gives it.
            relevance = {entry["item_id"]: entry["score"] for entry in plain_answer}
            assert all(entry["score"] == pytest.approx(relevance[entry["item_id"]], abs=1e-5) for entry in answer)
    # Batched answers equal one outfit at a time (scores to float rounding: the forward is batched).
    batched = model.complete(outfits, top_k=5, diversity=0.5)
    for outfit, answer in zip(outfits, batched):
        alone = model.complete([outfit], top_k=5, diversity=0.5)[0]
        assert [entry["item_id"] for entry in answer] == [entry["item_id"] for entry in alone]
        assert [entry["score"] for entry in answer] == pytest.approx([entry["score"] for entry in alone], abs=1e-5)


def test_copies_of_a_suggestion_move_down(tester):
    # Every shoe has two exact copies (the same product in three listings): the plain top 3 is one shoe three times.
    ids, embeddings, categories = list(tester.item_ids), tester.item_embeddings.clone(), list(tester.item_categories)
    for row in tester.rows_of("shoes"):
        for copy in (1, 2):
            ids.append(f"{ids[row]}-copy{copy}")
            embeddings = torch.cat([embeddings, embeddings[row : row + 1]])
            categories.append("shoes")
    model = UmBertModel(tester.config)
    model.set_catalogue(ids, embeddings, categories)
    model.eval()
    outfit = tester.outfit_dict(tester.outfit_rows(1)[0].tolist(), blank=0)
    plain = model.complete([outfit], top_k=3)[0]
    base = {entry["item_id"].split("-")[0] for entry in plain}
    assert len(base) == 1  # three listings of one shoe
    diverse = model.complete([outfit], top_k=3, diversity=0.3)[0]
    assert len({entry["item_id"].split("-")[0] for entry in diverse}) == 3


@pytest.mark.parametrize("bad", [-0.5, 2, "high"])
def test_complete_and_the_pipeline_refuse_a_bad_diversity(tester, model, bad):
    outfit = outfits_of(tester, 1)[0]
    with pytest.raises(ValueError, match=r"`diversity` must be a number in \[0, 1\]"):
        model.complete([outfit], diversity=bad)
    pipe = pipeline("outfit-completion", model=model, device="cpu")
    with pytest.raises(ValueError, match=r"`diversity` must be a number in \[0, 1\]"):
        pipe(outfit, diversity=bad)


@pytest.mark.parametrize("batch_size", [1, 3])
def test_the_pipeline_gives_the_diverse_answers_of_complete(tester, model, batch_size):
    outfits = outfits_of(tester, 5)
    pipe = pipeline("outfit-completion", model=model, device="cpu", diversity=0.4)
    answers = pipe(outfits, top_k=4, batch_size=batch_size)
    expected = model.complete(outfits, top_k=4, diversity=0.4)
    assert [[e["item_id"] for e in answer] for answer in answers] == [[e["item_id"] for e in a] for a in expected]


def test_the_command_line_takes_diversity(tester, model, tmp_path, capsys):
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    outfit = outfits_of(tester, 1)[0]
    argv = ["complete", "--model", str(folder), "--top_k", "4", "--outfit"]
    argv += [f"{slot}={value if value is not None else '?'}" for slot, value in outfit.items()]
    assert cli_main([*argv, "--diversity", "0.6"]) == 0
    printed = capsys.readouterr().out
    for entry in model.complete([outfit], top_k=4, diversity=0.6)[0]:
        assert entry["item_id"] in printed
    assert cli_main([*argv, "--diversity", "1.5"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "--diversity" in error[0] and "[0, 1]" in error[0]


@pytest.mark.slow
def test_the_benchmark_at_zero_diversity_gives_the_evaluators_hit_rate_and_mrr(
    outfit_dataset, pretrained_umbert, tmp_path
):
    import importlib.util
    import json
    from pathlib import Path

    from umbert_hf.commands.evaluate import main as evaluate_main

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "diverse_suggestions.py"
    spec = importlib.util.spec_from_file_location("diverse_suggestions", path)
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    dataset, _ = outfit_dataset
    output = tmp_path / "report.json"
    argv = ["--model", str(pretrained_umbert), "--dataset", str(dataset), "--diversity", "0", "1", "--top_k", "10"]
    report = benchmark.main([*argv, "--output", str(output)])
    assert json.loads(output.read_text()) == report
    metrics = evaluate_main(["--model_name_or_path", str(pretrained_umbert), "--dataset", str(dataset)])
    plain, diverse = report["runs"][0]["0.0"], report["runs"][0]["1.0"]
    assert plain["hit_rate@10"] == pytest.approx(metrics["hit_rate@10"], abs=1e-9)
    assert plain["mrr"] == pytest.approx(metrics["mrr"], abs=1e-9)
    assert diverse["mean_pairwise_distance@10"] > plain["mean_pairwise_distance@10"]
    assert report["diversity"]["0.0"]["mrr"] == {"mean": plain["mrr"], "sd": 0.0}
    # The report is never written over without --overwrite, and a bad value is refused before any work.
    with pytest.raises(ValueError, match="--overwrite"):
        benchmark.main([*argv, "--output", str(output)])
    with pytest.raises(SystemExit):
        benchmark.main([*argv[:-4], "--diversity", "1.5"])
