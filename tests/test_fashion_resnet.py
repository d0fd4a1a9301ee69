"""Tests of FashionResNet (the ResNet-18 item encoder): outputs, loss, config checks, save/load and the cached
ImageNet backbone."""

import logging
import os

import pytest
import torch
from support.images import FashionResNetModelTester

from umbert_hf.configuration_fashion_resnet import FashionResNetConfig
from umbert_hf.modeling_fashion_resnet import FashionResNetModel, FashionResNetOutput, imagenet_weights_path


def test_resnet_outputs_have_the_documented_shapes():
    tester = FashionResNetModelTester()
    outputs = tester.model()(tester.pixel_values())
    assert isinstance(outputs, FashionResNetOutput)
    assert outputs.loss is None
    assert outputs.embeddings.shape == (tester.batch_size, tester.embedding_dim)
    assert outputs.logits.shape == (tester.batch_size, len(tester.categories))


def test_resnet_loss_is_the_cross_entropy_and_has_gradients():
    tester = FashionResNetModelTester()
    model = tester.model().train()
    pixel_values, labels = tester.pixel_values(), tester.labels()
    outputs = model(pixel_values, labels=labels)
    assert torch.isfinite(outputs.loss)
    torch.testing.assert_close(outputs.loss, torch.nn.functional.cross_entropy(outputs.logits, labels))
    outputs.loss.backward()
    assert model.resnet.conv1.weight.grad is not None and model.classifier.weight.grad.abs().sum() > 0


def test_resnet_embeddings_are_the_classifier_input_and_tuple_output_matches():
    tester = FashionResNetModelTester()
    model, pixel_values = tester.model(), tester.pixel_values()
    outputs = model(pixel_values)
    torch.testing.assert_close(model.get_image_embeddings(pixel_values), outputs.embeddings)
    torch.testing.assert_close(model.classifier(outputs.embeddings), outputs.logits)
    logits, embeddings = model(pixel_values, return_dict=False)
    torch.testing.assert_close(logits, outputs.logits)


def test_resnet_save_load_round_trip_gives_identical_outputs(tmp_path):
    tester = FashionResNetModelTester()
    model, pixel_values = tester.model(), tester.pixel_values()
    model.save_pretrained(tmp_path)
    reloaded = FashionResNetModel.from_pretrained(tmp_path).eval()
    assert reloaded.config.categories == tester.categories
    assert reloaded.config.id2label == dict(enumerate(tester.categories))
    torch.testing.assert_close(reloaded(pixel_values).embeddings, model(pixel_values).embeddings)


def test_resnet_config_rejects_bad_values():
    with pytest.raises(ValueError, match="image_size"):
        FashionResNetConfig(image_size=16)
    with pytest.raises(ValueError, match="unique"):
        FashionResNetConfig(categories=["shoes", "shoes"])
    with pytest.raises(ValueError, match="embedding_dim"):
        FashionResNetConfig(embedding_dim=0)


def test_pretrained_backbone_falls_back_to_random_init_with_a_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert not os.path.exists(imagenet_weights_path())
    logger = logging.getLogger("umbert_hf.modeling_fashion_resnet")
    logger.addHandler(caplog.handler)  # transformers loggers do not propagate to the root logger
    try:
        FashionResNetModelTester().model(pretrained_backbone=True)
    finally:
        logger.removeHandler(caplog.handler)
    assert "randomly initialised" in caplog.text and "nothing is downloaded" in caplog.text


def test_pretrained_backbone_loads_cached_imagenet_weights_but_not_the_final_layer(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    from torchvision.models import resnet18

    imagenet = resnet18()  # stands for the real file: same keys and shapes, 1000-class final layer
    with torch.no_grad():
        imagenet.conv1.weight.fill_(0.5)
        imagenet.bn1.running_mean.fill_(0.25)
    os.makedirs(os.path.dirname(imagenet_weights_path()))
    torch.save(imagenet.state_dict(), imagenet_weights_path())

    model = FashionResNetModelTester().model(pretrained_backbone=True)
    torch.testing.assert_close(model.resnet.conv1.weight, imagenet.conv1.weight)
    torch.testing.assert_close(model.resnet.bn1.running_mean, imagenet.bn1.running_mean)
    assert model.resnet.fc.weight.shape == (FashionResNetModelTester.embedding_dim, 512)

    # A saved model keeps its own weights even when the cached ImageNet file changes.
    model.save_pretrained(tmp_path / "model")
    with torch.no_grad():
        imagenet.conv1.weight.fill_(-1.0)
    torch.save(imagenet.state_dict(), imagenet_weights_path())
    reloaded = FashionResNetModel.from_pretrained(tmp_path / "model")
    torch.testing.assert_close(reloaded.resnet.conv1.weight, model.resnet.conv1.weight)
