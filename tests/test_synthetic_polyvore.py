"""Tests of the synthetic Polyvore generator: the official format, determinism, disjointness and learnable rules."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import csv
import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dataset_builder import build_dataset, describe_rules, synthesize_polyvore
from dataset_builder.cli import main
from dataset_builder.synthetic import COLOURS, PATTERN_RULE, PATTERNS, SLOT_CATEGORIES, draw_item

STEMS = ("train", "valid", "test")
SLOTS = ["shoes", "tops", "accessories", "bottoms"]


def digest(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic") / "raw"
    summary = synthesize_polyvore(root, num_items=250, num_outfits=200, image_size=32, seed=0)
    return root, summary


@pytest.fixture(scope="module")
def larger(tmp_path_factory):
    """Enough outfits for statistics on the rules (no images: fast)."""
    root = tmp_path_factory.mktemp("larger") / "raw"
    synthesize_polyvore(root, num_items=1500, num_outfits=2500, seed=1, with_images=False)
    output = root.parent / "dataset"
    build_dataset(root, output, with_images=False)
    return root, output


def read_json(path):
    return json.loads(Path(path).read_text())


def test_writes_the_official_layout(raw):
    root, summary = raw
    metadata = read_json(root / "polyvore_item_metadata.json")
    assert len(metadata) == summary["num_items"] == 250
    for item_id, item in metadata.items():
        assert item_id.isdigit() and len(item_id) == 9
        assert set(item) == {"url_name", "description", "catgeories", "title", "related", "category_id",
                             "semantic_category"}  # fmt: skip
    titles = read_json(root / "polyvore_outfit_titles.json")
    assert len(titles) == 200 and all(set(t) == {"url_name", "title"} for t in titles.values())
    with open(root / "categories.csv", newline="") as handle:
        categories = list(csv.reader(handle))
    assert all(len(row) == 3 and row[0].isdigit() for row in categories)
    assert {item["category_id"] for item in metadata.values()} <= {row[0] for row in categories}
    for split_type in ("nondisjoint", "disjoint"):
        total = 0
        for stem in STEMS:
            outfits = read_json(root / split_type / f"{stem}.json")
            total += len(outfits)
            refs = {}
            for outfit in outfits:
                assert set(outfit) == {"set_id", "items"} and outfit["set_id"].isdigit()
                assert sorted(member["index"] for member in outfit["items"]) == list(range(1, len(outfit["items"]) + 1))
                for member in outfit["items"]:
                    assert member["item_id"] in metadata
                    refs[f"{outfit['set_id']}_{member['index']}"] = member["item_id"]
            lines = (root / split_type / f"compatibility_{stem}.txt").read_text().split("\n")
            lines = [line.split() for line in lines if line]
            assert Counter(line[0] for line in lines) == {"1": len(outfits), "0": len(outfits)}
            assert all(ref in refs for line in lines for ref in line[1:])
            for question in read_json(root / split_type / f"fill_in_blank_{stem}.json"):
                assert len(question["answers"]) == 4
                set_id = question["question"][0].rsplit("_", 1)[0]
                right = [ref for ref in question["answers"] if ref.rsplit("_", 1)[0] == set_id]
                assert len(right) == 1 and right[0] == f"{set_id}_{question['blank_position']}"
                categories_of_answers = {metadata[refs[ref]]["semantic_category"] for ref in question["answers"]}
                assert len(categories_of_answers) == 1
                assert all(ref in refs for ref in question["question"] + question["answers"])
        assert total == 200
    for item_id in metadata:
        with Image.open(root / "images" / f"{item_id}.jpg") as image:
            assert image.format == "JPEG" and image.size == (32, 32)


def test_same_seed_same_bytes_other_seed_other_bytes(raw, tmp_path):
    root, _ = raw
    synthesize_polyvore(tmp_path / "again", num_items=250, num_outfits=200, image_size=32, seed=0)
    assert digest(tmp_path / "again") == digest(root)
    synthesize_polyvore(tmp_path / "other", num_items=250, num_outfits=200, image_size=32, seed=1)
    assert digest(tmp_path / "other")["polyvore_item_metadata.json"] != digest(root)["polyvore_item_metadata.json"]


def test_disjoint_splits_share_no_item_with_train_and_nondisjoint_do(raw):
    root, _ = raw

    def items(split_type, stem):
        return {m["item_id"] for o in read_json(root / split_type / f"{stem}.json") for m in o["items"]}

    train = items("disjoint", "train")
    assert train and not train & (items("disjoint", "valid") | items("disjoint", "test"))
    assert items("nondisjoint", "train") & items("nondisjoint", "test")


def test_other_categories_incomplete_outfits_and_item_reuse(raw):
    root, summary = raw
    metadata = read_json(root / "polyvore_item_metadata.json")
    categories = Counter(item["semantic_category"] for item in metadata.values())
    assert {"bags", "jewellery", "outerwear"} <= set(categories) and set(SLOT_CATEGORIES) <= set(categories)
    assert 0 < summary["num_outfits_with_every_slot"] < summary["num_outfits"]
    outfits = [o for stem in STEMS for o in read_json(root / "nondisjoint" / f"{stem}.json")]
    uses = Counter(m["item_id"] for o in outfits for m in o["items"])
    assert max(uses.values()) > 1 and summary["mean_outfits_per_item"] > 2
    assert any(
        Counter(metadata[m["item_id"]]["semantic_category"] for m in o["items"])["tops"] > 1 for o in outfits
    )  # some outfits hold two tops, for the "first by index" rule


def test_members_follow_the_hidden_rules_up_to_the_noise(larger):
    root, _ = larger
    latents = read_json(root / "synthetic_latents.json")
    rules = describe_rules()
    metadata = read_json(root / "polyvore_item_metadata.json")
    agree = Counter()
    members = 0
    for stem in STEMS:
        for outfit in read_json(root / "nondisjoint" / f"{stem}.json"):
            style = latents["outfits"][outfit["set_id"]]
            for member in outfit["items"]:
                category = metadata[member["item_id"]]["semantic_category"]
                item = latents["items"][member["item_id"]]
                agree["colour"] += item["colour"] == rules["colour_of_style"][category][style["style"]]
                agree["pattern"] += item["pattern"] == rules["pattern_of_key"][category][style["pattern_key"]]
                agree["formality"] += item["formality"] == style["formality"]
                members += 1
    for attribute, count in agree.items():
        assert 0.8 < count / members < 0.97, attribute  # 1 - NOISE * (k - 1) / k, not perfect


def test_rules_can_be_read_from_titles_and_images():
    array = draw_item("tops", colour=1, pattern=0, formality=1, size=64)  # a plain navy formal top (a blouse)
    body = (array != 255).any(axis=2)
    mean = array[body].mean(axis=0)
    assert np.abs(mean - np.array(COLOURS[1][1])).max() < 40
    striped = draw_item("tops", colour=1, pattern=PATTERNS.index("striped"), formality=1, size=64)
    assert not np.array_equal(array, striped)
    casual = draw_item("tops", colour=1, pattern=0, formality=0, size=64)  # a tee: another silhouette
    assert ((casual != 255).any(axis=2) != body).sum() > 200


def test_context_mean_fails_where_the_rules_succeed(larger):
    """On the built fitb config: the candidate predicted by the rules is usually right; the candidate nearest to
    the mean of the other items' attributes (a context-mean baseline) is not better than chance."""
    root, output = larger
    import pyarrow.parquet as pq

    latents = read_json(root / "synthetic_latents.json")["items"]
    rules = describe_rules()
    colours = [name for name, _ in COLOURS]
    outfits = {
        row["outfit_id"]: row for row in pq.read_table(output / "outfits/test-00000-of-00001.parquet").to_pylist()
    }
    questions = pq.read_table(output / "fitb/test-00000-of-00001.parquet").to_pylist()

    def features(item):
        vector = np.zeros(len(colours) + len(PATTERNS) + 2)
        vector[colours.index(latents[item]["colour"])] = 1
        vector[len(colours) + PATTERNS.index(latents[item]["pattern"])] = 1
        vector[-1 if latents[item]["formality"] == "formal" else -2] = 1
        return vector

    by_rules = by_context_mean = 0
    for question in questions:
        outfit, blank = outfits[question["outfit_id"]], question["blank"]
        context = [(slot, outfit[slot]) for slot in SLOTS if slot != blank]
        style_votes = Counter(
            style for slot, item in context for style, colour in enumerate(rules["colour_of_style"][slot])
            if colour == latents[item]["colour"]
        )  # fmt: skip
        key_votes = Counter(
            PATTERN_RULE[slot].index(PATTERNS.index(latents[item]["pattern"])) for slot, item in context
        )
        formal_votes = Counter(latents[item]["formality"] for _, item in context)
        style, key, formality = style_votes.most_common(1)[0][0], key_votes.most_common(1)[0][0], formal_votes.most_common(1)[0][0]  # fmt: skip
        wanted = (rules["colour_of_style"][blank][style], rules["pattern_of_key"][blank][key], formality)
        scores = [
            sum(a == b for a, b in zip((latents[c]["colour"], latents[c]["pattern"], latents[c]["formality"]), wanted))
            for c in question["candidates"]
        ]
        by_rules += int(np.argmax(scores)) == question["label"]
        mean = np.mean([features(item) for _, item in context], axis=0)
        distances = [np.linalg.norm(features(c) - mean) for c in question["candidates"]]
        by_context_mean += int(np.argmin(distances)) == question["label"]
    assert len(questions) > 200
    assert by_rules / len(questions) > 0.6
    assert by_context_mean / len(questions) < 0.33


def test_cli_synthesize_and_bad_parameters(tmp_path, capsys):
    assert main(["synthesize", "--output_dir", str(tmp_path / "raw"), "--num_items", "60", "--num_outfits", "40",
                 "--image_size", "16", "--seed", "2"]) == 0  # fmt: skip
    assert "wrote" in capsys.readouterr().out and (tmp_path / "raw" / "images").is_dir()
    assert main(["synthesize", "--output_dir", str(tmp_path / "raw")]) == 2  # exists
    assert "already exists" in capsys.readouterr().err
    assert main(["synthesize", "--output_dir", str(tmp_path / "small"), "--num_items", "3"]) == 2
    assert "num_items=3" in capsys.readouterr().err
    assert not (tmp_path / "small").exists()
    with pytest.raises(ValueError, match="num_outfits"):
        synthesize_polyvore(tmp_path / "x", num_outfits=1)
