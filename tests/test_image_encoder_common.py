"""Checks common to both image encoders: loading through the Auto classes and with `trust_remote_code`, a few
training steps, and a short run of `train_image_encoder.py`."""

import json
import os

import pytest
import torch
from support.images import FashionEfficientNetModelTester, FashionResNetModelTester, SsimAutoEncoderModelTester
from transformers import AutoConfig, AutoModel

from umbert_hf.configuration_fashion_resnet import FashionResNetConfig
from umbert_hf.configuration_ssim_autoencoder import SsimAutoEncoderConfig
from umbert_hf.data.image_processing import load_image_encoder
from umbert_hf.modeling_fashion_resnet import FashionResNetModel
from umbert_hf.modeling_ssim_autoencoder import SsimAutoEncoderModel


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


@pytest.mark.slow
def test_trust_remote_code_round_trip_without_umbert_hf_installed(tmp_path, monkeypatch):
    """Saved folders carry their code: a process that cannot import `umbert_hf` loads all three encoders."""
    from support.hub_fixtures import run_json_in_fresh_process

    testers = {
        "resnet": FashionResNetModelTester(),
        "efficientnet": FashionEfficientNetModelTester(),
        "autoencoder": SsimAutoEncoderModelTester(),
    }
    for name, tester in testers.items():
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
        for name in ("resnet", "efficientnet", "autoencoder"):
            model = AutoModel.from_pretrained({str(tmp_path)!r} + "/" + name, trust_remote_code=True).eval()
            saved = torch.load({str(tmp_path)!r} + f"/{{name}}.pt")
            difference = (model(saved["pixel_values"]).embeddings - saved["embeddings"]).abs().max().item()
            report[name] = [type(model).__module__, difference]
        print(json.dumps(report))
        """,
        {"HF_HUB_OFFLINE": "1"},
        block_imports=["umbert_hf"],
    )
    assert set(result) == set(testers)
    for name, (module, difference) in result.items():
        assert module.startswith("transformers_modules"), (name, module)
        assert difference < 1e-5, (name, difference)


# ------------------------------------------------------------------------------------------------------- Training


@pytest.mark.slow
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
@pytest.mark.slow
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
