"""The `outfit-completion` pipeline: registration, output, titles, batching, errors, and saved folders without umbert_hf."""

import dataclasses
import json
import shutil

import datasets
import pytest
import torch
from PIL import Image
from support.hub_fixtures import run_json_in_fresh_process
from support.umbert_testing import UmBertModelTester
from transformers import pipeline

from umbert_hf import OutfitCompletionPipeline, UmBertModel
from umbert_hf.configuration_ssim_autoencoder import SsimAutoEncoderConfig
from umbert_hf.data.image_processing import ImagePreprocessing, encode_images
from umbert_hf.modeling_ssim_autoencoder import SsimAutoEncoderModel
from umbert_hf.training.outfit import save_image_encoder_with_model


@pytest.fixture
def tester():
    return UmBertModelTester()


def outfits_of(tester: UmBertModelTester, count: int) -> list[dict]:
    """`count` outfits whose blanks cycle over every slot."""
    rows = tester.outfit_rows(count).tolist()
    return [tester.outfit_dict(outfit_rows, blank=number % 4) for number, outfit_rows in enumerate(rows)]


def complete_error(model, outfits) -> str:
    with pytest.raises(ValueError) as error:
        model.complete(outfits)
    return str(error.value)


# ----- registration and output --------------------------------------------------------------------------------


@pytest.mark.parametrize("build", ["umbert", "wumbert"])
def test_pipeline_by_task_name_gives_the_answers_of_complete(tester, build):
    model = getattr(tester, build)()
    pipe = pipeline("outfit-completion", model=model, device="cpu")
    assert isinstance(pipe, OutfitCompletionPipeline)
    outfits = outfits_of(tester, 3)
    assert pipe(outfits[0], top_k=5) == model.complete([outfits[0]], top_k=5)[0]
    assert pipe(outfits, top_k=5) == model.complete(outfits, top_k=5)


def test_output_is_top_k_items_of_the_blank_category_best_first(tester):
    pipe = pipeline("outfit-completion", model=tester.umbert(), device="cpu", top_k=4)
    outfit = outfits_of(tester, 1)[0]
    blank = next(slot for slot, value in outfit.items() if value is None)
    allowed = {tester.item_ids[row] for row in tester.rows_of(blank)}
    suggestions = pipe(outfit)
    assert len(suggestions) == 4
    assert all(set(entry) == {"item_id", "score"} for entry in suggestions)
    assert all(isinstance(entry["item_id"], str) and isinstance(entry["score"], float) for entry in suggestions)
    assert {entry["item_id"] for entry in suggestions} <= allowed
    scores = [entry["score"] for entry in suggestions]
    assert scores == sorted(scores, reverse=True)
    # A call's `top_k` overrides the pipeline's; the default is every item up to 10.
    assert len(pipe(outfit, top_k=2)) == 2
    assert len(pipeline("outfit-completion", model=tester.umbert(), device="cpu")(outfit)) == 10


def test_photos_are_embedded_like_in_complete(tester, tmp_path):
    """A tiny random-weight image encoder saved with the model: photos are embedded by the copy in `image_encoder/`."""
    torch.manual_seed(0)
    encoder_config = SsimAutoEncoderConfig(
        image_size=32,
        hidden_channels=8,
        latent_channels=8,
        intermediate_size=32,
        embedding_dim=tester.hidden_size,
        num_downsampling_layers=2,
    )
    encoder = SsimAutoEncoderModel(encoder_config).eval()
    encoder.save_pretrained(tmp_path / "encoder")
    # As recorded by an embeddings table whose photos were padded to squares: not the encoder's own default.
    preprocessing = dataclasses.replace(ImagePreprocessing.for_encoder("ssim-autoencoder", 32), pad_to_square=True)
    model = tester.umbert()
    model.config.image_encoder = str(tmp_path / "encoder")
    model.config.embedding_metadata = {"parts": ["image"], "image_preprocessing": preprocessing.to_dict()}
    save_image_encoder_with_model(model, tmp_path / "model")
    model.save_pretrained(tmp_path / "model")
    shutil.rmtree(tmp_path / "encoder")  # only the copy saved with the model is left
    photo = Image.new("RGB", (40, 60), (200, 30, 30))
    photo.paste((20, 40, 220), (0, 0, 20, 60))  # two colours: a flip or a crop would change the embedding
    photo.save(tmp_path / "photo.png")
    with torch.inference_mode():
        photo_embedding = encode_images(encoder, [photo], preprocessing=preprocessing)[0]
    outfit = outfits_of(tester, 1)[0]
    context_slot = next(slot for slot, value in outfit.items() if value is not None)
    saved = UmBertModel.from_pretrained(tmp_path / "model").eval()
    assert saved.config.image_encoder == "image_encoder"
    expected = saved.complete([{**outfit, context_slot: photo_embedding}], top_k=5)[0]
    assert expected != saved.complete([outfit], top_k=5)[0]  # the photo, not the item it replaces, decides
    pipe = pipeline("outfit-completion", model=saved, device="cpu")
    assert pipe({**outfit, context_slot: photo}, top_k=5) == expected
    assert pipe({**outfit, context_slot: tmp_path / "photo.png"}, top_k=5) == expected  # a pathlib.Path
    assert pipe({**outfit, context_slot: {"image": str(tmp_path / "photo.png")}}, top_k=5) == expected
    # A bare string is an item id, never a file to read, even when a file of that name exists.
    with pytest.raises(ValueError, match="unknown item id"):
        pipe({**outfit, context_slot: str(tmp_path / "photo.png")}, top_k=5)


def test_titles_from_a_mapping_or_the_catalogue_split(tester):
    titles = {item_id: f"item {item_id}" for item_id in tester.item_ids[:-4]}  # the last items have no title
    catalogue = datasets.Dataset.from_dict({"item_id": list(titles), "title": list(titles.values())})
    outfit = outfits_of(tester, 1)[0]
    plain = pipeline("outfit-completion", model=tester.umbert(), device="cpu")(outfit)
    for source in (titles, catalogue):
        pipe = pipeline("outfit-completion", model=tester.umbert(), device="cpu", titles=source)
        suggestions = pipe(outfit)
        assert [{"item_id": s["item_id"], "score": s["score"]} for s in suggestions] == plain
        assert [s["title"] for s in suggestions] == [titles.get(s["item_id"]) for s in plain]
    assert None in [s["title"] for s in pipe(outfit)]
    with pytest.raises(ValueError, match="`titles` must map item ids to titles"):
        pipeline("outfit-completion", model=tester.umbert(), device="cpu", titles=["a title"])


# ----- complete outfits are scored ------------------------------------------------------------------------------


def complete_outfits(tester: UmBertModelTester, count: int) -> list[dict]:
    return [
        {slot: tester.item_ids[row] for slot, row in zip(tester.categories, rows)}
        for rows in tester.outfit_rows(count).tolist()
    ]


def assert_same_scores(answer: dict, expected: dict) -> None:
    """The same percentiles, weakest slot and replacements; replacement scores to float rounding (batched forward)."""
    assert answer["score"] == pytest.approx(expected["score"])
    assert answer["slots"] == expected["slots"]
    assert answer["weakest"]["slot"] == expected["weakest"]["slot"]
    got, want = answer["weakest"]["replacements"], expected["weakest"]["replacements"]
    assert [entry["item_id"] for entry in got] == [entry["item_id"] for entry in want]
    assert [entry["score"] for entry in got] == pytest.approx([entry["score"] for entry in want], abs=1e-5)


@pytest.mark.parametrize("build", ["umbert", "wumbert"])
def test_an_outfit_with_no_blank_gets_the_answer_of_score_outfit(tester, build):
    model = getattr(tester, build)()
    pipe = pipeline("outfit-completion", model=model, device="cpu")
    outfit = complete_outfits(tester, 1)[0]
    assert pipe(outfit, top_k=3) == model.score_outfit([outfit], top_k=3)[0]
    assert len(pipe(outfit)["weakest"]["replacements"]) == 9  # the pipeline's top_k (10), less the own item


@pytest.mark.parametrize("batch_size", [1, 2, 5])
def test_a_list_mixes_completions_and_scores(tester, batch_size):
    model = tester.umbert()
    pipe = pipeline("outfit-completion", model=model, device="cpu")
    scored, completed = complete_outfits(tester, 3), outfits_of(tester, 3)
    mixed = [completed[0], scored[0], scored[1], completed[1], completed[2], scored[2]]
    answers = pipe(mixed, top_k=4, batch_size=batch_size)
    expected_scores = model.score_outfit(scored, top_k=4)
    expected_completions = model.complete(completed, top_k=4)
    for answer, expected in zip([answers[1], answers[2], answers[5]], expected_scores):
        assert_same_scores(answer, expected)
    for answer, expected in zip([answers[0], answers[3], answers[4]], expected_completions):
        assert [entry["item_id"] for entry in answer] == [entry["item_id"] for entry in expected]
    # Titles name the weakest slot's replacements too.
    titles = {item_id: f"item {item_id}" for item_id in tester.item_ids}
    titled = pipe(scored[0], top_k=2, titles=titles)
    assert [entry["title"] for entry in titled["weakest"]["replacements"]] == [
        f"item {entry['item_id']}" for entry in titled["weakest"]["replacements"]
    ]


def test_a_complete_outfit_with_a_bad_value_gets_the_errors_of_score_outfit(tester):
    model = tester.umbert()
    pipe = pipeline("outfit-completion", model=model, device="cpu")
    good = complete_outfits(tester, 1)[0]
    for bad in ({**good, "tops": "999"}, {**good, "tops": tester.item_ids[tester.rows_of("shoes")[0]]}):
        with pytest.raises(ValueError) as error:
            pipe([good, bad], batch_size=2)
        with pytest.raises(ValueError) as expected:
            model.score_outfit([good, bad])
        assert str(error.value) == str(expected.value) and str(error.value).startswith("Outfit 1")


# ----- batching -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [2, 4, 16])
def test_batches_give_the_answers_of_one_outfit_at_a_time(tester, batch_size):
    pipe = pipeline("outfit-completion", model=tester.umbert(), device="cpu")
    outfits = outfits_of(tester, 7)
    one_by_one = [pipe(outfit, top_k=5) for outfit in outfits]
    batched = pipe(outfits, top_k=5, batch_size=batch_size)
    assert [[s["item_id"] for s in result] for result in batched] == [[s["item_id"] for s in r] for r in one_by_one]
    for result, expected in zip(batched, one_by_one):
        assert [s["score"] for s in result] == pytest.approx([s["score"] for s in expected], rel=1e-5, abs=1e-5)
    # Generators stream the same answers.
    assert list(pipe((outfit for outfit in outfits), top_k=5, batch_size=batch_size)) == batched


def test_a_small_category_does_not_cut_the_answers_of_its_batch(tester):
    # Three shoes only: an outfit missing its shoes gets 3 suggestions, one missing its top still gets 5.
    keep = [row for row in range(len(tester.item_ids)) if tester.item_categories[row] != "shoes"]
    keep += tester.rows_of("shoes")[:3]
    model = UmBertModel(tester.config)
    model.set_catalogue(
        [tester.item_ids[row] for row in keep],
        tester.item_embeddings[keep],
        [tester.item_categories[row] for row in keep],
    )
    rows = tester.outfit_rows(2).tolist()
    rows[0][0] = tester.rows_of("shoes")[0]
    outfits = [tester.outfit_dict(rows[0], blank=1), tester.outfit_dict(rows[1], blank=0)]
    pipe = pipeline("outfit-completion", model=model.eval(), device="cpu")
    batched = pipe(outfits, top_k=5, batch_size=2)
    assert [len(result) for result in batched] == [5, 3]
    assert batched == [pipe(outfit, top_k=5) for outfit in outfits]
    # `complete` on the same list: the same answers, not cut to the smallest category of the list.
    assert model.complete(outfits, top_k=5) == batched


# ----- errors -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [1, 2])
@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda outfit, tester: {**outfit, "tops": "999"}, id="unknown-item-id"),
        pytest.param(lambda outfit, tester: {**outfit, "tops": None}, id="two-blanks"),
        pytest.param(
            lambda outfit, tester: {**outfit, "tops": tester.item_ids[tester.rows_of("shoes")[0]]}, id="wrong-category"
        ),
        pytest.param(lambda outfit, tester: {**outfit, "hats": "100001"}, id="unknown-slot"),
    ],
)
def test_bad_outfits_raise_the_errors_of_complete(tester, change, batch_size):
    model = tester.umbert()
    good = tester.outfit_dict(tester.outfit_rows(1)[0].tolist(), blank=0)
    bad = change(good, tester)
    pipe = pipeline("outfit-completion", model=model, device="cpu")
    with pytest.raises(ValueError) as error:
        pipe(bad)
    assert str(error.value) == complete_error(model, [bad])
    assert str(error.value).startswith("Outfit 0")
    # In a list, the error names the outfit's position, as `complete` does.
    with pytest.raises(ValueError) as error:
        pipe([good, good, bad], batch_size=batch_size)
    assert str(error.value) == complete_error(model, [good, good, bad])
    assert str(error.value).startswith("Outfit 2")


def test_bad_parameters_and_inputs(tester):
    pipe = pipeline("outfit-completion", model=tester.umbert(), device="cpu")
    outfit = outfits_of(tester, 1)[0]
    with pytest.raises(ValueError, match="`top_k` must be at least 1, got 0"):
        pipe(outfit, top_k=0)
    with pytest.raises(ValueError, match="Unknown parameters \\['topk'\\]"):
        pipe(outfit, topk=3)
    with pytest.raises(ValueError, match="Outfit 1: expected a dict"):
        pipe([outfit, "100000"])
    assert pipe([]) == []


# ----- saved folders and remote code --------------------------------------------------------------------------

REMOTE_PIPELINE = """
import json, sys
from transformers import pipeline
folder, outfits, titles, scored = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]), json.loads(sys.argv[4])
pipe = pipeline("outfit-completion", model=folder, trust_remote_code=True, device="cpu")
assert type(pipe).__module__.startswith("transformers_modules"), type(pipe).__module__
assert type(pipe.model).__module__.startswith("transformers_modules"), type(pipe.model).__module__
inferred = pipeline(model=folder, trust_remote_code=True, device="cpu")  # the only task of the folder
print(json.dumps({
    "single": pipe(outfits[0], top_k=5),
    "batched": pipe(outfits, top_k=5, batch_size=2, titles=titles),
    "inferred": inferred(outfits[0], top_k=5),
    "scored": pipe(scored, top_k=3),
    "diverse": pipe(outfits[0], top_k=5, diversity=0.5),
}))
"""


def run_remote_pipeline(folder, outfits, titles, env, scored=None) -> dict:
    arguments = [str(folder), json.dumps(outfits), json.dumps(titles), json.dumps(scored or outfits[0])]
    code = f"import sys\nsys.argv = ['remote', *{arguments!r}]\n"
    return run_json_in_fresh_process(code + REMOTE_PIPELINE, env, block_imports=["umbert_hf"])


@pytest.mark.parametrize("save_with", ["model", "pipeline"])
@pytest.mark.slow
def test_saved_folder_carries_the_pipeline_for_remote_code(tester, save_with, tmp_path):
    model = tester.umbert() if save_with == "model" else tester.wumbert()
    folder = tmp_path / "model"
    if save_with == "model":
        model.save_pretrained(folder)
    else:
        pipeline("outfit-completion", model=model, device="cpu").save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    assert config["custom_pipelines"]["outfit-completion"] == {
        "impl": "pipeline_outfit_completion.OutfitCompletionPipeline",
        "pt": ["AutoModel"],
    }
    assert (folder / "pipeline_outfit_completion.py").exists()
    # With umbert_hf imported, the folder loads into the same pipeline.
    outfits = outfits_of(tester, 3)
    local = pipeline("outfit-completion", model=str(folder), trust_remote_code=True, device="cpu")
    assert local(outfits[0], top_k=5) == model.complete([outfits[0]], top_k=5)[0]
    if save_with == "model":
        titles = {item_id: f"item {item_id}" for item_id in tester.item_ids}
        env = {"HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
        scored = complete_outfits(tester, 1)[0]
        remote = run_remote_pipeline(folder, outfits, titles, env, scored)
        expected = model.complete(outfits, top_k=5)
        assert remote["single"] == remote["inferred"] == expected[0]
        assert_same_scores(remote["scored"], model.score_outfit([scored], top_k=3)[0])
        assert remote["diverse"] == model.complete([outfits[0]], top_k=5, diversity=0.5)[0]
        assert [[s["item_id"] for s in result] for result in remote["batched"]] == [
            [s["item_id"] for s in result] for result in expected
        ]
        assert all(s["title"] == f"item {s['item_id']}" for result in remote["batched"] for s in result)


@pytest.mark.slow
def test_pushed_model_serves_the_pipeline_without_the_package(tester, hub_env):
    model = tester.wumbert()
    repo_id = hub_env.unique_repo_id("wumbert-pipeline")
    model.push_to_hub(repo_id)
    assert "pipeline_outfit_completion.py" in hub_env.api.list_repo_files(repo_id)
    outfits = outfits_of(tester, 2)
    arguments = [repo_id, json.dumps(outfits), "null", json.dumps(outfits[0])]
    code = f"import sys\nsys.argv = ['remote', *{arguments!r}]\n"
    remote = hub_env.run_json(code + REMOTE_PIPELINE, block_imports=["umbert_hf"])
    expected = model.complete(outfits, top_k=5)
    assert remote["single"] == remote["inferred"] == expected[0]
    assert [[s["item_id"] for s in result] for result in remote["batched"]] == [
        [s["item_id"] for s in result] for result in expected
    ]
