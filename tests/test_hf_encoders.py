"""Any `transformers` image or image–text model as the item encoder.

Tiny CLIP, SigLIP and ViT models made here (nothing downloads; see `support.tiny_hf_models`) embed a synthetic
catalogue through `compute_embeddings.py` with their own processors, are recorded in the table's metadata, travel with
a trained model in its `image_encoder/` sub-folder, and embed photos for `complete` after the model folder moved and in
a fresh process. The expected embeddings are computed here with plain `transformers` calls, not with our code.
"""

import argparse
import importlib.util
import json
import shutil
from pathlib import Path

import datasets
import pytest
import torch
from PIL import Image
from support.hub_fixtures import run_json_in_fresh_process
from support.tiny_hf_models import (
    IMAGE_MEAN,
    MAX_TEXT_LENGTH,
    PROJECTION_DIM,
    TINY_MODEL_SAVERS,
    TINY_TEXT_TOWER,
    tiny_tokenizer,
    tiny_vit_config,
    tiny_vit_image_processor,
)
from support.umbert_testing import strings_in
from transformers import AutoImageProcessor, AutoModel, AutoTokenizer, CLIPTextConfig, CLIPTextModel, ViTModel

from umbert_hf.apps.cli import main as cli_main
from umbert_hf.data.embeddings import read_embeddings_table
from umbert_hf.data.extraction import compute_catalogue_embeddings, embed_new_items
from umbert_hf.data.image_processing import TransformersImageEncoder, encode_images, load_image_encoder
from umbert_hf.training.outfit import add_model_args, new_model, save_image_encoder_with_model

ROOT = Path(__file__).resolve().parents[1]
SLOTS = ["shoes", "tops", "accessories", "bottoms"]

LOAD_AND_COMPLETE = """
import json
from transformers import AutoModel
answers = {{}}
for name, (folder, outfit) in json.loads({jobs!r}).items():
    model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()  # as a user would, umbert_hf unimported
    answers[name] = model.complete([outfit], top_k=5)[0]
print(json.dumps(answers))
"""


# --------------------------------------------------------------------------------------------------- Helpers


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "training_scripts" / f"{name}.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def model_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_model_args(parser)
    return parser.parse_args(["--num_hidden_layers", "1", "--num_attention_heads", "2"])


@torch.no_grad()
def reference_image_features(folder: Path, images: list[Image.Image]) -> torch.Tensor:
    """What plain `transformers` gives: the image tower's features, else the pooled output."""
    model = AutoModel.from_pretrained(folder).eval()
    pixel_values = AutoImageProcessor.from_pretrained(folder)(images=images, return_tensors="pt")["pixel_values"]
    if hasattr(model, "get_image_features"):
        return model.get_image_features(pixel_values=pixel_values).pooler_output
    return model(pixel_values=pixel_values).pooler_output


@torch.no_grad()
def reference_text_features(folder: Path, titles: list[str], **tokenizer_options) -> torch.Tensor:
    model = AutoModel.from_pretrained(folder).eval()
    inputs = AutoTokenizer.from_pretrained(folder)(titles, return_tensors="pt", **tokenizer_options)
    return model.get_text_features(**inputs).pooler_output


def normalized(embeddings: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(embeddings, dim=1)


def ids(suggestions: list[dict]) -> list[str]:
    return [entry["item_id"] for entry in suggestions]


def save_text_only_model(folder: Path) -> Path:
    """A CLIP text tower alone (no images, no `get_text_features`): a text model, mean-pooled as a text encoder."""
    torch.manual_seed(0)
    CLIPTextModel(CLIPTextConfig(**TINY_TEXT_TOWER)).save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return folder


def photo_outfit(model, photo: Path) -> dict:
    """The first catalogue item of each slot, a photo in the second slot, the first slot blank."""
    slots, items = model.config.categories, model.catalogue_item_id_list
    first_item = {
        slot: items[int(torch.nonzero(model.catalogue_categories == index)[0])] for index, slot in enumerate(slots)
    }
    return {slots[0]: None, slots[1]: {"image": str(photo)}, **{slot: first_item[slot] for slot in slots[2:]}}


# --------------------------------------------------------------------------------------------------- Fixtures


@pytest.fixture(scope="module")
def photo_dataset(tmp_path_factory) -> Path:
    """A small synthetic build with 32x32 product photos and titles."""
    from dataset_builder import build_dataset, synthesize_polyvore

    root = tmp_path_factory.mktemp("hf_encoders_data")
    synthesize_polyvore(root / "raw", num_items=60, num_outfits=80, image_size=32, seed=0)
    build_dataset(root / "raw", root / "dataset")
    return root / "dataset"


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("hf_encoders_cache"))


@pytest.fixture(scope="module")
def catalogue(photo_dataset, cache_dir) -> datasets.Dataset:
    return datasets.load_dataset(str(photo_dataset), "catalogue", cache_dir=cache_dir)["train"]


@pytest.fixture(scope="module")
def encoders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf_encoder_models")
    return {name: save(root / name) for name, save in TINY_MODEL_SAVERS.items()}


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("hf_encoders_photo") / "my_top.png"
    Image.new("RGB", (48, 40), (200, 30, 30)).save(path)
    return path


@pytest.fixture(scope="module")
def moved_models(tmp_path_factory, photo_dataset, cache_dir, photo) -> dict[str, dict]:
    """Per encoder, a model trained (CLIP: `pretrain.py`) or built (SigLIP, ViT: `new_model`) on its embeddings, saved
    with its encoder, then moved while the encoder's own folder is deleted. Each entry: the moved folder, a photo
    outfit, and the suggestions for that outfit when the photo is given as its reference embedding."""
    root = tmp_path_factory.mktemp("hf_encoders_models")
    moved = {}
    for name, save in TINY_MODEL_SAVERS.items():
        encoder = save(root / f"fashion-{name}")
        table, _ = compute_catalogue_embeddings(
            photo_dataset, image_encoder=encoder, num_workers=0, progress=False, cache_dir=cache_dir
        )
        if name == "clip":  # the training script path, end to end
            table.save(root / "clip.parquet")
            arguments = ["--dataset", photo_dataset, "--embeddings", root / "clip.parquet"]
            arguments += ["--output_dir", root / "clip_model", "--num_train_epochs", "1"]
            arguments += [
                "--per_device_train_batch_size",
                "16",
                "--num_hidden_layers",
                "1",
                "--num_attention_heads",
                "2",
            ]
            load_script("pretrain").main([str(argument) for argument in arguments])
        else:
            model = new_model(model_args(), table, SLOTS)
            save_image_encoder_with_model(model, root / f"{name}_model")
            model.save_pretrained(root / f"{name}_model")
        photo_embedding = reference_image_features(encoder, [Image.open(photo).convert("RGB")])[0]
        folder = root / "elsewhere" / f"{name}_model"
        folder.parent.mkdir(exist_ok=True)
        shutil.move(root / f"{name}_model", folder)
        shutil.rmtree(encoder)
        model = AutoModel.from_pretrained(folder).eval()
        outfit = photo_outfit(model, photo)
        by_embedding = model.complete([{**outfit, model.config.categories[1]: photo_embedding}], top_k=5)[0]
        moved[name] = {"folder": folder, "outfit": outfit, "by_embedding": by_embedding, "root": root}
    return moved


# --------------------------------------------------------------------------------------------------- Extraction


def test_one_clip_embeds_photos_and_titles_with_its_two_towers_and_records_how(encoders, photo_dataset, catalogue):
    clip = encoders["clip"]
    output = photo_dataset.parent / "clip_both.parquet"
    arguments = ["--dataset", photo_dataset, "--image_encoder", clip, "--text_encoder", clip, "--output", output]
    arguments += ["--batch_size", "8", "--num_workers", "0", "--no_progress"]
    report = load_script("compute_embeddings").main([str(argument) for argument in arguments])
    assert report["num_rows"] == len(catalogue)

    table = read_embeddings_table(output)  # the metadata below is read back from the parquet file
    images, titles = list(catalogue["image"]), list(catalogue["title"])
    image_part = normalized(reference_image_features(clip, images))
    text_part = normalized(reference_text_features(clip, titles, padding=True))
    assert table.item_ids == list(catalogue["item_id"]) and table.embedding_dim == 2 * PROJECTION_DIM
    torch.testing.assert_close(table.embeddings, torch.cat([image_part, text_part], dim=1), atol=1e-5, rtol=1e-4)

    metadata = table.metadata
    assert metadata["parts"] == ["image", "text"] and metadata["normalized"] is True
    assert metadata["image_encoder"] == metadata["text_encoder"] == str(clip)
    assert (metadata["image_encoder_type"], metadata["text_encoder_type"]) == ("clip", "clip")
    assert (metadata["image_pooling"], metadata["text_pooling"]) == ("get_image_features", "get_text_features")
    assert metadata["image_encoder_trust_remote_code"] is False and metadata["text_encoder_trust_remote_code"] is False
    # The model's own processor, as saved (not our ImagePreprocessing); the text limit is CLIP's position limit.
    assert metadata["image_preprocessing"]["image_processor_type"] == "CLIPImageProcessor"
    assert metadata["image_preprocessing"]["image_mean"] == pytest.approx(list(IMAGE_MEAN))
    assert metadata["image_preprocessing"]["crop_size"] == {"height": 32, "width": 32}
    assert (metadata["text_max_length"], metadata["text_padding"]) == (MAX_TEXT_LENGTH, "longest")
    assert metadata["image_embedding_dim"] == metadata["text_embedding_dim"] == PROJECTION_DIM

    # What the metadata records is enough to embed new items the way the table was made.
    new = embed_new_items(metadata, images=images[:3], titles=titles[:3])
    torch.testing.assert_close(new, table.embeddings[:3], atol=1e-5, rtol=1e-4)


def test_siglip_embeds_titles_padded_to_its_full_length_and_photos_with_its_processor(encoders, catalogue, cache_dir):
    siglip = encoders["siglip"]
    table, _ = compute_catalogue_embeddings(
        catalogue, image_encoder=siglip, text_encoder=siglip, batch_size=16, num_workers=0, progress=False
    )
    titles = list(catalogue["title"])
    text = reference_text_features(siglip, titles, padding="max_length", max_length=MAX_TEXT_LENGTH)
    image = reference_image_features(siglip, list(catalogue["image"]))
    torch.testing.assert_close(
        table.embeddings, torch.cat([normalized(image), normalized(text)], 1), atol=1e-5, rtol=1e-4
    )
    # SigLIP reads its last position: padding only to the longest title would give other embeddings.
    assert not torch.allclose(normalized(reference_text_features(siglip, titles, padding=True)), normalized(text))
    metadata = table.metadata
    assert (metadata["image_encoder_type"], metadata["image_pooling"]) == ("siglip", "get_image_features")
    assert (metadata["text_pooling"], metadata["text_padding"]) == ("get_text_features", "max_length")
    assert metadata["image_preprocessing"]["image_processor_type"] == "SiglipImageProcessor"


def test_a_vision_backbone_gives_its_pooled_output_or_else_its_cls_state(encoders, catalogue):
    vit = encoders["vit"]
    table, _ = compute_catalogue_embeddings(catalogue, image_encoder=vit, num_workers=0, progress=False)
    torch.testing.assert_close(
        table.embeddings, reference_image_features(vit, list(catalogue["image"])), atol=1e-5, rtol=1e-4
    )
    assert (table.metadata["image_encoder_type"], table.metadata["image_pooling"]) == ("vit", "pooler_output")
    assert table.metadata["normalized"] is False

    torch.manual_seed(0)
    without_pooler = TransformersImageEncoder(
        ViTModel(tiny_vit_config(), add_pooling_layer=False).eval(), tiny_vit_image_processor()
    )
    photos = list(catalogue["image"])[:4]
    with torch.no_grad():
        pixel_values = tiny_vit_image_processor()(images=photos, return_tensors="pt")["pixel_values"]
        expected = without_pooler.model(pixel_values=pixel_values).last_hidden_state[:, 0]
    torch.testing.assert_close(encode_images(without_pooler, photos), expected, atol=1e-5, rtol=1e-4)
    assert without_pooler.pooling == "cls" and without_pooler.embedding_dim == expected.shape[1]


def test_models_that_cannot_embed_photos_are_refused_naming_why(tmp_path, encoders):
    text_only = save_text_only_model(tmp_path / "text_only")
    with pytest.raises(ValueError, match="'clip_text_model' model, which takes no images"):
        load_image_encoder(text_only)
    shutil.copytree(
        encoders["vit"], tmp_path / "no_processor", ignore=shutil.ignore_patterns("preprocessor_config.json")
    )
    with pytest.raises(ValueError, match=r"has no image processor \(preprocessor_config.json\)"):
        load_image_encoder(tmp_path / "no_processor")


# --------------------------------------------------------------------------------------------------- With a model


@pytest.mark.parametrize("name", sorted(TINY_MODEL_SAVERS))
def test_the_encoder_and_its_processor_are_saved_with_the_model(moved_models, name):
    folder, root = moved_models[name]["folder"], moved_models[name]["root"]
    config = json.loads((folder / "config.json").read_text())
    assert config["image_encoder"] == "image_encoder"
    assert config["embedding_metadata"]["image_encoder"] == f"fashion-{name}"
    assert config["embedding_metadata"]["image_encoder_type"] == name
    for file in ("config.json", "model.safetensors", "preprocessor_config.json"):
        assert (folder / "image_encoder" / file).is_file(), file
    for text in strings_in(config):
        assert not text.startswith("/") and str(root) not in text, text


@pytest.mark.parametrize("name", sorted(TINY_MODEL_SAVERS))
def test_a_moved_model_completes_a_photo_through_its_saved_encoder(moved_models, name):
    entry = moved_models[name]
    model = AutoModel.from_pretrained(entry["folder"]).eval()
    answer = model.complete([entry["outfit"]], top_k=5)[0]
    assert ids(answer) == ids(entry["by_embedding"])
    assert [item["score"] for item in answer] == pytest.approx([item["score"] for item in entry["by_embedding"]])


def test_the_cli_completes_a_photo_with_a_clip_trained_model(moved_models, capsys):
    entry = moved_models["clip"]
    given = {slot: value["image"] if isinstance(value, dict) else value for slot, value in entry["outfit"].items()}
    outfit = [f"{slot}={'?' if value is None else value}" for slot, value in given.items()]
    assert cli_main(["complete", "--model", str(entry["folder"]), "--outfit", *outfit, "--top_k", "5"]) == 0
    printed = [line.split()[1] for line in capsys.readouterr().out.strip().splitlines()[1:]]
    assert printed == ids(entry["by_embedding"])


@pytest.mark.slow
def test_moved_models_complete_photos_in_a_fresh_process(moved_models, tmp_path):
    jobs = {name: [str(entry["folder"]), entry["outfit"]] for name, entry in moved_models.items()}
    env = {"HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_OFFLINE": "1"}
    answers = run_json_in_fresh_process(LOAD_AND_COMPLETE.format(jobs=json.dumps(jobs)), env)
    for name, entry in moved_models.items():
        assert ids(answers[name]) == ids(entry["by_embedding"]), name
        expected = [item["score"] for item in entry["by_embedding"]]
        assert [item["score"] for item in answers[name]] == pytest.approx(expected), name


def test_a_catalogue_made_by_a_text_tower_only_refuses_photos_naming_what_to_do(tmp_path, encoders, catalogue, photo):
    text_model = save_text_only_model(tmp_path / "title_encoder")
    remedies = {encoders["clip"]: "--image_encoder clip` (its image tower)", text_model: "with an image encoder"}
    for text_encoder, remedy in remedies.items():
        table, _ = compute_catalogue_embeddings(catalogue, text_encoder=text_encoder, progress=False)
        model = new_model(model_args(), table, SLOTS)
        assert model.config.image_encoder is None
        with pytest.raises(ValueError, match="embedded from item titles by the text encoder") as error:
            model.complete([photo_outfit(model, photo)], top_k=5)
        message = str(error.value)
        assert remedy in message and "give item ids" in message and len(message.splitlines()) == 1
