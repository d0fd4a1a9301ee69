"""`score_outfit`: each slot's item ranked against its category's catalogue items when predicted from the others,
the outfit score, the weakest slot and its replacements (issue 19, section 2)."""

import pytest
import torch
from support.umbert_testing import UmBertModelTester


@pytest.fixture(scope="module")
def tester():
    return UmBertModelTester()


@pytest.fixture(scope="module")
def model(tester):
    return tester.umbert()


def complete_outfit(tester, seed: int = 0) -> dict[str, str]:
    rows = tester.outfit_rows(1)[0].tolist() if seed == 0 else UmBertModelTester(seed=seed).outfit_rows(1)[0].tolist()
    return {slot: tester.item_ids[row] for slot, row in zip(tester.categories, rows)}


def test_percentiles_ranks_and_the_outfit_score(tester, model):
    outfit = complete_outfit(tester)
    result = model.score_outfit(outfit)[0]
    assert set(result["slots"]) == set(tester.categories)
    for entry in result["slots"].values():
        assert entry["candidates"] == tester.items_per_category  # the item is one of its category's items
        assert 1 <= entry["rank"] <= entry["candidates"]
        assert entry["percentile"] == pytest.approx(
            100 * (entry["candidates"] - entry["rank"]) / (entry["candidates"] - 1)
        )
    assert result["score"] == pytest.approx(sum(entry["percentile"] for entry in result["slots"].values()) / 4)
    weakest = min(
        tester.categories, key=lambda slot: (result["slots"][slot]["percentile"], tester.categories.index(slot))
    )
    assert result["weakest"]["slot"] == weakest


def test_the_predicted_item_scores_100_and_the_worst_0(tester, model):
    outfit = complete_outfit(tester)
    blank = tester.categories[0]
    ranked = model.complete([{**outfit, blank: None}], top_k=tester.items_per_category)[0]
    best, worst = ranked[0]["item_id"], ranked[-1]["item_id"]
    assert model.score_outfit({**outfit, blank: best})[0]["slots"][blank] == {
        "percentile": 100.0,
        "rank": 1.0,
        "candidates": 10,
    }
    assert model.score_outfit({**outfit, blank: worst})[0]["slots"][blank] == {
        "percentile": 0.0,
        "rank": 10.0,
        "candidates": 10,
    }


def test_an_embedding_competes_as_one_more_candidate_and_ties_with_its_copy(tester, model):
    outfit = complete_outfit(tester)
    slot = tester.categories[1]
    by_id = model.score_outfit(outfit)[0]["slots"][slot]
    row = tester.item_ids.index(outfit[slot])
    by_embedding = model.score_outfit({**outfit, slot: tester.item_embeddings[row].clone()})[0]["slots"][slot]
    assert by_embedding["candidates"] == by_id["candidates"] + 1
    assert by_embedding["rank"] == by_id["rank"] + 0.5  # tied with its catalogue copy: the mean of the two ranks


def test_batched_equals_one_at_a_time_and_replacements_leave_out_the_own_item(tester, model):
    outfits = [complete_outfit(tester, seed) for seed in range(4)]
    batched = model.score_outfit(outfits, top_k=3)
    for outfit, result in zip(outfits, batched):
        alone = model.score_outfit(outfit, top_k=3)[0]
        assert alone["slots"] == result["slots"] and alone["weakest"]["slot"] == result["weakest"]["slot"]
        assert [entry["item_id"] for entry in alone["weakest"]["replacements"]] == [
            entry["item_id"] for entry in result["weakest"]["replacements"]
        ]
        assert [entry["score"] for entry in alone["weakest"]["replacements"]] == pytest.approx(
            [entry["score"] for entry in result["weakest"]["replacements"]], abs=1e-5
        )
        weakest = result["weakest"]
        assert len(weakest["replacements"]) == 3
        assert outfit[weakest["slot"]] not in [entry["item_id"] for entry in weakest["replacements"]]
        category = {item: name for item, name in zip(tester.item_ids, tester.item_categories)}
        assert {category[entry["item_id"]] for entry in weakest["replacements"]} == {weakest["slot"]}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"shoes": None}, "slot 'shoes' is blank or missing"),
        ({"hats": "1"}, "unknown slot 'hats'"),
        ({"tops": "no-such-id"}, "unknown item id 'no-such-id'"),
    ],
)
def test_bad_outfits_are_refused_naming_the_outfit_and_slot(tester, model, change, message):
    with pytest.raises(ValueError, match=f"Outfit 0.*{message}"):
        model.score_outfit({**complete_outfit(tester), **change})


@pytest.mark.parametrize("top_k", [0, 2.5, True])
def test_top_k_must_be_a_whole_number(tester, model, top_k):
    with pytest.raises(ValueError, match="`top_k` must be at least 1"):
        model.score_outfit(complete_outfit(tester), top_k=top_k)


def test_no_outfits_no_scores(model):
    assert model.score_outfit([]) == []
    assert torch.is_grad_enabled()


def test_the_command_line_prints_the_score_the_slots_and_the_weakest_slots_replacements(
    tester, model, tmp_path, capsys
):
    from umbert_hf.apps.cli import main

    model.save_pretrained(tmp_path / "model")
    outfit = complete_outfit(tester)
    expected = model.score_outfit(outfit, top_k=2)[0]
    argv = [
        "score",
        "--model",
        str(tmp_path / "model"),
        "--outfit",
        *[f"{slot}={item}" for slot, item in outfit.items()],
    ]
    assert main([*argv, "--top_k", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith(f"Outfit score: {expected['score']:.1f} / 100")
    assert lines[-3] == f"Weakest: {expected['weakest']['slot']}; replacements:"
    assert [line.split()[1] for line in lines[-2:]] == [
        entry["item_id"] for entry in expected["weakest"]["replacements"]
    ]
    blank = [arg if not arg.startswith("shoes=") else "shoes=?" for arg in argv]
    assert main(blank) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Outfit 0: slot 'shoes' is blank or missing") and err.count("\n") == 1


@pytest.mark.slow
def test_the_benchmark_scores_real_against_spoiled_outfits(outfit_dataset, pretrained_umbert, capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "score_outfits.py"
    spec = importlib.util.spec_from_file_location("score_outfits", path)
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    dataset, _ = outfit_dataset
    report = benchmark.main(["--model", str(pretrained_umbert), "--dataset", str(dataset), "--seed", "1"])
    assert report["outfits"] > 50 and report["skipped"] == 0
    assert 0.0 <= report["auc"] <= 1.0 and report["auc_chance"] == 0.5 and report["weakest_chance"] == 0.25
    assert 0.0 <= report["weakest_is_spoiled_slot"] <= 1.0
    assert report == benchmark.main(["--model", str(pretrained_umbert), "--dataset", str(dataset), "--seed", "1"])


def test_a_nan_prediction_ranks_every_item_last_never_first(tester):
    model = tester.umbert()
    with torch.no_grad():
        model.encoder.decoders.down_bias.fill_(float("nan"))
    result = model.score_outfit(complete_outfit(tester))[0]
    assert result["score"] == 0.0
    assert all(entry["rank"] == entry["candidates"] for entry in result["slots"].values())
