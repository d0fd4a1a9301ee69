"""Every bad input to training gets one line naming the flag, file or item, before any epoch is spent.

The cases of the issue "every bad input gets a one-line error": embeddings of another dataset (no shared ids, or too
few), embedding categories that are not the dataset's slots, an image encoder given as the model to fine-tune,
malformed embeddings tables, and a lone surrogate in the raw Polyvore metadata.
"""

import importlib.util
import json
import math
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from umbert_hf.data.embeddings import EmbeddingsTable, read_embeddings_table, write_embeddings_table
from umbert_hf.data.outfit_data import (
    MAX_UNUSABLE_SHARE,
    check_usable,
    dataset_slots,
    load_dataset_config,
    load_outfit_data,
    read_catalogue,
)
from umbert_hf.utils.paths import run_command

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--num_hidden_layers", "1", "--num_attention_heads", "2", "--per_device_train_batch_size", "32"]


def load_main(name: str):
    spec = importlib.util.spec_from_file_location(f"bad_inputs_{name}", ROOT / "training_scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def one_error_line(capsys) -> str:
    """The single `error: ...` line that `run_command` prints for a user error."""
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and errors[-1] == lines[-1], lines
    return errors[0]


def variant(embeddings: Path, path: Path, item_id=None, category=None) -> Path:
    """The fixture's embeddings table with ids and/or categories rewritten (`f(row, value) -> value`)."""
    table = read_embeddings_table(embeddings)
    item_ids = [item_id(row, value) if item_id else value for row, value in enumerate(table.item_ids)]
    categories = [category(row, value) if category else value for row, value in enumerate(table.categories)]
    write_embeddings_table(path, item_ids, categories, table.embeddings, table.metadata)
    return path


def load(dataset: Path, embeddings: Path):
    slots = dataset_slots(dataset)
    return load_outfit_data(dataset, read_catalogue(embeddings, slots), slots)


def dataset_item_ids(dataset: Path) -> set[str]:
    import datasets

    return set(datasets.load_dataset(str(dataset), "catalogue")["train"]["item_id"])


# 1. Embeddings whose ids are none of the dataset's.


def test_embeddings_without_any_dataset_id_say_so(outfit_dataset, tmp_path):
    dataset, embeddings = outfit_dataset
    other = variant(embeddings, tmp_path / "prefixed.parquet", item_id=lambda row, value: f"x{value}")
    with pytest.raises(ValueError, match=r"has none of the item ids of dataset") as error:
        load(dataset, other)
    message = str(error.value)
    assert "\n" not in message and str(other) in message
    assert "are missing from it" in message and any(repr(item) in message for item in dataset_item_ids(dataset))


# 2. Half the ids mismatched: refused before training, with the split, the share and missing ids.


def test_too_many_skipped_outfits_stop_before_training(outfit_dataset, tmp_path):
    dataset, embeddings = outfit_dataset
    half = variant(embeddings, tmp_path / "half.parquet", item_id=lambda row, value: f"x{value}" if row % 2 else value)
    with pytest.raises(ValueError, match=r"^outfits/train: \d+ of \d+ outfits \(\d+%\) have items missing") as error:
        load(dataset, half)
    message = str(error.value)
    assert f"more than the {MAX_UNUSABLE_SHARE:.0%} allowed" in message and str(half) in message
    assert any(repr(item) in message for item in dataset_item_ids(dataset))


def test_too_many_skipped_outfits_fail_finetune_with_one_line(outfit_dataset, tmp_path, capsys):
    dataset, embeddings = outfit_dataset
    half = variant(embeddings, tmp_path / "half.parquet", item_id=lambda row, value: f"x{value}" if row % 2 else value)
    output = tmp_path / "out"
    argv = ["--embeddings", str(half), "--dataset", str(dataset), "--output_dir", str(output), *TINY]
    assert run_command(load_main("finetune"), argv) == 2
    line = one_error_line(capsys)
    assert line.startswith("error: outfits/train: ") and "%" in line
    assert not (output / "history.json").exists()  # no epoch ran


def test_a_few_skipped_outfits_are_counted_not_fatal(outfit_dataset, tmp_path):
    dataset, embeddings = outfit_dataset
    table = read_embeddings_table(embeddings)
    dropped = table.item_ids[0]
    fewer = tmp_path / "fewer.parquet"
    write_embeddings_table(fewer, table.item_ids[1:], table.categories[1:], table.embeddings[1:], table.metadata)
    data = load(dataset, fewer)
    counts = data.skipped_counts()
    assert sum(counts[f"skipped_outfits_{split}"] for split in ("train", "validation", "test")) > 0
    assert all(rows.skipped <= MAX_UNUSABLE_SHARE * (rows.skipped + len(rows.rows)) for rows in data.outfits.values())
    assert any(dropped in rows.missing_items for rows in data.outfits.values())


def expected_skipped_counts(dataset: Path, dropped: set[str], slots: list[str]) -> dict[str, int]:
    """`skipped_*` counted by hand from the dataset's records: those naming an item of `dropped`."""
    import datasets

    outfits = datasets.load_dataset(str(dataset), "outfits")
    fitb = datasets.load_dataset(str(dataset), "fitb")
    compatibility = datasets.load_dataset(str(dataset), "compatibility")
    counts = {}
    for split in outfits:
        broken = {row["outfit_id"] for row in outfits[split] if any(row[slot] in dropped for slot in slots)}
        counts[f"skipped_outfits_{split}"] = len(broken)
        if split in fitb:
            counts[f"skipped_fitb_{split}"] = sum(
                row["outfit_id"] in broken or bool(dropped & set(row["candidates"])) for row in fitb[split]
            )
        if split in compatibility:
            counts[f"skipped_compatibility_{split}"] = sum(
                any(row[slot] in dropped for slot in slots) for row in compatibility[split]
            )
    return counts


@pytest.mark.slow
def test_skipped_records_are_counted_in_metrics_json_and_the_evaluation_json(outfit_dataset, tmp_path):
    dataset, embeddings = outfit_dataset
    table = read_embeddings_table(embeddings)
    slots = dataset_slots(dataset)
    first_test_outfit = load_dataset_config(dataset, "outfits")["test"][0]
    dropped = {first_test_outfit[slot] for slot in slots[:2]}  # two items of a test outfit
    keep = [row for row, item_id in enumerate(table.item_ids) if item_id not in dropped]
    fewer = tmp_path / "fewer.parquet"
    write_embeddings_table(
        fewer,
        [table.item_ids[row] for row in keep],
        [table.categories[row] for row in keep],
        table.embeddings[keep],
        table.metadata,
    )
    expected = expected_skipped_counts(dataset, dropped, slots)
    assert all(expected[f"skipped_{config}_test"] > 0 for config in ("outfits", "fitb", "compatibility")), expected
    output = tmp_path / "model"
    argv = ["--embeddings", str(fewer), "--dataset", str(dataset), "--output_dir", str(output), *TINY]
    assert run_command(load_main("finetune"), [*argv, "--num_train_epochs", "1"]) == 0
    metrics = json.loads((output / "metrics.json").read_text())
    assert {key: value for key, value in metrics.items() if key.startswith("skipped_")} == expected
    assert run_command(load_main("evaluate"), ["--model_name_or_path", str(output), "--dataset", str(dataset)]) == 0
    evaluation = json.loads((output / "eval_test.json").read_text())
    assert {key: value for key, value in evaluation.items() if key.startswith("skipped_")} == {
        key: value for key, value in expected.items() if key.endswith("_test")
    }


def test_a_split_left_empty_is_refused_whatever_the_share():
    table = EmbeddingsTable(["b1"], ["tops"], torch.zeros(1, 2), source="the embeddings table e.parquet")
    with pytest.raises(ValueError, match=r"^fitb/test: 4 of 4 questions \(100%\) .* none is left; e.g. .*'a1'"):
        check_usable("fitb/test", 0, 4, ["a1"], table, max_share=None, unit="questions")
    check_usable("compatibility/test", 3, 1, ["a1"], table, max_share=None)  # counted only


# 3. Categories that disagree with the dataset's slots: name the item, its slot and its category.


def test_item_whose_category_is_another_slot_is_named(outfit_dataset, tmp_path):
    dataset, embeddings = outfit_dataset
    slots = dataset_slots(dataset)
    rotated = variant(
        embeddings,
        tmp_path / "rotated.parquet",
        category=lambda row, value: slots[(slots.index(value) + 1) % len(slots)],
    )
    with pytest.raises(ValueError, match=r"item '[^']+' fills slot '\w+' but has category '\w+' in the embeddings"):
        load(dataset, rotated)


def test_item_whose_category_is_no_slot_is_named_not_reported_missing(outfit_dataset, tmp_path):
    dataset, embeddings = outfit_dataset
    renamed = variant(
        embeddings,
        tmp_path / "semantic.parquet",
        category=lambda row, value: "jewellery" if value == "accessories" else value,
    )
    with pytest.raises(ValueError, match=r"item '[^']+' fills slot 'accessories' but has category 'jewellery'"):
        load(dataset, renamed)


def test_table_whose_categories_are_no_slot_is_refused(outfit_dataset, tmp_path):
    dataset, embeddings = outfit_dataset
    upper = variant(embeddings, tmp_path / "upper.parquet", category=lambda row, value: value.upper())
    with pytest.raises(ValueError, match=r"upper\.parquet: none of its categories \['ACCESSORIES'.* is a slot"):
        read_catalogue(upper, dataset_slots(dataset))


# 4. An image encoder given to finetune.py as the model.


@pytest.mark.parametrize("model_type", ["fashion-resnet", "ssim-autoencoder"])
def test_finetune_refuses_an_image_encoder_folder(model_type, outfit_dataset, tmp_path, capsys):
    from umbert_hf.configuration_fashion_resnet import FashionResNetConfig
    from umbert_hf.configuration_ssim_autoencoder import SsimAutoEncoderConfig
    from umbert_hf.modeling_fashion_resnet import FashionResNetModel
    from umbert_hf.modeling_ssim_autoencoder import SsimAutoEncoderModel

    if model_type == "fashion-resnet":
        encoder = FashionResNetModel(FashionResNetConfig(image_size=32, embedding_dim=16, categories=["shoes", "tops"]))
    else:
        encoder = SsimAutoEncoderModel(SsimAutoEncoderConfig())
    folder = tmp_path / "encoder"
    encoder.save_pretrained(folder)
    dataset, _ = outfit_dataset
    argv = ["--model_name_or_path", str(folder), "--dataset", str(dataset), "--output_dir", str(tmp_path / "out")]
    assert run_command(load_main("finetune"), argv) == 2
    assert one_error_line(capsys) == (
        f"error: --model_name_or_path {folder} holds a '{model_type}' model, not umBERT or WumBERT."
    )


# 5. Malformed embeddings tables: one line naming the file.


def _write_arrow(path: Path, item_ids, categories, embedding: pa.Array) -> None:
    pq.write_table(pa.table({"item_id": item_ids, "category": categories, "embedding": embedding}), path)


def _values(rows: list[list[float]]) -> pa.Array:
    return pa.array(rows, pa.list_(pa.float32()))


def _bad_table(case: str, path: Path, fixture: Path) -> None:
    if case == "nan":
        _write_arrow(path, ["a", "b"], ["tops", "tops"], _values([[0.0, 1.0], [math.nan, 1.0]]))
    elif case == "inf":
        _write_arrow(path, ["a", "b"], ["tops", "tops"], _values([[0.0, 1.0], [math.inf, 1.0]]))
    elif case == "ragged":
        _write_arrow(path, ["a", "b"], ["tops", "tops"], _values([[0.0, 1.0], [1.0]]))
    elif case == "duplicate_ids":
        _write_arrow(path, ["a", "a"], ["tops", "tops"], _values([[0.0, 1.0], [1.0, 0.0]]))
    elif case == "no_rows":
        _write_arrow(path, pa.array([], pa.string()), pa.array([], pa.string()), _values([]))
    elif case == "empty_file":
        path.write_bytes(b"")
    elif case == "csv_file":
        path.write_text("item_id,category,embedding\na,tops,0.5\n")
    elif case in ("corrupt_page_header", "corrupt_footer"):
        data = fixture.read_bytes()  # pyarrow reports these on several lines, the second quoting raw bytes
        path.write_bytes(data[4:] if case == "corrupt_page_header" else data[:-12] + b"\xff\xff\x00\x00" + data[-8:])
    elif case == "damaged_saved_dataset":
        import datasets

        datasets.Dataset.from_dict({"item_id": ["a"], "category": ["tops"], "embedding": [[1.0]]}).save_to_disk(path)
        for arrow_file in path.glob("*.arrow"):
            arrow_file.write_bytes(b"damaged")
    else:
        raise AssertionError(case)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("nan", "NaN or infinite values, e.g. item 'b'"),
        ("inf", "NaN or infinite values, e.g. item 'b'"),
        ("ragged", "must have a fixed length; item 'b' (row 1) has 1 values"),
        ("duplicate_ids", "column 'item_id' has duplicates, e.g. ['a']"),
        ("no_rows", "the embeddings table is empty"),
        ("empty_file", "not a readable parquet file"),
        ("csv_file", "not a readable parquet file"),
        ("corrupt_page_header", "not a readable parquet file"),
        ("corrupt_footer", "not a readable parquet file"),
        ("damaged_saved_dataset", "not a readable saved `datasets` dataset"),
    ],
)
def test_bad_embeddings_table_is_one_line_naming_the_file(case, expected, outfit_dataset, tmp_path):
    path = tmp_path / f"{case}.parquet"
    _bad_table(case, path, outfit_dataset[1])
    with pytest.raises(ValueError) as error:
        read_embeddings_table(path)
    message = str(error.value)
    assert message.startswith(f"{path}: ") and expected in message
    assert len(message.splitlines()) == 1 and message.isprintable(), message


def test_missing_embeddings_table_is_a_file_not_found_error_naming_it(tmp_path):
    path = tmp_path / "nowhere.parquet"
    with pytest.raises(FileNotFoundError, match=str(path)) as error:
        read_embeddings_table(path)
    assert len(str(error.value).splitlines()) == 1


def test_bad_embeddings_table_fails_pretrain_with_one_line(outfit_dataset, tmp_path, capsys):
    dataset, embeddings = outfit_dataset
    path = tmp_path / "corrupt.parquet"
    _bad_table("corrupt_page_header", path, embeddings)
    argv = ["--embeddings", str(path), "--dataset", str(dataset), "--output_dir", str(tmp_path / "out"), *TINY]
    assert run_command(load_main("pretrain"), argv) == 2
    assert one_error_line(capsys).startswith(f"error: {path}: not a readable parquet file")


# 6. A lone surrogate in the raw metadata: refused, naming the item and the field.


def test_lone_surrogate_title_is_refused_naming_item_and_field(tmp_path):
    from test_dataset_builder import make_hand_raw

    from dataset_builder import PolyvoreFormatError, build_dataset

    raw = make_hand_raw(tmp_path / "raw", images=False)
    metadata_file = raw / "polyvore_item_metadata.json"
    metadata = json.loads(metadata_file.read_text())
    metadata["101"]["title"] = "smiley \ud83d top"
    metadata_file.write_text(json.dumps(metadata))  # ASCII JSON: the lone surrogate is written as "\ud83d"
    with pytest.raises(PolyvoreFormatError) as error:
        build_dataset(raw, tmp_path / "out", with_images=False)
    message = str(error.value)
    assert message.startswith("polyvore_item_metadata.json: item '101' has a 'title' that is not valid Unicode")
    assert "\\ud83d" in message and len(message.splitlines()) == 1
    message.encode("utf-8")  # the message itself can be printed
    assert not (tmp_path / "out").exists()


def test_valid_non_ascii_titles_still_build(tmp_path):
    from test_dataset_builder import make_hand_raw

    from dataset_builder import build_dataset

    raw = make_hand_raw(tmp_path / "raw", images=False)
    metadata_file = raw / "polyvore_item_metadata.json"
    metadata = json.loads(metadata_file.read_text())
    metadata["101"]["title"] = "smiley \U0001f600 top, Größe 38"
    metadata_file.write_text(json.dumps(metadata))
    build_dataset(raw, tmp_path / "out", with_images=False)
    catalogue = pq.read_table(tmp_path / "out" / "catalogue" / "train-00000-of-00001.parquet").to_pydict()
    assert catalogue["title"][catalogue["item_id"].index("101")] == "smiley \U0001f600 top, Größe 38"
