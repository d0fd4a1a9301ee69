"""The FAISS backend of the per-category index: a flat FAISS index answers exactly as exact search does (both
distances, padding, NaN queries, duplicates), `rank` stays exact, saved indexes load only over their own items, and
every misuse (faiss missing, a bad factory string or search parameter) is one line."""

import sys

import pytest
import torch
from transformers import pipeline

from umbert_hf import faiss_index
from umbert_hf.faiss_index import FaissCategoryIndex, build_index, faiss_available
from umbert_hf.retrieval import DISTANCES, CategoryIndex

needs_faiss = pytest.mark.skipif(not faiss_available(), reason="faiss is not installed: pip install 'umbert-hf[faiss]'")


def catalogue(seed: int = 0, sizes: tuple[int, ...] = (40, 7, 120), hidden: int = 16):
    """(embeddings, categories, queries, query categories): three categories, one smaller than k = 10."""
    generator = torch.Generator().manual_seed(seed)
    categories = torch.cat([torch.full((size,), category) for category, size in enumerate(sizes)])
    embeddings = torch.randn(len(categories), hidden, generator=generator)
    queries = torch.randn(50, hidden, generator=generator)
    query_categories = torch.randint(len(sizes), (50,), generator=generator)
    return embeddings, categories, queries, query_categories


def assert_same_answers(found, expected):
    (scores, rows), (expected_scores, expected_rows) = found, expected
    assert torch.equal(rows, expected_rows)
    assert torch.equal(scores.isnan(), expected_scores.isnan())
    assert torch.allclose(scores, expected_scores, atol=1e-5, equal_nan=True)
    assert scores.dtype == expected_scores.dtype


@needs_faiss
@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("pad", [True, False])
def test_flat_faiss_index_answers_as_exact_search(distance, pad):
    embeddings, categories, queries, query_categories = catalogue()
    exact = CategoryIndex(embeddings, categories, distance)
    flat = build_index(embeddings, categories, distance, index="Flat")
    assert isinstance(flat, FaissCategoryIndex)
    found = flat.top_k(queries, query_categories, 10, pad=pad)
    assert_same_answers(found, exact.top_k(queries, query_categories, 10, pad=pad))
    # With `pad`, category 1 (7 items) is padded with row -1 and NaN; without, k is cut to 7 for every query.
    assert found[1].shape == ((50, 10) if pad else (50, 7))
    assert bool((found[1][query_categories == 1, 7:] == -1).all())
    one = flat.top_k(queries[:1], query_categories[:1], 10, pad=True)
    assert_same_answers(one, exact.top_k(queries[:1], query_categories[:1], 10, pad=True))


@needs_faiss
@pytest.mark.parametrize("distance", DISTANCES)
def test_nan_and_infinite_queries_get_what_exact_search_gives(distance):
    embeddings, categories, queries, query_categories = catalogue(seed=1)
    queries[0] = float("nan")
    queries[3, 2] = float("inf")
    exact = CategoryIndex(embeddings, categories, distance)
    found = build_index(embeddings, categories, distance, index="HNSW32").top_k(queries, query_categories, 5, pad=True)
    expected = exact.top_k(queries, query_categories, 5, pad=True)
    assert found[0][[0, 3]].isnan().all()
    assert torch.equal(found[1][[0, 3]], expected[1][[0, 3]])


@needs_faiss
@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("k", [6, 15])
def test_duplicate_items_tie_in_both_backends(distance, k):
    # Five distinct items, each listed three times: the top 6 or 15 hold whole groups of copies, so the set of rows
    # with each score is defined, though not their order.
    generator = torch.Generator().manual_seed(2)
    embeddings = torch.randn(5, 8, generator=generator).repeat(3, 1)
    categories, queries = torch.zeros(15, dtype=torch.long), torch.randn(20, 8, generator=generator)
    query_categories = torch.zeros(20, dtype=torch.long)
    expected = CategoryIndex(embeddings, categories, distance).top_k(queries, query_categories, k)
    found = build_index(embeddings, categories, distance, index="Flat").top_k(queries, query_categories, k)
    for scores, rows, expected_scores, expected_rows in zip(*found, *expected):
        assert torch.allclose(scores, expected_scores, atol=1e-5)
        assert set(rows.tolist()) == set(expected_rows.tolist())
        assert all(len(set(rows[scores == score].remainder(5).tolist())) == 1 for score in scores)


@needs_faiss
def test_rank_and_score_stay_exact_and_honest():
    embeddings, categories, queries, query_categories = catalogue(seed=3)
    embeddings[1] = embeddings[0]  # two copies: they tie in `rank`
    targets = torch.stack([torch.nonzero(categories == category)[0, 0] for category in query_categories.tolist()])
    exact = CategoryIndex(embeddings, categories, "euclidean")
    approximate = build_index(embeddings, categories, "euclidean", index="faiss")
    for found, expected in zip(
        approximate.rank(queries, query_categories, targets), exact.rank(queries, query_categories, targets)
    ):
        assert torch.equal(found, expected)
    assert torch.equal(approximate.score(queries, targets), exact.score(queries, targets))


@needs_faiss
def test_index_choice():
    embeddings, categories, _, _ = catalogue()
    assert type(build_index(embeddings, categories)) is CategoryIndex  # exact stays the default
    default = build_index(embeddings, categories, index="faiss")
    assert (default.factory, default.parameters) == ("HNSW32", "efConstruction=100,efSearch=224")
    assert default.faiss_index(0).hnsw.efSearch == 224 and default.faiss_index(0).hnsw.efConstruction == 100
    default.set_parameters("efSearch=40")
    assert default.faiss_index(0).hnsw.efSearch == 40
    assert type(build_index(embeddings, categories, index="auto")) is CategoryIndex  # small: exact


@needs_faiss
def test_auto_searches_only_large_categories_on_faiss(monkeypatch):
    monkeypatch.setattr(faiss_index, "AUTO_FAISS_MIN_ITEMS", 100)
    embeddings, categories, queries, query_categories = catalogue()
    auto = build_index(embeddings, categories, index="auto")
    assert isinstance(auto, FaissCategoryIndex) and [auto.uses_faiss(c) for c in range(3)] == [False, False, True]
    auto.top_k(queries, query_categories, 5)
    assert auto._indexes[0] is None and auto._indexes[2] is not None


@needs_faiss
def test_an_index_that_finds_fewer_than_k_pads_with_minus_one_and_nan():
    embeddings, categories, queries, query_categories = catalogue(sizes=(64,))
    index = build_index(embeddings, categories, index="IVF8,Flat", parameters="nprobe=1")
    scores, rows = index.top_k(queries, query_categories, 20)
    assert bool((rows == -1).any()) and torch.equal(rows == -1, scores.isnan())
    found = rows >= 0
    assert torch.allclose(scores[found], index.score(queries[:, None].expand(-1, 20, -1)[found], rows[found]))


@needs_faiss
def test_saved_index_loads_over_its_own_items_only(tmp_path):
    embeddings, categories, queries, query_categories = catalogue(seed=4)
    index = build_index(embeddings, categories, "cosine", index="HNSW16", parameters="efSearch=32")
    index.save(tmp_path)
    loaded = FaissCategoryIndex.load(tmp_path, embeddings, categories, "cosine")
    assert loaded.parameters == "efSearch=32" and loaded.faiss_index(2).hnsw.efSearch == 32
    for found, expected in zip(loaded.top_k(queries, query_categories, 10), index.top_k(queries, query_categories, 10)):
        assert torch.equal(found, expected)
    changed = embeddings.clone()
    changed[5, 0] += 1
    with pytest.raises(ValueError, match="category 0 was saved from other items"):
        FaissCategoryIndex.load(tmp_path, changed, categories, "cosine")
    with pytest.raises(ValueError, match="for 'cosine', not 'euclidean'"):
        FaissCategoryIndex.load(tmp_path, embeddings, categories, "euclidean")
    with pytest.raises(ValueError, match="No saved FAISS index"):
        FaissCategoryIndex.load(tmp_path / "missing", embeddings, categories, "cosine")


def one_line_error(function) -> str:
    with pytest.raises(ValueError) as raised:
        function()
    message = str(raised.value)
    assert "\n" not in message and "Error in" not in message
    return message


def test_missing_faiss_is_one_line_that_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # `import faiss` now raises ImportError
    embeddings, categories, _, _ = catalogue()
    message = one_line_error(lambda: build_index(embeddings, categories, index="faiss"))
    assert "pip install 'umbert-hf[faiss]'" in message
    assert not faiss_available()
    monkeypatch.setattr(faiss_index, "AUTO_FAISS_MIN_ITEMS", 100)
    assert type(build_index(embeddings, categories, index="auto")) is CategoryIndex  # exact, with a warning


@needs_faiss
def test_bad_factory_strings_and_parameters_are_one_line():
    embeddings, categories, queries, query_categories = catalogue()
    assert "Bad FAISS index factory string 'Bogus12'" in one_line_error(
        lambda: build_index(embeddings, categories, index="Bogus12")
    )
    assert "PQ3" in one_line_error(lambda: build_index(embeddings, categories, index="PQ3"))  # 16 % 3 != 0
    assert "Bad FAISS parameters 'nprobe=4'" in one_line_error(
        lambda: build_index(embeddings, categories, index="HNSW32", parameters="nprobe=4")
    )
    too_few = build_index(embeddings, categories, index="IVF32,Flat")  # category 1 has 7 items for 32 lists
    assert "category 1 (7 items)" in one_line_error(lambda: too_few.top_k(queries, query_categories, 3))
    with pytest.raises(ValueError, match="must be one of"):
        build_index(embeddings, categories, index=None)


# ----- the index in the model, the pipeline, the command line, evaluation and augmentation --------------------------


@pytest.fixture
def tester():
    from support.umbert_testing import UmBertModelTester

    return UmBertModelTester(seed=5)


def outfits_of(tester, count: int) -> list[dict]:
    return [tester.outfit_dict(rows.tolist(), blank % 4) for blank, rows in enumerate(tester.outfit_rows(count))]


def suggested_ids(answers) -> list[list[str]]:
    return [[entry["item_id"] for entry in answer] for answer in answers]


@needs_faiss
def test_a_model_on_a_flat_faiss_index_completes_as_exact_search(tester):
    model, outfits = tester.umbert(), outfits_of(tester, 8)
    expected = model.complete(outfits, top_k=6)
    model.set_search_index("Flat")
    assert isinstance(model.catalogue_index(), FaissCategoryIndex) and model.config.search_index == "Flat"
    found = model.complete(outfits, top_k=6)
    assert suggested_ids(found) == suggested_ids(expected)
    for answer, reference in zip(found, expected):
        assert [e["score"] for e in answer] == pytest.approx([e["score"] for e in reference], abs=1e-5)
    pipe = pipeline("outfit-completion", model=model, device="cpu")
    assert suggested_ids(pipe(outfits, top_k=6)) == suggested_ids(expected)
    model.set_search_index("exact")
    assert type(model.catalogue_index()) is CategoryIndex


@needs_faiss
def test_the_index_is_saved_with_the_model_and_loaded_not_rebuilt(tester, tmp_path):
    from transformers import AutoModel

    model, outfits = tester.umbert(), outfits_of(tester, 6)
    model.set_search_index("HNSW16", "efSearch=64")
    expected = model.complete(outfits, top_k=5)
    model.save_pretrained(tmp_path / "model")
    saved = tmp_path / "model" / faiss_index.SAVED_INDEX_FOLDER
    assert sorted(path.name for path in saved.iterdir()) == [
        *(f"category_{c}.faiss" for c in range(4)),
        "faiss_index.json",
    ]
    loaded = AutoModel.from_pretrained(tmp_path / "model")
    assert (loaded.config.search_index, loaded.config.search_index_parameters) == ("HNSW16", "efSearch=64")
    indexes = list(loaded.catalogue_index()._indexes)
    assert all(index is not None for index in indexes)  # read from the folder: a fresh index builds at its first search
    assert suggested_ids(loaded.complete(outfits, top_k=5)) == suggested_ids(expected)
    assert all(a is b for a, b in zip(loaded.catalogue_index()._indexes, indexes))
    assert loaded.catalogue_index().faiss_index(0).hnsw.efSearch == 64


@needs_faiss
def test_a_saved_index_of_other_items_or_settings_is_not_used(tester, tmp_path):
    from transformers import AutoModel

    model = tester.umbert()
    model.set_search_index("Flat")
    model.save_pretrained(tmp_path / "model")
    loaded = AutoModel.from_pretrained(tmp_path / "model")
    changed = tester.item_embeddings.clone()
    changed[0] += 1.0
    loaded.set_catalogue(tester.item_ids, changed, tester.item_categories)
    assert all(index is None for index in loaded.catalogue_index()._indexes)  # built afresh at the first search
    again = AutoModel.from_pretrained(tmp_path / "model")
    again.set_search_index("HNSW8")
    assert all(index is None for index in again.catalogue_index()._indexes)


@needs_faiss
def test_an_exact_model_saves_no_index_and_push_to_hub_uploads_the_faiss_one(tester, tmp_path):
    model = tester.umbert()
    model.save_pretrained(tmp_path / "exact")
    assert not (tmp_path / "exact" / faiss_index.SAVED_INDEX_FOLDER).exists()
    model.set_search_index("Flat")
    model.save_pretrained(tmp_path / "faiss")
    # `save_pretrained(push_to_hub=True)` uploads the entries it does not find unchanged: the index is one of them.
    assert faiss_index.SAVED_INDEX_FOLDER not in model._get_files_timestamps(tmp_path / "faiss")
    assert "config.json" in model._get_files_timestamps(tmp_path / "faiss")


@needs_faiss
def test_a_bad_search_index_changes_nothing(tester):
    model = tester.umbert()
    model.set_search_index("Flat")
    for index, parameters in [("Bogus12", None), ("HNSW32", "nprobe=3"), ("", None)]:
        with pytest.raises(ValueError):
            model.set_search_index(index, parameters)
        assert (model.config.search_index, model.config.search_index_parameters) == ("Flat", None)


@needs_faiss
def test_the_command_line_takes_an_index(tester, tmp_path, capsys):
    from umbert_hf.apps.cli import main as cli_main

    model = tester.umbert()
    model.save_pretrained(tmp_path / "model")
    outfit = outfits_of(tester, 1)[0]
    argv = ["complete", "--model", str(tmp_path / "model"), "--top_k", "4", "--outfit"]
    argv += [f"{slot}={value if value is not None else '?'}" for slot, value in outfit.items()]
    assert cli_main([*argv, "--index", "Flat"]) == 0
    printed = capsys.readouterr().out
    assert all(entry["item_id"] in printed for entry in model.complete([outfit], top_k=4)[0])
    assert cli_main([*argv, "--index", "Bogus12"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "--index 'Bogus12'" in error[0] and "factory string" in error[0]


@needs_faiss
def test_evaluation_reports_the_index_recall_and_keeps_exact_metrics(tester):
    from umbert_hf.evaluation.metrics import OutfitEvaluator

    model = tester.umbert()
    embeddings, categories = model.get_catalogue_embeddings().detach(), model.catalogue_categories
    rows = tester.outfit_rows(20)
    predict = lambda inputs, masked: model.predict_masked(inputs, masked)[:, None].expand(-1, inputs.shape[1], -1)  # noqa: E731
    exact = OutfitEvaluator(embeddings, categories, "euclidean").retrieval_ranks(predict, rows)
    flat = build_index(embeddings, categories, index="Flat")
    found = OutfitEvaluator(embeddings, categories, "euclidean", search_index=flat).retrieval_ranks(predict, rows)
    assert torch.equal(found["ranks"], exact["ranks"]) and "index_recall" not in exact
    assert torch.equal(found["index_recall"], torch.ones(80, dtype=torch.float64))
    coarse = build_index(embeddings, categories, index="IVF4,Flat", parameters="nprobe=1")
    partial = OutfitEvaluator(embeddings, categories, "euclidean", search_index=coarse).retrieval_ranks(predict, rows)
    assert bool((partial["index_recall"] < 1).any()) and bool((partial["index_recall"] >= 0).all())


def test_index_recall_counts_ties_at_the_boundary_as_found_and_nan_as_none():
    from umbert_hf.evaluation.metrics import index_recall

    nan = float("nan")
    exact = torch.tensor([[-1.0, -2.0, -3.0], [-1.0, -2.0, nan], [nan, nan, nan]])
    found = torch.tensor([[-1.0, -3.0, -4.0], [-2.0, nan, nan], [nan, nan, nan]])  # -3 ties the 3rd best: found
    assert index_recall(exact, found).tolist() == pytest.approx([2 / 3, 1 / 2, 1.0])
    assert index_recall(exact[:1], torch.tensor([[-1.0, -2.0, -3.0 - 1e-7]])).item() == 1.0  # rounding


@needs_faiss
def test_augmentation_neighbours_on_a_flat_index_are_the_exact_ones():
    from umbert_hf.data.augment import nearest_same_category
    from umbert_hf.data.embeddings import EmbeddingsTable

    generator = torch.Generator().manual_seed(6)
    ids = [f"i{n}" for n in range(60)]
    table = EmbeddingsTable(ids, ["shoes", "tops"] * 30, torch.randn(60, 8, generator=generator))
    queries = ids[0:20:2]
    expected = nearest_same_category(table, queries, "shoes", k=4)
    assert nearest_same_category(table, queries, "shoes", k=4, index="Flat") == expected
    coarse = nearest_same_category(table, queries, "shoes", k=4, index="IVF4,Flat", index_parameters="nprobe=1")
    assert all(len(found) <= 4 and item not in found for item, found in coarse.items())
