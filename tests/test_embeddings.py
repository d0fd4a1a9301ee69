"""Tests of the embeddings table (schema, order, atomic writes, validation) and of catalogue embedding extraction
(images, text, both; missing images; several processes equal one)."""

import importlib.util
import io
import json
import os

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from umbert_hf.configuration_fashion_resnet import FashionResNetConfig
from umbert_hf.configuration_ssim_autoencoder import SsimAutoEncoderConfig
from umbert_hf.data.embeddings import METADATA_KEY, EmbeddingsTable, read_embeddings_table, write_embeddings_table
from umbert_hf.data.extraction import (
    NoReadableImagesError,
    bundled_text_encoder,
    compute_catalogue_embeddings,
    embed_new_items,
    extract_text_embeddings,
    mean_pool,
    shard_bounds,
)
from umbert_hf.data.image_processing import encode_images
from umbert_hf.modeling_fashion_resnet import FashionResNetModel
from umbert_hf.modeling_ssim_autoencoder import SsimAutoEncoderModel
from umbert_hf.utils.paths import run_command

ITEM_IDS = ["101", "102", "103", "104"]
CATEGORIES = ["shoes", "tops", "shoes", "bottoms"]


def table_embeddings() -> torch.Tensor:
    return torch.arange(12, dtype=torch.float32).view(4, 3) / 7


def write_raw_parquet(path, columns: dict, schema: pa.Schema | None = None) -> str:
    pq.write_table(pa.table(columns, schema=schema), path)
    return str(path)


# --------------------------------------------------------------------------------------------------- The table


def test_write_then_read_round_trips_ids_categories_embeddings_and_metadata(tmp_path):
    metadata = {"image_encoder": "/models/resnet", "image_preprocessing": {"image_size": 64}, "normalized": False}
    path = write_embeddings_table(tmp_path / "emb.parquet", ITEM_IDS, CATEGORIES, table_embeddings(), metadata)
    table = read_embeddings_table(path)
    assert table.item_ids == ITEM_IDS and table.categories == CATEGORIES
    assert table.embeddings.dtype == torch.float32
    torch.testing.assert_close(table.embeddings, table_embeddings())
    assert table.metadata == metadata
    assert table.index["103"] == 2
    assert table.category_rows()["shoes"].tolist() == [0, 2]


def test_written_schema_is_the_contract(tmp_path):
    path = write_embeddings_table(tmp_path / "emb.parquet", ITEM_IDS, CATEGORIES, table_embeddings(), {"a": 1})
    arrow = pq.read_table(path)
    assert arrow.column_names == ["item_id", "category", "embedding"]
    assert arrow.schema.field("item_id").type == pa.string()
    assert arrow.schema.field("embedding").type.value_type == pa.float32()
    assert json.loads(arrow.schema.metadata[METADATA_KEY]) == {"a": 1}
    # Also readable by `datasets` as a plain parquet file, with fixed-length float lists.
    loaded = datasets.load_dataset("parquet", data_files=str(path), cache_dir=str(tmp_path / "cache"))["train"]
    assert loaded["item_id"] == ITEM_IDS and len(loaded[0]["embedding"]) == 3


def test_write_is_atomic_and_replaces_an_existing_table(tmp_path):
    path = tmp_path / "emb.parquet"
    write_embeddings_table(path, ITEM_IDS, CATEGORIES, table_embeddings())
    write_embeddings_table(path, ITEM_IDS[:2], CATEGORIES[:2], table_embeddings()[:2])
    assert read_embeddings_table(path).item_ids == ITEM_IDS[:2]
    with pytest.raises(ValueError, match="duplicates"):
        write_embeddings_table(path, ["1", "1"], ["a", "b"], torch.zeros(2, 3))
    assert read_embeddings_table(path).item_ids == ITEM_IDS[:2]  # a failed write leaves the old table
    assert sorted(os.listdir(tmp_path)) == ["emb.parquet"]  # and no temporary file


def test_tables_from_other_sources_are_accepted(tmp_path):
    rows = {"item_id": ITEM_IDS, "category": CATEGORIES, "embedding": table_embeddings().tolist()}
    dataset = datasets.Dataset.from_dict(rows)
    dataset.save_to_disk(str(tmp_path / "saved"))
    (tmp_path / "hub" / "data").mkdir(parents=True)
    dataset.select(range(2)).to_parquet(str(tmp_path / "hub" / "data" / "train-00000-of-00002.parquet"))
    dataset.select(range(2, 4)).to_parquet(str(tmp_path / "hub" / "data" / "train-00001-of-00002.parquet"))
    for source in (tmp_path / "saved", tmp_path / "hub"):
        table = read_embeddings_table(source)
        assert table.item_ids == ITEM_IDS, source
        torch.testing.assert_close(table.embeddings, table_embeddings())
    integer_ids = write_raw_parquet(
        tmp_path / "ints.parquet", {"item_id": [1, 2], "category": ["a", "b"], "embedding": [[1.0], [2.0]]}
    )
    assert read_embeddings_table(integer_ids).item_ids == ["1", "2"]  # ids are strings everywhere


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({"item_id": ["1"], "embedding": [[1.0]]}, r"missing column\(s\) \['category'\]"),
        ({"item_id": ["1", "2"], "category": ["a", "b"], "embedding": [[1.0, 2.0], [3.0]]}, "fixed length.*'2'"),
        ({"item_id": ["1", "2"], "category": ["a", "b"], "embedding": [[1.0], None]}, "'embedding' is null.*'2'"),
        ({"item_id": ["1", "1"], "category": ["a", "b"], "embedding": [[1.0], [2.0]]}, "'item_id' has duplicates"),
        ({"item_id": ["1", "2"], "category": ["a", "b"], "embedding": [[1.0], [float("nan")]]}, "NaN.*'2'"),
        ({"item_id": ["1", "2"], "category": ["a", "b"], "embedding": ["x", "y"]}, "lists of floats"),
        ({"item_id": ["1", None], "category": ["a", "b"], "embedding": [[1.0], [2.0]]}, "'item_id' has 1 null"),
        ({"item_id": ["1"], "category": [3], "embedding": [[1.0]]}, "'category' must hold strings"),
    ],
)
def test_bad_tables_are_rejected_naming_the_file_and_the_column(tmp_path, columns, message):
    path = write_raw_parquet(tmp_path / "bad.parquet", columns)
    with pytest.raises(ValueError, match=message) as error:
        read_embeddings_table(path)
    assert str(path) in str(error.value)


def test_a_table_of_many_row_groups_is_read_chunk_by_chunk_into_the_right_rows(tmp_path):
    """Each row group is copied straight into its rows (no combined copy); errors still name the right item."""
    embeddings = torch.arange(60, dtype=torch.float32).reshape(20, 3)
    ids, categories = [f"i{row}" for row in range(20)], ["a", "b"] * 10
    table = pa.table({"item_id": ids, "category": categories, "embedding": embeddings.tolist()})
    pq.write_table(table, tmp_path / "groups.parquet", row_group_size=3)
    assert pq.ParquetFile(tmp_path / "groups.parquet").num_row_groups == 7
    read = read_embeddings_table(tmp_path / "groups.parquet")
    assert read.item_ids == ids and torch.equal(read.embeddings, embeddings)
    uneven = embeddings.tolist()
    uneven[13] = [1.0, 2.0]  # in the fifth row group
    pq.write_table(table.set_column(2, "embedding", pa.array(uneven)), tmp_path / "bad.parquet", row_group_size=3)
    with pytest.raises(ValueError, match=r"item 'i13' \(row 13\) has 2 values, the first row 3"):
        read_embeddings_table(tmp_path / "bad.parquet")


def test_missing_or_unreadable_sources_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_embeddings_table(tmp_path / "nothing.parquet")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="without parquet files"):
        read_embeddings_table(tmp_path / "empty")
    (tmp_path / "junk.parquet").write_bytes(b"definitely not parquet")
    with pytest.raises(ValueError, match="not a readable parquet file"):
        read_embeddings_table(tmp_path / "junk.parquet")


def test_table_in_memory_checks_lengths_and_finds_rows():
    with pytest.raises(ValueError, match="Lengths differ"):
        EmbeddingsTable(["1", "2"], ["a"], torch.zeros(2, 3))
    table = EmbeddingsTable(ITEM_IDS, CATEGORIES, table_embeddings())
    assert table.rows(["104", "101"]).tolist() == [3, 0]
    with pytest.raises(KeyError, match="999"):
        table.rows(["999"])


# --------------------------------------------------------------------------------------------------- Extraction


def png_bytes(seed: int, size: int = 24) -> bytes:
    array = np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def write_catalogue(root, images: list[bytes | None], titles: list[str] | None = None):
    """A contract-conformant dataset folder with just the `catalogue` config (and its README configs).

    Give each folder its own name: `datasets` keys its cache of a local folder by the folder name, the relative file
    names and their modification times, so two same-named folders written within the same tick share a cache entry.
    """
    count = len(images)
    features = datasets.Features(
        {
            "item_id": datasets.Value("string"),
            "category": datasets.Value("string"),
            "semantic_category": datasets.Value("string"),
            "title": datasets.Value("string"),
            "image": datasets.Image(),
        }
    )
    categories = [("shoes", "tops", "bottoms")[index % 3] for index in range(count)]
    rows = {
        "item_id": [str(500 + index) for index in range(count)],
        "category": categories,
        "semantic_category": categories,
        "title": titles or [f"{category} number {index}" for index, category in enumerate(categories)],
        "image": [{"bytes": data, "path": None} if data is not None else None for data in images],
    }
    (root / "catalogue").mkdir(parents=True)
    datasets.Dataset.from_dict(rows, features=features).to_parquet(str(root / "catalogue" / "train-00000.parquet"))
    (root / "README.md").write_text(
        "---\nconfigs:\n- config_name: catalogue\n  data_files:\n  - split: train\n    path: catalogue/train-*\n---\n"
    )
    return root


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    root = tmp_path_factory.mktemp("encoders")
    torch.manual_seed(0)
    resnet = FashionResNetModel(
        FashionResNetConfig(image_size=32, embedding_dim=8, categories=["shoes", "tops", "bottoms"])
    )
    resnet.save_pretrained(root / "resnet")
    autoencoder = SsimAutoEncoderModel(
        SsimAutoEncoderConfig(image_size=16, hidden_channels=4, latent_channels=4, intermediate_size=8, embedding_dim=6)
    )
    autoencoder.save_pretrained(root / "autoencoder")
    return {"resnet": root / "resnet", "autoencoder": root / "autoencoder", "text": tiny_text_encoder(root / "text")}


def tiny_text_encoder(folder) -> str:
    """A 1-layer BERT with a 20-word vocabulary, created locally (no download)."""
    from transformers import BertConfig, BertModel, BertTokenizer

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "shoes", "tops", "bottoms", "number", "red", "blue"]
    words += [str(digit) for digit in range(10)]
    BertTokenizer(vocab={word: index for index, word in enumerate(words)}).save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(words),
        hidden_size=12,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=24,
        max_position_embeddings=32,
    )
    BertModel(config).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def catalogue_dir(tmp_path_factory):
    return write_catalogue(tmp_path_factory.mktemp("catalogue") / "readable", [png_bytes(index) for index in range(11)])


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("hf_cache"))


def catalogue_images(catalogue_dir) -> list[bytes]:
    table = pq.read_table(catalogue_dir / "catalogue" / "train-00000.parquet")
    return [image["bytes"] for image in table.column("image").to_pylist()]


@pytest.mark.parametrize("encoder", ["resnet", "autoencoder"])
def test_image_table_has_every_item_in_catalogue_order_and_matches_encode_images(
    encoders, catalogue_dir, cache_dir, encoder
):
    table, report = compute_catalogue_embeddings(
        catalogue_dir, image_encoder=encoders[encoder], batch_size=4, num_workers=0, progress=False, cache_dir=cache_dir
    )
    assert table.item_ids == [str(500 + index) for index in range(11)]
    assert table.categories[:4] == ["shoes", "tops", "bottoms", "shoes"]
    # The extraction path (workers + batched normalisation) embeds exactly like the single-image path of the CLI.
    expected = encode_images(str(encoders[encoder]), catalogue_images(catalogue_dir))
    torch.testing.assert_close(table.embeddings, expected, atol=1e-5, rtol=1e-4)
    assert report["missing_images"] == 0 and report["images_per_second"] > 0
    metadata = table.metadata
    assert metadata["image_encoder"] == str(encoders[encoder]) and metadata["parts"] == ["image"]
    assert metadata["image_encoder_type"] in ("fashion-resnet", "ssim-autoencoder")
    assert metadata["image_preprocessing"]["image_size"] in (32, 16)
    assert metadata["embedding_dim"] == table.embedding_dim and metadata["normalized"] is False


def test_text_embeddings_are_mean_pooled_title_states(encoders):
    from transformers import AutoModel, AutoTokenizer

    titles = ["red shoes", "blue tops number 7", None]
    embeddings, _ = extract_text_embeddings(encoders["text"], titles, batch_size=2, progress=False)
    tokenizer, model = AutoTokenizer.from_pretrained(encoders["text"]), AutoModel.from_pretrained(encoders["text"])
    inputs = tokenizer(["blue tops number 7"], return_tensors="pt")
    with torch.no_grad():
        expected = model(**inputs).last_hidden_state.mean(dim=1)[0]  # no padding: a plain mean over tokens
    torch.testing.assert_close(embeddings[1], expected, atol=1e-5, rtol=1e-4)
    assert embeddings.shape == (3, 12) and torch.isfinite(embeddings).all()


def test_mean_pool_ignores_padding():
    hidden = torch.tensor([[[1.0, 1.0], [3.0, 5.0], [100.0, 100.0]]])
    torch.testing.assert_close(mean_pool(hidden, torch.tensor([[1, 1, 0]])), torch.tensor([[2.0, 3.0]]))


def test_image_and_text_parts_are_normalised_and_concatenated(encoders, catalogue_dir, cache_dir):
    table, _ = compute_catalogue_embeddings(
        catalogue_dir,
        image_encoder=encoders["resnet"],
        text_encoder=encoders["text"],
        batch_size=4,
        num_workers=0,
        progress=False,
        cache_dir=cache_dir,
    )
    assert table.embedding_dim == 8 + 12
    torch.testing.assert_close(table.embeddings[:, :8].norm(dim=1), torch.ones(11))
    torch.testing.assert_close(table.embeddings[:, 8:].norm(dim=1), torch.ones(11))
    assert table.metadata["parts"] == ["image", "text"] and table.metadata["normalized"] is True
    assert table.metadata["text_encoder"] == encoders["text"] and table.metadata["text_pooling"] == "mean"


def test_new_items_are_embedded_like_the_table(encoders, catalogue_dir, cache_dir):
    table, _ = compute_catalogue_embeddings(
        catalogue_dir,
        image_encoder=encoders["resnet"],
        text_encoder=encoders["text"],
        num_workers=0,
        progress=False,
        cache_dir=cache_dir,
    )
    images = catalogue_images(catalogue_dir)[:3]
    titles = ["shoes number 0", "tops number 1", "bottoms number 2"]
    new = embed_new_items(table.metadata, images=images, titles=titles)
    torch.testing.assert_close(new, table.embeddings[:3], atol=1e-5, rtol=1e-4)
    photo_only = embed_new_items(table.metadata, images=images[:1])  # no title: zero text part
    torch.testing.assert_close(photo_only[0, :8], table.embeddings[0, :8], atol=1e-5, rtol=1e-4)
    assert photo_only[0, 8:].abs().sum() == 0
    with pytest.raises(ValueError, match="give `images`"):
        embed_new_items(table.metadata, titles=titles)
    with pytest.raises(ValueError, match="no `parts`"):
        embed_new_items({}, images=images)


def test_missing_and_corrupt_images_are_counted_then_imputed_dropped_or_fatal(tmp_path, encoders, cache_dir):
    images = [png_bytes(index) for index in range(6)]
    images[1], images[3] = b"corrupt bytes", None  # a "tops" and a "shoes" item (categories cycle shoes/tops/bottoms)
    dataset = write_catalogue(tmp_path / "corrupt", images)
    options = {"image_encoder": encoders["resnet"], "num_workers": 0, "progress": False, "cache_dir": cache_dir}

    table, report = compute_catalogue_embeddings(dataset, missing_images="impute", **options)
    assert report["missing_images"] == 2 and report["missing_image_examples"] == ["501", "503"]
    assert len(table) == 6 and table.metadata["missing_images"] == 2
    # Each gets the mean of the readable items of its category: here a single one each.
    torch.testing.assert_close(table.embeddings[1], table.embeddings[4])
    torch.testing.assert_close(table.embeddings[3], table.embeddings[0])

    table, _ = compute_catalogue_embeddings(dataset, missing_images="drop", **options)
    assert table.item_ids == ["500", "502", "504", "505"]

    with pytest.raises(ValueError, match="2 of 6 catalogue images are missing or corrupt"):
        compute_catalogue_embeddings(dataset, missing_images="error", **options)


def test_a_catalogue_without_readable_images_fails_clearly(tmp_path, encoders, cache_dir):
    dataset = write_catalogue(tmp_path / "unreadable", [b"junk", None, b""])
    with pytest.raises(NoReadableImagesError, match="None of the 3 catalogue images"):
        compute_catalogue_embeddings(
            dataset, image_encoder=encoders["resnet"], num_workers=0, progress=False, cache_dir=cache_dir
        )
    with pytest.raises(ValueError, match="image encoder, a text encoder, or both"):
        compute_catalogue_embeddings(dataset, progress=False, cache_dir=cache_dir)


@pytest.mark.parametrize("batch_size", [1, 3, 4, 64])
def test_shards_cover_the_catalogue_once_in_order_in_whole_batches(batch_size):
    for num_items in (0, 1, 7, 10, 23):
        for processes in (1, 2, 3, 4):
            bounds = [shard_bounds(num_items, processes, index, batch_size) for index in range(processes)]
            rows = [row for start, end in bounds for row in range(start, end)]
            assert rows == list(range(num_items)), (num_items, processes, bounds)
            # Every shard starts on a batch boundary of the one-process run: its batches are that run's batches.
            assert all(start % batch_size == 0 for start, end in bounds if end > start), bounds
    assert shard_bounds(10, 2, 0, 3) == (0, 6) and shard_bounds(10, 2, 1, 3) == (6, 10)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_processes_write_the_same_table_as_one(tmp_path, encoders, catalogue_dir, cache_dir):
    """`accelerate launch` with two CPU processes: each embeds its share in whole batches, the main one writes the
    whole table, and its rows are bit for bit the one-process run's (same threads: float sums depend on them)."""
    import subprocess
    import sys

    script = os.path.join(os.path.dirname(__file__), "..", "training_scripts", "compute_embeddings.py")
    # 11 items in batches of 4: shares of 8 and 3 rows, so the second process starts on the run's third batch.
    arguments = [script, "--dataset", str(catalogue_dir), "--image_encoder", str(encoders["resnet"])]
    arguments += ["--text_encoder", encoders["text"], "--batch_size", "4", "--num_workers", "1", "--no_progress"]
    env = {**os.environ, "HF_DATASETS_CACHE": cache_dir, "OMP_NUM_THREADS": "1"}
    # Fresh interpreters (not forks of this one, whose threads could hold locks) on a free rendezvous port.
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2"]
    launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    launch += ["--main_process_port", str(free_port())]
    tables = {}
    for name, command in (("two", launch), ("one", [sys.executable])):
        output = tmp_path / f"{name}.parquet"
        completed = subprocess.run(
            [*command, *arguments, "--output", str(output)], capture_output=True, text=True, timeout=300, env=env
        )
        assert completed.returncode == 0, completed.stderr[-4000:]
        report = json.loads(completed.stdout[completed.stdout.index("{") :])  # printed once, by the main process
        assert report["num_rows"] == 11
        tables[name] = read_embeddings_table(output)
    assert tables["two"].item_ids == tables["one"].item_ids and tables["two"].categories == tables["one"].categories
    assert torch.equal(tables["two"].embeddings, tables["one"].embeddings)


def test_compute_embeddings_script_writes_the_table(tmp_path, encoders, catalogue_dir, capsys):
    path = os.path.join(os.path.dirname(__file__), "..", "training_scripts", "compute_embeddings.py")
    spec = importlib.util.spec_from_file_location("compute_embeddings", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    output = tmp_path / "out" / "emb.parquet"
    report = script.main(
        ["--dataset", str(catalogue_dir), "--image_encoder", str(encoders["autoencoder"]), "--output", str(output)]
        + ["--num_workers", "0", "--no_progress"]
    )
    table = read_embeddings_table(output)
    assert len(table) == report["num_rows"] == 11 and table.embedding_dim == 6
    assert table.metadata["dataset"] == str(catalogue_dir) and table.metadata["image_encoder"] == str(
        encoders["autoencoder"]
    )
    assert '"images_per_second"' in capsys.readouterr().out
    # No encoder: the default recipe, frozen EfficientNet-Lite0 features (+ MiniLM titles where installed).
    default = script.main(
        ["--dataset", str(catalogue_dir), "--output", str(tmp_path / "default.parquet"), "--num_workers", "0"]
        + ["--no_progress"]
    )
    table = read_embeddings_table(tmp_path / "default.parquet")
    assert table.metadata["image_encoder"] == "efficientnet_lite0"
    assert table.metadata["image_preprocessing"]["pad_to_square"] is True
    with_text = bundled_text_encoder() is not None
    assert default["embedding_dim"] == table.embedding_dim == 1280 + (384 if with_text else 0)
    assert table.metadata["parts"] == (["image", "text"] if with_text else ["image"])
    assert "the default recipe, efficientnet_lite0" in capsys.readouterr().out


def test_compute_embeddings_refuses_an_output_inside_the_dataset_before_reading_it(tmp_path, capsys):
    path = os.path.join(os.path.dirname(__file__), "..", "training_scripts", "compute_embeddings.py")
    spec = importlib.util.spec_from_file_location("compute_embeddings", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    dataset = tmp_path / "ds"
    (dataset / "catalogue").mkdir(parents=True)
    (dataset / "README.md").write_text("card")
    for output in (dataset / "emb.parquet", dataset / "catalogue" / "train-00000-of-00001.parquet"):
        assert run_command(script.main, ["--dataset", str(dataset), "--output", str(output), "--num_workers", "0"]) == 2
        assert "is inside the input --dataset" in capsys.readouterr().err
    assert sorted(p.relative_to(dataset).as_posix() for p in dataset.rglob("*")) == ["README.md", "catalogue"]
