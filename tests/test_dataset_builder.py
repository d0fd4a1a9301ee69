"""Tests of the Polyvore Outfits builder: the outfit rule, every config, the Hub layout, and bad input."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import hashlib
import io
import json
import shutil
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

import dataset_builder.export as export
from dataset_builder import (
    EmptyDatasetError,
    OutputPathError,
    PolyvoreFormatError,
    PolyvoreOutfits,
    PolyvoreOutfitsConfig,
    build_dataset,
    synthesize_polyvore,
)
from dataset_builder.cli import main

SLOTS = ["shoes", "tops", "accessories", "bottoms"]

# A hand-made raw folder: item id -> semantic category. Item ids are digit strings, as in Polyvore.
HAND_ITEMS = {
    **{str(i): "tops" for i in (101, 102, 103, 104, 105, 106, 107)},  # 107 is in no outfit
    **{str(i): "bottoms" for i in (201, 202, 203, 204, 205, 206)},
    **{str(i): "shoes" for i in (301, 302, 303, 304, 305, 306)},
    **{str(i): "accessories" for i in (401, 402, 403, 404, 405, 406)},
    "501": "bags",
    "502": "bags",
    "601": "jewellery",
}
# set_id -> [(item_id, index)], in file order
HAND_SPLITS = {
    "train": {
        "1001": [(101, 1), (201, 2), (301, 3), (401, 4)],
        "1002": [(102, 2), (202, 3), (302, 4), (402, 5), (103, 1)],  # two tops: the lower index (103) wins
        "1003": [(101, 1), (201, 2), (301, 3), (501, 4)],  # a bag, no accessory
        "1004": [(102, 1), (202, 2), (302, 3), (999, 4)],  # 999 is not in the metadata
        "1005": [(101, 1), (202, 2), (301, 3), (402, 4), (601, 5), (502, 6)],
        "1006": [(502, 1), (102, 2), (201, 3), (302, 4), (401, 5)],
        "1007": [(104, 1), (203, 2), (303, 3), (403, 4)],
        "1008": [(104, 1), (204, 2), (304, 3), (404, 4)],
        "1009": [(105, 1), (205, 2), (305, 3), (405, 4)],
        "1010": [(106, 1), (206, 2), (306, 3), (406, 4)],
    },
    "valid": {
        "2001": [(101, 1), (201, 2), (301, 3), (401, 4)],
        "2002": [(102, 1), (202, 2), (302, 3), (402, 4)],
        "2003": [(103, 1), (201, 2), (302, 3)],  # no accessory
        "2004": [(103, 1), (203, 2), (303, 3), (403, 4)],
        "2005": [(104, 1), (204, 2), (304, 3), (404, 4)],
    },
    "test": {
        "3001": [(103, 1), (202, 2), (301, 3), (401, 4)],
        "3002": [(101, 1), (201, 2), (302, 3), (402, 4), (102, 5)],
    },
}
# the outfit rule by hand: set_id -> (shoes, tops, accessories, bottoms)
EXPECTED_OUTFITS = {
    "train": {
        "1001": ("301", "101", "401", "201"),
        "1002": ("302", "103", "402", "202"),
        "1005": ("301", "101", "402", "202"),
        "1006": ("302", "102", "401", "201"),
        "1007": ("303", "104", "403", "203"),
        "1008": ("304", "104", "404", "204"),
        "1009": ("305", "105", "405", "205"),
        "1010": ("306", "106", "406", "206"),
    },
    "validation": {
        "2001": ("301", "101", "401", "201"),
        "2002": ("302", "102", "402", "202"),
        "2004": ("303", "103", "403", "203"),
        "2005": ("304", "104", "404", "204"),
    },
    "test": {"3001": ("301", "103", "401", "202"), "3002": ("302", "101", "402", "201")},
}
HAND_FITB_VALID = [
    # resolves: outfit 2001, blank accessories, right answer second
    {"question": ["2001_1", "2001_2", "2001_3"], "answers": ["2002_4", "2001_4", "2004_4", "2005_4"], "blank_position": 4},
    # 2003_1 is a top: a candidate of another category
    {"question": ["2002_1", "2002_2", "2002_4"], "answers": ["2002_3", "2001_3", "2003_1", "2004_3"], "blank_position": 3},
    # outfit 2003 was dropped by the rule
    {"question": ["2003_1", "2003_2"], "answers": ["2003_3", "2001_3", "2002_3", "2004_3"], "blank_position": 3},
    # a second question for 2001
    {"question": ["2001_1", "2001_2", "2001_3"], "answers": ["2001_4", "2002_4", "2004_4", "2005_4"], "blank_position": 4},
    # 9999_1 resolves to nothing
    {"question": ["2004_1", "2004_2", "2004_3"], "answers": ["2004_4", "9999_1", "2001_4", "2002_4"], "blank_position": 4},
]  # fmt: skip
HAND_COMPATIBILITY_VALID = [
    "1 2001_1 2001_2 2001_3 2001_4",
    "0 2001_1 2002_2 2004_3 2005_4",  # resolves: tops 101, bottoms 202, shoes 303, accessories 404
    "0 2001_1 2002_2 2004_3",  # no accessory
    "0 2001_1 2002_2 2004_3 7777_1",  # unknown reference
    "0 2001_1 2001_2 2001_3 2001_4",  # a positive
]


def _jpeg(colour=(200, 30, 40), size=8) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def make_hand_raw(root: Path, images: bool = True) -> Path:
    """Write the hand-made raw folder in the official layout."""
    root.mkdir(parents=True)
    metadata = {
        item_id: {"semantic_category": category, "title": f"item {item_id} ({category})", "url_name": item_id}
        for item_id, category in HAND_ITEMS.items()
    }
    (root / "polyvore_item_metadata.json").write_text(json.dumps(metadata, indent=1))
    for split_type in ("nondisjoint", "disjoint"):
        (root / split_type).mkdir()
        for stem, outfits in HAND_SPLITS.items():
            entries = [
                {"set_id": set_id, "items": [{"item_id": str(item), "index": index} for item, index in members]}
                for set_id, members in outfits.items()
            ]
            (root / split_type / f"{stem}.json").write_text(json.dumps(entries, indent=1))
        (root / split_type / "fill_in_blank_valid.json").write_text(json.dumps(HAND_FITB_VALID))
        (root / split_type / "compatibility_valid.txt").write_text("\n".join(HAND_COMPATIBILITY_VALID) + "\n")
    if images:
        (root / "images").mkdir()
        for item_id in HAND_ITEMS:
            (root / "images" / f"{item_id}.jpg").write_bytes(_jpeg())
    return root


def load(path, config, cache):
    return datasets.load_dataset(str(path), config, cache_dir=str(cache))


def rows(dataset):
    return [dict(row) for row in dataset]


def tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def hand_raw(tmp_path):
    return make_hand_raw(tmp_path / "raw")


@pytest.fixture(scope="module")
def synthetic_raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic") / "raw"
    synthesize_polyvore(root, num_items=200, num_outfits=200, image_size=32, seed=3)
    return root


@pytest.fixture(scope="module")
def synthetic_built(synthetic_raw, tmp_path_factory):
    output = tmp_path_factory.mktemp("built") / "dataset"
    summary = build_dataset(synthetic_raw, output)
    return output, summary


# --------------------------------------------------------------------------------------------------------------------
# The outfit rule, configs and references, on the hand-made folder


def test_outfit_rule_matches_hand_computed_expectation(hand_raw, tmp_path):
    summary = build_dataset(hand_raw, tmp_path / "out", with_images=False)
    outfits = load(tmp_path / "out", "outfits", tmp_path / "cache")
    assert set(outfits) == {"train", "validation", "test"}
    for split, expected in EXPECTED_OUTFITS.items():
        got = {row["outfit_id"]: tuple(row[slot] for slot in SLOTS) for row in outfits[split]}
        assert got == expected, split
    assert list(outfits["train"].features) == ["outfit_id", *SLOTS]
    train = summary.outfits["train"]
    assert (train["read"], train["kept"]) == (10, 8)
    assert train["dropped"] == {"missing_slot": 1, "incomplete_after_bad_references": 1, "duplicate_set_id": 0}
    assert train["lacking_slot"]["accessories"] == 2
    assert summary.references["missing_item"] == 1
    assert summary.catalogue == {"shoes": 6, "tops": 6, "accessories": 6, "bottoms": 6, "total": 24}


def test_category_map_sends_bags_to_accessories(hand_raw, tmp_path):
    build_dataset(hand_raw, tmp_path / "out", with_images=False, category_map={"bags": "accessories"})
    train = {row["outfit_id"]: row for row in load(tmp_path / "out", "outfits", tmp_path / "cache")["train"]}
    assert train["1003"]["accessories"] == "501"  # kept now: the bag fills the slot
    assert train["1005"]["accessories"] == "402"  # accessory index 4 before bag index 6
    assert train["1006"]["accessories"] == "502"  # bag index 1 before accessory index 5
    catalogue = load(tmp_path / "out", "catalogue", tmp_path / "cache")["train"]
    bags = {row["item_id"]: row for row in catalogue if row["semantic_category"] == "bags"}
    assert set(bags) == {"501", "502"} and all(row["category"] == "accessories" for row in bags.values())


def test_categories_pick_the_slots_and_their_column_order(hand_raw, tmp_path):
    summary = build_dataset(hand_raw, tmp_path / "out", with_images=False, categories=("bottoms", "tops"))
    outfits = load(tmp_path / "out", "outfits", tmp_path / "cache")
    assert list(outfits["train"].features) == ["outfit_id", "bottoms", "tops"]
    assert (len(outfits["train"]), len(outfits["validation"])) == (10, 5)  # every outfit has a top and a bottom
    assert summary.parameters["categories"] == ["bottoms", "tops"]


def test_category_map_can_leave_a_semantic_category_out(hand_raw, tmp_path):
    config = PolyvoreOutfitsConfig(
        name="outfits", categories=("tops", "accessories"), category_map={"bags": "accessories", "accessories": ""}
    )
    assert config.slot_of_semantic() == {"tops": "tops", "bags": "accessories"}
    with pytest.raises(EmptyDatasetError, match=r"valid\.json: no outfit of the validation split"):
        build_dataset(
            hand_raw,
            tmp_path / "out",
            with_images=False,
            categories=("tops", "accessories"),
            category_map={"bags": "accessories", "accessories": ""},
        )


def test_full_catalogue_adds_every_item_of_the_slot_categories(hand_raw, tmp_path):
    build_dataset(hand_raw, tmp_path / "out", with_images=False, full_catalogue=True)
    catalogue = load(tmp_path / "out", "catalogue", tmp_path / "cache")["train"]
    assert "107" in catalogue["item_id"] and len(catalogue) == 25  # 107 is in no outfit
    assert "501" not in catalogue["item_id"]


def test_official_fitb_and_compatibility_references_resolve_through_the_split(hand_raw, tmp_path):
    summary = build_dataset(hand_raw, tmp_path / "out", with_images=False)
    fitb = load(tmp_path / "out", "fitb", tmp_path / "cache")
    assert set(fitb) == {"validation", "test"}
    valid = {row["outfit_id"]: row for row in fitb["validation"]}
    assert set(valid) == {"2001", "2002", "2004", "2005"}  # one question per kept outfit
    assert valid["2001"] == {
        "outfit_id": "2001",
        "blank": "accessories",
        "candidates": ["402", "401", "403", "404"],
        "label": 1,
    }
    assert summary.fitb["validation"]["official"] == 1 and summary.fitb["validation"]["generated"] == 3
    assert summary.fitb["validation"]["official_unresolved"] == {
        "candidate_of_another_category": 1,
        "outfit_already_has_a_question": 1,
        "outfit_not_kept": 1,
        "unknown_reference": 1,
    }
    compatibility = summary.compatibility["validation"]
    assert (compatibility["positives"], compatibility["official_negatives"], compatibility["swap_negatives"]) == (
        4,
        1,
        3,
    )
    assert compatibility["official_negatives_unresolved"] == {
        "lacks_a_slot": 1,
        "same_as_a_positive": 1,
        "unknown_reference": 1,
    }
    assert compatibility["official_positive_lines"] == 1
    table = rows(load(tmp_path / "out", "compatibility", tmp_path / "cache")["validation"])
    negatives = {tuple(row[slot] for slot in SLOTS) for row in table if row["label"] == 0}
    assert ("303", "101", "404", "202") in negatives
    assert summary.compatibility["test"]["official_file"] is False  # generated from swaps only


def test_fitb_candidates_are_of_the_blank_category_and_split(synthetic_raw, synthetic_built, tmp_path):
    output, _ = synthetic_built
    catalogue = load(output, "catalogue", tmp_path)["train"].remove_columns("image")
    category = dict(zip(catalogue["item_id"], catalogue["category"]))
    for split in ("validation", "test"):
        outfits = {row["outfit_id"]: row for row in load(output, "outfits", tmp_path)[split]}
        stem = {"validation": "valid", "test": "test"}[split]
        raw_outfits = json.loads((synthetic_raw / "nondisjoint" / f"{stem}.json").read_text())
        split_items = {member["item_id"] for outfit in raw_outfits for member in outfit["items"]}
        for row in load(output, "fitb", tmp_path)[split]:
            candidates = row["candidates"]
            assert len(candidates) == 4 == len(set(candidates))
            assert all(category[item] == row["blank"] for item in candidates)
            assert candidates[row["label"]] == outfits[row["outfit_id"]][row["blank"]]
            assert set(candidates) <= split_items  # negatives from the same split


def test_compatibility_has_as_many_negatives_as_positives(synthetic_built, tmp_path):
    output, summary = synthetic_built
    compatibility = load(output, "compatibility", tmp_path)
    outfits = load(output, "outfits", tmp_path)
    for split in ("train", "validation", "test"):
        table = compatibility[split]
        positives = {tuple(row[slot] for slot in SLOTS) for row in table if row["label"] == 1}
        assert positives == {tuple(row[slot] for slot in SLOTS) for row in outfits[split]}
        assert sum(table["label"]) * 2 == len(table)
        assert summary.compatibility[split]["official_negatives"] > 0


# --------------------------------------------------------------------------------------------------------------------
# The Hub layout: load_dataset round trip, images, card, summary, the builder itself


def test_round_trip_through_load_dataset_with_images_after_the_raw_folder_is_gone(synthetic_raw, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(synthetic_raw, raw)
    summary = build_dataset(raw, tmp_path / "out")
    shutil.rmtree(raw)
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.parquet")) == [
        "catalogue/train-00000-of-00001.parquet",
        "compatibility/test-00000-of-00001.parquet",
        "compatibility/train-00000-of-00001.parquet",
        "compatibility/validation-00000-of-00001.parquet",
        "fitb/test-00000-of-00001.parquet",
        "fitb/validation-00000-of-00001.parquet",
        "outfits/test-00000-of-00001.parquet",
        "outfits/train-00000-of-00001.parquet",
        "outfits/validation-00000-of-00001.parquet",
    ]
    catalogue = load(tmp_path / "out", "catalogue", tmp_path / "cache")["train"]
    assert isinstance(catalogue.features["image"], datasets.Image)
    assert len(catalogue) == summary.catalogue["total"]
    image = catalogue[0]["image"]
    assert isinstance(image, Image.Image) and image.size == (32, 32)
    outfits = load(tmp_path / "out", "outfits", tmp_path / "cache")
    assert {split: len(outfits[split]) for split in outfits} == {
        split: summary.outfits[split]["kept"] for split in ("train", "validation", "test")
    }
    items = set(catalogue["item_id"])
    assert all(row[slot] in items for split in outfits for row in outfits[split] for slot in SLOTS)
    assert load(tmp_path / "out", None, tmp_path / "cache")["train"].num_rows == len(outfits["train"])  # default


def test_dataset_card_and_summary(synthetic_built):
    output, summary = synthetic_built
    text = (output / "README.md").read_text()
    assert text.startswith("---\n")
    header = yaml.safe_load(text.split("---\n")[1])
    configs = {config["config_name"]: config for config in header["configs"]}
    assert set(configs) == {"catalogue", "outfits", "fitb", "compatibility"}
    assert {entry["split"] for entry in configs["fitb"]["data_files"]} == {"validation", "test"}
    infos = {info["config_name"]: info for info in header["dataset_info"]}
    assert infos["outfits"]["splits"][0]["num_examples"] == summary.outfits["train"]["kept"]
    assert "Learning Type-Aware Embeddings for Fashion Compatibility" in text
    assert "research" in text.lower() and "Filtering rule" in text
    saved = json.loads((output / "build_summary.json").read_text())
    assert saved["parameters"]["categories"] == SLOTS
    assert saved["outfits"] == summary.outfits
    assert "output_dir" not in saved


def test_builder_download_and_prepare_gives_the_exported_rows(synthetic_raw, synthetic_built, tmp_path):
    output, _ = synthetic_built
    for name in ("catalogue", "outfits", "fitb", "compatibility"):
        builder = PolyvoreOutfits(config_name=name, raw_dir=str(synthetic_raw), cache_dir=str(tmp_path / name))
        builder.download_and_prepare()
        built = builder.as_dataset()
        exported = load(output, name, tmp_path / "cache")
        assert set(built) == set(exported)
        for split in built:
            assert built[split].features == exported[split].features
            if name == "catalogue":
                assert built[split]["item_id"] == exported[split]["item_id"]
                assert built[split][0]["image"].tobytes() == exported[split][0]["image"].tobytes()
            else:
                assert rows(built[split]) == rows(exported[split])


def test_builder_used_programmatically_gives_the_rows_of_the_exported_parquet(hand_raw, tmp_path):
    options = {"category_map": {"bags": "accessories"}, "seed": 7, "with_images": False}
    build_dataset(hand_raw, tmp_path / "out", **options)
    builder = PolyvoreOutfits(
        config_name="compatibility", raw_dir=str(hand_raw), cache_dir=str(tmp_path / "cache"), **options
    )
    builder.download_and_prepare()
    built = builder.as_dataset()
    assert set(built) == {"train", "validation", "test"}
    for split in built:
        exported = pq.read_table(tmp_path / "out" / "compatibility" / f"{split}-00000-of-00001.parquet")
        assert built[split].column_names == exported.column_names == ["label", *SLOTS]
        assert rows(built[split]) == exported.to_pylist()
    assert "501" in built["train"]["accessories"]  # the bag of outfit 1003: the category map reached the builder


def test_builder_config_is_validated():
    with pytest.raises(ValueError, match="split_type"):
        PolyvoreOutfits(config_name="outfits", raw_dir="x", split_type="random")
    with pytest.raises(ValueError, match="not one of categories"):
        PolyvoreOutfits(config_name="outfits", raw_dir="x", category_map={"bags": "handbags"})


def test_same_input_same_bytes(synthetic_raw, synthetic_built, tmp_path):
    output, _ = synthetic_built
    build_dataset(synthetic_raw, tmp_path / "again")
    assert tree_digest(tmp_path / "again") == tree_digest(output)
    build_dataset(synthetic_raw, tmp_path / "other_seed", seed=1)
    assert (
        tree_digest(tmp_path / "other_seed")["fitb/test-00000-of-00001.parquet"]
        != (tree_digest(output)["fitb/test-00000-of-00001.parquet"])
    )


def test_disjoint_split_type_keeps_train_items_out_of_test(synthetic_raw, tmp_path):
    summary = build_dataset(synthetic_raw, tmp_path / "out", split_type="disjoint", with_images=False)
    assert summary.parameters["split_type"] == "disjoint"
    outfits = load(tmp_path / "out", "outfits", tmp_path / "cache")
    items = {split: {row[slot] for row in outfits[split] for slot in SLOTS} for split in outfits}
    assert not items["train"] & (items["validation"] | items["test"])


# --------------------------------------------------------------------------------------------------------------------
# Bad input


def test_missing_files_and_folders(hand_raw, tmp_path):
    with pytest.raises(PolyvoreFormatError, match="raw folder .* not found"):
        build_dataset(tmp_path / "nowhere", tmp_path / "out")
    (hand_raw / "nondisjoint" / "valid.json").unlink()
    with pytest.raises(PolyvoreFormatError, match=r"nondisjoint/valid\.json: file not found"):
        build_dataset(hand_raw, tmp_path / "out")
    shutil.rmtree(hand_raw / "disjoint")
    with pytest.raises(PolyvoreFormatError, match="disjoint/: folder not found"):
        build_dataset(hand_raw, tmp_path / "out", split_type="disjoint")
    (hand_raw / "polyvore_item_metadata.json").unlink()
    with pytest.raises(PolyvoreFormatError, match="polyvore_item_metadata.json: file not found"):
        build_dataset(hand_raw, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_images_folder_is_required_unless_no_images(tmp_path):
    raw = make_hand_raw(tmp_path / "raw", images=False)
    with pytest.raises(PolyvoreFormatError, match="images/: folder not found.*--no_images"):
        build_dataset(raw, tmp_path / "out")
    build_dataset(raw, tmp_path / "out", with_images=False)


def test_malformed_json_reports_file_line_and_column(hand_raw, tmp_path):
    path = hand_raw / "nondisjoint" / "train.json"
    path.write_text('[\n  {"set_id": "1", "items": []},\n  {"set_id": "2" "items": []}\n]\n')
    with pytest.raises(
        PolyvoreFormatError,
        match=r"nondisjoint/train\.json: malformed JSON at line 3, column 18: Expecting ',' delimiter",
    ):
        build_dataset(hand_raw, tmp_path / "out")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"items": []}, r"outfit #0 has no 'set_id'"),
        ({"set_id": "7", "items": [{"item_id": "101"}]}, r"outfit #0 \(set_id '7'\) item #0 has no 'index'"),
        ({"set_id": "7", "items": [{"item_id": "101", "index": "one"}]}, r"'index' 'one', expected an integer"),
    ],
)
def test_malformed_outfit_names_the_field(hand_raw, tmp_path, entry, message):
    (hand_raw / "nondisjoint" / "test.json").write_text(json.dumps([entry]))
    with pytest.raises(PolyvoreFormatError, match=r"nondisjoint/test\.json: .*" + message):
        build_dataset(hand_raw, tmp_path / "out")


def test_item_without_semantic_category(hand_raw, tmp_path):
    path = hand_raw / "polyvore_item_metadata.json"
    metadata = json.loads(path.read_text())
    del metadata["203"]["semantic_category"]
    path.write_text(json.dumps(metadata))
    with pytest.raises(PolyvoreFormatError, match="polyvore_item_metadata.json: item '203' has no 'semantic_category'"):
        build_dataset(hand_raw, tmp_path / "out")


def test_reference_to_an_unknown_item_is_counted_or_fatal_with_strict(hand_raw, tmp_path):
    summary = build_dataset(hand_raw, tmp_path / "out", with_images=False)
    assert summary.references["missing_item_per_split"] == {"train": 1, "validation": 0, "test": 0}
    with pytest.raises(PolyvoreFormatError, match=r"train\.json: outfit '1004' references item '999'"):
        build_dataset(hand_raw, tmp_path / "strict", with_images=False, strict=True)
    assert not (tmp_path / "strict").exists()


def test_missing_and_unreadable_images_drop_the_item_or_fail_with_strict(hand_raw, tmp_path):
    (hand_raw / "images" / "404.jpg").unlink()
    (hand_raw / "images" / "403.jpg").write_bytes(b"not a jpeg")
    summary = build_dataset(hand_raw, tmp_path / "out")
    assert summary.items["missing_image"] == 1 and summary.items["unreadable_image"] == 1
    assert summary.references["bad_image"] == 4  # 1007, 1008, 2004, 2005
    assert summary.outfits["train"]["dropped"]["incomplete_after_bad_references"] == 3  # with 1004
    catalogue = load(tmp_path / "out", "catalogue", tmp_path / "cache")["train"]
    assert not {"403", "404"} & set(catalogue["item_id"])
    assert len(load(tmp_path / "out", "fitb", tmp_path / "cache")["validation"]) == 2  # 2001, 2002
    with pytest.raises(PolyvoreFormatError, match=r"images/40[34]\.jpg"):
        build_dataset(hand_raw, tmp_path / "strict", strict=True)
    assert not (tmp_path / "strict").exists()


def test_num_proc_checks_the_images_in_processes_and_builds_the_same_folder(hand_raw, tmp_path):
    (hand_raw / "images" / "404.jpg").unlink()
    (hand_raw / "images" / "403.jpg").write_bytes(b"not a jpeg")
    one = build_dataset(hand_raw, tmp_path / "one")
    two = build_dataset(hand_raw, tmp_path / "two", num_proc=2)
    assert one.items["unreadable_image"] == two.items["unreadable_image"] == 1
    assert one.items["missing_image"] == two.items["missing_image"] == 1
    files = sorted(path.relative_to(tmp_path / "one") for path in (tmp_path / "one").rglob("*") if path.is_file())
    assert files == sorted(
        path.relative_to(tmp_path / "two") for path in (tmp_path / "two").rglob("*") if path.is_file()
    )
    for name in files:
        text = (
            (tmp_path / "two" / name)
            .read_bytes()
            .replace(str(tmp_path / "two").encode(), str(tmp_path / "one").encode())
        )
        assert text == (tmp_path / "one" / name).read_bytes(), name
    # The first bad image in item id order fails a strict build, whatever the number of processes.
    for num_proc in (None, 2):
        with pytest.raises(PolyvoreFormatError, match=r"images/403\.jpg: unreadable image of item '403'"):
            build_dataset(hand_raw, tmp_path / f"strict{num_proc}", strict=True, num_proc=num_proc)


def test_decode_errors_are_the_same_in_any_number_of_processes(tmp_path):
    from dataset_builder.raw import decode_errors

    paths = []
    for number in range(9):
        path = tmp_path / f"{number}.png"
        Image.new("RGB", (8, 8), (number * 20, 0, 0)).save(path)
        paths.append(str(path))
    for bad in (1, 5, 8):
        Path(paths[bad]).write_bytes(b"garbage")
    expected = decode_errors(paths)
    assert [index for index, _ in expected] == [1, 5, 8]
    for num_proc in (2, 3):  # the messages name a memory address: compare the positions
        assert [index for index, _ in decode_errors(paths, num_proc=num_proc)] == [1, 5, 8]


def test_empty_result_after_filtering(hand_raw, tmp_path):
    with pytest.raises(EmptyDatasetError, match=r"no outfit of the train split.*'hats'.*--category_map"):
        build_dataset(hand_raw, tmp_path / "out", categories=("tops", "hats"), with_images=False)
    assert not (tmp_path / "out").exists()


def test_too_few_items_for_fitb_candidates_is_an_empty_result(hand_raw, tmp_path):
    for stem, set_id in (("train", "1001"), ("valid", "2001"), ("test", "3001")):
        outfit = {"set_id": set_id, "items": [{"item_id": str(i), "index": n} for i, n in HAND_SPLITS[stem][set_id]]}
        (hand_raw / "nondisjoint" / f"{stem}.json").write_text(json.dumps([outfit]))
    with pytest.raises(EmptyDatasetError, match="fitb validation: no question can be made.*at least 4 items"):
        build_dataset(hand_raw, tmp_path / "out", with_images=False)


def test_repeated_set_id_is_counted_or_fatal_with_strict(hand_raw, tmp_path):
    path = hand_raw / "nondisjoint" / "train.json"
    outfits = json.loads(path.read_text())
    path.write_text(json.dumps(outfits + [dict(outfits[0], items=outfits[1]["items"])]))
    summary = build_dataset(hand_raw, tmp_path / "out", with_images=False)
    assert summary.outfits["train"]["dropped"]["duplicate_set_id"] == 1
    assert summary.outfits["train"]["read"] == 11 and summary.outfits["train"]["kept"] == 8
    with pytest.raises(PolyvoreFormatError, match=r"train\.json: outfit #10 \(set_id '1001'\) repeats a set_id"):
        build_dataset(hand_raw, tmp_path / "strict", with_images=False, strict=True)


def test_existing_output_is_refused_unless_overwrite(hand_raw, tmp_path):
    build_dataset(hand_raw, tmp_path / "out", with_images=False)
    (tmp_path / "out" / "extra.txt").write_text("added later")
    with pytest.raises(OutputPathError, match="already exists.*--overwrite"):
        build_dataset(hand_raw, tmp_path / "out", with_images=False, seed=1)
    assert (tmp_path / "out" / "extra.txt").read_text() == "added later"
    with pytest.raises(OutputPathError, match="holds extra.txt, which `build` does not write"):
        build_dataset(hand_raw, tmp_path / "out", with_images=False, seed=1, overwrite=True)
    assert (tmp_path / "out" / "extra.txt").read_text() == "added later"  # --overwrite deletes only what build wrote
    (tmp_path / "out" / "extra.txt").unlink()
    build_dataset(hand_raw, tmp_path / "out", with_images=False, seed=1, overwrite=True)
    assert (tmp_path / "out" / "README.md").is_file()
    assert json.loads((tmp_path / "out" / "build_summary.json").read_text())["parameters"]["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "raw"]  # nothing left aside
    with pytest.raises(OutputPathError, match="is the input --raw_dir"):
        build_dataset(hand_raw, hand_raw, with_images=False, overwrite=True)


@pytest.mark.parametrize("failure", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_interrupted_build_leaves_no_output_and_an_existing_dataset_intact(hand_raw, tmp_path, monkeypatch, failure):
    written = []
    real_write = export._write_parquet

    def failing_write(table, path):
        if len(written) == 3:  # mid-way: some parquet files are already in the temporary folder
            raise failure
        written.append(path)
        real_write(table, path)

    monkeypatch.setattr(export, "_write_parquet", failing_write)
    with pytest.raises(type(failure)):
        build_dataset(hand_raw, tmp_path / "out", with_images=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]

    monkeypatch.setattr(export, "_write_parquet", real_write)
    build_dataset(hand_raw, tmp_path / "out", with_images=False)
    before = tree_digest(tmp_path / "out")
    written.clear()
    monkeypatch.setattr(export, "_write_parquet", failing_write)
    with pytest.raises(type(failure)):
        build_dataset(hand_raw, tmp_path / "out", with_images=False, seed=5, overwrite=True)
    assert tree_digest(tmp_path / "out") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "raw"]


# --------------------------------------------------------------------------------------------------------------------
# Command line


def test_cli_build_prints_the_summary(hand_raw, tmp_path, capsys):
    code = main(["build", "--raw_dir", str(hand_raw), "--output_dir", str(tmp_path / "out"), "--no_images",
                 "--category_map", "bags=accessories", "--categories", "shoes,tops", "accessories", "bottoms"])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "outfits train: 10 read, 9 kept" in out and "catalogue:" in out
    summary = json.loads((tmp_path / "out" / "build_summary.json").read_text())
    assert summary["parameters"]["categories"] == SLOTS


def test_cli_exit_codes_and_messages(hand_raw, tmp_path, capsys):
    (hand_raw / "polyvore_item_metadata.json").write_text('{\n  "101": {\n')
    assert main(["build", "--raw_dir", str(hand_raw), "--output_dir", str(tmp_path / "out")]) == 2
    assert "polyvore_item_metadata.json: malformed JSON at line 3" in capsys.readouterr().err
    (tmp_path / "exists").mkdir()
    (tmp_path / "exists" / "notes.txt").write_text("mine")
    assert main(["build", "--raw_dir", str(hand_raw), "--output_dir", str(tmp_path / "exists")]) == 2
    assert "was not written by `build`" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["build", "--raw_dir", str(hand_raw), "--output_dir", "x", "--category_map", "bags"])
    assert usage.value.code == 2
    assert "expected SEMANTIC=SLOT" in capsys.readouterr().err
    assert main(["build", "--raw_dir", str(hand_raw), "--output_dir", "x", "--categories", "tops", "tops"]) == 2


def test_cli_help_has_examples(capsys):
    with pytest.raises(SystemExit) as done:
        main(["build", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "--category_map" in text and "examples:" in text and "synthesize --output_dir" in text
