"""Tests of the item image encoders: FashionResNet, the SSIM autoencoder and its GDN layers, preprocessing, the
save/load round trips (plain and `trust_remote_code`) and a short training run through the script."""

import io
import json
import logging
import os

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoConfig, AutoModel

from umbert_hf.configuration_fashion_resnet import FashionResNetConfig
from umbert_hf.configuration_ssim_autoencoder import SsimAutoEncoderConfig
from umbert_hf.data.image_processing import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageDecodeError,
    ImagePreprocessing,
    build_image_transforms,
    decode_image,
    encode_images,
    load_image_encoder,
)
from umbert_hf.modeling_fashion_resnet import FashionResNetModel, FashionResNetOutput, imagenet_weights_path
from umbert_hf.modeling_ssim_autoencoder import GDN, SsimAutoEncoderModel, SsimAutoEncoderOutput


class FashionResNetModelTester:
    """Tiny inputs for the (fixed-size) ResNet-18: batch 3, 32-pixel images, 3 categories, 16-d embeddings."""

    batch_size = 3
    image_size = 32
    embedding_dim = 16
    categories = ["shoes", "tops", "bags"]

    def __init__(self, seed: int = 0):
        self.generator = torch.Generator().manual_seed(seed)

    def config(self, **overrides) -> FashionResNetConfig:
        kwargs = {"image_size": self.image_size, "embedding_dim": self.embedding_dim, "categories": self.categories}
        return FashionResNetConfig(**{**kwargs, **overrides})

    def model(self, **overrides) -> FashionResNetModel:
        torch.manual_seed(0)
        return FashionResNetModel(self.config(**overrides)).eval()

    def pixel_values(self) -> torch.Tensor:
        return torch.randn(self.batch_size, 3, self.image_size, self.image_size, generator=self.generator)

    def labels(self) -> torch.Tensor:
        return torch.randint(len(self.categories), (self.batch_size,), generator=self.generator)


class SsimAutoEncoderModelTester:
    """Tiny autoencoder: batch 3, 16-pixel images, 8 channels, 16-unit bottleneck, 8-d code, SSIM window 3."""

    batch_size = 3

    def __init__(self, seed: int = 0):
        self.generator = torch.Generator().manual_seed(seed)

    def config(self, **overrides) -> SsimAutoEncoderConfig:
        kwargs = {
            "image_size": 16,
            "hidden_channels": 8,
            "latent_channels": 8,
            "intermediate_size": 16,
            "embedding_dim": 8,
            "ssim_window_size": 3,
        }
        return SsimAutoEncoderConfig(**{**kwargs, **overrides})

    def model(self, **overrides) -> SsimAutoEncoderModel:
        torch.manual_seed(0)
        return SsimAutoEncoderModel(self.config(**overrides)).eval()

    def pixel_values(self, image_size: int = 16) -> torch.Tensor:
        return torch.rand(self.batch_size, 3, image_size, image_size, generator=self.generator)


def png_bytes(color: tuple[int, int, int], size: int = 40) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, format="PNG")
    return buffer.getvalue()


# ----------------------------------------------------------------------------------------------------- FashionResNet


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


# ---------------------------------------------------------------------------------------------------- Autoencoder


def test_autoencoder_outputs_have_the_documented_shapes_and_ranges():
    tester = SsimAutoEncoderModelTester()
    pixel_values = tester.pixel_values()
    outputs = tester.model()(pixel_values)
    assert isinstance(outputs, SsimAutoEncoderOutput)
    assert outputs.reconstruction.shape == pixel_values.shape
    assert outputs.embeddings.shape == (tester.batch_size, 8)
    assert 0.0 <= outputs.reconstruction.min() and outputs.reconstruction.max() <= 1.0
    assert tester.model()(pixel_values, return_loss=False).loss is None


def test_autoencoder_loss_is_scaled_one_minus_ssim_and_has_gradients():
    from pytorch_msssim import ssim

    tester = SsimAutoEncoderModelTester()
    model = tester.model(loss_scale=100.0).train()
    pixel_values = tester.pixel_values()
    outputs = model(pixel_values)
    expected = 100.0 * (1.0 - ssim(outputs.reconstruction, pixel_values, data_range=1.0, win_size=3))
    torch.testing.assert_close(outputs.loss, expected)
    outputs.loss.backward()
    assert all(parameter.grad is not None for parameter in model.parameters())


def test_autoencoder_code_is_the_encoder_output():
    tester = SsimAutoEncoderModelTester()
    model, pixel_values = tester.model(), tester.pixel_values()
    outputs = model(pixel_values)
    torch.testing.assert_close(model.get_image_embeddings(pixel_values), outputs.embeddings)
    torch.testing.assert_close(model.decoder(outputs.embeddings), outputs.reconstruction)


def test_autoencoder_default_config_is_the_original_architecture():
    model = SsimAutoEncoderModel(SsimAutoEncoderConfig())
    convolutions = [layer for layer in model.encoder.convolutions if isinstance(layer, torch.nn.Conv2d)]
    assert len(convolutions) == 4
    assert all(conv.kernel_size == (5, 5) and conv.stride == (2, 2) for conv in convolutions)
    assert sum(isinstance(layer, GDN) and not layer.inverse for layer in model.encoder.convolutions) == 3
    assert sum(isinstance(layer, GDN) and layer.inverse for layer in model.decoder.deconvolutions) == 3
    assert model.encoder.bottleneck[0].in_features == 128 * 8 * 8  # 128x128 input, four halvings
    assert model.encoder.bottleneck[-1].out_features == 128


def test_autoencoder_save_load_round_trip_gives_identical_outputs(tmp_path):
    tester = SsimAutoEncoderModelTester()
    model, pixel_values = tester.model(), tester.pixel_values()
    with torch.no_grad():
        model.encoder.convolutions[1].gamma.mul_(3.0)  # trained-looking GDN parameters must survive too
    model.save_pretrained(tmp_path)
    reloaded = SsimAutoEncoderModel.from_pretrained(tmp_path).eval()
    expected, actual = model(pixel_values), reloaded(pixel_values)
    torch.testing.assert_close(actual.reconstruction, expected.reconstruction)
    torch.testing.assert_close(actual.loss, expected.loss)


def test_autoencoder_config_rejects_bad_values():
    with pytest.raises(ValueError, match="multiple of"):
        SsimAutoEncoderConfig(image_size=100)
    with pytest.raises(ValueError, match="kernel_size"):
        SsimAutoEncoderConfig(kernel_size=4)
    with pytest.raises(ValueError, match="gdn_beta_min"):
        SsimAutoEncoderConfig(gdn_beta_min=0.0)


# ------------------------------------------------------------------------------------------------------------ GDN


def direct_gdn(x: torch.Tensor, beta: torch.Tensor, gamma: torch.Tensor, inverse: bool) -> torch.Tensor:
    """y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2) (times for the inverse), pixel by pixel with plain loops."""
    out = torch.empty_like(x)
    channels = x.shape[1]
    for i in range(channels):
        norm = beta[i] + sum(gamma[i, j] * x[:, j] ** 2 for j in range(channels))
        out[:, i] = x[:, i] * norm.sqrt() if inverse else x[:, i] / norm.sqrt()
    return out


@pytest.mark.parametrize("inverse", [False, True])
def test_gdn_matches_the_direct_formula(inverse):
    generator = torch.Generator().manual_seed(0)
    layer = GDN(4, inverse=inverse)
    with torch.no_grad():
        layer.beta.copy_(torch.rand(4, generator=generator) + 0.5)
        layer.gamma.copy_(torch.rand(4, 4, generator=generator))
    x = torch.randn(2, 4, 5, 3, generator=generator)
    expected = direct_gdn(x, layer.effective_beta(), layer.effective_gamma(), inverse)
    torch.testing.assert_close(layer(x), expected)
    # The reparametrisation: effective = stored^2 - offset^2.
    torch.testing.assert_close(layer.effective_beta(), layer.beta**2 - layer.pedestal)


def test_gdn_starts_as_beta_one_and_diagonal_gamma():
    layer = GDN(3, gamma_init=0.1)
    torch.testing.assert_close(layer.effective_beta(), torch.ones(3))
    torch.testing.assert_close(layer.effective_gamma(), 0.1 * torch.eye(3), atol=1e-9, rtol=0)


def test_gdn_parameter_bounds_hold_whatever_the_stored_values():
    layer = GDN(3, beta_min=1e-3)
    with torch.no_grad():
        layer.beta.fill_(-2.0)
        layer.gamma.fill_(-2.0)
    beta, gamma = layer.effective_beta(), layer.effective_gamma()
    assert (beta >= 1e-3 - 1e-9).all() and (gamma >= 0).all()
    torch.testing.assert_close(beta, torch.full((3,), 1e-3))
    x = torch.randn(2, 3, 4, 4)
    assert torch.isfinite(layer(x)).all()  # no division by zero however far below the bounds training went


def test_gdn_lower_bound_lets_gradients_push_parameters_back_up():
    layer = GDN(2, beta_min=1e-3)
    with torch.no_grad():
        layer.beta.fill_(-1.0)  # far below the bound
    (-layer.effective_beta().sum()).backward()  # minimising this wants a larger beta: gradient < 0 passes
    assert (layer.beta.grad < 0).all()
    layer.beta.grad = None
    layer.effective_beta().sum().backward()  # wants a smaller beta, which the bound forbids: blocked
    assert (layer.beta.grad == 0).all()


def test_gdn_parameters_train_in_the_autoencoder():
    tester = SsimAutoEncoderModelTester()
    model = tester.model().train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    pixel_values = tester.pixel_values()
    for _ in range(2):  # the output layer starts at zero: the first step only moves it
        optimizer.zero_grad()
        model(pixel_values).loss.backward()
        optimizer.step()
    gdn = model.encoder.convolutions[1]
    assert isinstance(gdn, GDN) and gdn.gamma.grad is not None and gdn.beta.grad.abs().sum() > 0


def test_autoencoder_starts_from_a_flat_reconstruction_with_healthy_inner_signals():
    tester = SsimAutoEncoderModelTester()
    model = tester.model()
    outputs = model(tester.pixel_values())
    torch.testing.assert_close(outputs.reconstruction, torch.full_like(outputs.reconstruction, 0.5))
    assert outputs.embeddings.std() > 0.1  # not the vanishing signals that stall training


# -------------------------------------------------------------------------------------------- Auto classes, Hub code


@pytest.mark.parametrize("tester_class", [FashionResNetModelTester, SsimAutoEncoderModelTester])
def test_auto_classes_load_both_encoders(tmp_path, tester_class):
    for config_class, model_class in (
        (FashionResNetConfig, FashionResNetModel),
        (SsimAutoEncoderConfig, SsimAutoEncoderModel),
    ):
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        AutoModel.register(config_class, model_class, exist_ok=True)
    tester = tester_class()
    model = tester.model()
    model.save_pretrained(tmp_path)
    reloaded = AutoModel.from_pretrained(tmp_path)
    assert type(reloaded) is type(model)
    assert type(load_image_encoder(str(tmp_path))) is type(model)


def test_trust_remote_code_round_trip_without_umbert_hf_installed(tmp_path, monkeypatch):
    """Saved folders carry their code: a process that cannot import `umbert_hf` loads both encoders."""
    from support.hub_fixtures import run_json_in_fresh_process

    for name, tester in (("resnet", FashionResNetModelTester()), ("autoencoder", SsimAutoEncoderModelTester())):
        model = tester.model()
        # register_for_auto_class sets class attributes; restore them so other tests save plain folders.
        monkeypatch.setattr(type(model), "_auto_class", None)
        monkeypatch.setattr(type(model.config), "_auto_class", None)
        model.register_for_auto_class("AutoModel")
        model.config.register_for_auto_class()
        model.save_pretrained(tmp_path / name)
        assert set(json.loads((tmp_path / name / "config.json").read_text())["auto_map"]) == {"AutoConfig", "AutoModel"}
        pixel_values = tester.pixel_values()
        torch.save(
            {"pixel_values": pixel_values, "embeddings": model(pixel_values).embeddings}, tmp_path / f"{name}.pt"
        )

    result = run_json_in_fresh_process(
        f"""
        import json, torch
        from transformers import AutoModel
        report = {{}}
        for name in ("resnet", "autoencoder"):
            model = AutoModel.from_pretrained({str(tmp_path)!r} + "/" + name, trust_remote_code=True).eval()
            saved = torch.load({str(tmp_path)!r} + f"/{{name}}.pt")
            difference = (model(saved["pixel_values"]).embeddings - saved["embeddings"]).abs().max().item()
            report[name] = [type(model).__module__, difference]
        print(json.dumps(report))
        """,
        {"HF_HUB_OFFLINE": "1"},
        block_imports=["umbert_hf"],
    )
    for name, (module, difference) in result.items():
        assert module.startswith("transformers_modules"), (name, module)
        assert difference < 1e-5, (name, difference)


# --------------------------------------------------------------------------------------------------- Preprocessing


def test_resnet_preprocessing_crops_and_normalises_with_imagenet_statistics():
    preprocessing = ImagePreprocessing.for_encoder("resnet", image_size=32)
    assert preprocessing.resize_size == round(32 * 256 / 224)
    pixel_values = preprocessing([png_bytes((255, 255, 255), size=50)])
    assert pixel_values.shape == (1, 3, 32, 32)
    expected = (1.0 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(pixel_values[0, :, 16, 16], expected)


def test_autoencoder_preprocessing_resizes_without_normalisation():
    preprocessing = ImagePreprocessing.for_encoder("autoencoder", image_size=16)
    pixel_values = preprocessing([png_bytes((255, 0, 51), size=50)])
    assert pixel_values.shape == (1, 3, 16, 16)
    torch.testing.assert_close(pixel_values[0, :, 8, 8], torch.tensor([1.0, 0.0, 0.2]))


def test_preprocessing_defaults_follow_the_original_models_and_the_config():
    assert ImagePreprocessing.for_encoder("fashion-resnet").image_size == 224
    assert ImagePreprocessing.for_encoder("ssim-autoencoder").image_size == 128
    assert ImagePreprocessing.from_config(FashionResNetConfig(image_size=64)).image_size == 64
    with pytest.raises(ValueError, match="Unknown image encoder"):
        ImagePreprocessing.for_encoder("vit")


def test_training_transforms_augment_but_keep_the_shape():
    torch.manual_seed(0)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8))
    for encoder_type in ("resnet", "autoencoder"):
        preprocessing = ImagePreprocessing.for_encoder(encoder_type, image_size=32)
        transform = preprocessing.load_transform(train=True)
        outputs = [transform(image) for _ in range(6)]
        assert all(output.shape == (3, 32, 32) and output.dtype == torch.uint8 for output in outputs)
        assert any(not torch.equal(outputs[0], output) for output in outputs[1:])
        evaluation = preprocessing.load_transform(train=False)
        assert torch.equal(evaluation(image), evaluation(image))


def test_preprocessing_description_round_trips_through_json():
    preprocessing = ImagePreprocessing.for_encoder("resnet", image_size=64)
    description = json.loads(json.dumps(preprocessing.to_dict()))
    assert ImagePreprocessing.from_dict(description) == preprocessing


def test_build_image_transforms_composes_loading_and_normalisation():
    transform = build_image_transforms(FashionResNetConfig(image_size=32))
    image = png_bytes((10, 200, 30))
    torch.testing.assert_close(transform(image), ImagePreprocessing.for_encoder("resnet", 32)([image])[0])


def test_decode_image_accepts_the_usual_inputs_and_rejects_bad_ones(tmp_path):
    data = png_bytes((1, 2, 3))
    path = tmp_path / "item.png"
    path.write_bytes(data)
    for source in (data, str(path), {"bytes": data, "path": None}, {"bytes": None, "path": str(path)}):
        assert decode_image(source).getpixel((0, 0)) == (1, 2, 3)
    assert decode_image(Image.new("L", (4, 4))).mode == "RGB"
    for bad in (None, b"", b"not an image", {"bytes": None, "path": None}, str(tmp_path / "missing.png")):
        with pytest.raises(ImageDecodeError):
            decode_image(bad)


def test_encode_images_matches_the_model_on_preprocessed_pixels(tmp_path):
    tester = FashionResNetModelTester()
    model = tester.model()
    images = [png_bytes((255, 0, 0)), png_bytes((0, 0, 255))]
    expected = model.get_image_embeddings(ImagePreprocessing.from_config(model.config)(images))
    torch.testing.assert_close(encode_images(model, images, batch_size=1), expected.detach())
    model.save_pretrained(tmp_path)
    torch.testing.assert_close(encode_images(str(tmp_path), images[:1]), expected[:1].detach())


# ------------------------------------------------------------------------------------------------------- Training


def test_a_few_steps_lower_the_loss_of_both_models():
    for tester in (FashionResNetModelTester(), SsimAutoEncoderModelTester()):
        model = tester.model().train()
        pixel_values = tester.pixel_values().clamp(0, 1)
        kwargs = {"labels": tester.labels()} if isinstance(tester, FashionResNetModelTester) else {}
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        losses = []
        for _ in range(5):
            loss = model(pixel_values, **kwargs).loss
            losses.append(loss.item())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        assert losses[-1] < losses[0], (type(model).__name__, losses)


@pytest.fixture(scope="module")
def synthetic_dataset(tmp_path_factory):
    from dataset_builder import build_dataset, synthesize_polyvore

    root = tmp_path_factory.mktemp("image_encoder_data")
    synthesize_polyvore(root / "raw", num_items=120, num_outfits=60, image_size=32, seed=0)
    build_dataset(root / "raw", root / "dataset")
    return root / "dataset"


@pytest.mark.parametrize("encoder", ["autoencoder", "resnet"])
def test_train_image_encoder_script_end_to_end(synthetic_dataset, tmp_path, encoder):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "train_image_encoder",
        os.path.join(os.path.dirname(__file__), "..", "training_scripts", "train_image_encoder.py"),
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    output_dir = tmp_path / encoder
    arguments = ["--encoder", encoder, "--dataset", str(synthetic_dataset), "--output_dir", str(output_dir)]
    arguments += ["--image_size", "32", "--num_train_epochs", "2", "--per_device_train_batch_size", "8"]
    arguments += ["--num_workers", "0", "--seed", "0", "--validation_fraction", "0.2", "--max_items", "48"]
    if encoder == "autoencoder":
        arguments += ["--hidden_channels", "8", "--latent_channels", "8", "--intermediate_size", "32"]
    else:
        arguments += ["--no-pretrained_backbone", "--embedding_dim", "16"]
    metrics = script.main(arguments)

    name = "val_accuracy" if encoder == "resnet" else "val_ssim"
    saved = json.loads((output_dir / "metrics.json").read_text())
    assert saved[name] == metrics[name] and f"{name}_chance" in saved
    history = json.loads((output_dir / "history.json").read_text())
    assert len(history) == 2
    if encoder == "resnet":  # the autoencoder's SSIM sits on a plateau for its first few dozen steps
        assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert (output_dir / "training_curves.png").stat().st_size > 0
    card = (output_dir / "README.md").read_text()
    assert "model-index" in card and name in card and "trust_remote_code=True" in card
    reloaded = load_image_encoder(str(output_dir))
    assert reloaded.config.image_size == 32
