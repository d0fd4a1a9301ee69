"""Tests of the model cards: model-index YAML with results and chance levels, usage, citations, all four kinds."""

import os

import pytest
import yaml
from huggingface_hub import ModelCard, ModelCardData

from umbert_hf.apps.modelcard import CARD_KINDS, make_model_card, template_dir

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


@pytest.mark.skipif(os.environ.get("HF_HUB_OFFLINE") == "1", reason="card validation calls the Hub")
def test_cards_pass_hub_validation():
    for card in (resnet_card(), umbert_card("umbert"), umbert_card("wumbert")):
        card.validate()
