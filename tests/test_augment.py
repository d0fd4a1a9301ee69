"""Tests of the WumBERT-style outfit augmentation: nearest same-category swaps, duplicates, the written dataset
folder (`outfits_augmented` config) and the bad inputs."""

import importlib.util
import os

import datasets
import pytest
import torch

from umbert_hf.data.augment import (
    CONFIG_NAME,
    MARKER_FILE,
    augment_outfits,
    nearest_same_category,
    write_augmented_dataset,
)
from umbert_hf.data.augment import main as augment_main
from umbert_hf.data.embeddings import EmbeddingsTable, write_embeddings_table
from umbert_hf.utils.paths import run_command


def main(argv: list[str]) -> int:
    """`python -m umbert_hf.data.augment ARGV`: a user error is one `error:` line and status 2."""
    return run_command(augment_main, argv)


def line_table(extra_items: dict[str, tuple[str, float]] | None = None) -> EmbeddingsTable:
    """Items on a line (1-d embeddings), so the nearest neighbours are obvious.

    shoes: s0..s5 at 0, 1, 2, 3, 4, 10; tops: t0..t3 at 0, 1, 2, 3 (shifted far away so categories never mix).
    """
    items = {f"s{index}": ("shoes", float(position)) for index, position in enumerate([0, 1, 2, 3, 4, 10])}
    items |= {f"t{index}": ("tops", 100.0 + index) for index in range(4)}
    items |= extra_items or {}
    ids = list(items)
    return EmbeddingsTable(ids, [items[item][0] for item in ids], torch.tensor([[items[item][1], 0.0] for item in ids]))


def outfits(rows: list[tuple[str, str, str]]) -> datasets.Dataset:
    return datasets.Dataset.from_dict(
        {"outfit_id": [row[0] for row in rows], "shoes": [row[1] for row in rows], "tops": [row[2] for row in rows]}
    )


def test_neighbours_are_nearest_first_same_category_and_exclude_the_item():
    neighbours = nearest_same_category(line_table(), ["s0", "s2", "s5"], "shoes", k=2)
    assert neighbours["s0"] == ["s1", "s2"] and neighbours["s5"] == ["s4", "s3"]
    assert set(neighbours["s2"]) == {"s1", "s3"}  # a tie, in either order
    # A pool restricts the candidates; a category smaller than k gives shorter lists.
    assert nearest_same_category(line_table(), ["s0"], "shoes", k=3, pool=["s0", "s4", "t1"]) == {"s0": ["s4"]}


def test_each_outfit_is_followed_by_its_one_slot_swaps():
    augmented, summary = augment_outfits(outfits([("o1", "s0", "t0")]), line_table(), k=2, neighbours="catalogue")
    rows = augmented.to_list()
    assert rows[0] == {"outfit_id": "o1", "shoes": "s0", "tops": "t0", "source_outfit_id": "o1", "swapped_slot": ""}
    assert [(row["outfit_id"], row["shoes"], row["tops"]) for row in rows[1:]] == [
        ("o1-aug-shoes-1", "s1", "t0"),
        ("o1-aug-shoes-2", "s2", "t0"),
        ("o1-aug-tops-1", "s0", "t1"),
        ("o1-aug-tops-2", "s0", "t2"),
    ]
    assert all(row["source_outfit_id"] == "o1" for row in rows)
    assert summary.num_original_outfits == 1 and summary.num_augmented_outfits == 4 and summary.num_outfits == 5


def test_copies_equal_to_existing_outfits_are_skipped():
    # o2 is o1 with the nearest shoe: o1's first shoe swap would duplicate it (and o2's would duplicate o1).
    data = outfits([("o1", "s0", "t0"), ("o2", "s1", "t0")])
    augmented, summary = augment_outfits(data, line_table(), k=2, neighbours="catalogue")
    keys = [(row["shoes"], row["tops"]) for row in augmented.to_list()]
    assert len(keys) == len(set(keys))
    assert summary.num_duplicates_skipped >= 2
    assert ("s1", "t0") in keys and keys.count(("s0", "t0")) == 1


def test_train_pool_never_brings_in_items_outside_the_training_outfits():
    data = outfits([("o1", "s0", "t0"), ("o2", "s3", "t3")])
    augmented, _ = augment_outfits(data, line_table(), k=3, neighbours="train")
    used = {row["shoes"] for row in augmented.to_list()} | {row["tops"] for row in augmented.to_list()}
    assert used == {"s0", "s3", "t0", "t3"}
    catalogue, _ = augment_outfits(data, line_table(), k=3, neighbours="catalogue")
    assert len(catalogue) > len(augmented)


def test_bad_inputs_are_rejected():
    table = line_table()
    with pytest.raises(ValueError, match=r"not in the embeddings table, e.g. \['x9'\]"):
        augment_outfits(outfits([("o1", "x9", "t0")]), table)
    with pytest.raises(ValueError, match="slot 'shoes' have another category.*'t1' is 'tops'"):
        augment_outfits(outfits([("o1", "t1", "t0")]), table)
    with pytest.raises(ValueError, match="`k` must be at least 1"):
        augment_outfits(outfits([("o1", "s0", "t0")]), table, k=0)
    with pytest.raises(ValueError, match="`neighbours`"):
        augment_outfits(outfits([("o1", "s0", "t0")]), table, neighbours="everything")
    with pytest.raises(ValueError, match="outfit_id"):
        augment_outfits(datasets.Dataset.from_dict({"shoes": ["s0"]}), table)


@pytest.fixture(scope="module")
def built_dataset(tmp_path_factory):
    from dataset_builder import build_dataset, synthesize_polyvore

    root = tmp_path_factory.mktemp("augment_data")
    synthesize_polyvore(root / "raw", num_items=120, num_outfits=60, image_size=16, seed=1, with_images=False)
    build_dataset(root / "raw", root / "source", with_images=False)
    catalogue = datasets.load_dataset(str(root / "source"), "catalogue", cache_dir=str(root / "cache"))["train"]
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.randn(len(catalogue), 4, generator=generator)
    write_embeddings_table(root / "emb.parquet", catalogue["item_id"], catalogue["category"], embeddings)
    return root


def test_cli_writes_a_loadable_outfits_augmented_config_and_leaves_the_source_untouched(
    built_dataset, tmp_path, capsys
):
    source, cache = built_dataset / "source", str(tmp_path / "cache")
    readme_before = (source / "README.md").read_text()
    output = tmp_path / "augmented"
    argv = ["--dataset", str(source), "--embeddings", str(built_dataset / "emb.parquet"), "--k", "3"]
    assert main([*argv, "--output_dir", str(output)]) == 0

    train = datasets.load_dataset(str(source), "outfits", cache_dir=cache)["train"]
    augmented = datasets.load_dataset(str(output), CONFIG_NAME, cache_dir=cache)["train"]
    assert augmented.column_names == ["outfit_id", *slot_names(train), "source_outfit_id", "swapped_slot"]
    originals = augmented.filter(lambda row: row["swapped_slot"] == "")
    assert originals["outfit_id"] == train["outfit_id"]  # every training outfit, in order
    assert len(augmented) > len(train)
    catalogue = datasets.load_dataset(str(output), "catalogue", cache_dir=cache)["train"]
    category = dict(zip(catalogue["item_id"], catalogue["category"]))
    by_id = {row["outfit_id"]: row for row in train}
    for row in augmented.select(range(len(augmented) - 20, len(augmented))):
        if row["swapped_slot"]:
            source_row = by_id[row["source_outfit_id"]]
            changed = [slot for slot in slot_names(train) if row[slot] != source_row[slot]]
            assert changed == [row["swapped_slot"]] and category[row[changed[0]]] == changed[0]
    # The other configs are still there, and the source folder was not modified. The output holds copies, not hard
    # links: no file of the output shares an inode with the source, so writing into the output never changes it.
    for copied in (output / "catalogue").rglob("*.parquet"):
        original = source / copied.relative_to(output)
        assert copied.stat().st_ino != original.stat().st_ino and copied.stat().st_nlink == 1
        before = original.read_bytes()
        with open(copied, "ab") as handle:
            handle.write(b"edited in the output")
        assert original.read_bytes() == before
    assert datasets.load_dataset(str(output), "outfits", cache_dir=cache)["test"].num_rows > 0
    assert (source / "README.md").read_text() == readme_before
    assert not (source / CONFIG_NAME).exists()
    assert "outfits_augmented" in (output / "README.md").read_text()

    assert (output / MARKER_FILE).is_file()
    assert main([*argv, "--output_dir", str(output)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([*argv, "--output_dir", str(output), "--overwrite", "--k", "1"]) == 0
    assert datasets.load_dataset(str(output), CONFIG_NAME, cache_dir=str(tmp_path / "cache2"))["train"].num_rows < len(
        augmented
    )
    assert (source / "README.md").read_text() == readme_before and not (source / MARKER_FILE).exists()
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".augmented.")]  # no temporary folder left


def test_augmenting_an_augmented_dataset_keeps_the_config_once(built_dataset, tmp_path):
    table_path = str(built_dataset / "emb.parquet")
    first, second = tmp_path / "first", tmp_path / "second"
    argv = ["--embeddings", table_path, "--k"]
    assert main(["--dataset", str(built_dataset / "source"), *argv, "2", "--output_dir", str(first)]) == 0
    assert main(["--dataset", str(first), *argv, "1", "--output_dir", str(second)]) == 0
    readme = (second / "README.md").read_text()
    assert readme.count(f"config_name: {CONFIG_NAME}") == 1
    assert readme.count("<!-- outfits_augmented:begin -->") == 1
    assert sorted(os.listdir(second / CONFIG_NAME)) == ["train-00000-of-00001.parquet"]
    assert "- added copies:" in (first / "README.md").read_text()  # the input kept its own section


@pytest.fixture
def owned_folder(built_dataset, tmp_path):
    """`tmp_path/p` holding a copy of the dataset (`p/ds`), the embeddings (`p/emb/emb.parquet`) and a user file."""
    import shutil

    folder = tmp_path / "p"
    shutil.copytree(built_dataset / "source", folder / "ds")
    (folder / "emb").mkdir()
    shutil.copy(built_dataset / "emb.parquet", folder / "emb" / "emb.parquet")
    (folder / "notes.txt").write_text("mine")
    return folder


def snapshot(folder) -> dict[str, bytes]:
    return {
        os.path.relpath(os.path.join(root, name), folder): open(os.path.join(root, name), "rb").read()
        for root, _, names in os.walk(folder)
        for name in names
    }


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ("p", "contains the input --dataset"),
        ("p/ds", "is the input --dataset"),
        ("p/ds/augmented", "is inside the input --dataset"),
        ("p/emb", "contains the input --embeddings"),
        (".", "contains the input --dataset"),
        ("p/other", "not written by augment"),  # a non-empty folder of the user's, even with --overwrite
        ("p/notes.txt", "not a folder"),
    ],
)
def test_an_output_folder_holding_what_the_user_owns_is_refused(
    owned_folder, tmp_path, monkeypatch, capsys, output, message
):
    (owned_folder / "other").mkdir()
    (owned_folder / "other" / "keep.txt").write_text("keep")
    before = snapshot(tmp_path)
    monkeypatch.chdir(tmp_path)
    argv = ["--dataset", "p/ds", "--embeddings", "p/emb/emb.parquet", "--k", "2", "--overwrite"]
    assert main([*argv, "--output_dir", output]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --output_dir") and message in err and len(err.splitlines()) == 1
    assert snapshot(tmp_path) == before


def test_the_working_folder_and_its_parents_are_refused(owned_folder, tmp_path, monkeypatch, capsys):
    work = tmp_path / "work" / "sub"
    work.mkdir(parents=True)
    (work / "mine.txt").write_text("mine")
    monkeypatch.chdir(work)
    before = snapshot(tmp_path)
    argv = ["--dataset", str(owned_folder / "ds"), "--embeddings", str(owned_folder / "emb" / "emb.parquet")]
    for output in (".", "..", str(work)):
        assert main([*argv, "--output_dir", output, "--overwrite"]) == 2
        assert "is the working folder or contains it" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


def test_bad_inputs_give_one_line_errors(owned_folder, tmp_path, capsys):
    table = str(owned_folder / "emb" / "emb.parquet")
    (tmp_path / "bad.parquet").write_text("not parquet")
    for argv in (
        ["--dataset", str(tmp_path / "missing"), "--embeddings", table],
        ["--dataset", str(owned_folder / "ds"), "--embeddings", str(tmp_path / "missing.parquet")],
        ["--dataset", str(owned_folder / "ds"), "--embeddings", str(tmp_path / "bad.parquet")],
    ):
        assert main([*argv, "--output_dir", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and len(err.splitlines()) == 1
        assert not (tmp_path / "out").exists()


def test_a_failed_write_leaves_no_folder_and_keeps_the_previous_output(built_dataset, tmp_path, monkeypatch):
    import umbert_hf.data.augment as augment

    augmented, summary = augment_outfits(outfits([("o1", "s0", "t0")]), line_table(), k=1)
    output = tmp_path / "out"
    write_augmented_dataset(built_dataset / "source", output, augmented, summary)
    before = snapshot(output)

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(augment.pq, "write_table", fail)
    with pytest.raises(OSError, match="disk full"):
        write_augmented_dataset(built_dataset / "source", output, augmented, summary, overwrite=True)
    with pytest.raises(OSError, match="disk full"):
        write_augmented_dataset(built_dataset / "source", tmp_path / "new", augmented, summary)
    assert snapshot(output) == before
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_missing_readme_is_reported(tmp_path):
    augmented, summary = augment_outfits(outfits([("o1", "s0", "t0")]), line_table(), k=1)
    (tmp_path / "not_a_dataset").mkdir()
    with pytest.raises(FileNotFoundError, match="README.md"):
        write_augmented_dataset(tmp_path / "not_a_dataset", tmp_path / "out", augmented, summary)


def slot_names(dataset: datasets.Dataset) -> list[str]:
    return [name for name in dataset.column_names if name != "outfit_id"]


@pytest.mark.skipif(importlib.util.find_spec("faiss") is None, reason="faiss is not installed")
def test_a_bad_index_is_one_line_and_writes_nothing(built_dataset, tmp_path, capsys):
    output = tmp_path / "augmented"
    argv = ["--dataset", str(built_dataset / "source"), "--embeddings", str(built_dataset / "emb.parquet")]
    argv += ["--output_dir", str(output)]
    assert main([*argv, "--index", "Bogus12"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "Bogus12" in error[0] and "factory string" in error[0]
    assert not output.exists()
