"""The image encoder travels with the model: saved in its `image_encoder/` sub-folder, with no path of this machine in
config.json, so photos complete outfits after the folder moves and from the Hub in another process and folder."""

import argparse
import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image
from support.umbert_testing import strings_in
from transformers import AutoModel

from umbert_hf.apps.cli import main as cli_main
from umbert_hf.configuration_ssim_autoencoder import SsimAutoEncoderConfig
from umbert_hf.data.embeddings import EmbeddingsTable
from umbert_hf.data.extraction import compute_catalogue_embeddings
from umbert_hf.data.image_processing import encode_images
from umbert_hf.modeling_ssim_autoencoder import SsimAutoEncoderModel
from umbert_hf.training.outfit import add_model_args, new_model, save_image_encoder_with_model
from umbert_hf.utils.hub import push_folder_to_hub
from umbert_hf.utils.paths import shareable_metadata

ROOT = Path(__file__).resolve().parents[1]
EMBEDDING_DIM = 16

LOAD_AND_COMPLETE = """
import json
from transformers import AutoModel
model = AutoModel.from_pretrained({repo!r}, trust_remote_code=True).eval()
assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
print(json.dumps(model.complete(json.loads({outfits!r}), top_k=5)))
"""


def tiny_encoder(folder: Path) -> SsimAutoEncoderModel:
    torch.manual_seed(0)
    config = SsimAutoEncoderConfig(
        image_size=32,
        hidden_channels=8,
        latent_channels=8,
        intermediate_size=32,
        embedding_dim=EMBEDDING_DIM,
        num_downsampling_layers=2,
    )
    encoder = SsimAutoEncoderModel(config).eval()
    encoder.save_pretrained(folder)
    return encoder


def model_args(*extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_model_args(parser)
    return parser.parse_args(["--num_hidden_layers", "1", "--num_attention_heads", "2", *extra])


def assert_no_local_path(config_file: Path, root: Path) -> None:
    for text in strings_in(json.loads(config_file.read_text())):
        assert not text.startswith("/") and str(root) not in text, text


def ids(suggestions: list[dict]) -> list[str]:
    return [entry["item_id"] for entry in suggestions]


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "training_scripts" / f"{name}.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def cli_value(value) -> str:
    """How the command line gives an outfit value: `?` for the blank, a photo by its file name."""
    return "?" if value is None else value["image"] if isinstance(value, dict) else value


@pytest.fixture(scope="module")
def moved(tmp_path_factory):
    """Pretrain then fine-tune (the scripts) on the embeddings of a tiny encoder, complete with a photo, then move the
    model folder and delete the encoder's and the pretrained model's. Returns what the tests compare with."""
    from dataset_builder import build_dataset, synthesize_polyvore

    root = tmp_path_factory.mktemp("encoder_with_model")
    synthesize_polyvore(root / "raw", num_items=120, num_outfits=120, image_size=32, seed=0)
    build_dataset(root / "raw", root / "dataset")
    encoder = tiny_encoder(root / "encoder")
    table, _ = compute_catalogue_embeddings(
        root / "dataset", image_encoder=root / "encoder", num_workers=0, progress=False, cache_dir=str(root / "cache")
    )
    table.save(root / "embeddings.parquet")
    common = ["--dataset", root / "dataset", "--num_train_epochs", "1", "--per_device_train_batch_size", "16"]
    pretrain = ["--embeddings", root / "embeddings.parquet", "--output_dir", root / "pretrained"]
    pretrain += ["--num_hidden_layers", "1", "--num_attention_heads", "2"]
    load_script("pretrain").main([str(argument) for argument in common + pretrain])
    assert (root / "pretrained" / "image_encoder" / "config.json").is_file()
    finetune = ["--model_name_or_path", root / "pretrained", "--output_dir", root / "model"]
    load_script("finetune").main([str(argument) for argument in common + finetune])

    photo = root / "photo.png"
    Image.new("RGB", (40, 40), (200, 30, 30)).save(photo)
    photo_embedding = encode_images(encoder, [Image.open(photo).convert("RGB")])[0]
    model = AutoModel.from_pretrained(root / "model").eval()
    slots, items = model.config.categories, model.catalogue_item_id_list
    first_item = {
        slot: items[int(torch.nonzero(model.catalogue_categories == index)[0])] for index, slot in enumerate(slots)
    }
    # A photo is named explicitly ({"image": path}; a bare string is an item id), in a form JSON carries.
    outfit = {slots[0]: None, slots[1]: {"image": str(photo)}, **{slot: first_item[slot] for slot in slots[2:]}}
    before = model.complete([outfit], top_k=5)[0]
    by_embedding = model.complete([{**outfit, slots[1]: photo_embedding}], top_k=5)[0]

    folder = root / "elsewhere" / "moved_model"
    folder.parent.mkdir()
    shutil.move(root / "model", folder)
    shutil.rmtree(root / "encoder")
    shutil.rmtree(root / "pretrained")
    return {"root": root, "folder": folder, "outfit": outfit, "before": before, "by_embedding": by_embedding}


@pytest.mark.slow
def test_the_encoder_is_saved_with_the_model_and_config_json_has_no_local_path(moved):
    folder = moved["folder"]
    config = json.loads((folder / "config.json").read_text())
    assert config["image_encoder"] == "image_encoder"
    assert config["embedding_metadata"]["image_encoder"] == "encoder"
    assert config["embedding_metadata"]["dataset"] == "dataset"
    assert (folder / "image_encoder" / "config.json").is_file()
    assert (folder / "image_encoder" / "model.safetensors").is_file()
    assert_no_local_path(folder / "config.json", moved["root"])
    assert_no_local_path(folder / "image_encoder" / "config.json", moved["root"])


@pytest.mark.slow
def test_a_moved_model_completes_photos_as_before(moved, capsys):
    assert ids(moved["before"]) == ids(moved["by_embedding"])  # the photo went through the recorded encoder
    model = AutoModel.from_pretrained(moved["folder"]).eval()
    after = model.complete([moved["outfit"]], top_k=5)[0]
    assert ids(after) == ids(moved["before"])
    assert [entry["score"] for entry in after] == pytest.approx([entry["score"] for entry in moved["before"]])
    outfit = [f"{slot}={cli_value(value)}" for slot, value in moved["outfit"].items()]
    assert cli_main(["complete", "--model", str(moved["folder"]), "--outfit", *outfit, "--top_k", "5"]) == 0
    printed = [line.split()[1] for line in capsys.readouterr().out.strip().splitlines()[1:]]
    assert printed == ids(moved["before"])


@pytest.mark.slow
def test_a_model_copied_without_its_encoder_gives_one_clear_line(moved, tmp_path, capsys):
    shutil.copytree(moved["folder"], tmp_path / "copy", ignore=shutil.ignore_patterns("image_encoder"))
    model = AutoModel.from_pretrained(tmp_path / "copy").eval()
    with pytest.raises(ValueError, match="image_encoder") as error:
        model.complete([moved["outfit"]], top_k=5)
    assert len(str(error.value).splitlines()) == 1 and str(tmp_path / "copy") in str(error.value)
    outfit = [f"{slot}={cli_value(value)}" for slot, value in moved["outfit"].items()]
    assert cli_main(["complete", "--model", str(tmp_path / "copy"), "--outfit", *outfit]) == 2
    err = capsys.readouterr().err
    assert "image_encoder" in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.slow
def test_a_model_pushed_to_the_hub_completes_photos_in_another_process_and_folder(moved, hub_env):
    repo_id = hub_env.unique_repo_id("umbert-photos")
    push_folder_to_hub(moved["folder"], repo_id)
    files = set(hub_env.api.list_repo_files(repo_id))
    assert {"config.json", "model.safetensors", "image_encoder/config.json", "image_encoder/model.safetensors"} <= files
    # A fresh interpreter, in a new empty working folder and cache (`run_json`'s defaults).
    remote = hub_env.run_json(LOAD_AND_COMPLETE.format(repo=repo_id, outfits=json.dumps([moved["outfit"]])))
    assert ids(remote[0]) == ids(moved["before"])
    assert [entry["score"] for entry in remote[0]] == pytest.approx([entry["score"] for entry in moved["before"]])

    without_encoder = hub_env.unique_repo_id("umbert-no-encoder")
    hub_env.api.create_repo(without_encoder)
    hub_env.api.upload_folder(
        repo_id=without_encoder, folder_path=str(moved["folder"]), ignore_patterns=["image_encoder/*"]
    )
    model = AutoModel.from_pretrained(without_encoder).eval()
    with pytest.raises(ValueError, match=f"image_encoder/ sub-folder of {without_encoder}") as error:
        model.complete([moved["outfit"]], top_k=5)
    assert len(str(error.value).splitlines()) == 1


def test_a_new_model_embeds_photos_before_and_after_saving(tmp_path):
    encoder = tiny_encoder(tmp_path / "encoder")
    photo = Image.new("RGB", (40, 40), (20, 130, 30))
    expected = encode_images(encoder, [photo])
    slots = ["shoes", "tops"]
    metadata = {"parts": ["image"], "image_encoder": str(tmp_path / "encoder"), "dataset": str(tmp_path / "data")}
    table = EmbeddingsTable(["1", "2", "3", "4"], slots * 2, torch.randn(4, EMBEDDING_DIM), metadata)
    model = new_model(model_args(), table, slots)
    assert model.config.image_encoder == "image_encoder"
    assert model.config.embedding_metadata == {**metadata, "image_encoder": "encoder", "dataset": "data"}
    torch.testing.assert_close(model.embed_images([photo]), expected)

    save_image_encoder_with_model(model, tmp_path / "model")
    model.save_pretrained(tmp_path / "model")
    assert_no_local_path(tmp_path / "model" / "config.json", tmp_path)
    shutil.move(tmp_path / "model", tmp_path / "moved")
    shutil.rmtree(tmp_path / "encoder")
    reloaded = AutoModel.from_pretrained(tmp_path / "moved")
    torch.testing.assert_close(reloaded.embed_images([photo]), expected)


def test_hub_encoders_stay_ids_and_local_paths_become_base_names(tmp_path):
    slots = ["shoes", "tops"]
    metadata = {
        "parts": ["image", "text"],
        "image_encoder": "someone/resnet",
        "text_encoder": str(tmp_path / "minilm"),
        "dataset": "someone/polyvore",
        "image_preprocessing": {"image_size": 32},
    }
    table = EmbeddingsTable(["1", "2"], slots, torch.randn(2, EMBEDDING_DIM), metadata)
    model = new_model(model_args("--model_type", "wumbert"), table, slots)
    assert (model.config.image_encoder, model.config.text_encoder) == ("someone/resnet", "minilm")
    assert model.config.embedding_metadata == {**metadata, "text_encoder": "minilm"}
    assert model.save_image_encoder(tmp_path / "model") is None  # a Hub id is loadable from anywhere as is
    assert not (tmp_path / "model").exists()

    projected = {"parts": ["image"], "image_encoder": str(tmp_path), "projection": {"method": "pca"}}
    model = new_model(model_args(), EmbeddingsTable(["1", "2"], slots, torch.randn(2, 4), projected), slots)
    assert model.config.image_encoder is None and model.config.embedding_metadata["image_encoder"] == tmp_path.name
    assert shareable_metadata({"nested": {"path": "/a/b/c"}, "other": ["/x/y", "z"]}) == {
        "nested": {"path": "c"},
        "other": ["y", "z"],
    }
