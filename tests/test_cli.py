"""The `umbert-hf` command: outfit parsing, completion on a tiny saved model, photos as context, rendering, errors."""

import argparse
import re

import pytest
import torch
from PIL import Image
from support.umbert_testing import UmBertModelTester

from umbert_hf.apps.cli import build_parser, main, parse_outfit
from umbert_hf.apps.rendering import TILE_SIZE, CompletionRow, layout, render_completions
from umbert_hf.configuration_ssim_autoencoder import SsimAutoEncoderConfig
from umbert_hf.data.image_processing import ImagePreprocessing, encode_images
from umbert_hf.modeling_ssim_autoencoder import SsimAutoEncoderModel


@pytest.fixture(scope="module")
def tester():
    return UmBertModelTester()


@pytest.fixture(scope="module")
def saved_model(tester, tmp_path_factory):
    """A tiny umBERT whose catalogue embeddings come from a tiny image encoder, recorded in its config."""
    root = tmp_path_factory.mktemp("cli")
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
    encoder.save_pretrained(root / "encoder")
    preprocessing = ImagePreprocessing.for_encoder("ssim-autoencoder", 32)
    model = tester.umbert()
    model.config.image_encoder = str(root / "encoder")
    model.config.embedding_metadata = {"parts": ["image"], "image_preprocessing": preprocessing.to_dict()}
    model.save_pretrained(root / "model")
    photo = Image.new("RGB", (40, 40), (200, 30, 30))
    photo.save(root / "photo.jpg")
    expected_photo_embedding = encode_images(
        encoder, [Image.open(root / "photo.jpg").convert("RGB")], preprocessing=preprocessing
    )[0]
    return root, model, expected_photo_embedding


def test_parse_outfit():
    assert parse_outfit(["shoes=1", "tops=?", "bags="]) == {"shoes": "1", "tops": None, "bags": None}
    with pytest.raises(ValueError, match="expected SLOT=ITEM_ID"):
        parse_outfit(["shoes"])
    with pytest.raises(ValueError, match="given twice"):
        parse_outfit(["shoes=1", "shoes=2"])


def test_complete_prints_suggestions_best_first(saved_model, tester, capsys):
    root, model, _ = saved_model
    ids = tester.item_ids
    code = main(
        [
            "complete",
            "--model",
            str(root / "model"),
            "--outfit",
            f"shoes={ids[0]}",
            f"tops={ids[1]}",
            "accessories=?",
            f"bottoms={ids[3]}",
            "--top_k",
            "3",
        ]
    )
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "Suggestions for accessories:"
    expected = model.complete([{"shoes": ids[0], "tops": ids[1], "accessories": None, "bottoms": ids[3]}], top_k=3)[0]
    assert [line.split()[1] for line in lines[1:]] == [entry["item_id"] for entry in expected]


def test_a_photo_is_embedded_with_the_recorded_encoder(saved_model, tester, capsys):
    root, model, photo_embedding = saved_model
    ids = tester.item_ids
    outfit = ["shoes=?", f"tops={root / 'photo.jpg'}", f"accessories={ids[2]}", f"bottoms={ids[3]}"]
    assert main(["complete", "--model", str(root / "model"), "--outfit", *outfit, "--top_k", "4"]) == 0
    printed = [line.split()[1] for line in capsys.readouterr().out.strip().splitlines()[1:]]
    by_embedding = model.complete(
        [{"shoes": None, "tops": photo_embedding, "accessories": ids[2], "bottoms": ids[3]}], top_k=4
    )[0]
    assert printed == [entry["item_id"] for entry in by_embedding]
    from_python = model.complete(
        [{"shoes": None, "tops": Image.open(root / "photo.jpg"), "accessories": ids[2], "bottoms": ids[3]}], top_k=4
    )[0]
    assert [entry["item_id"] for entry in from_python] == printed


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--model", "/no/such/folder"], "cannot load"),
        (["--outfit", "shoes=1", "tops=?", "accessories=2", "bottoms=3"], "unknown item id '1'"),
        (["--outfit", "shoes", "tops=?"], "expected SLOT=ITEM_ID"),
        (["--outfit", "hats=1", "tops=?"], "unknown slot 'hats'"),
        (
            ["--outfit", "shoes=?", "tops=100000", "accessories=100002", "bottoms=100003"],
            "slot 'tops': item '100000' is of category 'shoes'",
        ),
    ],
)
def test_clear_errors(saved_model, tester, capsys, arguments, message):
    root, _, _ = saved_model
    ids = tester.item_ids
    base = {"--model": str(root / "model")}
    outfit = [f"shoes={ids[0]}", "tops=?", f"accessories={ids[2]}", f"bottoms={ids[3]}"]
    argv = ["complete"]
    if "--model" in arguments:
        argv += arguments[:2] + ["--outfit", *outfit]
    else:
        argv += ["--model", base["--model"], *arguments]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_help_lists_every_subcommand(capsys):
    commands = {"complete", "score", "app", "synthesize", "build", "convert-mango", "convert-csv", "augment", "demo"}
    parser = build_parser()
    subparsers = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    assert set(subparsers.choices) == commands
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    # The COMMAND section, not the examples (indented by 2) that name most commands too.
    assert set(re.findall(r"^ {4}(\S+)", text, flags=re.MULTILINE)) == commands


def test_complete_with_a_dataset_lists_titles_and_renders_the_outfit(
    saved_model, tester, tmp_path, monkeypatch, capsys
):
    import umbert_hf.data.outfit_data as outfit_data

    root, model, _ = saved_model
    ids = tester.item_ids
    titles = {item_id: f"title of {item_id}" for item_id in ids}
    images = {item_id: Image.new("RGB", (20, 20), (number % 256, 90, 160)) for number, item_id in enumerate(ids)}
    monkeypatch.setattr(outfit_data, "load_catalogue_details", lambda dataset: (titles, images))
    argv = ["complete", "--model", str(root / "model"), "--top_k", "3", "--outfit", f"shoes={ids[0]}", f"tops={ids[1]}"]
    argv += ["accessories=?", f"bottoms={ids[3]}", "--render", str(tmp_path / "completion.png")]
    assert main(argv) == 2  # a picture needs the dataset's images
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error: --render needs --dataset" in err, err
    assert not (tmp_path / "completion.png").exists()
    assert main([*argv, "--dataset", "ds"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    expected = model.complete([{"shoes": ids[0], "tops": ids[1], "accessories": None, "bottoms": ids[3]}], top_k=3)[0]
    assert [line.split()[1] for line in lines[1:4]] == [entry["item_id"] for entry in expected]
    assert all(line.endswith(f"  title of {entry['item_id']}") for line, entry in zip(lines[1:4], expected))
    assert lines[4] == f"Wrote {tmp_path / 'completion.png'}"
    assert Image.open(tmp_path / "completion.png").size == layout(4, 3, 1)


def test_renderer_draws_the_expected_tiles(tmp_path):
    slots = ["shoes", "tops", "accessories", "bottoms"]
    colours = {str(index): Image.new("RGB", (50, 50), (index * 20, 100, 150)) for index in range(10)}
    rows = [
        CompletionRow(
            {"shoes": "0", "tops": "1", "accessories": None, "bottoms": "2"},
            "accessories",
            ["3", "4", "5", "6", "7"],
            answer="4",
        ),
        CompletionRow(
            {"shoes": None, "tops": "1", "accessories": "3", "bottoms": "2"},
            "shoes",
            ["8", "9", "0", "1", "2"],
            answer="missing",
        ),
    ]
    path = render_completions(rows, colours, tmp_path / "completion.png", slots=slots)
    picture = Image.open(path)
    assert picture.size == layout(4, 5, 2) == ((4 + 5) * TILE_SIZE + 12, 2 * (TILE_SIZE + 18))
    # Count the tiles of row 0 by their centre colours: 3 items + 1 grey blank + 5 suggestions.
    centres = [
        picture.getpixel((column * TILE_SIZE + TILE_SIZE // 2 + (12 if column >= 4 else 0), TILE_SIZE // 3))
        for column in range(9)
    ]
    assert centres[2] == (230, 230, 230)
    assert [centres[column] for column in (0, 1, 3)] == [(0, 100, 150), (20, 100, 150), (40, 100, 150)]
    assert centres[4:] == [(60 + 20 * index, 100, 150) for index in range(5)]
    # The right answer (suggestion #2) has a green frame.
    assert picture.getpixel((4 * TILE_SIZE + 12 + TILE_SIZE + 1, TILE_SIZE // 2)) == (30, 160, 60)
    with pytest.raises(ValueError, match="Nothing to render"):
        render_completions([], colours, tmp_path / "empty.png", slots=slots)


def test_a_truncated_model_file_is_one_line(saved_model, tmp_path, capsys):
    import shutil

    root, _, _ = saved_model
    broken = tmp_path / "broken"
    shutil.copytree(root / "model", broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    assert (
        main(["complete", "--model", str(broken), "--outfit", "shoes=?", "tops=1", "accessories=2", "bottoms=3"]) == 2
    )
    err = capsys.readouterr().err
    assert "cannot load a folder" in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
