"""Tests of the MANGO importer: a generated checkout in the datathon CSV layout -> the raw Polyvore Outfits layout."""

import json
from pathlib import Path

import pytest
from PIL import Image

from dataset_builder.cli import main
from dataset_builder.export import build_dataset
from dataset_builder.mango import MARKER_FILE, convert_mango, product_title, semantic_category
from dataset_builder.raw import PolyvoreFormatError, read_raw

HEADER = (
    "cod_modelo_color,cod_color_code,des_color_specification_esp,des_agrup_color_eng,des_sex,des_age,des_line,"
    "des_fabric,des_product_category,des_product_aggregated_family,des_product_family,des_product_type,des_filename"
).split(",")
ACC = "Accesories, Swim and Intimate"
# (category, aggregated family, family, type, fabric) of each kind of product, and the expected semantic category
KINDS = {
    "shoe": ((ACC, "Accessories", "Footwear", "Sandals", "C-COMPLEMENTOS"), "shoes"),
    "top": (("Tops", "T-shirts", "T-shirt", "T-Shirt", "K-CIRCULAR"), "tops"),
    "bottom": (("Bottoms", "Trousers & leggings", "Trousers", "Trousers", "P-PLANA"), "bottoms"),
    "bag": ((ACC, "Accessories", "Bags", "Handbag", "O-POLIPIEL"), "bags"),
    "jewel": ((ACC, "Accessories", "Jewellery", "Earrings", "C-COMPLEMENTOS"), "jewellery"),
    "glasses": ((ACC, "Accessories", "Glasses", "Sunglasses", "C-COMPLEMENTOS"), "accessories"),
    "hat": ((ACC, "Accessories", "Hats, scarves and gloves", "Hat", "C-COMPLEMENTOS"), "accessories"),
    "dress": (
        ("Dresses, jumpsuits and Complete set", "Dresses and jumpsuits", "Dresses", "Dress", "P-PLANA"),
        "all-body",
    ),
    "coat": (("Outerwear", "Coats and Parkas", "Coats", "Coat", "L-PIEL"), "outerwear"),
    "swim": ((ACC, "Swim and intimate", "Swimwear", "Bikini", "K-CIRCULAR"), "swimwear-intimate"),
    "home": (("Home", "Decor", "Deco Textiles", "Cushion", "X-NUEVO"), "home"),  # an unknown fabric
    "perfume": (("Beauty", "Fragance", "Fragances", "Perfume", "C-COMPLEMENTOS"), "beauty"),
}
COLOURS = ("WHITE", "BLUE", "GREY", "PINK", "RED", "GREEN")
COUNTS = {"shoe": 6, "top": 6, "bottom": 6, "bag": 4, "jewel": 2, "glasses": 1, "hat": 1, "dress": 1, "coat": 1}
COUNTS |= {"swim": 1, "home": 1, "perfume": 1}
NUM_OUTFITS = 40
MISSING_PHOTO = "jewel-1"
PADDED = "top-0"  # written with trailing spaces and a CRLF line end


def _quoted(fields) -> str:
    return ",".join('"' + str(field).replace('"', '""') + '"' for field in fields)


def make_checkout(root: Path) -> Path:
    """A small MANGO checkout: quoted CSV files as in the real one, tiny JPEG photos, and every kind of flaw."""
    dataset, images = root / "datathon" / "dataset", root / "datathon" / "images"
    dataset.mkdir(parents=True)
    images.mkdir(parents=True)
    lines, products = [_quoted(HEADER) + "\n"], {}
    for kind, count in COUNTS.items():
        (category, aggregated, family, product_type, fabric), _ = KINDS[kind]
        for number in range(count):
            item_id, colour = f"{kind}-{number}", COLOURS[number % len(COLOURS)]
            filename = f"datathon/images/2019_{kind}_{number}.jpg"
            row = [item_id, "02", colour + " CLARO", colour, "Female", "Adult", "SHE", fabric, category, aggregated]
            row += [family, product_type, filename]
            if item_id == PADDED:
                lines.append(_quoted(f"  {field}  " for field in row) + "\r\n")
            else:
                lines.append(_quoted(row) + "\n")
            products.setdefault(kind, []).append(item_id)
            if item_id != MISSING_PHOTO:
                Image.new("RGB", (12, 16), (40 * number, 100, 200)).save(root / filename, "JPEG")
    lines.append(lines[-1])  # a duplicate product row
    (dataset / "product_data.csv").write_text("".join(lines), encoding="utf-8", newline="")

    rows = ['"cod_outfit","cod_modelo_color"']
    for outfit in range(1, NUM_OUTFITS + 1):
        members = [products[kind][outfit % len(products[kind])] for kind in ("top", "bottom", "shoe")]
        members.append(products["bag"][outfit % 4] if outfit % 3 else ["glasses-0", "hat-0"][outfit % 2])
        if outfit % 5 == 0:
            members += ["jewel-0", "jewel-1", "dress-0", "home-0"]
        rows += [f'{outfit},"{item_id}"' for item_id in members]
    rows += ['7,"99999999-00"', '8,"top-2"', f'{NUM_OUTFITS + 1},"88888888-00"']  # unknown, repeated, empty outfit
    (dataset / "outfit_data.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


@pytest.fixture
def checkout(tmp_path):
    return make_checkout(tmp_path / "mango")


def _load(path: Path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_layout_and_fields(checkout, tmp_path):
    summary = convert_mango(checkout, tmp_path / "raw")
    raw = tmp_path / "raw"
    assert sorted(p.name for p in raw.iterdir()) == [
        "categories.csv",
        "images",
        MARKER_FILE,
        "nondisjoint",
        "polyvore_item_metadata.json",
        "polyvore_outfit_titles.json",
    ]
    assert sorted(p.name for p in (raw / "nondisjoint").iterdir()) == ["test.json", "train.json", "valid.json"]
    metadata = _load(raw / "polyvore_item_metadata.json")
    assert len(metadata) == sum(COUNTS.values()) == summary["products"]
    assert PADDED in metadata  # the padded CRLF row is read, stripped
    top = metadata[PADDED]
    assert set(top) == {"url_name", "description", "catgeories", "title", "related", "category_id", "semantic_category"}
    assert top["catgeories"] == ["Tops", "T-shirts", "T-shirt", "T-Shirt"] and top["related"] == []
    for item_id, meta in metadata.items():
        assert meta["semantic_category"] == KINDS[item_id.split("-")[0]][1], item_id

    categories = [line.split(",") for line in (raw / "categories.csv").read_text().splitlines()]
    assert [row[1] for row in categories] == sorted({KINDS[k][0][2].replace(",", "") for k in COUNTS})
    assert all(len(row) == 3 for row in categories)  # "Hats, scarves and gloves" loses its comma
    family_id = {row[1]: row[0] for row in categories}
    assert top["category_id"] == family_id["T-shirt"] and ["1", "Bags", "bags"] in categories

    outfits = {stem: _load(raw / "nondisjoint" / f"{stem}.json") for stem in ("train", "valid", "test")}
    every = {outfit["set_id"]: outfit["items"] for split in outfits.values() for outfit in split}
    assert sorted(every, key=int) == [str(n) for n in range(1, NUM_OUTFITS + 1)]
    members = ["top-5", "bottom-5", "shoe-5", "bag-1", "jewel-0", "jewel-1", "dress-0", "home-0"]  # in row order
    assert every["5"] == [{"item_id": item_id, "index": index} for index, item_id in enumerate(members, start=1)]
    assert [m["item_id"] for m in every["8"]] == ["top-2", "bottom-2", "shoe-2", "bag-0"]  # repeated row once
    assert [m["index"] for m in every["7"]] == [1, 2, 3, 4]  # the unknown product is left out
    titles = _load(raw / "polyvore_outfit_titles.json")
    assert set(titles) == set(every) and set(titles["1"]) == {"url_name", "title"}

    photos = sorted(p.name for p in (raw / "images").iterdir())
    assert photos == sorted(f"{item_id}.jpg" for item_id in metadata if item_id != MISSING_PHOTO)
    assert (raw / "images" / "top-1.jpg").read_bytes() == (checkout / "datathon/images/2019_top_1.jpg").read_bytes()
    marker = _load(raw / MARKER_FILE)
    assert marker["seed"] == 0 and marker["summary"]["products"] == summary["products"]

    parsed = read_raw(raw)  # the builder's reader accepts it
    assert parsed.item_category[PADDED] == "tops" and len(parsed.outfits["train"]) == 32


def test_semantic_categories_and_titles():
    assert semantic_category(ACC, "Accessories", "Footwear") == "shoes"
    assert semantic_category(ACC, "Accessories", "Wallets & cases") == "accessories"
    assert semantic_category(ACC, "Accessories", "Hats scarves and gloves") == "accessories"
    assert semantic_category(ACC, "Accessories", "Intimate") == "swimwear-intimate"
    assert semantic_category("Tops", "Shirts", "Shirt") == "tops"
    assert semantic_category("Something new", "New", "New") == "other"
    assert product_title("WHITE", "P-PLANA", "Trousers") == "white plain trousers"
    assert product_title("BLUE", "J-JEANS", " Jeans ") == "blue denim jeans"
    assert product_title("BROWN", "O-POLIPIEL", "Handbag") == "brown faux leather handbag"
    assert product_title("GREY", "C-COMPLEMENTOS", "Earrings") == "grey earrings"
    assert product_title("GREY", "Z-UNKNOWN", "Hat") == "grey hat"


def test_titles_in_metadata(checkout, tmp_path):
    convert_mango(checkout, tmp_path / "raw", with_images=False)
    metadata = _load(tmp_path / "raw" / "polyvore_item_metadata.json")
    assert metadata["bottom-0"]["title"] == "white plain trousers"
    assert metadata[PADDED]["title"] == "white jersey t-shirt"
    assert metadata["coat-0"]["title"] == "white leather coat"
    assert metadata["shoe-1"]["title"] == "blue sandals"
    assert metadata["home-0"]["title"] == "white cushion"  # unknown fabric: no word
    assert not (tmp_path / "raw" / "images").exists()


def test_split_sizes_and_seed(checkout, tmp_path):
    first = convert_mango(checkout, tmp_path / "a", seed=3)
    convert_mango(checkout, tmp_path / "b", seed=3)
    convert_mango(checkout, tmp_path / "c", seed=4)
    assert first["outfits"] == {"train": 32, "valid": 4, "test": 4}
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    split = {s: (tmp_path / d / "nondisjoint" / "test.json").read_bytes() for s, d in ((3, "a"), (4, "c"))}
    assert split[3] != split[4]


def test_skipped_counts(checkout, tmp_path):
    summary = convert_mango(checkout, tmp_path / "raw")
    assert summary["skipped"] == {
        "outfit_rows_unknown_product": 2,
        "outfit_rows_deduplicated": 1,
        "outfit_rows_without_cod_outfit": 0,
        "empty_outfits": 1,
        "duplicate_product_rows": 1,
        "invalid_product_id_rows": 0,
    }
    assert summary["missing_photos"] == 1 and summary["photos_copied"] == sum(COUNTS.values()) - 1
    assert summary["unknown_fabrics"] == {"X-NUEVO": 1}
    assert summary["products_per_semantic_category"]["shoes"] == 6


def _rewrite(path: Path, transform) -> None:
    path.write_text(transform(path.read_text(encoding="utf-8")), encoding="utf-8")


def _run(argv, capsys) -> tuple[int, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.err


@pytest.mark.parametrize(
    "breakage, message",
    [
        ("missing_column", "datathon/dataset/product_data.csv: required column 'des_fabric' not found"),
        ("missing_file", "datathon/dataset/outfit_data.csv: file not found"),
        ("not_utf8", "datathon/dataset/product_data.csv: not UTF-8 text"),
        ("empty_outfits", "datathon/dataset/outfit_data.csv: no outfit rows"),
        ("missing_source", "MANGO checkout folder not found"),
    ],
)
def test_bad_input_exits_2_with_one_line(checkout, tmp_path, capsys, breakage, message):
    products, outfits = checkout / "datathon/dataset/product_data.csv", checkout / "datathon/dataset/outfit_data.csv"
    source = checkout
    if breakage == "missing_column":
        _rewrite(products, lambda text: text.replace('"des_fabric"', '"des_fabrik"', 1))
    elif breakage == "missing_file":
        outfits.unlink()
    elif breakage == "not_utf8":
        products.write_bytes(products.read_bytes().replace(b"CLARO", b"CLARO \xf1", 1))
    elif breakage == "empty_outfits":
        outfits.write_text('"cod_outfit","cod_modelo_color"\r\n', encoding="utf-8")
    else:
        source = tmp_path / "nowhere"
    code, err = _run(["convert-mango", "--source", str(source), "--output_dir", str(tmp_path / "raw")], capsys)
    assert code == 2
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "raw").exists()


def test_output_folder_checks(checkout, tmp_path, capsys):
    args = ["convert-mango", "--source", str(checkout), "--no_images"]
    for inside in (checkout / "raw", checkout, tmp_path):  # inside, equal to, containing the source
        code, err = _run([*args, "--output_dir", str(inside), "--overwrite"], capsys)
        assert code == 2 and "the input --source" in err and err.count("\n") == 1
    assert not (checkout / "raw").exists()

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    code, err = _run([*args, "--output_dir", str(foreign), "--overwrite"], capsys)
    assert code == 2 and f"{str(foreign)!r} was not written by `convert-mango`" in err and err.count("\n") == 1
    assert (foreign / "keep.txt").read_text() == "mine"

    raw = tmp_path / "raw"
    assert _run([*args, "--output_dir", str(raw)], capsys) == (0, "")
    code, err = _run([*args, "--output_dir", str(raw), "--seed", "1"], capsys)
    assert code == 2 and "already exists" in err and err.count("\n") == 1
    assert _run([*args, "--output_dir", str(raw), "--seed", "1", "--overwrite"], capsys) == (0, "")
    assert _load(raw / MARKER_FILE)["seed"] == 1
    # A file the user added to a conversion is theirs: --overwrite refuses, as build and synthesize do.
    (raw / "notes.md").write_text("my notes")
    code, err = _run([*args, "--output_dir", str(raw), "--overwrite"], capsys)
    assert code == 2 and "notes.md" in err and err.count("\n") == 1, err
    assert (raw / "notes.md").read_text() == "my notes" and _load(raw / MARKER_FILE)["seed"] == 1


def test_cli_prints_summary_and_next_command(checkout, tmp_path, capsys):
    code = main(["convert-mango", "--source", str(checkout), "--output_dir", str(tmp_path / "raw"), "--seed", "2"])
    out = capsys.readouterr().out
    assert code == 0
    assert "products" in out and "train 32, valid 4, test 4" in out and "1 missing" in out
    assert f"umbert-hf build --raw_dir {tmp_path / 'raw'} --output_dir DATASET --category_map bags=accessories" in out


def test_umbert_hf_delegates(checkout, tmp_path, capsys):
    from umbert_hf.apps.cli import main as umbert_main

    assert umbert_main(["convert-mango", "--source", str(checkout), "--output_dir", str(tmp_path / "r")]) == 0
    assert "umbert-hf build" in capsys.readouterr().out


def test_end_to_end_build_and_load(checkout, tmp_path, monkeypatch):
    import datasets

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    raw, out = tmp_path / "raw", tmp_path / "dataset"
    convert_mango(checkout, raw)
    summary = build_dataset(raw, out, category_map={"bags": "accessories"})
    assert summary.outfits["train"]["kept"] == 32  # every outfit has a top, a bottom, shoes and a bag or accessory
    outfits = datasets.load_dataset(str(out), "outfits", cache_dir=str(tmp_path / "cache"))
    assert {split: len(rows) for split, rows in outfits.items()} == {"train": 32, "validation": 4, "test": 4}
    assert outfits["train"].column_names == ["outfit_id", "shoes", "tops", "accessories", "bottoms"]
    catalogue = datasets.load_dataset(str(out), "catalogue", cache_dir=str(tmp_path / "cache"))["train"]
    row = catalogue[0]
    assert row["image"].size == (12, 16) and row["title"]


def test_outfits_of_unknown_products_only(checkout, tmp_path):
    outfits = checkout / "datathon/dataset/outfit_data.csv"
    outfits.write_text('"cod_outfit","cod_modelo_color"\n1,"nope"\n2,"nope either"\n', encoding="utf-8")
    with pytest.raises(PolyvoreFormatError, match="outfit_data.csv: no outfit references a product"):
        convert_mango(checkout, tmp_path / "raw")
    assert not (tmp_path / "raw").exists()
