"""Tests of the model cards: model-index YAML with results and chance levels, usage, citations, all four kinds."""

import math
import re

import pytest
import yaml
from huggingface_hub import ModelCard, ModelCardData
from transformers.pipelines import SUPPORTED_TASKS

from umbert_hf.evaluation.modelcard import CARD_KINDS, make_model_card, template_dir

HYPERPARAMETERS = {"learning_rate": 0.001, "num_train_epochs": 5, "per_device_train_batch_size": 64}


def front_matter(card: ModelCard) -> dict:
    text = str(card)
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def resnet_card(**overrides) -> ModelCard:
    kwargs = {
        "model_name": "fashion-resnet-demo",
        "dataset_name": "someone/polyvore-synthetic",
        "metrics": {"val_accuracy": 0.93, "val_loss": 0.21, "val_accuracy_chance": 0.26},
        "hyperparameters": HYPERPARAMETERS,
        "chance_levels": {"val_accuracy_chance_uniform": 0.25},
        "extra": {"image_size": 64, "categories": ["shoes", "tops", "accessories", "bottoms"]},
    }
    return make_model_card("fashion-resnet", **{**kwargs, **overrides})


def umbert_card(kind: str = "umbert") -> ModelCard:
    return make_model_card(
        kind,
        model_name=f"{kind}-demo",
        dataset_name="someone/polyvore-synthetic",
        metrics={"hit_rate@10": 0.31, "mrr": 0.12, "fitb_accuracy": 0.55, "compatibility_auc": 0.7},
        hyperparameters=HYPERPARAMETERS,
        base_model="someone/fashion-resnet-demo",
        chance_levels={"hit_rate@10": 0.036, "fitb_accuracy": 0.25, "compatibility_auc": 0.5},
        extra={"repo_id": f"someone/{kind}-demo", "embeddings": "128-d ResNet-18 image embeddings"},
    )


def test_every_kind_has_a_template():
    for kind in CARD_KINDS:
        assert (template_dir() / CARD_KINDS[kind].template).is_file(), kind


def test_yaml_parses_and_card_data_round_trips():
    card = resnet_card()
    metadata = front_matter(card)
    assert metadata["library_name"] == "transformers" and metadata["license"] == "apache-2.0"
    assert metadata["datasets"] == ["someone/polyvore-synthetic"]
    result = metadata["model-index"][0]["results"][0]
    assert result["task"]["type"] == "image-classification"
    assert result["dataset"] == {
        "name": "someone/polyvore-synthetic",
        "type": "someone/polyvore-synthetic",
        "config": "catalogue",
        "split": "validation",
    }
    values = {metric["name"]: metric["value"] for metric in result["metrics"]}
    assert values == {"val_accuracy": 0.93, "val_loss": 0.21}  # chance levels are not results

    reloaded = ModelCard(str(card))
    assert isinstance(reloaded.data, ModelCardData)
    assert reloaded.data.model_name == "fashion-resnet-demo"
    assert {result.metric_name: result.metric_value for result in reloaded.data.eval_results} == values
    again = ModelCardData(**reloaded.data.to_dict())
    assert again.to_dict() == reloaded.data.to_dict()


def test_results_table_shows_chance_beside_each_metric():
    text = str(resnet_card())
    assert "| val_accuracy | 0.9300 | 0.26, 0.25 (uniform) | validation | catalogue |" in text
    assert "| learning_rate | 0.001 |" in text


@pytest.mark.parametrize("kind", ["umbert", "wumbert"])
def test_umbert_cards_show_loading_completion_and_per_config_results(kind):
    card = umbert_card(kind)
    text = str(card)
    assert f'AutoModel.from_pretrained("someone/{kind}-demo", trust_remote_code=True)' in text
    assert 'model.complete([{"shoes": "123", "tops": None' in text and "top_k=5" in text
    assert "Intended use and limitations" in text
    assert "Learning Type-Aware Embeddings for Fashion Compatibility" in text and "original umBERT project" in text
    metadata = front_matter(card)
    assert metadata["base_model"] == "someone/fashion-resnet-demo"
    configs = {
        metric["name"]: (result["dataset"]["config"], result["dataset"]["split"], result["task"]["type"])
        for result in metadata["model-index"][0]["results"]
        for metric in result["metrics"]
    }
    assert configs["hit_rate@10"] == ("outfits", "test", "outfit-completion")
    assert configs["fitb_accuracy"][0] == "fitb" and configs["compatibility_auc"][0] == "compatibility"
    assert "| fitb_accuracy | 0.5500 | 0.25 | test | fitb |" in text


def test_autoencoder_card_describes_ssim_and_its_baseline():
    card = make_model_card(
        "ssim-autoencoder",
        model_name="ae",
        dataset_name="/local/dataset",
        metrics={"val_ssim": 0.43, "val_ssim_chance": 0.23},
        hyperparameters=HYPERPARAMETERS,
    )
    metadata = front_matter(card)
    assert "datasets" not in metadata  # a local path is no Hub dataset id
    assert metadata["model-index"][0]["results"][0]["task"]["type"] == "image-to-image"
    text = str(card)
    assert "| val_ssim | 0.4300 | 0.23 | validation | catalogue |" in text
    assert "`/local/dataset`" in text and "End-to-end Optimized Image Compression" in text


def test_split_argument_and_prefixes_choose_the_split():
    card = make_model_card(
        "umbert",
        model_name="m",
        dataset_name="a/b",
        metrics={"mrr": 0.1, "test_mrr": 0.2},
        hyperparameters={},
        extra={"split": "validation"},
    )
    splits = {
        metric["name"]: result["dataset"]["split"]
        for result in front_matter(card)["model-index"][0]["results"]
        for metric in result["metrics"]
    }
    assert splits == {"mrr": "validation", "test_mrr": "test"}


def test_unknown_kind_and_missing_templates_fail_clearly(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="Unknown model card kind"):
        make_model_card("bert", model_name="m", dataset_name="d", metrics={}, hyperparameters={})
    custom = tmp_path / "custom.md"
    custom.write_text("---\n{{ card_data }}\n---\n\n# {{ model_name }} on {{ dataset_name }}\n")
    card = resnet_card(template_path=custom)
    assert "# fashion-resnet-demo on someone/polyvore-synthetic" in str(card)


# A selection of the Hub's license ids (https://huggingface.co/docs/hub/repositories-licenses); "other" needs a name
# and a link.
HUB_LICENSES = {"apache-2.0", "mit", "bsd-3-clause", "cc-by-4.0", "cc-by-sa-4.0", "cc-by-nc-4.0", "gpl-3.0", "other"}
HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def hub_metadata_errors(metadata: dict) -> list[str]:
    """The Hub's checks on model card metadata that can run offline: field types, license id, Hub ids of datasets and
    base model, a pipeline tag that transformers knows, and the model-index layout (every result has a task type, a
    dataset name and type, and metrics with a type and a finite number; the Hub stores metadata as JSON, no NaN)."""
    errors = []
    license_id = metadata.get("license")
    if license_id not in HUB_LICENSES:
        errors.append(f"license {license_id!r} is not a Hub license id")
    if license_id == "other" and not (metadata.get("license_name") and metadata.get("license_link")):
        errors.append("license 'other' needs license_name and license_link")
    tags = metadata.get("tags")
    if not isinstance(tags, list) or not all(isinstance(tag, str) and tag for tag in tags):
        errors.append(f"tags must be a list of non-empty strings, got {tags!r}")
    elif len(set(tags)) != len(tags):
        errors.append(f"tags repeat: {tags}")
    for key in ("datasets", "base_model"):
        ids = metadata.get(key, [])
        for repo_id in [ids] if isinstance(ids, str) else ids:
            if not (isinstance(repo_id, str) and HUB_ID.match(repo_id)):
                errors.append(f"{key} holds {repo_id!r}, not a Hub repo id")
    if metadata.get("pipeline_tag") not in (None, *SUPPORTED_TASKS):
        errors.append(f"pipeline_tag {metadata['pipeline_tag']!r} is no transformers task")
    model_index = metadata.get("model-index")
    if not (isinstance(model_index, list) and len(model_index) == 1 and isinstance(model_index[0], dict)):
        return [*errors, f"model-index must be a list of one model, got {model_index!r}"]
    if not isinstance(model_index[0].get("name"), str):
        errors.append("model-index has no model name")
    results = model_index[0].get("results")
    if not isinstance(results, list) or not results:
        return [*errors, "model-index has no results"]
    for number, result in enumerate(results):
        task, dataset = result.get("task") or {}, result.get("dataset") or {}
        if not isinstance(task.get("type"), str):
            errors.append(f"result {number} has no task type")
        if not (isinstance(dataset.get("name"), str) and isinstance(dataset.get("type"), str)):
            errors.append(f"result {number} has no dataset name and type")
        if not result.get("metrics"):
            errors.append(f"result {number} has no metrics")
        for metric in result.get("metrics") or []:
            value = metric.get("value")
            if not isinstance(metric.get("type"), str):
                errors.append(f"a metric of result {number} has no type")
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)):
                errors.append(f"metric {metric.get('type')!r} has value {value!r}, not a finite number")
    return errors


def every_card() -> list[ModelCard]:
    autoencoder = make_model_card(
        "ssim-autoencoder", model_name="ae", dataset_name="a/b", metrics={"val_ssim": 0.4}, hyperparameters={}
    )
    return [resnet_card(), autoencoder, umbert_card("umbert"), umbert_card("wumbert")]


def test_cards_pass_the_hub_metadata_checks_offline():
    for card in every_card():
        metadata = front_matter(card)
        assert hub_metadata_errors(metadata) == [], metadata["model-index"][0]["name"]
        # What the Hub client parses on upload: the model index becomes one EvalResult per reported metric.
        data = ModelCardData(**metadata)
        reported = [metric for result in metadata["model-index"][0]["results"] for metric in result["metrics"]]
        assert data.model_name == metadata["model-index"][0]["name"] and len(data.eval_results) == len(reported)
        assert str(card).split("---\n", 2)[2].strip()  # a card body, not only metadata


def without_task_type(metadata: dict) -> None:
    del metadata["model-index"][0]["results"][0]["task"]["type"]


def with_nan_metric(metadata: dict) -> None:
    metadata["model-index"][0]["results"][0]["metrics"][0]["value"] = math.nan


@pytest.mark.parametrize(
    ("damage", "error"),
    [
        (lambda metadata: metadata.update(license="Apache 2"), "license 'Apache 2' is not a Hub license id"),
        (lambda metadata: metadata.update(license="other"), "license 'other' needs license_name"),
        (lambda metadata: metadata.update(tags="fashion"), "tags must be a list"),
        (lambda metadata: metadata["tags"].append("fashion"), "tags repeat"),
        (lambda metadata: metadata.update(datasets=["/local/dataset"]), "datasets holds '/local/dataset'"),
        (lambda metadata: metadata.update(pipeline_tag="outfits"), "pipeline_tag 'outfits'"),
        (lambda metadata: metadata.update({"model-index": []}), "model-index must be a list of one model"),
        (lambda metadata: metadata["model-index"][0].update(results=[]), "model-index has no results"),
        (without_task_type, "result 0 has no task type"),
        (with_nan_metric, "metric 'accuracy' has value nan"),
    ],
)
def test_hub_metadata_checks_catch_a_broken_card(damage, error):
    metadata = front_matter(resnet_card(metrics={"val_accuracy": 0.9}))
    damage(metadata)
    assert any(message.startswith(error) for message in hub_metadata_errors(metadata)), hub_metadata_errors(metadata)


def test_templates_are_the_model_cards_package_unless_overridden(tmp_path, monkeypatch):
    import shutil
    from pathlib import Path

    from umbert_hf.evaluation.modelcard import TEMPLATE_DIR_ENV

    checkout = Path(__file__).resolve().parents[1]
    monkeypatch.delenv(TEMPLATE_DIR_ENV, raising=False)
    monkeypatch.syspath_prepend(str(checkout))  # where an install puts the `model_cards` package
    assert template_dir() == checkout / "model_cards"
    custom = tmp_path / "templates"
    custom.mkdir()
    shutil.copy(checkout / "model_cards" / "umbert.md", custom / "umbert.md")
    monkeypatch.setenv(TEMPLATE_DIR_ENV, str(custom))
    assert template_dir() == custom
    (custom / "umbert.md").unlink()  # a folder without the templates is passed over
    assert template_dir() == checkout / "model_cards"


# --- Cards users can trust: the dataset by its name, never a path of this machine; the model beside its baselines ---

SYNTHETIC_DATASET_NAME = "Polyvore Outfits (umBERT slots) — synthetic"  # `pretty_name` of the built dataset's card


@pytest.mark.slow
def test_the_card_of_a_model_trained_on_a_local_folder_names_the_dataset_and_no_path(outfit_dataset, pretrained_umbert):
    import json

    dataset, embeddings = outfit_dataset
    output = pretrained_umbert  # pretrain.py on the local dataset folder
    text = (output / "README.md").read_text()
    for path in (dataset, embeddings, output):  # anywhere: YAML, text, hyperparameters, loading snippet
        assert str(path) not in text and str(path.parent) not in text
    assert (
        SYNTHETIC_DATASET_NAME in text and "The dataset was a local folder (`dataset`), not a Hub repository." in text
    )
    metadata = front_matter(ModelCard(text))
    assert "datasets" not in metadata  # no Hub dataset to link
    assert {result["dataset"]["name"] for result in metadata["model-index"][0]["results"]} == {SYNTHETIC_DATASET_NAME}
    assert "| dataset | dataset |" in text and "| embeddings | embeddings.parquet |" in text
    # The test figures of metrics.json beside the two baselines and chance.
    metrics = json.loads((output / "metrics.json").read_text())
    row = " | ".join(
        f"{metrics[key]:.4f}"
        for key in ("test_fitb_accuracy", "test_random_fitb_accuracy", "test_context_mean_fitb_accuracy")
    )
    assert f"| fitb_accuracy | {row} | 0.25 | test | fitb |" in text


def test_a_local_folder_without_a_dataset_name_is_named_by_its_base_name(tmp_path, monkeypatch):
    from umbert_hf.evaluation.modelcard import dataset_reference

    folder = tmp_path / "my_outfits"
    folder.mkdir()
    encoder, pretrained = tmp_path / "encoder", tmp_path / "pretrained"
    encoder.mkdir()
    pretrained.mkdir()
    card = make_model_card(
        "fashion-resnet",
        model_name="encoder",
        dataset_name=str(folder),
        metrics={"val_accuracy": 0.9},
        hyperparameters={"dataset": str(folder), "preprocessing": {"source": str(folder / "images")}},
        base_model=str(pretrained),
        extra={"repo_id": str(encoder)},
    )
    text = str(card)
    assert str(tmp_path) not in text
    assert "of `my_outfits`, with a held-out" in text and "The dataset was a local folder (`my_outfits`)" in text
    assert 'AutoModel.from_pretrained("encoder"' in text and "| dataset | my_outfits |" in text
    assert "datasets" not in front_matter(card) and "base_model" not in front_matter(card)
    # A dataset card that names the dataset gives its name; one whose YAML is broken is ignored.
    (folder / "README.md").write_text("---\npretty_name: My outfits\nlicense: mit\n---\n# My outfits\n")
    assert dataset_reference(folder).name == "My outfits" and dataset_reference(folder).local_folder == "my_outfits"
    (folder / "README.md").write_text("---\npretty_name: [unclosed\n---\n")
    assert dataset_reference(folder).name == "my_outfits"
    # A relative path is a local folder too, even when it reads like a Hub id.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "someone" / "outfits").mkdir(parents=True)
    assert dataset_reference("someone/outfits").hub_id is None
    assert dataset_reference("someone/outfits").local_folder == "outfits"


def test_a_hub_dataset_id_is_kept_as_is():
    card = make_model_card(
        "umbert", model_name="m", dataset_name="someone/polyvore-outfits", metrics={"mrr": 0.3}, hyperparameters={}
    )
    text = str(card)
    assert front_matter(card)["datasets"] == ["someone/polyvore-outfits"]
    assert "[someone/polyvore-outfits](https://huggingface.co/datasets/someone/polyvore-outfits)" in text
    assert "local folder" not in text
    result = front_matter(card)["model-index"][0]["results"][0]
    assert result["dataset"]["name"] == result["dataset"]["type"] == "someone/polyvore-outfits"


def test_the_results_table_shows_the_model_beside_random_context_mean_and_chance():
    metrics = {  # as `train_outfit_model` writes metrics.json
        "test_mrr": 0.3125,
        "test_mrr_chance": 0.0493,
        "test_random_mrr": 0.0512,
        "test_context_mean_mrr": 0.1875,
        "test_fitb_accuracy": 0.6,
        "test_fitb_accuracy_chance": 0.25,
        "test_random_fitb_accuracy": 0.24,
        "test_context_mean_fitb_accuracy": 0.41,
        "val_mrr": 0.33,
        "val_mrr_chance": 0.05,
        "best_epoch": 4,
        "global_step": 40,
        "skipped_outfits_test": 0,
        "stopped_early": False,
        "objective": "fill_in_the_blank",
    }
    card = make_model_card("wumbert", model_name="m", dataset_name="a/b", metrics=metrics, hyperparameters={})
    text = str(card)
    assert "| Metric | Value | Random | Context mean | Chance | Split | Config |" in text
    assert "| test_mrr | 0.3125 | 0.0512 | 0.1875 | 0.0493 | test | outfits |" in text
    assert "| test_fitb_accuracy | 0.6000 | 0.2400 | 0.4100 | 0.25 | test | fitb |" in text
    assert "| val_mrr | 0.3300 | n/a | n/a | 0.05 | validation | outfits |" in text
    assert "*Context mean* predicts the mean embedding" in text
    reported = {
        metric["name"] for result in front_matter(card)["model-index"][0]["results"] for metric in result["metrics"]
    }
    assert reported == {"test_mrr", "test_fitb_accuracy", "val_mrr"}  # no baseline, chance level or count
    # The same table from the model's metrics and `extra["baselines"]`, as `finish_run` passes them.
    card = make_model_card(
        "umbert",
        model_name="m",
        dataset_name="a/b",
        metrics={"mrr": 0.3125},
        chance_levels={"mrr": 0.0493},
        hyperparameters={},
        extra={
            "split": "test",
            "baselines": {"random": {"mrr": 0.0512, "mrr_chance": 0.0493}, "context_mean": {"mrr": 0.1875}},
        },
    )
    assert "| mrr | 0.3125 | 0.0512 | 0.1875 | 0.0493 | test | outfits |" in str(card)
